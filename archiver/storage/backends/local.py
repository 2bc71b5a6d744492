"""Local disk: a hidden temp sibling, fsync, `os.replace` onto the final name.

With `move=True` the source itself is renamed into place when it lives on the same device; with
`link=True` it is hard-linked. `append` adds to a small file in place (one write, one fsync: no
new inode, no rename, no directory fsync); the caller's format must tell a whole addition from a
torn one.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import fsspec
from fsspec.implementations.local import LocalFileSystem

from ..streams import COPY_CHUNK, chunks, temp_sibling
from .base import Backend, Consume

__all__ = ["BACKEND", "LocalBackend", "fsync_dir"]


class LocalBackend(Backend):
    """The local filesystem: paths are OS paths."""

    name = "local"
    is_local = True
    hash_on_verify = True
    concurrent_requests = False
    journaled = False
    directory_mtimes = True

    @classmethod
    def connect(cls, url: str, options: dict[str, Any]) -> tuple[fsspec.AbstractFileSystem, str]:
        """Local paths are made absolute, with "~" expanded."""
        _, rest = fsspec.core.split_protocol(url)
        return LocalFileSystem(**options), os.path.abspath(os.path.expanduser(rest))

    def url_for(self, path: str) -> str:
        return path

    def put_stream(self, source: BinaryIO, size: int, path: str, part_size: int) -> None:
        """Write a temp sibling, fsync it, and rename it over `path`."""
        parent = os.path.dirname(path)
        os.makedirs(parent, exist_ok=True)
        temp = temp_sibling(path)
        try:
            with open(temp, "xb") as out:
                out.writelines(chunks(source, size, COPY_CHUNK))
                out.flush()
                os.fsync(out.fileno())
            os.replace(temp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise
        fsync_dir(parent)

    def place(
        self, local_path: Path, path: str, *, move: bool, link: bool, synced: bool, sync_dir: bool
    ) -> bool:
        if move and _rename_into_place(local_path, path):
            return True
        return link and _link_into_place(local_path, path, synced=synced, sync_dir=sync_dir)

    def append(self, path: str, addition: Callable[[bytes], bytes | None]) -> bool:
        try:
            fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        try:
            parts = []
            while chunk := os.read(fd, COPY_CHUNK):  # O_APPEND moves writes only
                parts.append(chunk)
            data = addition(b"".join(parts))
            if data is None:
                return False
            view = memoryview(data)
            while view:  # a write may write less than asked
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        return True

    def sync_directory(self, directory: str) -> None:
        fsync_dir(directory)

    def remove(self, path: str) -> None:
        os.unlink(path)

    def create_empty(self, path: str) -> bool:
        """Creating an empty file is atomic by itself: one directory fsync, not a temp
        file's fsync and rename as well."""
        directory = os.path.dirname(path)
        os.makedirs(directory, exist_ok=True)
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644))
        fsync_dir(directory)
        return True

    def remove_empty_directory(self, directory: str) -> None:
        with contextlib.suppress(OSError):
            os.rmdir(directory)

    def stream_to(self, path: str, consume: Consume, chunk: int, buffer: bytearray) -> None:
        """`readinto` the caller's buffer: no Python-level copies."""
        view = memoryview(buffer)
        with open(path, "rb", buffering=0) as handle:
            if hasattr(os, "posix_fadvise"):
                os.posix_fadvise(handle.fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)
            while count := handle.readinto(buffer):
                consume(view[:count])

    def list_names(self, directory: str) -> list[str]:
        return sorted(os.listdir(directory))

    def same_file(self, path: str, identity: tuple[int, int, int, int]) -> bool:
        try:
            stat = os.stat(path)
        except OSError:
            return False
        return (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns) == identity

    def read_bytes(self, path: str) -> bytes:
        return Path(path).read_bytes()

    def open_read(self, path: str) -> BinaryIO:
        return open(path, "rb")  # noqa: SIM115 - the caller closes it


BACKEND = LocalBackend


def _rename_into_place(local_path: Path, path: str) -> bool:
    """Move a local file onto `path` with one rename; False when it is on another device."""
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    _fsync_file(local_path)
    try:
        os.replace(local_path, path)
    except OSError as exc:
        if exc.errno == errno.EXDEV:
            return False
        raise
    # A download temp file is often 0600: give the archived file the mode a copy would get.
    with contextlib.suppress(OSError):
        os.chmod(path, 0o666 & ~_UMASK)
    fsync_dir(parent)
    return True


def _fsync_file(local_path: Path) -> None:
    with open(local_path, "rb") as handle:
        os.fsync(handle.fileno())


def _link_into_place(local_path: Path, path: str, *, synced: bool, sync_dir: bool) -> bool:
    """Hard-link a local file onto `path` atomically; False when links cannot be made there."""
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    if not synced:
        _fsync_file(local_path)
    temp = temp_sibling(path)
    try:
        os.link(local_path, temp)
    except OSError as exc:
        if exc.errno in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.EOPNOTSUPP):
            return False
        raise
    try:
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    with contextlib.suppress(OSError):
        os.chmod(path, 0o666 & ~_UMASK)
    if sync_dir:
        fsync_dir(parent)
    return True


def _read_umask() -> int:
    """The process umask, read without changing it where Linux allows (0o022 otherwise)."""
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status") as status:
        for line in status:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    return 0o022


_UMASK = _read_umask()


def fsync_dir(directory: str) -> None:
    """Make a rename durable (best effort: not every platform can open a directory)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
