"""Output files of emulated predictions: small ones held as bytes, large ones generated."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

BLOCK_SIZE = 1 << 20  # 1 MiB
MEMORY_CHUNK = 64 * 1024


PERIOD = 64 * 1024  # the block repeats a pseudo-random run of this many bytes


@lru_cache(maxsize=8)
def _block(seed: int, index: int) -> bytes:
    """1 MiB of pseudo-random bytes: SHAKE-128 of ``seed/index`` (64 KiB of it, repeated).

    One C call of ~0.4 ms per block: a benchmark whose every prediction has its own seed makes
    the emulator generate a block per file, and sha256 in counter mode (32 768 calls, ~90 ms a
    block) made the emulator the bottleneck of its own benchmark."""
    prefix = f"large-file/{seed}/{index}/".encode()
    return hashlib.shake_128(prefix).digest(PERIOD) * (BLOCK_SIZE // PERIOD)


def _generated(seed: int, index: int, start: int, stop: int) -> Iterator[bytes]:
    block = _block(seed, index)
    position = start
    while position < stop:
        offset = position % BLOCK_SIZE
        length = min(BLOCK_SIZE - offset, stop - position)
        yield block if length == BLOCK_SIZE else block[offset : offset + length]
        position += length


def large_file_chunks(seed: int, index: int, size: int) -> Iterator[bytes]:
    """The bytes of ``emulator/large-file`` output ``index`` for ``seed``, in chunks of <= 1 MiB.

    The content is a 1 MiB block (derived from sha256 of seed/index) repeated and cut at
    ``size``; nothing larger than one block is ever held in memory.
    """
    return _generated(seed, index, 0, size)


@dataclass(frozen=True)
class FileRef:
    """A placeholder for output file ``index`` inside a prediction's output template."""

    index: int


@dataclass(frozen=True)
class FileText:
    """Text in an output template holding output file ``index``'s delivery URL without its
    scheme: ``{delivery}`` in ``text`` becomes ``host/signed-path`` (``HTTP://{delivery}``)."""

    index: int
    text: str


@dataclass
class OutputFile:
    """One output file: its name, type, size and either its bytes or a generator seed."""

    name: str
    content_type: str
    size: int
    data: bytes | None = None
    seed: int = 0
    index: int = 0

    @classmethod
    def from_bytes(cls, name: str, content_type: str, data: bytes) -> OutputFile:
        """A small file kept in memory."""
        return cls(name=name, content_type=content_type, size=len(data), data=data)

    @classmethod
    def generated(cls, name: str, size: int, seed: int, index: int) -> OutputFile:
        """A (possibly huge) file produced on the fly by :func:`large_file_chunks`."""
        return cls(name, "application/octet-stream", size, None, seed, index)

    def iter_range(self, start: int = 0, stop: int | None = None) -> Iterator[bytes]:
        """Yield the bytes ``[start, stop)`` in chunks."""
        stop = self.size if stop is None else min(stop, self.size)
        if self.data is None:
            yield from _generated(self.seed, self.index, start, stop)
            return
        for offset in range(start, stop, MEMORY_CHUNK):
            yield self.data[offset : min(offset + MEMORY_CHUNK, stop)]
