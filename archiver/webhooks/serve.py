"""Run the receiver: resolve the signing secret, bind, answer in a thread of their own, archive
apart, until stopped."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import signal
import socket
import threading
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import uvicorn

from ..errors import ArchiverError, PermanentError, register_secret
from ..existing import ExistingArchiver, ExistingResult
from ..runtime import Runtime
from ..settings import Settings
from .dispatch import ArchiveJob, Dispatcher
from .receiver import Receiver, build_app


async def resolve_secret(settings: Settings, runtime: Runtime) -> str:
    """`REPLICATE_WEBHOOK_SECRET`, else the account's secret fetched once with the token."""
    secret = (
        settings.webhook_secret.get_secret_value()
        if settings.webhook_secret
        else await runtime.api.webhook_secret()
    )
    register_secret(secret)
    return secret


def existing_job(runtime: Runtime) -> ArchiveJob:
    """The archive job without an orchestrator: archive-by-id in this process, the group's
    predictions at once (the receiver bounds how many).

    A failed archive (an id the API does not know, a download that gave up) is that id's error,
    so the receiver retries it unless the error is permanent (a refused output URL); a removed
    or skipped prediction is an outcome, reported and done.
    """
    archiver = ExistingArchiver(runtime)

    async def job(prediction_ids: list[str]) -> dict[str, str | BaseException]:
        results = await asyncio.gather(*(archiver.by_id(i) for i in prediction_ids))
        return {r.prediction_id: job_outcome(r) for r in results}

    return job


def job_outcome(result: ExistingResult) -> str | BaseException:
    """What the receiver records of one prediction's archive: its outcome, or the error to retry."""
    if result.outcome == "failed":  # of its class: a permanent one is not retried
        error = PermanentError if result.permanent else ArchiverError
        return error(result.error or f"archiving {result.prediction_id} failed")
    if result.outcome == "removed":
        return f"removed: a paid result was lost ({result.error})"
    return str(result.outcome)


def url_host(host: str) -> str:
    """`host` as it appears in a URL (IPv6 literals in brackets; wildcards as loopback)."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    return f"[{host}]" if ":" in host else host


def bind(host: str, port: int) -> socket.socket:
    """A listening socket (port 0: a free one), so the URL printed already accepts."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    return sock


@contextlib.asynccontextmanager
async def answering(
    receiver: Receiver, dispatcher: Dispatcher | None, path: str, sock: socket.socket
) -> AsyncIterator[None]:
    """Answer deliveries on `sock` from a thread with an event loop of its own, and archive the
    queue with `dispatcher` in this loop (None: another process does), until the block exits;
    then stop both (running archives stay queued)."""
    config = uvicorn.Config(
        build_app(receiver, path), log_level="warning", access_log=False, lifespan="off"
    )
    server = uvicorn.Server(config)
    if dispatcher is not None:
        await dispatcher.start()
    context = contextvars.copy_context()
    thread = threading.Thread(
        target=context.run,
        args=(asyncio.run, server.serve(sockets=[sock])),
        name="webhook-answers",
        daemon=True,
    )
    thread.start()
    try:
        yield
    finally:
        server.should_exit = True
        await asyncio.to_thread(thread.join)
        receiver.close()
        if dispatcher is not None:
            await dispatcher.stop()


async def until_signal(*also: Awaitable[object]) -> signal.Signals | None:
    """Wait for SIGINT or SIGTERM (which one), or for the first of `also` to finish (None)."""
    loop = asyncio.get_running_loop()
    caught: asyncio.Future[signal.Signals] = loop.create_future()

    def catch(sig: signal.Signals) -> None:
        if not caught.done():
            caught.set_result(sig)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, catch, sig)
    others: list[asyncio.Future[Any]] = [asyncio.ensure_future(a) for a in also]
    try:
        await asyncio.wait([caught, *others], return_when=asyncio.FIRST_COMPLETED)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        for other in others:
            other.cancel()
    return caught.result() if caught.done() else None
