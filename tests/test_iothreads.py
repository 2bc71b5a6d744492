"""Storage calls run on the I/O pool that fits where they go: a small one for local disk, a
larger one for remote stores (where each thread mostly waits on the network)."""

from __future__ import annotations

import asyncio
import threading

from archiver import cache as cache_module
from archiver.batch import run_batch
from archiver.batchfile import BatchItem
from archiver.iothreads import DISK_THREADS, IO_THREADS, local_disk, run_io
from archiver.runtime import Runtime
from archiver.settings import Settings


def _thread_name() -> str:
    return threading.current_thread().name


def test_local_disk_context_and_its_tasks_use_the_small_pool():
    """Inside `local_disk()`, and in tasks started there, calls run on the disk pool (2 threads);
    outside it on the remote pool; many calls at once never use more threads than the pool has."""

    def busy_name() -> str:
        threading.Event().wait(0.02)  # busy long enough that the pool runs many at once
        return _thread_name()

    async def names(count: int) -> set[str]:
        async def one() -> str:
            return await run_io(busy_name)

        return set(await asyncio.gather(*(one() for _ in range(count))))

    async def main() -> tuple[set[str], set[str]]:
        with local_disk():
            inside = asyncio.ensure_future(names(3 * DISK_THREADS))  # a task started inside
        outside = await names(3)
        return await inside, outside

    inside, outside = asyncio.run(main())
    assert all(name.startswith("archiver-disk") for name in inside), inside
    assert len(inside) <= DISK_THREADS
    assert all(name.startswith("archiver-io") for name in outside), outside
    assert DISK_THREADS < IO_THREADS


def _batch_threads(dest: str, monkeypatch) -> set[str]:
    """The threads every cache record of a two-item batch into `dest` was written on."""
    seen: set[str] = set()
    put = cache_module.PredictionCache.put

    def recording_put(self, record):
        seen.add(_thread_name())
        return put(self, record)

    monkeypatch.setattr(cache_module.PredictionCache, "put", recording_put)
    items = [
        BatchItem(index=i, line=i + 1, model="emulator/single-file", input={"prompt": f"pool {i}"})
        for i in range(2)
    ]

    async def main() -> None:
        runtime = Runtime.build(Settings(), dest=dest)
        try:
            summary = await run_batch(runtime, items)
        finally:
            await runtime.aclose()
        assert summary.counts["archived"] == 2, summary

    asyncio.run(main())
    return seen


def test_a_batch_on_local_disk_writes_on_the_disk_pool(archive_env, emulator, monkeypatch):
    """A batch whose archive and cache are local writes its cache records on the disk pool."""
    threads = _batch_threads(str(archive_env), monkeypatch)
    assert threads and all(name.startswith("archiver-disk") for name in threads), threads


def test_a_batch_to_a_remote_store_writes_on_the_io_pool(archive_env, emulator, monkeypatch):
    """A batch whose archive and cache are an fsspec store writes on the larger I/O pool."""
    monkeypatch.delenv("ARCHIVER_CACHE_URL")  # the cache then lives in the (remote) archive
    threads = _batch_threads("memory://iothreads-remote", monkeypatch)
    assert threads and all(name.startswith("archiver-io") for name in threads), threads
