"""The emulator's clock: real time by default, a manual clock tests advance by hand.

Everything time-dependent in the emulator reads it: ``created_at``/``completed_at``, the
starting/processing/finalize times, ``Cancel-After`` deadlines, URL expiry, retention and the
webhook timestamps and retry backoff. ``Emulator(clock=ManualClock())`` lets a test move time
with ``clock.advance(seconds)`` instead of sleeping.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Protocol


class Clock(Protocol):
    """Wall time in unix seconds, and a sleep measured on the same clock."""

    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clock: ``time.time`` and ``asyncio.sleep``."""

    def now(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(seconds, 0.0))


class ManualClock:
    """A clock that moves only when told to (thread-safe: tests advance it from their thread).

    Sleepers on any event loop wake once ``advance`` moves the time past their deadline.
    """

    def __init__(self, start: float | None = None) -> None:
        self._now = time.time() if start is None else start
        self._lock = threading.Lock()
        self._sleepers: list[tuple[float, asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    def now(self) -> float:
        with self._lock:
            return self._now

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._lock:
            entry = (self._now + seconds, loop, future)
            self._sleepers.append(entry)
        try:
            await future
        finally:
            with self._lock:
                if entry in self._sleepers:
                    self._sleepers.remove(entry)

    def advance(self, seconds: float) -> float:
        """Move the time forward by ``seconds`` and wake every sleeper now due; the new time."""
        if seconds < 0:
            raise ValueError("a clock does not go back")
        with self._lock:
            self._now += seconds
            due = [entry for entry in self._sleepers if entry[0] <= self._now]
            for entry in due:
                self._sleepers.remove(entry)
            now = self._now
        for _, loop, future in due:
            try:
                loop.call_soon_threadsafe(_wake, future)
            except RuntimeError:  # that loop is closed: nobody waits any more
                pass
        return now

    @property
    def sleepers(self) -> int:
        """How many sleeps are waiting for the clock (lets a test wait until work is parked)."""
        with self._lock:
            return len(self._sleepers)


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
