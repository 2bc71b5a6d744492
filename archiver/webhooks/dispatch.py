"""The archive side of the webhook receiver: at most `concurrency` archives at once, the backlog
read from the inbox's durable queue only as slots free up.

One dispatcher takes due entries from the queue, oldest first, only as many as there are free
slots (nothing of the backlog is held in memory), and hands each group to the `archive` job the
caller supplies (the domain's archive-by-id, or one Prefect flow run per group). A group is
started when at least `group` slots are free (or nothing runs): 1 for the domain's job, so every
free slot is refilled at once; more for flow runs, so a run's cost is shared by several
predictions. A failed archive is queued again for the delay of the `policy` (`webhook_job` of
archiver/retry.py), holding no slot meanwhile, and recorded `failed` when its attempts are spent,
or at once when its error is permanent (`retry.next_try`: a refused output URL, say).
Started, it begins with whatever a previous receiver left; stopped, its running archives are
cancelled and stay queued. `wake` (thread-safe) tells it something was queued.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from ..retry import RetryPolicy, next_try
from .inbox import QueueEntry, WebhookInbox

logger = logging.getLogger("archiver.webhooks")

P = ParamSpec("P")
T = TypeVar("T")

#: Archives a group of predictions by id: for each id its outcome (`archived`, `cached`,
#: `removed: ...`), or the error its attempt failed with (it is retried). Raising fails them all.
ArchiveJob = Callable[[list[str]], Awaitable[Mapping[str, str | BaseException]]]


class Dispatcher:
    """Archives the inbox's queue, `concurrency` predictions at a time (one per inbox)."""

    def __init__(
        self,
        inbox: WebhookInbox,
        archive: ArchiveJob,
        *,
        concurrency: int,
        policy: RetryPolicy,
        group: int = 1,
        report: Callable[[str], None] = logger.info,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        self.inbox = inbox
        self.archive = archive
        self.concurrency = concurrency
        self.group = max(1, min(group, concurrency))
        self.policy = policy
        self.report = report
        self.clock = clock
        self._queue_pool = ThreadPoolExecutor(1, thread_name_prefix="webhook-queue")
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None  # the archives' loop, once started
        self._taken: set[str] = set()  # queue entries being archived (at most `concurrency`)
        self._groups: set[asyncio.Task[None]] = set()
        self._dispatcher: asyncio.Task[None] | None = None
        self.max_in_flight = 0  # the most archives ever running at once (tests, benchmarks)

    async def _queue_io(self, func: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._queue_pool, lambda: func(*args, **kwargs))

    def wake(self) -> None:
        """Something was queued: look at the queue again (from any thread)."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    async def start(self) -> None:
        """Start archiving the queue in this loop (what a previous receiver left first)."""
        backlog = await self._queue_io(self.inbox.backlog)
        if backlog:
            self.report(f"resuming {backlog} queued archive(s) a previous receiver left")
        if self._dispatcher is None:
            self._loop = asyncio.get_running_loop()
            self._dispatcher = self._loop.create_task(self._dispatch())

    async def _dispatch(self) -> None:
        while True:
            self._wake.clear()
            free = self.concurrency - len(self._taken)
            next_due: float | None = None
            if free >= self.group or (free > 0 and not self._taken):
                try:
                    entries, next_due = await self._queue_io(
                        self.inbox.due, self.clock(), free, frozenset(self._taken)
                    )
                except Exception as exc:  # noqa: BLE001 - a store outage: try again later
                    self.report(f"could not read the webhook queue, retrying: {exc}")
                    entries, next_due = [], self.clock() + 1.0
                if entries:
                    self._launch(entries)
                    continue
            timeout = None if next_due is None else max(0.0, next_due - self.clock())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    def _launch(self, entries: list[QueueEntry]) -> None:
        self._taken.update(e.name for e in entries)
        self.max_in_flight = max(self.max_in_flight, len(self._taken))
        task = asyncio.get_running_loop().create_task(self._run_group(entries))
        self._groups.add(task)
        task.add_done_callback(self._groups.discard)

    async def _run_group(self, entries: list[QueueEntry]) -> None:
        ids = list(dict.fromkeys(e.record.prediction_id for e in entries))
        try:
            try:
                outcomes: Mapping[str, str | BaseException] = await self.archive(ids)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - every id of the group failed this attempt
                outcomes = dict.fromkeys(ids, exc)
            for entry in entries:
                outcome = outcomes.get(entry.record.prediction_id)
                if outcome is None:
                    outcome = RuntimeError("the archive job gave no outcome")
                try:
                    await self._queue_io(self._settle, entry, outcome)
                except Exception as exc:  # noqa: BLE001 - stays queued: archived again, cached
                    self.report(
                        f"{entry.record.prediction_id}: could not record the outcome: {exc}"
                    )
        finally:
            self._taken.difference_update(e.name for e in entries)
            self._wake.set()

    def _settle(self, entry: QueueEntry, outcome: str | BaseException) -> None:
        record, pid = entry.record, entry.record.prediction_id
        if isinstance(outcome, str):
            self.report(f"{pid}: {outcome}")
            done = record.model_copy(update={"state": "done", "outcome": outcome})
            self.inbox.settle(entry, done)
            return
        failed = record.attempts + 1
        delay = next_try(self.policy, failed, outcome)
        if delay is None:
            self.report(f"{pid}: archive failed {failed} time(s), recorded as failed: {outcome}")
            lost = record.model_copy(
                update={"state": "failed", "attempts": failed, "outcome": str(outcome)}
            )
            self.inbox.settle(entry, lost)
            return
        self.report(
            f"{pid}: archive failed ({failed}/{self.policy.attempts}), "
            f"again in {delay:.1f}s: {outcome}"
        )
        self.inbox.retry_later(entry, failed, self.clock() + delay)

    async def stop(self) -> None:
        """Stop dispatching and cancel the running archives (they stay queued)."""
        tasks = [*self._groups, *([self._dispatcher] if self._dispatcher else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._dispatcher = None
        self._queue_pool.shutdown(wait=False)

    @property
    def running(self) -> int:
        """Archives running now (at most `concurrency`)."""
        return len(self._taken)
