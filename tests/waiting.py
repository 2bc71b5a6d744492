"""Waiting in tests: poll an observable condition until it holds, with a deadline.

Tests never sleep "long enough" for something to happen: they wait for the thing itself
(``wait_until``, ``await_until`` in an event loop) or move an injected clock
(``emulator.clock.ManualClock``); ``settle`` runs an event loop until only I/O or time could
change anything, to show that something does *not* happen.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

GROWTH = 1.5  # each pause between polls this much longer than the last...
MAX_INTERVAL = 0.2  # ...up to this many seconds


def wait_until(
    predicate: Callable[[], T],
    timeout: float = 10.0,
    what: str = "the condition",
    interval: float = 0.01,
) -> T:
    """Poll ``predicate`` until it returns something truthy and return that value; fail the
    test with ``timed out after Ns waiting for <what>`` once ``timeout`` seconds have passed.
    The pause between polls starts at ``interval`` and grows to ``MAX_INTERVAL``: quick to see
    a quick change, and a long wait does not poll a server (the emulator, Prefect's API) a
    hundred times a second, which on two cores takes the CPU from what is being waited for."""
    overdue = _deadline(timeout, what)
    while not (value := predicate()):
        overdue()
        time.sleep(interval)
        interval = min(interval * GROWTH, max(interval, MAX_INTERVAL))
    return value


async def await_until(
    predicate: Callable[[], T],
    timeout: float = 10.0,
    what: str = "the condition",
    interval: float = 0.01,
) -> T:
    """``wait_until`` inside an event loop: the loop keeps running while the condition is
    polled (the same growing pause)."""
    overdue = _deadline(timeout, what)
    while not (value := predicate()):
        overdue()
        await asyncio.sleep(interval)
        interval = min(interval * GROWTH, max(interval, MAX_INTERVAL))
    return value


async def settle(steps: int = 50) -> None:
    """Let every task that is ready run, and the ones they wake, ``steps`` loop iterations deep:
    no I/O or time passes, so what has not happened after it waits for something else."""
    for _ in range(steps):
        await asyncio.sleep(0)


def _deadline(timeout: float, what: str) -> Callable[[], None]:
    """A check that fails the test once ``timeout`` seconds from now have passed."""
    end = time.monotonic() + timeout

    def overdue() -> None:
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")

    return overdue
