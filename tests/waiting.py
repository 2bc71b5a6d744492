"""Waiting in tests: poll an observable condition until it holds, with a deadline.

Tests never sleep "long enough" for something to happen: they wait for the thing itself
(``wait_until``) or move an injected clock (``emulator.clock.ManualClock``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    predicate: Callable[[], T],
    timeout: float = 10.0,
    what: str = "the condition",
    interval: float = 0.01,
) -> T:
    """Poll ``predicate`` until it returns something truthy and return that value; fail the
    test with ``timed out after Ns waiting for <what>`` once ``timeout`` seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)
