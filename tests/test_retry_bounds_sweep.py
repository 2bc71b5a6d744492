"""A sweep's list pages against a list that is throttled or down for good: bounded requests,
Retry-After honoured within the budget, one line from the CLI.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import pytest

from archiver.errors import RateLimited, ServiceUnavailable
from archiver.sweep import list_recent
from tests.failing_hosts import DEFAULTS, FOREVER, POLICIES, Sleeps, api_at, url_of

E = TypeVar("E", bound=BaseException)


def _list_fails(base_url: str, sleep: Sleeps, error: type[E]) -> E:
    """The last hour's list against `base_url`: the `error` it ends with."""

    async def go() -> E:
        api = api_at(base_url, sleep)
        now = datetime.now(UTC)
        try:
            with pytest.raises(error) as caught:
                await list_recent(api, created_after=now - timedelta(hours=1), created_before=now)
        finally:
            await api.aclose()
        return caught.value

    return asyncio.run(go())


def test_a_list_page_throttled_forever_makes_api_attempts_requests(emulator, caplog):
    """Every list call 429: 4 requests (docs/architecture.md's table), each wait its Retry-After, then the
    error, marked exhausted (no task retry asks again); each retry one INFO line."""
    emulator.set_faults(throttle_lists=FOREVER, retry_after_seconds=3)
    caplog.set_level(logging.INFO, logger="archiver.retry")
    sleep = Sleeps()

    error = _list_fails(emulator.base_url, sleep, RateLimited)
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

    _list_fails(emulator.base_url, sleep, RateLimited)
    assert POLICIES.list_page.budget == DEFAULTS.list_wait_budget == 300
    assert sleep.waits == [120.0, 120.0] and emulator.stats().list_calls == 3


def test_a_list_page_against_a_host_that_always_fails(down_host):
    """503 forever: 4 GETs of the page, 3 backoffs."""
    sleep = Sleeps()

    _list_fails(url_of(down_host), sleep, ServiceUnavailable)
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
