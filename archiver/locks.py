"""Per-key locks that serialise runs of the same request, so two runs pay for one prediction.

`FileKeyLock` (flock) covers processes on one machine; `RedisKeyLock` covers many machines
sharing one Redis. Both are held only around "look up the cache, create if needed".
"""

from __future__ import annotations

import asyncio
import fcntl
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Protocol

from .errors import ConfigurationError

POLL = 0.05


class KeyLock(Protocol):
    def hold(self, key: str) -> asynccontextmanager[None]: ...


class FileKeyLock:
    """An exclusive flock on `<directory>/<key>.lock`."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.directory / f"{key}.lock", os.O_CREAT | os.O_RDWR, 0o600)
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    await asyncio.sleep(POLL)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock


class RedisKeyLock:
    """A Redis lock per key, shared by every worker that uses the same Redis."""

    def __init__(self, url: str, *, ttl: float = 300.0) -> None:
        try:
            import redis.asyncio as redis
        except ImportError as exc:  # pragma: no cover - depends on the installed extras
            raise ConfigurationError("lock_url needs the redis extra: pip install redis") from exc
        self.client = redis.Redis.from_url(url)
        self.ttl = ttl

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock = self.client.lock(f"replicate-archiver:lock:{key}", timeout=self.ttl, sleep=POLL)
        await lock.acquire()
        try:
            yield
        finally:
            try:
                await lock.release()
            except Exception:  # noqa: BLE001, S110 - expired under us: nothing to release
                pass


def key_lock(lock_url: str | None, default_directory: Path) -> FileKeyLock | RedisKeyLock:
    """The lock the settings ask for: Redis when `lock_url` is set, else a file lock."""
    if lock_url:
        if not lock_url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigurationError(f"lock_url must be a redis:// URL, not {lock_url!r}")
        return RedisKeyLock(lock_url)
    return FileKeyLock(default_directory)
