"""Run the receiver: resolve the signing secret, bind, print the URL, serve until stopped."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any

import uvicorn

from ..errors import ArchiverError, register_secret
from ..existing import ExistingArchiver, ExistingResult
from ..runtime import Runtime
from ..settings import Settings
from .receiver import ArchiveJob


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


async def serve(
    app: Any, sock: socket.socket, *, log_level: str = "warning", on_ready: Callable[[], None]
) -> None:
    """Serve `app` on `sock` until SIGINT/SIGTERM (uvicorn's own handling)."""
    config = uvicorn.Config(app, log_level=log_level, access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    on_ready()
    await server.serve(sockets=[sock])
