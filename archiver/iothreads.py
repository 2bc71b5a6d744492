"""Worker threads for blocking storage calls (fsynced writes, reads, renames, removals).

`asyncio.to_thread` uses the event loop's default executor: min(32, CPUs + 4) threads, i.e. 6
on a 2-core machine, shared with everything else in the process. A batch of hundreds of
predictions issues a dozen fsynced calls per prediction (cache records, staging marker, links,
manifest); queued six at a time, each fsync waited for the previous ones. On one filesystem,
fsyncs issued at once are committed together (ext4 and XFS group journal commits), so running
them on enough threads makes them cost about one commit instead of one each, without changing
what any single call guarantees. The threads mostly sleep in the kernel and cost no CPU.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

IO_THREADS = 32

_IO = ThreadPoolExecutor(max_workers=IO_THREADS, thread_name_prefix="archiver-io")


async def run_io(func: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """`func(*args, **kwargs)` on an I/O thread (with the caller's context variables, as
    `asyncio.to_thread` does); cancelling the caller does not stop a call already running."""
    loop = asyncio.get_running_loop()
    context = contextvars.copy_context()
    call = functools.partial(context.run, func, *args, **kwargs)
    return await loop.run_in_executor(_IO, call)
