"""The webhook receiver: a Starlette app that records each delivery, answers, archives later.

Per delivery: a body over the size limit is 413; a delivery that does not verify is 400 or 401
(`verify`); none of these touches the inbox or archives anything. A `webhook-id` already in the
inbox is answered 200 and does nothing, except that an archive job that never finished (the
receiver died) is started again. A succeeded prediction is recorded durably, answered 202 at
once, and archived in the background by the `archive` job the caller supplies (the domain's
archive-by-id, or a Prefect flow run). Other events are recorded as ignored and answered 200.
On startup, every accepted delivery whose job never finished is resumed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .inbox import InboxRecord, WebhookInbox
from .verify import Rejected, WebhookVerifier

logger = logging.getLogger("archiver.webhooks")

#: Archives one prediction by id and returns its outcome (`archived`, `cached`, `removed`...).
ArchiveJob = Callable[[str], Awaitable[str]]


class Receiver:
    """Verifies, records and schedules deliveries (one per process)."""

    def __init__(
        self,
        verifier: WebhookVerifier,
        inbox: WebhookInbox,
        archive: ArchiveJob,
        *,
        max_body: int,
        report: Callable[[str], None] = logger.info,
    ) -> None:
        self.verifier = verifier
        self.inbox = inbox
        self.archive = archive
        self.max_body = max_body
        self.report = report
        self._lock = asyncio.Lock()
        self._running: dict[str, asyncio.Task[None]] = {}  # prediction id -> its archive job

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
        async with self._lock:  # one check-and-record at a time: no id is accepted twice
            known = await asyncio.to_thread(self.inbox.get, delivery.webhook_id)
            if known is not None:
                if known.state == "accepted":
                    self._start(known)  # a job that died with an earlier receiver
                return JSONResponse({"duplicate": True, "state": known.state}, status_code=200)
            succeeded = prediction["status"] == "succeeded"
            record = InboxRecord(
                webhook_id=delivery.webhook_id,
                prediction_id=prediction["id"],
                status=prediction["status"],
                state="accepted" if succeeded else "ignored",
            )
            await asyncio.to_thread(self.inbox.put, record)
        if not succeeded:
            return JSONResponse({"accepted": False, "status": record.status}, status_code=200)
        self._start(record)
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

    def _start(self, record: InboxRecord) -> None:
        """Run the archive job of `record` in the background (once per prediction at a time)."""
        running = self._running.get(record.prediction_id)
        if running is not None and not running.done():
            return
        task = asyncio.get_running_loop().create_task(self._run(record))
        self._running[record.prediction_id] = task
        task.add_done_callback(lambda _: self._forget(record.prediction_id, task))

    def _forget(self, prediction_id: str, task: asyncio.Task[None]) -> None:
        if self._running.get(prediction_id) is task:
            del self._running[prediction_id]

    async def _run(self, record: InboxRecord) -> None:
        try:
            outcome = await self.archive(record.prediction_id)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the record stays accepted: retried later
            self.report(f"{record.prediction_id}: archive failed, kept for a retry: {exc}")
            return
        self.report(f"{record.prediction_id}: {outcome}")
        done = record.model_copy(update={"state": "done", "outcome": outcome})
        try:
            await asyncio.to_thread(self.inbox.put, done)
        except Exception as exc:  # noqa: BLE001 - the archive is safe; a resume finds it cached
            self.report(f"{record.prediction_id}: could not mark the delivery done: {exc}")

    async def resume(self) -> int:
        """Start the jobs of every accepted delivery that never finished; how many."""
        pending = await asyncio.to_thread(self.inbox.pending)
        for record in pending:
            self._start(record)
        return len(pending)

    async def drain(self) -> None:
        """Wait for the running archive jobs."""
        while self._running:
            await asyncio.gather(*self._running.values(), return_exceptions=True)

    def cancel(self) -> None:
        """Stop the running jobs (their records stay accepted: resumed on the next start)."""
        for task in self._running.values():
            task.cancel()

    @property
    def running(self) -> int:
        return len(self._running)


def build_app(receiver: Receiver, path: str) -> Any:
    """The ASGI app: `POST path` receives; startup resumes unfinished jobs."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        resumed = await receiver.resume()
        if resumed:
            receiver.report(f"resuming {resumed} archive job(s) a previous receiver left")
        yield
        receiver.cancel()

    return Starlette(routes=[Route(path, receiver.handle, methods=["POST"])], lifespan=lifespan)
