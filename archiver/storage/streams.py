"""What every backend's atomic write shares: reading a source in bounded pieces, temp names."""

from __future__ import annotations

import itertools
import os
import posixpath
import secrets
from collections.abc import Iterator
from typing import BinaryIO

from archiver import errors

__all__ = ["COPY_CHUNK", "DEFAULT_PART_SIZE", "chunks", "read_exact", "temp_name", "temp_sibling"]

COPY_CHUNK = 2**20  # local copies and hashing
DEFAULT_PART_SIZE = 8 * 2**20


def read_exact(source: BinaryIO, size: int) -> bytes:
    """Exactly `size` bytes from `source`; a source that ends early is an IntegrityError."""
    data = source.read(size)
    if len(data) == size:
        return data
    parts = [data]
    got = len(data)
    while got < size:
        chunk = source.read(size - got)
        if not chunk:
            raise errors.IntegrityError(
                f"source ended after {got} of {size} bytes while storing it"
            )
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


def chunks(source: BinaryIO, size: int, chunk_size: int) -> Iterator[bytes]:
    """`size` bytes of `source` in pieces of at most `chunk_size`."""
    remaining = size
    while remaining > 0:
        count = min(chunk_size, remaining)
        remaining -= count
        yield read_exact(source, count)  # not kept in this frame: one chunk alive at a time


_TOKEN = secrets.token_hex(4)  # this import's own: a new process (even a fork) differs by pid
_SERIAL = itertools.count()


def temp_name(name: str) -> str:
    """`.<name>.tmp-<token>`: a hidden name beside `name` that no other call, thread or process
    gets (process id, a random token drawn once per process, a serial number). No syscall:
    `uuid4()` asks the kernel for randomness with the GIL released, and on a busy event loop
    winning it back cost up to a millisecond per temp name."""
    return f".{name}.tmp-{os.getpid():x}-{_TOKEN}-{next(_SERIAL):x}"


def temp_sibling(path: str) -> str:
    """A hidden, unique name next to `path`, for a write that is renamed into place."""
    parent, name = posixpath.split(path)
    return posixpath.join(parent, temp_name(name))
