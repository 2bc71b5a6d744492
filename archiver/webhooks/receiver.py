"""The webhook receiver: a Starlette app that records each delivery, answers, archives later.

Deliveries are answered in a thread of their own (`serve.answering`: its own event loop and
inbox threads), so an answer never waits behind archive work in the archives' loop.
Per delivery: a body over the size limit is 413; a delivery that does not verify is 400 or 401
(`verify`); none of these touches the inbox or archives anything. A `webhook-id` already in the
inbox is answered 200 and does nothing more. A succeeded prediction is recorded and queued
durably in the inbox and answered 202: the answer waits for nothing else. Other events are
recorded as ignored and answered 200.

Archiving is bounded: at most `concurrency` predictions are archived at once. One dispatcher
takes due entries from the inbox's queue, oldest first, only as slots free up (nothing of the
backlog is held in memory), and hands each group to the `archive` job the caller supplies (the
domain's archive-by-id, or one Prefect flow run per group). A group is started when at least
`group` slots are free (or nothing runs): 1 for the domain's job, so every free slot is refilled
at once; more for flow runs, so a run's cost is shared by several predictions.
A failed archive is queued again for the delay of the `policy` (`webhook_job` of
archiver/retry.py), holding no slot meanwhile, and recorded `failed` when its attempts are
spent. On startup the dispatcher starts on whatever the previous receiver left, the same way;
on shutdown the running archives are cancelled and stay queued.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..retry import RetryPolicy, next_try
from .inbox import InboxRecord, QueueEntry, WebhookInbox
from .verify import Rejected, WebhookVerifier

logger = logging.getLogger("archiver.webhooks")

P = ParamSpec("P")
T = TypeVar("T")

#: Archives a group of predictions by id: for each id its outcome (`archived`, `cached`,
#: `removed: ...`), or the error its attempt failed with (it is retried). Raising fails them all.
ArchiveJob = Callable[[list[str]], Awaitable[Mapping[str, str | BaseException]]]

ACK_THREADS = 4  # inbox reads and writes of the answers: never behind archive work
LOCK_STRIPES = 64  # one delivery id at a time, different ids in parallel


class Receiver:
    """Verifies, records and queues deliveries, and archives the queue (one per process)."""

    def __init__(
        self,
        verifier: WebhookVerifier,
        inbox: WebhookInbox,
        archive: ArchiveJob,
        *,
        max_body: int,
        concurrency: int,
        policy: RetryPolicy,
        group: int = 1,
        report: Callable[[str], None] = logger.info,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        self.verifier = verifier
        self.inbox = inbox
        self.archive = archive
        self.max_body = max_body
        self.concurrency = concurrency
        self.group = max(1, min(group, concurrency))
        self.policy = policy
        self.report = report
        self.clock = clock
        self._locks = [asyncio.Lock() for _ in range(LOCK_STRIPES)]
        self._ack_pool = ThreadPoolExecutor(ACK_THREADS, thread_name_prefix="webhook-ack")
        self._queue_pool = ThreadPoolExecutor(1, thread_name_prefix="webhook-queue")
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None  # the archives' loop, once started
        self._taken: set[str] = set()  # queue entries being archived (at most `concurrency`)
        self._groups: set[asyncio.Task[None]] = set()
        self._dispatcher: asyncio.Task[None] | None = None
        self.max_in_flight = 0  # the most archives ever running at once (tests, benchmarks)

    async def _ack_io(self, func: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._ack_pool, lambda: func(*args, **kwargs))

    async def _queue_io(self, func: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._queue_pool, lambda: func(*args, **kwargs))

    async def handle(self, request: Request) -> Response:
        """`POST <path>`: one delivery."""
        try:
            body = await self._body(request)
            delivery = self.verifier.verify(request.headers, body)
        except Rejected as exc:
            self.report(f"refused a delivery ({exc.status}): {exc.reason}")
            return JSONResponse({"detail": exc.reason}, status_code=exc.status)
        except ClientDisconnect:
            return Response(status_code=400)
        prediction = delivery.prediction
        stripe = hashlib.sha256(delivery.webhook_id.encode()).digest()[0] % LOCK_STRIPES
        succeeded = prediction["status"] == "succeeded"
        record = InboxRecord(
            webhook_id=delivery.webhook_id,
            prediction_id=prediction["id"],
            status=prediction["status"],
            state="accepted" if succeeded else "ignored",
        )
        async with self._locks[stripe]:  # one check-and-record per id: none accepted twice
            known = await self._ack_io(self.inbox.receive, record, self.clock())
        if known is not None:
            if known.state == "accepted":
                self._notify()  # its entry may have been queued again
            return JSONResponse({"duplicate": True, "state": known.state}, status_code=200)
        if not succeeded:
            return JSONResponse({"accepted": False, "status": record.status}, status_code=200)
        self._notify()
        return JSONResponse({"accepted": True, "prediction_id": record.prediction_id}, 202)

    async def _body(self, request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body:
            raise Rejected(413, f"body over {self.max_body} bytes")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_body:
                raise Rejected(413, f"body over {self.max_body} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    # -- the dispatcher ---------------------------------------------------------------------

    def _notify(self) -> None:
        """Wake the dispatcher (from the answers' thread, or any other)."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    def start(self) -> None:
        """Start archiving the queue in this loop (what a previous receiver left first: oldest
        first). Deliveries may be answered in another thread's loop (`serve.answering`)."""
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
        self._ack_pool.shutdown(wait=False)
        self._queue_pool.shutdown(wait=False)

    @property
    def running(self) -> int:
        """Archives running now (at most `concurrency`)."""
        return len(self._taken)


def build_app(receiver: Receiver, path: str) -> Any:
    """The ASGI app: `POST path` receives (archiving is started apart: `Receiver.start`)."""
    return Starlette(routes=[Route(path, receiver.handle, methods=["POST"])])
