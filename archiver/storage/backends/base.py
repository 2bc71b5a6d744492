"""The storage protocol every backend implements, and the generic fsspec fallback.

A `Backend` is chosen once, when a destination is opened (`backends.backend_for`), and owns
everything that differs between stores: how a URL and its options become an fsspec filesystem,
how a stream becomes an object atomically, how it is read back (one file or many at once),
listed, signed and checked, what it does cheaply (its capability attributes: code elsewhere asks
those, never the store's name), and how the store's own errors translate into ours. This base class is the fallback for any other fsspec
protocol: write a temp name beside the target, then `fs.mv` it into place.
"""

from __future__ import annotations

import contextlib
import logging
import posixpath
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, ClassVar

import fsspec
from fsspec.core import url_to_fs

from archiver import errors

from ..streams import COPY_CHUNK, DEFAULT_PART_SIZE, chunks, read_exact, temp_sibling

__all__ = ["Backend", "CommitOnClose", "Consume", "causes"]

log = logging.getLogger(__name__)

#: Takes each chunk of a stored file, in order (`Backend.stream_to`).
Consume = Callable[[bytes | memoryview], None]


class Backend:
    """One kind of store, bound to an open fsspec filesystem (the generic fsspec fallback)."""

    #: Short name for messages ("s3", "gcs", ...).
    name: ClassVar[str] = "fsspec"
    #: Paths are OS paths on this machine (hard links, renames, fsync).
    is_local: ClassVar[bool] = False
    #: `verify_stored` re-reads and hashes the stored bytes even unasked (reading is cheap).
    hash_on_verify: ClassVar[bool] = False
    #: Size of one read when hashing stored bytes.
    read_chunk: ClassVar[int] = COPY_CHUNK
    #: An interrupted write may leave a temp name beside its target (`streams.temp_name`).
    writes_temp_names: ClassVar[bool] = True
    #: The settings a user checks when the store refuses or cannot be reached.
    settings_hint: ClassVar[str] = "ARCHIVER_STORAGE_OPTIONS"
    #: Each read or lookup is a network round trip: callers run many at once.
    concurrent_requests: ClassVar[bool] = True
    #: Listing is costly: a marker per manifest is written to the catalog's journal.
    journaled: ClassVar[bool] = True
    #: Directories have mtimes that move when an entry is added or removed (the catalog
    #: stats directories instead of listing the store).
    directory_mtimes: ClassVar[bool] = False

    def __init__(self, fs: fsspec.AbstractFileSystem) -> None:
        self.fs = fs

    # -- opening ---------------------------------------------------------------------------

    @classmethod
    def connect(cls, url: str, options: dict[str, Any]) -> tuple[fsspec.AbstractFileSystem, str]:
        """The filesystem and root path for `url`, built from already-parsed `options`."""
        fs, root = url_to_fs(url, **options)
        return fs, root

    def url_for(self, path: str) -> str:
        """The full URL of an fs path, for display and manifests."""
        return str(self.fs.unstrip_protocol(path))

    def check(self, root: str, url: str) -> None:
        """Fail with one line naming `url` and the setting to check when the store cannot hold
        the archive (no bucket, refused credentials, unreachable); nothing by default."""

    # -- writing ---------------------------------------------------------------------------

    def put_stream(self, source: BinaryIO, size: int, path: str, part_size: int) -> None:
        """Store `size` bytes of `source` at `path`, all or nothing: write a temp name next to
        `path`, then move it onto `path`; remove the temp on failure."""
        fs = self.fs
        temp = temp_sibling(path)
        with contextlib.suppress(Exception):
            fs.makedirs(posixpath.dirname(path), exist_ok=True)
        try:
            with fs.open(temp, "wb") as out:
                for chunk in chunks(source, size, COPY_CHUNK):
                    out.write(chunk)
            fs.mv(temp, path)
        except BaseException:
            with contextlib.suppress(Exception):
                fs.rm_file(temp)
            raise

    def place(
        self, local_path: Path, path: str, *, move: bool, link: bool, synced: bool, sync_dir: bool
    ) -> bool:
        """Put a local file at `path` without copying it (a rename or a hard link); False when
        this store cannot, and the caller copies it with `put_stream`."""
        return False

    def append(self, path: str, addition: Callable[[bytes], bytes | None]) -> bool:
        """Append in place where the store can (local disk); False: write the file whole."""
        return False

    def sync_directory(self, directory: str) -> None:
        """Make names just put into `directory` durable; a completed put is, on object stores."""

    def remove(self, path: str) -> None:
        """Delete the file at `path` (FileNotFoundError when it is not there)."""
        self.fs.rm_file(path)

    def create_empty(self, path: str) -> bool:
        """Create an empty file at `path`, durable on return, where the store has a cheaper way
        than an atomic write of no bytes (local disk); False: the caller writes it."""
        return False

    def remove_empty_directory(self, directory: str) -> None:
        """Remove `directory` if it is empty (best effort); object stores have no directories
        of their own: nothing to do."""

    # -- reading ---------------------------------------------------------------------------

    def read_bytes(self, path: str) -> bytes:
        """The whole content of a small stored file (FileNotFoundError when missing)."""
        return bytes(self.fs.cat_file(path))

    def open_read(self, path: str) -> BinaryIO:
        """A binary handle streaming the stored file, read `read_chunk` at a time."""
        handle: BinaryIO = self.fs.open(path, "rb")
        return handle

    def read_many(self, paths: list[str], concurrency: int) -> dict[str, bytes | BaseException]:
        """`{path: bytes or the exception reading it}` of small files, `concurrency` requests
        in flight (fsspec's `cat`); a missing file maps to a FileNotFoundError."""
        if not paths:
            return {}  # fsspec's cat of an empty list raises FileNotFoundError
        return dict(self.fs.cat(paths, on_error="return", batch_size=concurrency))

    def stream_to(self, path: str, consume: Consume, chunk: int, buffer: bytearray) -> None:
        """Feed the stored file to `consume`, `chunk` bytes per ranged read, nothing cached
        (`buffer`: the caller's reusable chunk, for stores that can read into it)."""
        with self.fs.open(path, "rb", block_size=chunk, cache_type="none") as handle:
            while data := handle.read(chunk):
                consume(data)

    def list_names(self, directory: str) -> list[str]:
        """The names of the entries of `directory`, fresh from the store, sorted
        (FileNotFoundError when it is not there)."""
        self.fs.invalidate_cache(directory)
        listed = self.fs.ls(directory, detail=False)
        return sorted(posixpath.basename(str(p).rstrip("/")) for p in listed)

    def list_after(self, prefix: str, start_after: str | None) -> list[str]:
        """The names (after `prefix`, which ends with "/") of the files under `prefix` whose
        full path sorts after `start_after` (every one when None), sorted; [] when nothing is
        there. Here: the directory listed whole, then filtered."""
        try:
            names = self.list_names(prefix.rstrip("/"))
        except FileNotFoundError:
            return []
        floor = start_after[len(prefix) :] if start_after is not None else ""
        return [name for name in names if name > floor]

    def same_file(self, path: str, identity: tuple[int, int, int, int]) -> bool:
        """Whether `path` is the very local file of `identity` (st_dev, st_ino, st_size,
        st_mtime_ns), unwritten since; never on a store without inodes."""
        return False

    def info(self, path: str) -> dict[str, Any]:
        """fsspec info for `path`, fresh from the store (FileNotFoundError when missing)."""
        self.fs.invalidate_cache(path)
        return dict(self.fs.info(path))

    def sign(self, path: str, seconds: int) -> str | None:
        """A link anyone can GET for `seconds`, or None where the store has none."""
        return None

    # -- errors ----------------------------------------------------------------------------

    def classify(self, exc: BaseException, what: str) -> errors.ArchiverError | None:
        """This store's own translation of `exc` (its error codes), or None for the generic one."""
        return None

    def hinted(self, message: str) -> str:
        """`message` ending with the settings to check, unless it names them already."""
        hint = self.settings_hint
        return message if hint in message else f"{message}; check {hint}"

    def is_absent(self, exc: FileNotFoundError) -> bool:
        """Whether a FileNotFoundError means "no such file" (an answer), not a missing bucket
        or container (an error)."""
        return True

    def translate(self, exc: BaseException, what: str) -> errors.ArchiverError:
        """`exc` as our exception: the store's own translation first, then the generic one."""
        if isinstance(exc, errors.ArchiverError):
            return exc
        return self.classify(exc, what) or errors.storage_error(exc, what)


class CommitOnClose(Backend):
    """An object store whose buffered writer makes the object appear only on `close()` (its
    last request finalizes the upload: GCS, Azure). Small files go up in one request; larger
    ones through the writer, one part in memory at a time, which on failure is marked closed
    (never finalized by a later close or the garbage collector) and `cancel`led."""

    read_chunk = DEFAULT_PART_SIZE
    writes_temp_names = False

    def writer_block(self, part_size: int) -> int:
        """The writer's part size for a requested `part_size`."""
        return part_size

    def cancel(self, out: Any) -> None:
        """Drop what a failed writer sent, where the store can (nothing by default)."""

    def put_stream(self, source: BinaryIO, size: int, path: str, part_size: int) -> None:
        if size <= part_size:
            self.fs.pipe_file(path, read_exact(source, size))
            return
        out = self.fs.open(path, "wb", block_size=self.writer_block(part_size))
        try:
            for chunk in chunks(source, size, COPY_CHUNK):
                out.write(chunk)
            out.close()  # sends the last part, which finalizes the object
        except BaseException:
            out.closed = True
            try:
                self.cancel(out)
            except Exception as cancel_exc:  # noqa: BLE001 - store down: it drops it in time
                log.warning("could not cancel the upload of %s: %s", path, cancel_exc)
            raise

    def open_read(self, path: str) -> BinaryIO:
        handle: BinaryIO = self.fs.open(path, "rb", block_size=self.read_chunk, cache_type="none")
        return handle

    def sign(self, path: str, seconds: int) -> str | None:
        return str(self.fs.sign(path, expiration=seconds))


def causes(exc: BaseException) -> list[BaseException]:
    """`exc` and its causes / contexts, outermost first, each once (a client library often
    wraps the store's own error in one of its own)."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not seen for seen in chain):
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain
