"""Atomic writes: afterwards the final path holds the complete file or nothing, whatever fails.

* local disk: write a hidden temp sibling, fsync, `os.replace` onto the final name (or, with
  `move=True`, `os.replace` the source itself when it lives on the same device; with
  `link=True`, hard-link it);
* S3: one PUT for small files; otherwise a streamed multipart upload, one part in memory at a
  time, that is aborted on any failure (an S3 object only appears on CompleteMultipartUpload);
  an upload that could not be aborted (the store went down mid-way) is aborted by the next put
  to the same key;
* any other fsspec protocol: write a temp name, then `fs.mv` it onto the final name.

`append_local` adds to a small local file in place (one write, one fsync: no new inode, no
rename, no directory fsync); the caller's format must tell a whole addition from a torn one.
"""

from __future__ import annotations

import contextlib
import errno
import io
import itertools
import logging
import math
import os
import posixpath
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import fsspec

from archiver import errors

from .location import Destination, is_s3
from .translate import translated

__all__ = [
    "append_local",
    "put_file_atomic",
    "remove",
    "sync_directory",
    "temp_name",
    "write_bytes_atomic",
]

log = logging.getLogger(__name__)

COPY_CHUNK = 2**20  # local copies and hashing
S3_MIN_PART = 5 * 2**20  # S3 rejects smaller parts (except the last)
S3_MAX_PARTS = 10_000
DEFAULT_PART_SIZE = 8 * 2**20


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
    with translated(f"storing {dest.url_for(path)}"):
        size = local_path.stat().st_size
        if move and dest.is_local and _rename_into_place(local_path, path):
            return
        if (
            link
            and dest.is_local
            and _link_into_place(local_path, path, synced=source_synced, sync_dir=sync_dir)
        ):
            return
        with _open_source(local_path) as source:
            _put_stream(dest, source, size, path, part_size)  # its directory fsynced, always
        if move:
            local_path.unlink(missing_ok=True)


def write_bytes_atomic(dest: Destination, path: str, data: bytes) -> None:
    """Store a small payload (manifest, cache record) at `path`, all or nothing."""
    with translated(f"storing {dest.url_for(path)}"):
        _put_stream(dest, io.BytesIO(data), len(data), path, DEFAULT_PART_SIZE)


def append_local(dest: Destination, path: str, addition: Callable[[bytes], bytes | None]) -> bool:
    """Append `addition(current content)` to the existing local file at `path` and fsync it;
    durable on return. False, with nothing written, when `dest` is not local, the file does not
    exist, or `addition` gives None: the caller then writes the file whole
    (`write_bytes_atomic`). A crash mid-append may leave part of the addition (or, on a file
    system without a journal, stale bytes) at the end: the format must detect it."""
    if not dest.is_local:
        return False
    with translated(f"storing {dest.url_for(path)}"):
        try:
            fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        try:
            chunks = []
            while chunk := os.read(fd, COPY_CHUNK):  # O_APPEND moves writes only
                chunks.append(chunk)
            data = addition(b"".join(chunks))
            if data is None:
                return False
            view = memoryview(data)
            while view:  # a write may write less than asked
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
    return True


def remove(dest: Destination, path: str) -> None:
    """Delete the file at `path`; a file that is already gone is fine."""
    try:
        with translated(f"removing {dest.url_for(path)}", missing_ok=True):
            if dest.is_local:
                os.unlink(path)
            else:
                dest.fs.rm_file(path)
    finally:
        with contextlib.suppress(Exception):
            dest.fs.invalidate_cache(path)


def _open_source(local_path: Path) -> BinaryIO:
    """Open the file being stored (the seam tests use to make a source fail mid-read)."""
    return open(local_path, "rb")


def read_exact(source: BinaryIO, size: int) -> bytes:
    """Exactly `size` bytes from `source`; a source that ends early is an IntegrityError."""
    data = source.read(size)
    if len(data) == size:
        return data
    chunks = [data]
    got = len(data)
    while got < size:
        chunk = source.read(size - got)
        if not chunk:
            raise errors.IntegrityError(
                f"source ended after {got} of {size} bytes while storing it"
            )
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _chunks(source: BinaryIO, size: int, chunk_size: int) -> Iterator[bytes]:
    """`size` bytes of `source` in pieces of at most `chunk_size`."""
    remaining = size
    while remaining > 0:
        count = min(chunk_size, remaining)
        remaining -= count
        yield read_exact(source, count)  # not kept in this frame: one chunk alive at a time


def _put_stream(dest: Destination, source: BinaryIO, size: int, path: str, part_size: int) -> None:
    """Dispatch an atomic write of `size` bytes from `source` on the destination's protocol."""
    if dest.is_local:
        _put_local(source, size, path)
    elif is_s3(dest.fs):
        _put_s3(dest.fs, source, size, path, part_size)
    else:
        _put_generic(dest.fs, source, size, path)
    with contextlib.suppress(Exception):
        dest.fs.invalidate_cache(path)


def _temp_sibling(path: str) -> str:
    """A hidden, unique name next to `path`, for a write that is renamed into place."""
    parent, name = posixpath.split(path)
    return posixpath.join(parent, temp_name(name))


_TOKEN = secrets.token_hex(4)  # this import's own: a new process (even a fork) differs by pid
_SERIAL = itertools.count()


def temp_name(name: str) -> str:
    """`.<name>.tmp-<token>`: a hidden name beside `name` that no other call, thread or process
    gets (process id, a random token drawn once per process, a serial number). No syscall:
    `uuid4()` asks the kernel for randomness with the GIL released, and on a busy event loop
    winning it back cost up to a millisecond per temp name."""
    return f".{name}.tmp-{os.getpid():x}-{_TOKEN}-{next(_SERIAL):x}"


# -- local disk -----------------------------------------------------------------------------------


def _put_local(source: BinaryIO, size: int, path: str) -> None:
    """Write a temp sibling, fsync it, and rename it over `path`."""
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    temp = _temp_sibling(path)
    try:
        with open(temp, "xb") as out:
            out.writelines(_chunks(source, size, COPY_CHUNK))
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    _fsync_dir(parent)


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
    _fsync_dir(parent)
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
    temp = _temp_sibling(path)
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
        _fsync_dir(parent)
    return True


def sync_directory(dest: Destination, directory: str) -> None:
    """Make the names just put into a local `directory` durable (fsync it); a no-op on object
    stores, where a completed put is durable by itself."""
    if dest.is_local:
        _fsync_dir(directory)


def _read_umask() -> int:
    """The process umask, read without changing it where Linux allows (0o022 otherwise)."""
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status") as status:
        for line in status:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    return 0o022


_UMASK = _read_umask()


def _fsync_dir(directory: str) -> None:
    """Make a rename durable (best effort: not every platform can open a directory)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# -- S3 -------------------------------------------------------------------------------------------


def _put_s3(fs: Any, source: BinaryIO, size: int, path: str, part_size: int) -> None:
    """One PUT up to `part_size`, else a multipart upload that is aborted on any failure."""
    bucket, key, _ = fs.split_path(path)
    if size <= part_size:
        fs.call_s3("put_object", Bucket=bucket, Key=key, Body=read_exact(source, size))
        return
    part_size = max(part_size, S3_MIN_PART, math.ceil(size / S3_MAX_PARTS))
    _abort_stale_uploads(fs, bucket, key)
    upload_id = fs.call_s3("create_multipart_upload", Bucket=bucket, Key=key)["UploadId"]
    try:
        parts = []
        for number, body in enumerate(_chunks(source, size, part_size), start=1):
            answer = fs.call_s3(
                "upload_part",
                Bucket=bucket,
                Key=key,
                UploadId=upload_id,
                PartNumber=number,
                Body=body,
            )
            del body  # drop the part before the next one is read
            part = {"PartNumber": number, "ETag": answer["ETag"]}
            # Checksums botocore added to the parts must be repeated on completion.
            part.update(
                {
                    k: v
                    for k, v in answer.items()
                    if k.startswith("Checksum") and k != "ChecksumType"
                }
            )
            parts.append(part)
        fs.call_s3(
            "complete_multipart_upload",
            Bucket=bucket,
            Key=key,
            UploadId=upload_id,
            MultipartUpload={"Parts": parts},
        )
    except BaseException:
        try:
            fs.call_s3("abort_multipart_upload", Bucket=bucket, Key=key, UploadId=upload_id)
        except Exception as abort_exc:  # noqa: BLE001 - store down: the next put aborts it
            log.warning(
                "could not abort multipart upload of s3://%s/%s: %s", bucket, key, abort_exc
            )
        raise


def _abort_stale_uploads(fs: Any, bucket: str, key: str) -> None:
    """Abort unfinished multipart uploads of exactly this key, left by an earlier failed put."""
    try:
        answer = fs.call_s3("list_multipart_uploads", Bucket=bucket, Prefix=key)
    except Exception as exc:
        if isinstance(errors.storage_error(exc, "listing uploads"), errors.TransientError):
            raise  # translated by the caller's boundary
        log.debug("cannot list multipart uploads of s3://%s/%s: %s", bucket, key, exc)
        return  # e.g. no s3:ListBucketMultipartUploads permission: nothing to clean
    for upload in answer.get("Uploads", []) or []:
        if upload.get("Key") == key:
            log.info("aborting stale multipart upload of s3://%s/%s", bucket, key)
            fs.call_s3(
                "abort_multipart_upload", Bucket=bucket, Key=key, UploadId=upload["UploadId"]
            )


# -- any other fsspec filesystem ------------------------------------------------------------------


def _put_generic(fs: fsspec.AbstractFileSystem, source: BinaryIO, size: int, path: str) -> None:
    """Write a temp name next to `path`, then move it onto `path`; remove the temp on failure."""
    temp = _temp_sibling(path)
    with contextlib.suppress(Exception):
        fs.makedirs(posixpath.dirname(path), exist_ok=True)
    try:
        with fs.open(temp, "wb") as out:
            for chunk in _chunks(source, size, COPY_CHUNK):
                out.write(chunk)
        fs.mv(temp, path)
    except BaseException:
        with contextlib.suppress(Exception):
            fs.rm_file(temp)
        raise
