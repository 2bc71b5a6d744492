"""Atomic writes: afterwards the final path holds the complete file or nothing, whatever fails.

How a store makes a write atomic is its backend's business (`backends/`): a renamed temp file on
local disk, an aborted multipart upload on S3, an unfinalized upload on GCS, uncommitted blocks on
Azure, a temp name then `mv` anywhere else. This module is the entry point the archiver calls,
and the boundary where the store's errors are translated.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from .location import Destination
from .streams import COPY_CHUNK, DEFAULT_PART_SIZE, read_exact, temp_name
from .translate import translated

__all__ = [
    "COPY_CHUNK",
    "DEFAULT_PART_SIZE",
    "append_local",
    "create_empty",
    "put_file_atomic",
    "read_exact",
    "remove",
    "sync_directory",
    "temp_name",
    "write_bytes_atomic",
]


def put_file_atomic(
    dest: Destination,
    local_path: Path,
    path: str,
    *,
    part_size: int = DEFAULT_PART_SIZE,
    move: bool = False,
    link: bool = False,
    source_synced: bool = False,
    sync_dir: bool = True,
) -> None:
    """Store a local file at `path`: afterwards the path holds the whole file or nothing.

    Memory use is one `part_size` buffer whatever the file size. With `move=True` the local file
    is consumed on success (renamed into place when local and on the same device, otherwise
    deleted after the upload) and left untouched on failure. With `link=True` a local
    destination on the same device gets a hard link (no copy) and the local file stays.

    On local disk the new name is durable on return (its directory fsynced), except for a hard
    link with `sync_dir=False`: then the caller must `sync_directory` the parent before relying
    on it (one fsync for many files of one directory). `source_synced`: the caller guarantees
    the local file's bytes were fsynced already (no second fsync before linking it).
    """
    local_path = Path(local_path)
    backend = dest.backend
    with translated(backend, f"storing {dest.url_for(path)}"):
        size = local_path.stat().st_size
        if (move or link) and backend.place(
            local_path, path, move=move, link=link, synced=source_synced, sync_dir=sync_dir
        ):
            return
        with _open_source(local_path) as source:
            _put_stream(dest, source, size, path, part_size)  # its directory fsynced, always
        if move:
            local_path.unlink(missing_ok=True)


def write_bytes_atomic(dest: Destination, path: str, data: bytes) -> None:
    """Store a small payload (manifest, cache record) at `path`, all or nothing."""
    with translated(dest.backend, f"storing {dest.url_for(path)}"):
        _put_stream(dest, io.BytesIO(data), len(data), path, DEFAULT_PART_SIZE)


def create_empty(dest: Destination, path: str) -> None:
    """An empty file at `path` (a queue entry, a marker), durable on return: the backend's
    cheaper way where it has one (`Backend.create_empty`), else an atomic write of no bytes."""
    with translated(dest.backend, f"storing {dest.url_for(path)}"):
        if not dest.backend.create_empty(path):
            _put_stream(dest, io.BytesIO(b""), 0, path, DEFAULT_PART_SIZE)


def append_local(dest: Destination, path: str, addition: Callable[[bytes], bytes | None]) -> bool:
    """Append `addition(current content)` to the existing local file at `path` and fsync it;
    durable on return. False, with nothing written, when `dest` is not local, the file does not
    exist, or `addition` gives None: the caller then writes the file whole
    (`write_bytes_atomic`). A crash mid-append may leave part of the addition (or, on a file
    system without a journal, stale bytes) at the end: the format must detect it."""
    with translated(dest.backend, f"storing {dest.url_for(path)}"):
        return dest.backend.append(path, addition)


def remove(dest: Destination, path: str) -> None:
    """Delete the file at `path`; a file that is already gone is fine."""
    try:
        with translated(dest.backend, f"removing {dest.url_for(path)}", missing_ok=True):
            dest.backend.remove(path)
    finally:
        with contextlib.suppress(Exception):
            dest.fs.invalidate_cache(path)


def sync_directory(dest: Destination, directory: str) -> None:
    """Make the names just put into a local `directory` durable (fsync it); a no-op on object
    stores, where a completed put is durable by itself."""
    dest.backend.sync_directory(directory)


def _open_source(local_path: Path) -> BinaryIO:
    """Open the file being stored (the seam tests use to make a source fail mid-read)."""
    return open(local_path, "rb")


def _put_stream(dest: Destination, source: BinaryIO, size: int, path: str, part_size: int) -> None:
    """An atomic write of `size` bytes from `source`, by the destination's backend."""
    dest.backend.put_stream(source, size, path, part_size)
    with contextlib.suppress(Exception):
        dest.fs.invalidate_cache(path)
