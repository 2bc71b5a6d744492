"""Reading back: small files whole, existence and size fresh from the store, sha256 checks."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from archiver import errors

from .atomic import COPY_CHUNK, DEFAULT_PART_SIZE
from .location import Destination, is_memory, is_s3
from .translate import translated

__all__ = ["exists", "read_bytes", "stored_size", "verify_stored"]


def read_bytes(dest: Destination, path: str) -> bytes | None:
    """The whole content of a small stored file, or None when it does not exist."""
    with translated(f"reading {dest.url_for(path)}", missing_ok=True):
        if dest.is_local:
            return Path(path).read_bytes()
        if is_s3(dest.fs):  # one GET, not HEAD + GET
            return bytes(dest.fs.cat_file(path, max_concurrency=1))
        return bytes(dest.fs.cat_file(path))
    return None


def exists(dest: Destination, path: str) -> bool:
    """Whether a file (not a directory or prefix) is stored at `path`."""
    return stored_size(dest, path) is not None


def stored_size(dest: Destination, path: str) -> int | None:
    """The stored file's size in bytes, or None when there is no file at `path`."""
    info = _info(dest, path)
    if info is None or info.get("type") != "file":
        return None
    return int(info["size"])


def verify_stored(
    dest: Destination,
    path: str,
    *,
    size: int,
    sha256: str,
    read_back: bool = False,
    identity: tuple[int, int, int, int] | None = None,
) -> None:
    """Check the stored file's size, and its sha256 when `read_back` or reading is cheap.

    Raises errors.IntegrityError on a missing file or any mismatch. Local and memory stores are
    read back, remote stores only on request (a read-back doubles the transfer), except this:
    `identity` is (st_dev, st_ino, st_size, st_mtime_ns) of the local file whose bytes were
    hashed to `sha256` (through the descriptor that wrote or read them, after its last write).
    A local `path` with that very identity is a hard link to that inode, unwritten since, so
    its bytes are the hashed ones and are not read again (without `read_back`): a read-back
    right after writing is served from the same page cache anyway and proves nothing more.
    """
    if identity is not None and dest.is_local and not read_back:
        if _local_identity(path) == identity and identity[2] == size:
            return
    url = dest.url_for(path)
    actual = stored_size(dest, path)
    if actual is None:
        raise errors.IntegrityError(f"{url} is missing from the store")
    if actual != size:
        raise errors.IntegrityError(f"{url} holds {actual} bytes, expected {size}")
    if not (read_back or dest.is_local or is_memory(dest.fs)):
        return
    digest = _stored_sha256(dest, path)
    if digest != sha256.lower():
        raise errors.IntegrityError(f"{url} has sha256 {digest}, expected {sha256.lower()}")


def _stored_sha256(dest: Destination, path: str) -> str:
    """Stream the stored file through sha256, one chunk in memory at a time."""
    digest = hashlib.sha256()
    chunk_size = COPY_CHUNK
    with translated(f"reading back {dest.url_for(path)}"):
        if dest.is_local:
            handle: Any = open(path, "rb")  # noqa: SIM115 - closed by the with below
        elif is_s3(dest.fs):  # one ranged GET per part-sized read, nothing cached
            chunk_size = DEFAULT_PART_SIZE
            handle = dest.fs.open(path, "rb", block_size=chunk_size, cache_type="none")
        else:
            handle = dest.fs.open(path, "rb")
        with handle:
            while chunk := handle.read(chunk_size):
                digest.update(chunk)
    return digest.hexdigest()


def _local_identity(path: str) -> tuple[int, int, int, int] | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)


def _info(dest: Destination, path: str) -> dict[str, Any] | None:
    """fsspec info for `path`, fresh from the store; None when nothing is there."""
    with translated(f"checking {dest.url_for(path)}", missing_ok=True):
        dest.fs.invalidate_cache(path)
        return dict(dest.fs.info(path))
    return None
