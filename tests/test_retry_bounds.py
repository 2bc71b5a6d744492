"""Hosts that fail every request: each step makes exactly its documented worst-case requests.

The counts asserted here are the table in `archiver/retry.py`'s docstring (default settings).
Sleeps are injected: no test waits for a backoff.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from pydantic import SecretStr

from archiver.batch import run_batch
from archiver.batchfile import BatchItem
from archiver.delivery import Delivery
from archiver.download import DownloadOptions, download_outputs
from archiver.errors import (
    DownloadInterrupted,
    RateLimited,
    ServiceUnavailable,
    StorageUnavailable,
    register_secret,
)
from archiver.outputs import HostAllowList
from archiver.prediction import ModelRef, PredictionRequest
from archiver.replicate_api import ReplicateAPI
from archiver.retry import (
    STORE_REQUEST_ATTEMPTS,
    RetryPolicies,
    RetryPolicy,
    retry_call,
    should_retry,
)
from archiver.runtime import Runtime, api_client
from archiver.settings import Settings
from archiver.storage import open_destination, write_bytes_atomic
from archiver.sweep import list_recent
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


class _Always503(BaseHTTPRequestHandler):
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


@pytest.fixture
def down_host():
    """An HTTP server on a free loopback port that answers 503 to everything, counting requests."""
    with serving(_Always503) as server:
        server.requests = Counter()  # type: ignore[attr-defined]
        server.lock = threading.Lock()  # type: ignore[attr-defined]
        yield server


def _url(server: ThreadingHTTPServer) -> str:
    port = server.server_address[1]
    return f"http://127.0.0.1:{port}"


def _api(base_url: str, sleep: Sleeps, **kwargs) -> ReplicateAPI:
    settings = Settings(api_token=SecretStr("r8_test_token"), base_url=base_url)
    return ReplicateAPI(
        api_client(settings, settings.token()),
        wait_seconds=1,
        poll_interval=0.01,
        policies=POLICIES,
        sleep=sleep,
        **kwargs,
    )


def _request(prompt: str, **extra) -> PredictionRequest:
    return PredictionRequest(ModelRef.parse(MODEL), {"prompt": prompt, **extra})


def test_a_read_makes_api_attempts_requests(emulator):
    """GET prediction against 503s forever: 4 requests, 3 backoffs, then ServiceUnavailable."""
    emulator.set_faults(fail_reads=FOREVER)
    sleep = Sleeps()

    async def go() -> None:
        api = _api(emulator.base_url, sleep)
        try:
            with pytest.raises(ServiceUnavailable) as caught:
                await api.get("p-unknown")
        finally:
            await api.aclose()
        assert caught.value.exhausted and not should_retry(caught.value)

    asyncio.run(go())
    assert emulator.stats().reads == POLICIES.api_get.attempts == 4
    assert len(sleep.waits) == 3


def test_wait_gives_up_after_consecutive_failed_polls(emulator):
    """A running prediction whose reads fail forever: 8 polls, not an hour of swallowed errors."""
    emulator.set_faults(processing_seconds=3600)
    sleep = Sleeps()

    async def go() -> None:
        api = _api(emulator.base_url, sleep)
        try:
            prediction = await api.create(_request("wait forever"))
            assert not prediction.terminal
            emulator.set_faults(fail_reads=FOREVER)
            with pytest.raises(ServiceUnavailable):
                await api.wait(prediction, timeout=3600)
        finally:
            await api.aclose()

    asyncio.run(go())
    assert emulator.stats().reads == POLICIES.wait_poll.attempts == 8
    assert sum(sleep.waits) < 300, "gave up within minutes of backoff, not the 1 h timeout"


def test_create_against_a_host_that_always_fails(down_host):
    """POST answered 503: the lost create is looked up (4 GETs), then the create stops: 1 POST."""
    sleep = Sleeps()
    fences: list[int] = []

    async def fence() -> None:
        fences.append(1)

    async def go() -> None:
        api = _api(_url(down_host), sleep)
        try:
            with pytest.raises(ServiceUnavailable) as caught:
                await api.create(_request("never"), fence=fence)
        finally:
            await api.aclose()
        assert caught.value.exhausted

    asyncio.run(go())
    assert down_host.requests == {
        ("POST", f"/v1/models/{MODEL}/predictions"): 1,
        ("GET", "/v1/predictions"): POLICIES.api_get.attempts,
    }
    assert len(fences) == 1


def test_create_against_a_host_that_refuses_connections():
    """Nothing reaches the server: 6 tries (the limiter and the fence see each), 5 backoffs."""
    with socket.socket() as probe:  # a free port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sleep = Sleeps()
    tries: list[int] = []

    async def before_create() -> None:
        tries.append(1)

    async def go() -> None:
        api = _api(f"http://127.0.0.1:{port}", sleep, before_create=before_create)
        try:
            with pytest.raises(ServiceUnavailable):
                await api.create(_request("refused"), fence=before_create)
        finally:
            await api.aclose()

    asyncio.run(go())
    assert len(tries) == 2 * POLICIES.create.attempts == 12
    assert len(sleep.waits) == POLICIES.create.attempts - 1


def _download(
    emulator, tmp_path: Path, prompt: str, *, before: dict | None = None, after: dict | None = None
) -> tuple[Sleeps, BaseException]:
    sleep = Sleeps()
    emulator.set_faults(**(before or {}))

    async def go() -> BaseException:
        api = _api(emulator.base_url, sleep)
        delivery = Delivery(
            streams=4,
            timeout=30,
            user_agent="test",
            allow=HostAllowList(emulator.delivery_host),
        )
        try:
            prediction = await api.create(_request(prompt))
            prediction = await api.wait(prediction, timeout=60)
            emulator.set_faults(**(after or {}))
            options = DownloadOptions(policy=POLICIES.download_file, sleep=sleep)
            with pytest.raises(DownloadInterrupted) as caught:
                await download_outputs(
                    prediction,
                    api=api,
                    delivery=delivery,
                    staging_root=tmp_path,
                    options=options,
                )
            return caught.value
        finally:
            delivery.close()
            await api.aclose()

    return sleep, asyncio.run(go())


def test_download_against_a_delivery_host_that_always_fails(emulator, tmp_path):
    """Delivery answers 503 forever: 5 requests per file, no re-fetch, then DownloadInterrupted."""
    sleep, error = _download(emulator, tmp_path, "cdn down", after={"fail_downloads": FOREVER})
    stats = emulator.stats()
    assert [d["status"] for d in stats.downloads] == [503] * POLICIES.download_file.attempts
    assert stats.reads == 0 and error.exhausted
    assert len(sleep.waits) == POLICIES.download_file.attempts - 1 == 4


def test_download_of_urls_that_always_expire(emulator, tmp_path):
    """Every URL is dead on arrival: 5 delivery requests and 4 re-fetches, then it gives up."""
    sleep, error = _download(emulator, tmp_path, "always expired", before={"url_ttl_seconds": 0})
    stats = emulator.stats()
    assert [d["status"] for d in stats.downloads] == [403] * POLICIES.download_file.attempts
    assert stats.reads == POLICIES.download_file.attempts - 1 == 4
    assert error.exhausted and sleep.waits == [0.0] * 4, "fresh URLs, not time, are the cure"


def test_s3_store_that_always_fails_takes_one_request_per_try(down_host):
    """botocore and s3fs make one attempt each: one store request per step try, no multiplying."""
    options = {"endpoint_url": _url(down_host), "key": "k", "secret": "s", "region": "us-east-1"}
    dest = open_destination("s3://bucket/archive", options)
    with pytest.raises(StorageUnavailable):
        write_bytes_atomic(dest, dest.path("manifest.json"), b"{}")
    per_try = sum(down_host.requests.values())
    assert per_try == STORE_REQUEST_ATTEMPTS == 1

    sleep = Sleeps()
    step = POLICIES.step

    async def archive() -> None:
        await asyncio.to_thread(write_bytes_atomic, dest, dest.path("manifest.json"), b"{}")

    with pytest.raises(StorageUnavailable):
        asyncio.run(retry_call(step, archive, sleep=sleep))
    assert sum(down_host.requests.values()) == per_try + step.attempts * per_try
    assert sleep.waits == step.delays() == [2.0, 4.0, 8.0]


def test_batch_item_does_not_multiply_download_retries(archive_env, emulator, monkeypatch):
    """A batch item whose files never download: 5 delivery requests, not 5 x the step retries."""
    monkeypatch.setenv("ARCHIVER_RETRY_DELAY", "0")
    emulator.set_faults(fail_downloads=FOREVER)
    item = BatchItem(index=0, line=1, model=MODEL, input={"prompt": "batch cdn down"})

    async def go():
        runtime = Runtime.build(Settings(), dest=str(archive_env))
        try:
            return await run_batch(runtime, [item])
        finally:
            await runtime.aclose()

    summary = asyncio.run(go())
    assert summary.counts["failed"] == 1 and "gave up after 5 attempts" in summary.items[0].error
    stats = emulator.stats()
    assert len(stats.downloads) == POLICIES.download_file.attempts
    assert stats.creates_accepted == 1


def test_flow_does_not_multiply_download_retries(run_flow, emulator, monkeypatch):
    """Through Prefect: the download task is not retried after its requests gave up: 5 requests."""
    monkeypatch.setenv("ARCHIVER_RETRY_DELAY", "0")
    emulator.set_faults(fail_downloads=FOREVER)
    with pytest.raises(DownloadInterrupted, match="gave up after 5 attempts"):
        run_flow(MODEL, {"prompt": "flow cdn down"})
    stats = emulator.stats()
    assert len(stats.downloads) == POLICIES.download_file.attempts
    assert stats.creates_accepted == 1


def test_retry_after_is_honoured_up_to_its_cap():
    """A 429 waits its Retry-After, capped; other errors back off exponentially within bounds."""
    policy = RetryPolicy(attempts=4, first_delay=1, max_delay=5, jitter=0.5, retry_after_cap=10)
    throttled = RateLimited("429", retry_after=30)
    assert policy.wait(1, throttled, lambda: 0.5) == 10
    assert policy.wait(1, ServiceUnavailable("503"), lambda: 0.0) == 0.5
    assert policy.wait(2, ServiceUnavailable("503"), lambda: 1.0) == 3.0
    assert policy.wait(9, ServiceUnavailable("503"), lambda: 1.0) == 5


def test_an_error_a_loop_gave_up_on_is_not_retried_outside():
    """Nested loops never multiply: the outer loop re-raises the inner loop's exhausted error."""
    calls: list[int] = []
    sleep = Sleeps()

    async def request() -> None:
        calls.append(1)
        raise ServiceUnavailable("503")

    async def inner() -> None:
        await retry_call(RetryPolicy(3, 0, 0), request, sleep=sleep)

    with pytest.raises(ServiceUnavailable):
        asyncio.run(retry_call(RetryPolicy(4, 0, 0), inner, sleep=sleep))
    assert len(calls) == 3


# -- a sweep's list pages -------------------------------------------------------------------------


def _list(api: ReplicateAPI):
    now = datetime.now(UTC)
    return list_recent(api, created_after=now - timedelta(hours=1), created_before=now)


def test_a_list_page_throttled_forever_makes_api_attempts_requests(emulator, caplog):
    """Every list call 429: 4 requests (docs/architecture.md's table), each wait its Retry-After, then the
    error, marked exhausted (no task retry asks again); each retry one INFO line."""
    emulator.set_faults(throttle_lists=FOREVER, retry_after_seconds=3)
    caplog.set_level(logging.INFO, logger="archiver.retry")
    sleep = Sleeps()

    async def go() -> RateLimited:
        api = _api(emulator.base_url, sleep)
        try:
            with pytest.raises(RateLimited) as caught:
                await _list(api)
        finally:
            await api.aclose()
        return caught.value

    error = asyncio.run(go())
    assert emulator.stats().list_calls == POLICIES.list_page.attempts == 4
    assert sleep.waits == [3.0, 3.0, 3.0] and error.exhausted
    lines = [r.getMessage() for r in caplog.records if r.name == "archiver.retry"]
    assert len(lines) == 3 and all(
        line.startswith("retrying GET /v1/predictions?") for line in lines
    )
    assert all(" in 3.0s " in line and "RateLimited" in line for line in lines)
    assert all("r8_test_token" not in line for line in lines)


def test_a_list_page_waits_within_its_budget(emulator):
    """Retry-After honoured within the budget: 120 s asked each time, 300 s in all: two waits,
    then it stops rather than wait past the budget."""
    emulator.set_faults(throttle_lists=FOREVER, retry_after_seconds=120)
    sleep = Sleeps()

    async def go() -> None:
        api = _api(emulator.base_url, sleep)
        try:
            with pytest.raises(RateLimited):
                await _list(api)
        finally:
            await api.aclose()

    asyncio.run(go())
    assert POLICIES.list_page.budget == DEFAULTS.list_wait_budget == 300
    assert sleep.waits == [120.0, 120.0] and emulator.stats().list_calls == 3


def test_a_list_page_against_a_host_that_always_fails(down_host):
    """503 forever: 4 GETs of the page, 3 backoffs."""
    sleep = Sleeps()

    async def go() -> None:
        api = _api(_url(down_host), sleep)
        try:
            with pytest.raises(ServiceUnavailable):
                await _list(api)
        finally:
            await api.aclose()

    asyncio.run(go())
    assert down_host.requests == {("GET", "/v1/predictions"): POLICIES.list_page.attempts}
    assert len(sleep.waits) == 3


def test_sweep_cli_throttled_forever_exits_1_with_one_line(cli, emulator, archive_env):
    """`sweep` against a list that answers 429 forever: exit 1, one line, bounded."""
    emulator.set_faults(throttle_lists=FOREVER, retry_after_seconds=0)
    result = cli("sweep", "--since", "1h", "--dest", str(archive_env))
    assert result.returncode == 1
    lines = [x for x in result.stderr.splitlines() if x.strip() and not x.startswith("flow run: ")]
    assert len(lines) == 1 and "throttled" in lines[0], result.stderr
    assert emulator.stats().list_calls == POLICIES.list_page.attempts


def test_every_retry_logs_one_redacted_line(caplog):
    """One INFO line per retry: what, why, how long; no token, no signed query string."""
    token = "r8_secret_token_for_retry_logs_0123"
    register_secret(token)
    calls: list[int] = []

    async def request() -> None:
        calls.append(1)
        raise ServiceUnavailable(f"GET https://h/x?sig=abc failed, token {token}")

    caplog.set_level(logging.INFO, logger="archiver.retry")
    with pytest.raises(ServiceUnavailable):
        asyncio.run(
            retry_call(
                RetryPolicy(3, 1.0, 10.0),
                request,
                what="GET https://delivery/out.png?X-Sig=secret",
                sleep=Sleeps(),
            )
        )
    lines = [r.getMessage() for r in caplog.records if r.name == "archiver.retry"]
    assert len(lines) == len(calls) - 1 == 2
    assert lines[0].startswith("retrying GET https://delivery/out.png in 1.0s (try 2 of 3): ")
    assert "ServiceUnavailable" in lines[0] and "in 2.0s (try 3 of 3)" in lines[1]
    assert all(token not in line and "sig=" not in line.lower() for line in lines)
