"""The answer side of the webhook receiver: a Starlette app that records each delivery and answers.

Per delivery: a body over the size limit is 413; a delivery that does not verify is 400 or 401
(`verify`); none of these touches the inbox or archives anything. A `webhook-id` already in the
inbox is answered 200 and does nothing more. A succeeded prediction is recorded and queued
durably in the inbox and answered 202: the answer waits for nothing else, and `wake` tells the
archive side (`dispatch.Dispatcher`, in another thread or process) to look at the queue. Other
events are recorded as ignored and answered 200.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .inbox import InboxRecord, WebhookInbox
from .verify import Rejected, WebhookVerifier

logger = logging.getLogger("archiver.webhooks")

P = ParamSpec("P")
T = TypeVar("T")

ACK_THREADS = 4  # inbox reads and writes of the answers: never behind archive work
LOCK_STRIPES = 64  # one delivery id at a time, different ids in parallel


class Receiver:
    """Verifies, records and queues deliveries; `wake` (thread-safe) is called after each one
    queued."""

    def __init__(
        self,
        verifier: WebhookVerifier,
        inbox: WebhookInbox,
        *,
        max_body: int,
        wake: Callable[[], None],
        report: Callable[[str], None] = logger.info,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.verifier = verifier
        self.inbox = inbox
        self.max_body = max_body
        self.wake = wake
        self.report = report
        self.clock = clock
        self._locks = [asyncio.Lock() for _ in range(LOCK_STRIPES)]
        self._ack_pool = ThreadPoolExecutor(ACK_THREADS, thread_name_prefix="webhook-ack")

    async def _ack_io(self, func: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._ack_pool, lambda: func(*args, **kwargs))

    def close(self) -> None:
        self._ack_pool.shutdown(wait=False)

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
                self.wake()  # its entry may have been queued again
            return JSONResponse({"duplicate": True, "state": known.state}, status_code=200)
        if not succeeded:
            return JSONResponse({"accepted": False, "status": record.status}, status_code=200)
        self.wake()
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


def build_app(receiver: Receiver, path: str) -> Any:
    """The ASGI app: `POST path` receives (archives are the `Dispatcher`'s, apart)."""
    return Starlette(routes=[Route(path, receiver.handle, methods=["POST"])])
