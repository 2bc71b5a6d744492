"""Which Prefect API a CLI command's flow runs talk to, made sure of before anything is created.

`prefect_api()` is the one entry point for every command that runs a flow:

1. a configured `PREFECT_API_URL` (environment, Prefect profile or prefect.toml) always wins; it
   must answer `/health` within `ARCHIVER_API_TIMEOUT` seconds, else one line naming the URL;
2. otherwise the local server (`cli.local_server`), started in the background if it is down;
3. with `ARCHIVER_LOCAL_SERVER=false`, a temporary server owned by (and dying with) this process.

When no source Prefect reads can hold an API URL (`api_url_may_be_configured`, stdlib only), the
local server is made sure of on a thread while this process imports Prefect and the flows: on a
first run the server's start (its database's migrations, about 10 s of one core) and those
imports (about 1.7 s of the other) overlap.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import TypeVar

import httpx

from archiver.errors import ConfigurationError
from archiver.settings import Settings
from cli import local_server
from cli.temporary_server import TemporaryServer

T = TypeVar("T")

# CLI runs are short: their logs go to the API every 0.25 s rather than Prefect's 2 s, which a
# run otherwise pays again at exit while the last batch drains. A value the user set wins. Set
# before Prefect is imported (this module is imported first by every flow-running command).
os.environ.setdefault("PREFECT_LOGGING_TO_API_BATCH_INTERVAL", "0.25")


def configured_api_url() -> str | None:
    """PREFECT_API_URL as Prefect resolves it (environment, profile, prefect.toml), or None."""
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url
    return str(url).rstrip("/") if url else None


def check_api(url: str, timeout: float) -> None:
    """One bounded `/health` request; a one-line ConfigurationError naming `url` if it fails."""
    try:
        response = httpx.get(f"{url}/health", timeout=httpx.Timeout(timeout))
    except httpx.TimeoutException:
        raise ConfigurationError(
            f"the Prefect API at {url} (PREFECT_API_URL) did not answer within {timeout:g} s; "
            "check that server, or unset PREFECT_API_URL to use the local one"
        ) from None
    except httpx.HTTPError as exc:
        raise ConfigurationError(
            f"cannot reach the Prefect API at {url} (PREFECT_API_URL): {type(exc).__name__}; "
            "start that server, or unset PREFECT_API_URL to use the local one"
        ) from None
    if response.status_code != 200:
        raise ConfigurationError(
            f"the Prefect API at {url} (PREFECT_API_URL) answered HTTP "
            f"{response.status_code} to /health; is it a Prefect API URL ending in /api?"
        )


def api_url_may_be_configured(cwd: Path | None = None) -> bool:
    """Whether any source Prefect reads settings from could set its API URL: the environment,
    the profiles file, and `prefect.toml`, `pyproject.toml`'s `[tool.prefect]` and `.env` in the
    working directory. Stdlib only, before Prefect is imported; True when in doubt."""
    if any(key.startswith("PREFECT_") and "URL" in key for key in os.environ):
        return True
    cwd = cwd or Path.cwd()
    home = Path(os.environ.get("PREFECT_HOME") or "~/.prefect").expanduser()
    profiles = Path(os.environ.get("PREFECT_PROFILES_PATH") or home / "profiles.toml")
    sources = {profiles: "url", cwd / "prefect.toml": "", cwd / ".env": "url"}
    sources[cwd / "pyproject.toml"] = "[tool.prefect"
    for path, mark in sources.items():
        try:
            text = path.read_text(errors="replace")
        except FileNotFoundError:
            continue
        except OSError:
            return True
        if mark.lower() in text.lower():
            return True
    return False


def in_background(call: Callable[[], T], name: str) -> Future[T]:
    """`call()` on a daemon thread; its result or exception in the future. A daemon: a Ctrl-C
    while waiting on it is not held up (a local server it was starting keeps starting, as it
    would have: it is meant to outlive the command)."""
    future: Future[T] = Future()

    def target() -> None:
        try:
            future.set_result(call())
        except BaseException as exc:  # noqa: BLE001 - handed to whoever waits
            future.set_exception(exc)

    threading.Thread(target=target, name=name, daemon=True).start()
    return future


@contextlib.contextmanager
def prefect_api(
    settings: Settings | None = None, on_ready: Callable[[], None] | None = None
) -> Iterator[str]:
    """Make sure a Prefect API answers, point Prefect at it for the block; yields its URL.
    `on_ready()` is called as soon as the API is known to answer (on the local server's
    thread, while Prefect still loads, where that is how it is made sure of)."""
    settings = settings or Settings()
    ready = on_ready or (lambda: None)

    def ensure_local() -> local_server.ServerState:
        state = local_server.ensure(
            port=settings.local_server_port,
            timeout=settings.server_start_timeout,
            template=settings.server_template,
        )
        ready()
        return state

    early = None
    if settings.local_server and not api_url_may_be_configured():
        early = in_background(ensure_local, "local-prefect-server")
    from prefect.settings import PREFECT_API_URL, temporary_settings

    configured = configured_api_url()
    if configured:  # only where the cheap look missed a source: Prefect's answer wins
        check_api(configured, settings.api_timeout)
        ready()
        yield configured
        return
    if settings.local_server:
        if early is not None:
            import flows.runtime  # noqa: F401 - loaded while the server starts: every flow's

        state = early.result() if early is not None else ensure_local()
        with temporary_settings(updates={PREFECT_API_URL: state.api_url}):
            yield state.api_url
        return
    with TemporaryServer(timeout=settings.server_start_timeout) as server:
        ready()
        with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
            yield server.api_url
