"""Run the receiver: resolve the signing secret, bind, print the URL, serve until stopped."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import signal
import socket
import threading
from collections.abc import AsyncIterator, Callable

import uvicorn

from ..errors import ArchiverError, register_secret
from ..existing import ExistingArchiver, ExistingResult
from ..runtime import Runtime
from ..settings import Settings
from .receiver import ArchiveJob, Receiver, build_app


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
    so the receiver retries it; a removed or skipped prediction is an outcome, reported and done.
    """
    archiver = ExistingArchiver(runtime)

    async def job(prediction_ids: list[str]) -> dict[str, str | BaseException]:
        results = await asyncio.gather(*(archiver.by_id(i) for i in prediction_ids))
        return {r.prediction_id: job_outcome(r) for r in results}

    return job


def job_outcome(result: ExistingResult) -> str | BaseException:
    """What the receiver records of one prediction's archive: its outcome, or the error to retry."""
    if result.outcome == "failed":
        return ArchiverError(result.error or f"archiving {result.prediction_id} failed")
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
async def answering(receiver: Receiver, path: str, sock: socket.socket) -> AsyncIterator[None]:
    """Answer deliveries on `sock` from a thread with an event loop of its own, and archive the
    queue in this loop, until the block exits; then stop both (running archives stay queued).

    The answers' thread holds no archive work, so an answer waits only for its own steps
    (verify, one durable append), whatever the archives do."""
    config = uvicorn.Config(
        build_app(receiver, path), log_level="warning", access_log=False, lifespan="off"
    )
    server = uvicorn.Server(config)
    backlog = await asyncio.to_thread(receiver.inbox.backlog)
    if backlog:
        receiver.report(f"resuming {backlog} queued archive(s) a previous receiver left")
    receiver.start()
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
        await receiver.stop()


async def serve(
    receiver: Receiver, path: str, sock: socket.socket, *, on_ready: Callable[[], None]
) -> None:
    """Serve until SIGINT or SIGTERM; then stop cleanly and let the signal take its course
    (SIGINT: KeyboardInterrupt, exit 130)."""
    loop = asyncio.get_running_loop()
    stopped = asyncio.Event()
    caught: list[signal.Signals] = []

    def stop(sig: signal.Signals) -> None:
        caught.append(sig)
        stopped.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop, sig)
    try:
        async with answering(receiver, path, sock):
            on_ready()
            await stopped.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    for sig in caught[:1]:
        signal.raise_signal(sig)
