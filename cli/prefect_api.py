"""Which Prefect API a CLI command's flow runs talk to, made sure of before anything is created.

`prefect_api()` is the one entry point for every command that runs a flow:

1. a configured `PREFECT_API_URL` (environment, Prefect profile or prefect.toml) always wins; it
   must answer `/health` within `ARCHIVER_API_TIMEOUT` seconds, else one line naming the URL;
2. otherwise the local server (`cli.local_server`), started in the background if it is down;
3. with `ARCHIVER_LOCAL_SERVER=false`, a temporary server owned by (and dying with) this process.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import httpx

from archiver.errors import ConfigurationError
from archiver.settings import Settings
from cli import local_server
from cli.temporary_server import TemporaryServer

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


@contextlib.contextmanager
def prefect_api(settings: Settings | None = None) -> Iterator[str]:
    """Make sure a Prefect API answers, point Prefect at it for the block; yields its URL."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    settings = settings or Settings()
    configured = configured_api_url()
    if configured:
        check_api(configured, settings.api_timeout)
        yield configured
        return
    if settings.local_server:
        state = local_server.ensure(
            port=settings.local_server_port, timeout=settings.server_start_timeout
        )
        with temporary_settings(updates={PREFECT_API_URL: state.api_url}):
            yield state.api_url
        return
    with TemporaryServer(timeout=settings.server_start_timeout) as server:
        with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
            yield server.api_url
