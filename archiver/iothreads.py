"""Worker threads for blocking storage calls (fsynced writes, reads, renames, removals).

`asyncio.to_thread` uses the event loop's default executor: min(32, CPUs + 4) threads, i.e. 6
on a 2-core machine, shared with everything else in the process. A batch of hundreds of
predictions issues a dozen storage calls per prediction (cache records, staging marker, links,
manifest): they get pools of their own, so they never queue behind anything else.

Two pools, by where the calls go:

* remote stores (S3, any fsspec URL): 32 threads, each mostly waiting on the network, so that
  many round trips overlap;
* local disk only (`local_disk()`, entered by a batch whose archive and cache are both local):
  2 threads. Each storage call is a burst of short syscalls (open, write, fsync, rename), and
  every one of them hands the GIL over and waits to win it back: the more threads take turns,
  the more of those hand-overs are contended, each a futex wake-up. Measured at K=200 on this
  project's 2-core VM (interleaved runs of the domain code against raw): 32 threads kept the
  event loop from resuming an item for up to 0.15 s at a time; 8 spent about 0.37 s of CPU in
  futex calls and took 1.26x raw's wall (12 rounds); 3 took 1.08x, 2 took 1.05-1.06x, 1 took
  1.11x (its fsyncs queue). Two threads still overlap one fsync with another call's Python, and sustain
  some 40 predictions a second even where an fsync takes 5 ms, four times the creates
  Replicate allows.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

IO_THREADS = 32  # remote stores
DISK_THREADS = 2  # local disk only

# Threads start lazily: a pool nobody uses costs nothing.
_IO = ThreadPoolExecutor(max_workers=IO_THREADS, thread_name_prefix="archiver-io")
_DISK = ThreadPoolExecutor(max_workers=DISK_THREADS, thread_name_prefix="archiver-disk")
_local_disk: contextvars.ContextVar[bool] = contextvars.ContextVar("local_disk", default=False)


@contextlib.contextmanager
def local_disk() -> Iterator[None]:
    """Within this context (and the tasks it starts) every storage call goes to local disk:
    `run_io` uses the small pool."""
    token = _local_disk.set(True)
    try:
        yield
    finally:
        _local_disk.reset(token)


async def run_io(func: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """`func(*args, **kwargs)` on an I/O thread (with the caller's context variables, as
    `asyncio.to_thread` does); cancelling the caller does not stop a call already running."""
    loop = asyncio.get_running_loop()
    context = contextvars.copy_context()
    call = functools.partial(context.run, func, *args, **kwargs)
    return await loop.run_in_executor(_DISK if _local_disk.get() else _IO, call)
