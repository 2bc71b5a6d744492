"""Shared fixtures: the emulator on a random loopback port, one real `prefect server` per session
and xdist worker (started from a database migrated once per session), and the environment a
pipeline run reads."""

from __future__ import annotations

import asyncio
import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
# A PREFECT_HOME of this session's own: several checkouts or sessions on one machine never share
# Prefect's database, profiles or lock files. Removed when the session ends.
_PREFECT_HOME = tempfile.mkdtemp(prefix="archiver-tests-prefect-home-")
os.environ["PREFECT_HOME"] = _PREFECT_HOME
atexit.register(shutil.rmtree, _PREFECT_HOME, ignore_errors=True)


def _stop_local_server() -> None:
    """A local Prefect server a CLI test started in the session's home does not outlive it."""
    from cli import local_server

    local_server.stop(Path(_PREFECT_HOME))


atexit.register(_stop_local_server)  # runs before the rmtree above (atexit is LIFO)

# Fixtures that start real S3 servers (moto, SeaweedFS) live in their own plugin module.
pytest_plugins = ["tests.s3_fixtures"]

TOKEN = "r8_test_token_must_never_leak_0123456789"

# Tiers: `make test-fast` deselects every test that needs a server other than the emulator
# (a Prefect API, an S3 server, a browser); they are marked here from the fixtures they use.
_FIXTURE_MARKERS = {
    "prefect_harness": "prefect",
    "prefect_server": "prefect",
    "moto_s3": "s3",
    "seaweedfs_s3": "s3",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        for fixture, marker in _FIXTURE_MARKERS.items():
            if fixture in getattr(item, "fixturenames", ()):
                item.add_marker(getattr(pytest.mark, marker))
    _slowest_first(items)


#: Seconds the slowest test files take on a quiet 2-core machine (estimated 2026-12-07 from a full
#: run's junit durations). xdist (`--dist loadfile --no-loadscope-reorder`, Makefile) hands whole
#: files out in collection order as workers free up, so these start first (longest first) and no
#: long file is left running alone at the end. A file not listed runs after them.
SLOW_FILES: dict[str, int] = {
    "test_local_server": 135,
    "test_webhooks_receiver": 125,
    "test_deployments": 120,
    "test_archive_cli": 109,
    "test_output_urls_cli": 71,
    "test_s3_pipeline": 67,
    "test_concurrent_runs": 59,
    "test_ui": 59,
    "test_cli": 59,
    "test_deployments_postgres": 57,
    "test_bench": 55,
    "test_webhooks_backlog": 52,
    "test_catalog_s3": 51,
    "test_run_links": 45,
    "test_interrupts": 40,
    "test_shared_server": 39,
    "test_storage_azure": 30,
    "test_uploads": 28,
    "test_storage_gcs": 28,
    "test_dest_credentials": 28,
    "test_retry_bounds": 27,
    "test_batch": 26,
    "test_deployments_declare": 25,
    "test_cli_messages": 24,
    "test_deadline_automation": 22,
    "test_archive_paths_inputs": 20,
    "test_storage_s3": 15,
    "test_demo": 12,
    "test_emulator_elsewhere": 12,
    "test_catalog_flows": 11,
    "test_pipeline": 10,
    "test_emulator_cli": 10,
}


def _slowest_first(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: -SLOW_FILES.get(Path(str(item.path)).stem, 0))  # stable


ROOT = Path(__file__).resolve().parent.parent


#: Model names the tests use besides the emulator's built-in and well-known ones: registered,
#: as on Replicate any other name is unknown (404).
TEST_MODELS = (
    "a/b",
    "o/n",
    "o/m",
    "owner/model",
    "someone/model",
    "someone/else",
    "acme/m",
    "acme/n",
    "acme/thing",
    "acme/demo",
    "acme/default",
    "acme/counted",
    "acme/other:abc123",
)


@pytest.fixture(autouse=True)
def _manifests_follow_the_schema(request: pytest.FixtureRequest):
    """After each test with a `tmp_path` (every archive the tests write lives in one), every
    manifest.json in it validates against the packaged JSON Schema (archiver/manifest.schema.json)."""
    root = request.getfixturevalue("tmp_path") if "tmp_path" in request.fixturenames else None
    yield
    if root is not None:
        from tests.manifests import validate_manifests_under

        validate_manifests_under(root)


@pytest.fixture
def emulator(request: pytest.FixtureRequest):
    """A fresh emulator with fast model times, served over real HTTP on 127.0.0.1 (a test may
    change its options with `@pytest.mark.parametrize("emulator", [{...}], indirect=True)`)."""
    from emulator import Emulator

    options = {"processing_seconds": 0.05, "models": TEST_MODELS, **getattr(request, "param", {})}
    with Emulator(**options) as emu:
        yield emu


@pytest.fixture(scope="session")
def prefect_template() -> Path:
    """The migrated Prefect database servers start from (built once, for every xdist worker)."""
    from tests.prefect_server import database_template

    return database_template()


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory, prefect_template: Path):
    """One real `prefect server` per session and xdist worker: SQLite from the template, without
    the loop services a server with no deployments never needs. Prefect in this process talks to
    it; subprocesses get its URL only from the tests that pass it on (`prefect_harness`)."""
    from prefect.context import refresh_global_settings_context
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogHandler

    from tests.prefect_server import PrefectServer

    server = PrefectServer(
        tmp_path_factory.mktemp("prefect-harness"), template=prefect_template, services=False
    )
    try:
        server.start()
        with pytest.MonkeyPatch.context() as env:
            env.setenv("PREFECT_API_URL", server.api_url)
            refresh_global_settings_context()  # Prefect's settings, in every thread
        yield server
        APILogHandler().flush()  # what runs sent, before their server goes
        EventsWorker.drain_all(timeout=5)
    finally:
        server.stop()
        refresh_global_settings_context()


@pytest.fixture(scope="session")
def prefect_harness(prefect_server) -> str:
    """The session's Prefect API URL (see `prefect_server`)."""
    return str(prefect_server.api_url)


@pytest.fixture
def archive_env(emulator, tmp_path, monkeypatch):
    """Environment for a pipeline run against the emulator; returns the archive directory."""
    env = {
        **emulator.env(),
        "REPLICATE_API_TOKEN": TOKEN,
        "ARCHIVER_POLL_INTERVAL": "0.05",
        "ARCHIVER_TASK_RETRY_DELAY": "0",
        "ARCHIVER_STAGING_DIR": str(tmp_path / "staging"),
        "ARCHIVER_CACHE_URL": str(tmp_path / "cache"),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return tmp_path / "archive"


@pytest.fixture
def run_flow(prefect_harness, archive_env):
    """Run the archive-prediction flow in this process (default dest: the test's archive)."""
    from flows.archive_prediction import archive_prediction

    def run(model: str, input: dict | None = None, **kwargs):
        kwargs.setdefault("dest", str(archive_env))
        return asyncio.run(archive_prediction(model=model, input=input or {}, **kwargs))

    return run


@pytest.fixture
def cli(prefect_harness, archive_env, tmp_path):
    """Run `python -m flows ...` in a subprocess against the session's Prefect API."""

    def run(*args: str, env: dict | None = None, **kwargs) -> subprocess.CompletedProcess:
        full_env = {**os.environ, "PREFECT_API_URL": prefect_harness, **(env or {})}
        return subprocess.run(
            [sys.executable, "-m", "flows", *args],
            cwd=ROOT,
            env=full_env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            **kwargs,
        )

    return run


AUTH = {"Authorization": "Bearer test-token"}


@pytest.fixture(scope="session")
def http():
    """A plain httpx client for delivery downloads, shared by the session."""
    import httpx

    with httpx.Client(timeout=30) as client:
        yield client


@pytest.fixture
def api(emulator):
    """An httpx client on the emulator's API base URL with a bearer token."""
    import httpx

    with httpx.Client(base_url=emulator.base_url, headers=AUTH, timeout=30) as client:
        yield client


@pytest.fixture
def down_host():
    """An HTTP server on a free loopback port that answers 503 to everything, counting requests."""
    from tests.failing_hosts import down_for_good

    with down_for_good() as server:
        yield server
