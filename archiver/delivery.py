"""Delivery downloads: each output file fetched, hashed, written and fsynced by one worker thread.

`Delivery.fetch(url, part, final)` GETs a delivery URL (following redirects only to allow-listed
hosts), writes the body to `part` (a new file, created exclusively), hashing it on the way,
fsyncs it, checks it against Content-Length, makes it read-only and renames it to `final`.
A refused URL raises `UrlExpired`, another status `ServiceUnavailable`, a stream that breaks
`DownloadInterrupted` (see `errors.from_urllib3`); `part` is removed on every failure, so no
partial file ever gets a final name. Retrying and re-fetching fresh URLs is the caller's.

Why threads and urllib3 here, when the API calls use httpx on the event loop: measured on this
project's 2-core machines, streaming 400 MB through httpx's async client cost about 2.5 s of
CPU (httpcore reads 64 KiB at a time, and every read goes through anyio, asyncio's selector and
h11, and is copied three times), all of it on the event loop that also serves every other
prediction; each chunk then still had to be handed to a writer thread. urllib3 in a thread reads
`chunk_size` bytes at a time from the socket for about 0.7 s of CPU, and the same thread writes
and hashes them (both release the GIL). The event loop hears once per file, and once per chunk
for progress. Delivery requests never carry the API token: this client has no credentials.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import ssl
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urljoin

import urllib3

from .errors import (
    DownloadInterrupted,
    ServiceUnavailable,
    UrlExpired,
    from_urllib3,
    storage_error,
)
from .outputs import HostAllowList
from .staging import identity_of

_T = TypeVar("_T")

EXPIRED_STATUSES = frozenset({401, 403, 404, 410})
MAX_REDIRECTS = 5

Report = Callable[..., None]  # a progress method, called on the event loop's thread


@dataclass(frozen=True)
class Fetched:
    """A whole file at its final (staging) name, with what was measured while receiving it."""

    url: str  # the URL the bytes came from (after redirects)
    size: int
    sha256: str
    identity: tuple[int, int, int, int]  # see `StagedFile.identity`
    content_type: str | None


class Delivery:
    """Delivery GETs on `streams` worker threads over one urllib3 pool (per host, `streams`
    connections kept alive). Build once per runtime; `close()` when done."""

    def __init__(
        self,
        *,
        streams: int,
        timeout: float,
        user_agent: str,
        allow: HostAllowList,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.streams = max(1, streams)
        self.allow = allow
        self._pool = urllib3.PoolManager(
            num_pools=16,
            maxsize=self.streams,
            retries=False,  # every retry is `archiver.retry`'s
            timeout=urllib3.Timeout(connect=10.0, read=timeout),
            ssl_context=ssl_context,
            headers={"User-Agent": user_agent, "Accept-Encoding": "identity"},
        )
        self._threads = ThreadPoolExecutor(self.streams, thread_name_prefix="archiver-download")

    def close(self) -> None:
        """Stop taking work, abandon queued fetches and drop the kept-alive connections."""
        self._threads.shutdown(wait=False, cancel_futures=True)
        self._pool.clear()

    async def fetch(
        self,
        url: str,
        part: Path,
        final: Path,
        *,
        name: str,
        chunk_size: int,
        started: Report | None = None,
        received: Report | None = None,
    ) -> Fetched:
        """Fetch `url` into `part`, then rename it to `final` (see the module docstring).
        `started(name, expected_size)` and `received(byte_count)` report progress on the
        caller's event loop. Cancelling the caller aborts the transfer (its socket is shut
        down, so a blocked read returns at once) and the worker removes `part`."""
        loop = asyncio.get_running_loop()

        def on_loop(report: Report | None) -> Report | None:
            if report is None:
                return None

            def call(*args: object) -> None:
                loop.call_soon_threadsafe(report, *args)

            return call

        transfer = _Transfer(
            self._pool,
            self.allow,
            part,
            final,
            name,
            chunk_size,
            on_loop(started),
            on_loop(received),
        )
        try:
            return await loop.run_in_executor(self._threads, transfer.run, url)
        except asyncio.CancelledError:
            transfer.abort()
            raise


class _Transfer:
    """One fetch, run on a worker thread; `abort()` may be called from any thread."""

    def __init__(
        self,
        pool: urllib3.PoolManager,
        allow: HostAllowList,
        part: Path,
        final: Path,
        name: str,
        chunk_size: int,
        started: Report | None,
        received: Report | None,
    ) -> None:
        self.pool = pool
        self.allow = allow
        self.part = part
        self.final = final
        self.name = name
        self.chunk_size = chunk_size
        self.started = started
        self.received = received
        self._lock = threading.Lock()
        self._aborted = False
        self._response: urllib3.BaseHTTPResponse | None = None

    def abort(self) -> None:
        with self._lock:
            self._aborted = True
            response = self._response
        if response is not None:
            try:
                response.shutdown()  # unblocks a read waiting in the worker thread
            except (ValueError, RuntimeError, OSError):
                pass  # not reading (no socket, or already released): the flag is enough

    def _check_aborted(self) -> None:
        if self._aborted:
            raise DownloadInterrupted(f"{self.name}: download aborted")

    def _local(self, call: Callable[..., _T], *args: Any) -> _T:
        """A call on the staging file: its OSError is the local disk's, not the stream's, and is
        translated as a storage error (a full disk fails at once, never retried as a broken
        download)."""
        try:
            return call(*args)
        except OSError as exc:
            raise storage_error(exc, f"staging {self.name} in {self.final.parent}") from exc

    def run(self, url: str) -> Fetched:
        try:
            for _ in range(MAX_REDIRECTS + 1):
                self._check_aborted()
                response = self.pool.request(
                    "GET", url, preload_content=False, redirect=False, decode_content=True
                )
                with self._lock:
                    self._response = response
                try:
                    location = response.get_redirect_location()
                    if location:
                        url = urljoin(url, location)
                        self.allow.check(url)
                        continue
                    _check_status(self.name, response.status)
                    return self._receive(url, response)
                finally:
                    with self._lock:
                        self._response = None
                    response.close()  # a no-op for a connection already given back
                    response.release_conn()
            raise ServiceUnavailable(f"{self.name}: more than {MAX_REDIRECTS} redirects")
        except urllib3.exceptions.HTTPError as exc:
            self._check_aborted()
            raise from_urllib3(exc, f"download {self.name}") from exc
        except OSError as exc:  # a socket error outside urllib3's own wrapping
            self._check_aborted()
            raise DownloadInterrupted(f"{self.name}: stream broke off: {exc}") from exc

    def _receive(self, url: str, response: urllib3.BaseHTTPResponse) -> Fetched:
        headers = response.headers
        declared = headers.get("content-length")
        encoded = headers.get("content-encoding", "identity").lower() != "identity"
        expected = int(declared) if declared and declared.isdigit() and not encoded else None
        if self.started is not None:
            self.started(self.name, expected)
        digest = hashlib.sha256()
        size = 0
        local = self._local
        fd = local(os.open, self.part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            try:
                for data in response.stream(self.chunk_size):
                    self._check_aborted()
                    view = memoryview(data)
                    while view:  # a write may write less than asked
                        view = view[local(os.write, fd, view) :]
                    digest.update(data)
                    size += len(data)
                    if self.received is not None:
                        self.received(len(data))
                self._check_aborted()
                local(os.fsync, fd)
                if expected is not None and size != expected:
                    raise DownloadInterrupted(f"{self.name}: received {size} of {expected} bytes")
                identity = identity_of(local(os.fstat, fd))
            finally:
                os.close(fd)
            # Read-only: nothing may change bytes the archive may hard-link.
            local(os.chmod, self.part, 0o444)
            local(os.replace, self.part, self.final)
        except BaseException:
            self.part.unlink(missing_ok=True)
            raise
        response.release_conn()  # whole: the connection goes back to the pool
        return Fetched(
            url=url,
            size=size,
            sha256=digest.hexdigest(),
            identity=identity,
            content_type=headers.get("content-type"),
        )


def _check_status(name: str, status: int) -> None:
    if status in EXPIRED_STATUSES:
        raise UrlExpired(f"{name}: delivery answered {status} (URL expired or revoked)")
    if status != 200:
        raise ServiceUnavailable(f"{name}: delivery answered {status}")
