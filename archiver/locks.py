"""Per-key locks that serialise runs of the same request, so two runs pay for one prediction.

`FileKeyLock` (a byte lock per key in one file) covers processes on one machine;
`RedisKeyLock` covers many machines sharing one Redis. Two kinds of key are held: a request's
cache key around "look up the cache, create if needed", and `prediction-<id>` around "download
and archive that prediction".

`hold(key)` yields a `Lease`. Holding never silently ends while its holder works: a file lock
lasts as long as its descriptor is open; a Redis lock carries a TTL (so a dead worker's lock frees
itself) that a background task renews every third of it. A Redis lease that could not be
renewed in time, or that Redis no longer knows as ours, is lost: `ensure_held()` then raises
`LockLost`, and holders call it right before each paid or published step (the create POST, the
manifest), a fencing check that a second worker cannot have started the same step meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
import struct
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Protocol

from .errors import ConfigurationError, LockLost
from .iothreads import run_io

POLL = 0.05
DEFAULT_TTL = 60.0


class Lease(Protocol):
    """A held lock: `ensure_held()` raises `LockLost` if it may be held by someone else now."""

    key: str

    async def ensure_held(self) -> None: ...


class FileLease:
    """A file lock: held until released (or its holder dies), it never expires."""

    def __init__(self, key: str) -> None:
        self.key = key

    async def ensure_held(self) -> None:
        return None


class FileKeyLock:
    """Per-key exclusive locks in a few files, `<directory>/keys-NN.lock`: one byte per key.

    Across processes, a Linux open-file-description lock (`F_OFD_SETLK`) on the byte at the
    key's hash excludes every other holder of that key; the kernel drops it when its holder
    dies. Within this process, where every hold shares one descriptor per file (the kernel
    cannot tell our own holders apart on it), an asyncio lock per key orders them first. A
    fixed set of files, each opened once: taking a lock allocates no inode and costs no trip
    to an I/O thread (a file per key did both, twice per prediction, and left the files
    behind); keys are spread over `STRIPES` files because the kernel scans a file's held
    locks on every lock call. Where OFD locks are missing (not Linux), a flock on a
    descriptor of `<directory>/<key>.lock` of its own does the same job.
    """

    STRIPES = 64

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._fds: dict[int, int] = {}
        self._openings: dict[int, asyncio.Future[int]] = {}
        self._local: dict[str, tuple[asyncio.Lock, int]] = {}  # key -> (lock, users)

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[FileLease]:
        if _OFD is None:
            async with self._hold_flock(key) as lease:
                yield lease
            return
        stripe, offset = _place(key, self.STRIPES)
        lock, users = self._local.get(key) or (asyncio.Lock(), 0)
        self._local[key] = (lock, users + 1)
        try:
            async with lock:
                fd = await self._descriptor(stripe)
                while not _try(_set_lock, fd, offset, fcntl.F_WRLCK):
                    await asyncio.sleep(POLL)
                try:
                    yield FileLease(key)
                finally:
                    with contextlib.suppress(OSError):  # closed meanwhile: nothing is held
                        _set_lock(fd, offset, fcntl.F_UNLCK)
        finally:
            lock, users = self._local[key]
            if users == 1:
                del self._local[key]
            else:
                self._local[key] = (lock, users - 1)

    async def _descriptor(self, stripe: int) -> int:
        fd = self._fds.get(stripe)
        if fd is None:
            # Opening (creating, the first time) is file-system work: on an I/O thread, once
            # for all the holders that start together.
            opening = self._openings.get(stripe)
            if opening is None or opening.cancelled() or (opening.done() and opening.exception()):
                name = f"keys-{stripe:02d}.lock"
                opening = self._openings[stripe] = asyncio.ensure_future(run_io(self._open, name))
            fd = self._fds.setdefault(stripe, await asyncio.shield(opening))
        return fd

    def close(self) -> None:
        """Close the shared descriptors (no lock is held once every hold has ended)."""
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
        self._openings.clear()

    @asynccontextmanager
    async def _hold_flock(self, key: str) -> AsyncIterator[FileLease]:
        opening = asyncio.ensure_future(run_io(self._open, f"{key}.lock"))
        try:
            fd = await asyncio.shield(opening)
        except asyncio.CancelledError:  # the open still completes: close what it opens
            opening.add_done_callback(_close_opened)
            raise
        try:
            while not _try(fcntl.flock, fd, fcntl.LOCK_EX | fcntl.LOCK_NB):
                await asyncio.sleep(POLL)
            yield FileLease(key)
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    def _open(self, name: str) -> int:
        self.directory.mkdir(parents=True, exist_ok=True)
        return os.open(self.directory / name, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)


_OFD = getattr(fcntl, "F_OFD_SETLK", None)  # Linux >= 3.15


def _try(take: Callable[..., Any], *args: Any) -> bool:
    """Take a lock without waiting (`take` must not block); False if someone else holds it."""
    try:
        take(*args)
    except (BlockingIOError, PermissionError):  # EAGAIN or EACCES: held elsewhere
        return False
    return True


def _place(key: str, stripes: int) -> tuple[int, int]:
    """The key's lock file (stripe) and byte offset in it, from its hash."""
    digest = hashlib.sha256(key.encode()).digest()
    return digest[0] % stripes, int.from_bytes(digest[1:8], "big")  # offset < 2**56


def _set_lock(fd: int, offset: int, kind: int) -> None:
    """An OFD lock call on the one byte at `offset` (`struct flock`, l_pid 0 as OFD wants)."""
    assert _OFD is not None
    fcntl.fcntl(fd, _OFD, struct.pack("hhqqi4x", kind, os.SEEK_SET, offset, 1, 0))


def _close_opened(opening: asyncio.Future[int]) -> None:
    if not opening.cancelled() and opening.exception() is None:
        os.close(opening.result())


class RedisLease:
    """A Redis lock kept alive by renewing its TTL every `ttl / 3` seconds while held."""

    def __init__(self, key: str, lock: Any, ttl: float) -> None:
        self.key = key
        self._lock = lock
        self._ttl = ttl
        self._renewed = time.monotonic()
        self.lost: str | None = None  # why it was lost, once it was

    async def renew_forever(self) -> None:
        """Renew until cancelled; mark the lease lost when Redis says it is not ours, or when
        no renewal succeeded within the TTL (it may have expired and been taken)."""
        while self.lost is None:
            await asyncio.sleep(self._ttl / 3)
            try:
                await self._lock.reacquire()  # resets the TTL; fails unless we still own it
                self._renewed = time.monotonic()
            except Exception as exc:  # noqa: BLE001 - classified below, never swallowed silently
                if _not_owned(exc) or time.monotonic() - self._renewed >= self._ttl:
                    self.lost = f"{type(exc).__name__}: {exc}"

    async def ensure_held(self) -> None:
        """Fencing: raise `LockLost` unless Redis confirms, now, that the lock is still ours."""
        if self.lost is None and time.monotonic() - self._renewed >= self._ttl:
            self.lost = "not renewed within its TTL"
        if self.lost is None:
            try:
                owned = await self._lock.owned()
            except Exception as exc:  # noqa: BLE001 - any failure means: not confirmed
                raise LockLost(f"lock {self.key}: cannot confirm it is held: {exc}") from exc
            if not owned:
                self.lost = "Redis no longer holds it for us"
        if self.lost is not None:
            raise LockLost(f"lock {self.key} was lost ({self.lost}); stopping before acting")


class RedisKeyLock:
    """A Redis lock per key, shared by every worker that uses the same Redis."""

    def __init__(self, url: str, *, ttl: float = DEFAULT_TTL) -> None:
        try:
            import redis.asyncio as redis
        except ImportError as exc:  # pragma: no cover - depends on the installed extras
            raise ConfigurationError("lock_url needs the redis extra: pip install redis") from exc
        self.client = redis.Redis.from_url(url)
        self.ttl = ttl

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[RedisLease]:
        lock = self.client.lock(f"replicate-archiver:lock:{key}", timeout=self.ttl, sleep=POLL)
        await lock.acquire()
        lease = RedisLease(key, lock, self.ttl)
        renewer = asyncio.create_task(lease.renew_forever(), name=f"renew lock {key}")
        try:
            yield lease
        finally:
            renewer.cancel()
            await asyncio.wait([renewer])  # its end, without swallowing our own cancellation
            with contextlib.suppress(Exception):  # lost or expired: nothing to release
                await lock.release()


def _not_owned(exc: BaseException) -> bool:
    from redis.exceptions import LockError

    return isinstance(exc, LockError)


def key_lock(
    lock_url: str | None, default_directory: Path, *, ttl: float = DEFAULT_TTL
) -> FileKeyLock | RedisKeyLock:
    """The lock the settings ask for: Redis when `lock_url` is set, else a file lock."""
    if lock_url:
        if not lock_url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigurationError(f"lock_url must be a redis:// URL, not {lock_url!r}")
        return RedisKeyLock(lock_url, ttl=ttl)
    return FileKeyLock(default_directory)
