"""Reading back: small files whole, existence and size fresh from the store, sha256 checks."""

from __future__ import annotations

import hashlib
from typing import Any

from archiver import errors

from .location import Destination
from .translate import translated

__all__ = ["exists", "read_bytes", "stored_size", "verify_stored"]


def read_bytes(dest: Destination, path: str) -> bytes | None:
    """The whole content of a small stored file, or None when it does not exist."""
    with translated(dest.backend, f"reading {dest.url_for(path)}", missing_ok=True):
        return dest.backend.read_bytes(path)
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
    if identity is not None and not read_back:
        if identity[2] == size and dest.backend.same_file(path, identity):
            return
    url = dest.url_for(path)
    actual = stored_size(dest, path)
    if actual is None:
        raise errors.IntegrityError(f"{url} is missing from the store")
    if actual != size:
        raise errors.IntegrityError(f"{url} holds {actual} bytes, expected {size}")
    if not (read_back or dest.backend.hash_on_verify):
        return
    digest = _stored_sha256(dest, path)
    if digest != sha256.lower():
        raise errors.IntegrityError(f"{url} has sha256 {digest}, expected {sha256.lower()}")


def _stored_sha256(dest: Destination, path: str) -> str:
    """Stream the stored file through sha256, one chunk in memory at a time."""
    digest = hashlib.sha256()
    backend = dest.backend
    with translated(backend, f"reading back {dest.url_for(path)}"):
        with backend.open_read(path) as handle:
            while chunk := handle.read(backend.read_chunk):
                digest.update(chunk)
    return digest.hexdigest()


def _info(dest: Destination, path: str) -> dict[str, Any] | None:
    """fsspec info for `path`, fresh from the store; None when nothing is there."""
    with translated(dest.backend, f"checking {dest.url_for(path)}", missing_ok=True):
        return dest.backend.info(path)
    return None
