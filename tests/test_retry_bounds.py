"""Hosts that fail every request: each API step makes exactly its documented worst-case requests.

The counts asserted here are the table in `archiver/retry.py`'s docstring (default settings);
downloads and the store are in test_retry_bounds_downloads.py, a sweep's list pages in
test_retry_bounds_sweep.py. Sleeps are injected: no test waits for a backoff.
"""

from __future__ import annotations

import asyncio
import logging
import socket

import pytest

from archiver.errors import RateLimited, ServiceUnavailable, register_secret
from archiver.retry import RetryPolicy, retry_call, should_retry
from tests.failing_hosts import FOREVER, MODEL, POLICIES, Sleeps, api_at, request_for, url_of


def test_a_read_makes_api_attempts_requests(emulator):
    """GET prediction against 503s forever: 4 requests, 3 backoffs, then ServiceUnavailable."""
    emulator.set_faults(fail_reads=FOREVER)
    sleep = Sleeps()

    async def go() -> None:
        api = api_at(emulator.base_url, sleep)
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
        api = api_at(emulator.base_url, sleep)
        try:
            prediction = await api.create(request_for("wait forever"))
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
        api = api_at(url_of(down_host), sleep)
        try:
            with pytest.raises(ServiceUnavailable) as caught:
                await api.create(request_for("never"), fence=fence)
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
        api = api_at(f"http://127.0.0.1:{port}", sleep, before_create=before_create)
        try:
            with pytest.raises(ServiceUnavailable):
                await api.create(request_for("refused"), fence=before_create)
        finally:
            await api.aclose()

    asyncio.run(go())
    assert len(tries) == 2 * POLICIES.create.attempts == 12
    assert len(sleep.waits) == POLICIES.create.attempts - 1


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
