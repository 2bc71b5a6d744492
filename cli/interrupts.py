"""Ctrl-C for CLI commands: cancel the running flow (which cancels on Replicate), exit 130 fast.

A terminal's Ctrl-C sends SIGINT to the whole process group. The first one cancels the flow's
main task (as `asyncio.run` would), so the flow's clean-up cancels the running predictions, and
a prediction being created ahead on another thread (`cli.head_start`) the same way; a
timer makes sure the process exits 130 within `GRACE` seconds even if clean-up hangs. Repeats
are ignored while clean-up runs. Outside a running flow, SIGINT raises KeyboardInterrupt.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import signal
import sys
import threading
from collections.abc import Awaitable, Iterator
from types import FrameType
from typing import Any, TypeVar

GRACE = 8.0  # seconds from Ctrl-C to exit, whatever clean-up still runs
EXIT_CODE = 130

T = TypeVar("T")
_running: list[tuple[asyncio.AbstractEventLoop, asyncio.Task[Any]]] = []
_interrupted = threading.Event()
_deferring: list[bool] = []


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
    if _running or _deferring:  # the flow, a prediction being created ahead, a clean-up
        for loop, task in list(_running):
            with contextlib.suppress(RuntimeError):  # its loop closed meanwhile: it is done
                loop.call_soon_threadsafe(task.cancel)
        return
    raise KeyboardInterrupt


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """A clean-up that Ctrl-C must not cut short: inside, Ctrl-C is only noted (`interrupted`)
    and the exit timer started; the caller raises KeyboardInterrupt after it if it wants."""
    _deferring.append(True)
    try:
        yield
    finally:
        _deferring.pop()


def install() -> None:
    """Handle SIGINT as described above (main thread only)."""
    signal.signal(signal.SIGINT, _handler)


def interrupted() -> bool:
    """Whether Ctrl-C was pressed during this command."""
    return _interrupted.is_set()


def run(coro: Awaitable[T]) -> T:
    """`asyncio.run(coro)`; after Ctrl-C it raises KeyboardInterrupt once the flow cleaned up.
    Also on another thread (a prediction created ahead): Ctrl-C cancels every such run."""

    async def main() -> T:
        task = asyncio.current_task()
        assert task is not None
        entry = (asyncio.get_running_loop(), task)
        _running.append(entry)
        try:
            # Checked after joining `_running` (the handler sets the flag, then looks there):
            # a Ctrl-C is seen by one or the other, also from another thread's run.
            if _interrupted.is_set():
                if inspect.iscoroutine(coro):
                    coro.close()
                raise asyncio.CancelledError
            return await coro
        finally:
            _running.remove(entry)

    try:
        return asyncio.run(main())
    finally:
        if _interrupted.is_set():
            raise KeyboardInterrupt  # exit 130, whatever the flow made of its cancellation
