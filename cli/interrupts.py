"""Ctrl-C for CLI commands: cancel the running flow (which cancels on Replicate), exit 130 fast.

A terminal's Ctrl-C sends SIGINT to the whole process group. The first one cancels the flow's
main task (as `asyncio.run` would), so the flow's clean-up cancels the running predictions; a
timer makes sure the process exits 130 within `GRACE` seconds even if clean-up hangs. Repeats
are ignored while clean-up runs. Outside a running flow, SIGINT raises KeyboardInterrupt.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
from collections.abc import Awaitable
from types import FrameType
from typing import Any, TypeVar

GRACE = 8.0  # seconds from Ctrl-C to exit, whatever clean-up still runs
EXIT_CODE = 130

T = TypeVar("T")
_running: list[tuple[asyncio.AbstractEventLoop, asyncio.Task[Any]]] = []
_interrupted = threading.Event()


def _give_up() -> None:
    sys.stderr.write("error: interrupted; clean-up did not finish in time\n")
    sys.stderr.flush()
    os._exit(EXIT_CODE)


def _handler(signum: int, frame: FrameType | None) -> None:
    if _interrupted.is_set():
        return  # the terminal's repeats change nothing; the timer bounds the wait
    _interrupted.set()
    timer = threading.Timer(GRACE, _give_up)
    timer.daemon = True
    timer.start()
    if _running:
        loop, task = _running[-1]
        loop.call_soon_threadsafe(task.cancel)
        return
    raise KeyboardInterrupt


def install() -> None:
    """Handle SIGINT as described above (main thread only)."""
    signal.signal(signal.SIGINT, _handler)


def run(coro: Awaitable[T]) -> T:
    """`asyncio.run(coro)`; after Ctrl-C it raises KeyboardInterrupt once the flow cleaned up."""

    async def main() -> T:
        task = asyncio.current_task()
        assert task is not None
        _running.append((asyncio.get_running_loop(), task))
        try:
            return await coro
        finally:
            _running.pop()

    try:
        return asyncio.run(main())
    finally:
        if _interrupted.is_set():
            raise KeyboardInterrupt  # exit 130, whatever the flow made of its cancellation
