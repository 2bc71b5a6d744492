"""A CLI run starts the local Prefect server while it imports Prefect, unless an API may be set."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from cli import local_server, prefect_api

ENV_KEYS = ("PREFECT_API_URL", "PREFECT_PROFILES_PATH")


@pytest.fixture
def no_sources(tmp_path, monkeypatch) -> Path:
    """A working directory and PREFECT_HOME where nothing names a Prefect API."""
    for key in ENV_KEYS:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_nothing_configured_is_seen_without_prefect(no_sources):
    """No environment variable and no file: the API URL cannot be configured."""
    (no_sources / "pyproject.toml").write_text('[project]\nurls = {home = "https://x.example"}\n')
    assert not prefect_api.api_url_may_be_configured()


@pytest.mark.parametrize(
    ("path", "text"),
    [
        ("home/profiles.toml", '[profiles.x]\nPREFECT_API_URL = "http://h:1/api"\n'),
        ("prefect.toml", "[logging]\nlevel = 'INFO'\n"),
        ("pyproject.toml", '[tool.prefect.api]\nurl = "http://h:1/api"\n'),
        (".env", "PREFECT_API_URL=http://h:1/api\n"),
    ],
)
def test_any_source_that_may_name_an_api_counts(no_sources, path, text):
    """A profile, prefect.toml, [tool.prefect] or .env that may set it: in doubt, it is set."""
    (no_sources / path).parent.mkdir(parents=True, exist_ok=True)
    (no_sources / path).write_text(text)
    assert prefect_api.api_url_may_be_configured()


def test_environment_counts(no_sources, monkeypatch):
    """PREFECT_API_URL in the environment is a configured API."""
    monkeypatch.setenv("PREFECT_API_URL", "http://h:1/api")
    assert prefect_api.api_url_may_be_configured()


def test_the_local_server_starts_while_prefect_loads(no_sources, monkeypatch):
    """The local server is made sure of on its own thread before Prefect's settings are read,
    and the run then talks to it."""
    entered = threading.Event()
    threads: list[str] = []

    def ensure(**_: object) -> local_server.ServerState:
        threads.append(threading.current_thread().name)
        entered.set()
        return local_server.ServerState(pid=1, port=9, log="server.log", database="db")

    def configured() -> None:  # Prefect's settings: read only once the start is under way
        assert entered.wait(10), "the local server was not started before Prefect was read"

    monkeypatch.setattr(local_server, "ensure", ensure)
    monkeypatch.setattr(prefect_api, "configured_api_url", configured)
    with prefect_api.prefect_api() as url:
        from prefect.settings import PREFECT_API_URL

        assert url == PREFECT_API_URL.value() == "http://127.0.0.1:9/api"
    assert threads == ["local-prefect-server"]
