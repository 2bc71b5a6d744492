"""What the retry-bound tests share: the default policies whose worst cases they count, an
injected sleep that records every wait, a host that answers 503 to everything (the `down_host`
fixture in conftest serves it), and a `ReplicateAPI` on a given host."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from pydantic import SecretStr

from archiver.prediction import ModelRef, PredictionRequest
from archiver.replicate_api import ReplicateAPI
from archiver.retry import RetryPolicies
from archiver.runtime import api_client
from archiver.settings import Settings
from tests.loopback import serving

MODEL = "black-forest-labs/flux-schnell"
DEFAULTS = Settings(api_token=None)  # the documented worst cases are for the defaults
POLICIES = RetryPolicies.from_settings(DEFAULTS)
FOREVER = 1_000_000


class Sleeps:
    """An injected sleep: records every wait, waits for nothing."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


class Always503(BaseHTTPRequestHandler):
    def _answer(self) -> None:
        # The body is never read (a PUT may wait for `100 Continue`): answer, then hang up.
        self.close_connection = True
        with self.server.lock:  # type: ignore[attr-defined]
            self.server.requests[(self.command, self.path.split("?")[0])] += 1  # type: ignore[attr-defined]
        body = b'{"detail": "down for good (test)"}'
        self.send_response(503)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = _answer

    def log_message(self, *args: object) -> None:
        pass


def url_of(server: ThreadingHTTPServer) -> str:
    port = server.server_address[1]
    return f"http://127.0.0.1:{port}"


def api_at(base_url: str, sleep: Sleeps, **kwargs) -> ReplicateAPI:
    settings = Settings(api_token=SecretStr("r8_test_token"), base_url=base_url)
    return ReplicateAPI(
        api_client(settings, settings.token()),
        wait_seconds=1,
        poll_interval=0.01,
        policies=POLICIES,
        sleep=sleep,
        **kwargs,
    )


def request_for(prompt: str, **extra) -> PredictionRequest:
    return PredictionRequest(ModelRef.parse(MODEL), {"prompt": prompt, **extra})


@contextmanager
def down_for_good() -> Iterator[ThreadingHTTPServer]:
    """An HTTP server on a free loopback port that answers 503 to everything, counting requests
    by `(method, path)` in its `requests`."""
    with serving(Always503) as server:
        server.requests = Counter()  # type: ignore[attr-defined]
        server.lock = threading.Lock()  # type: ignore[attr-defined]
        yield server
