"""The archive store: where outputs land, through fsspec, atomically.

A `Destination` is an fsspec filesystem plus a root inside it, opened once from the user's URL
(`/abs/dir`, `~/dir`, `s3://bucket/prefix`, `memory://x`, `gs://...` if gcsfs is installed).
Every write goes through `put_file_atomic` or `write_bytes_atomic`, which guarantee that the
final path holds the complete file or nothing, whatever fails:

* local disk: write a hidden temp sibling, fsync, `os.replace` onto the final name (or, with
  `move=True`, `os.replace` the source itself when it lives on the same device);
* S3: one PUT for small files; otherwise a streamed multipart upload, one part in memory at a
  time, that is aborted on any failure (an S3 object only appears on CompleteMultipartUpload);
  an upload that could not be aborted (the store went down mid-way) is aborted by the next put
  to the same key;
* any other fsspec protocol: write a temp name, then `fs.mv` it onto the final name.

Every foreign exception leaves this module translated once by `errors.storage_error` (botocore's
credential-setup errors first become ConfigurationError: they are not outages). This module must
not import Prefect.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import logging
import math
import os
import posixpath
import re
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import fsspec
from fsspec.core import split_protocol, url_to_fs
from fsspec.implementations.local import LocalFileSystem

from archiver import errors

__all__ = [
    "Destination",
    "exists",
    "open_destination",
    "put_file_atomic",
    "read_bytes",
    "remove",
    "stored_size",
    "verify_stored",
    "write_bytes_atomic",
]

log = logging.getLogger(__name__)

COPY_CHUNK = 2**20  # local copies and hashing
S3_MIN_PART = 5 * 2**20  # S3 rejects smaller parts (except the last)
S3_MAX_PARTS = 10_000
DEFAULT_PART_SIZE = 8 * 2**20

# Bounded client behaviour against a store that is down: an outage must surface as
# StorageUnavailable in seconds, and the caller's own retries take it from there.
S3_CONNECT_TIMEOUT = 3
S3_READ_TIMEOUT = 30
# One attempt each: store requests are retried by the step policy only (archiver/retry.py).
S3_BOTOCORE_ATTEMPTS = 1  # total attempts per request inside botocore ("standard" mode)
S3_FS_RETRIES = 1  # attempts per request in s3fs's own retry loop, around botocore's

# Storage options whose string values are never coerced (secrets may look like numbers).
_VERBATIM_OPTIONS = frozenset(
    {
        "key",
        "secret",
        "token",
        "username",
        "password",
        "endpoint_url",
        "profile",
        "region",
        "region_name",
        "aws_access_key_id",
        "aws_secret_access_key",
        "aws_session_token",
        "account_name",
        "account_key",
        "sas_token",
        "connection_string",
        "project",
        "client_id",
        "client_secret",
        "tenant_id",
    }
)
_INT = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?(\d+\.\d*|\.\d+)([eE][+-]?\d+)?")


@dataclass(frozen=True)
class Destination:
    """An opened archive location: a filesystem, the root path inside it, and its display URL."""

    fs: fsspec.AbstractFileSystem
    root: str
    url: str

    def path(self, *parts: str) -> str:
        """The fs path of `parts` under the root, joined with "/"; ".." is refused."""
        segments = [s for part in parts for s in str(part).split("/") if s not in ("", ".")]
        if ".." in segments:
            raise ValueError(f"path escapes the destination: {'/'.join(parts)!r}")
        return posixpath.join(self.root, *segments) if segments else self.root

    def url_for(self, path: str) -> str:
        """The full URL of an fs path, for display and manifests."""
        if self.is_local:
            return path
        if _protocols(self.fs)[0] == "memory":
            return f"memory://{path.lstrip('/')}"
        return str(self.fs.unstrip_protocol(path))

    @property
    def is_local(self) -> bool:
        """Whether the destination is the local filesystem (paths are OS paths)."""
        return isinstance(self.fs, LocalFileSystem)


# -- opening ------------------------------------------------------------------------------------


def open_destination(url: str, storage_options: Mapping[str, Any] | None = None) -> Destination:
    """Open `url` as a Destination, with fsspec storage options (strings are coerced).

    Local paths are made absolute with "~" expanded. For S3 the standard AWS chain applies
    (AWS_ACCESS_KEY_ID/SECRET, AWS_PROFILE, AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL, all
    honoured by botocore itself); storage options override it: `endpoint_url`, `key`, `secret`,
    `region`, `profile`, `client_kwargs`, `config_kwargs`, and the client limits
    `connect_timeout`, `read_timeout`, `max_attempts` (botocore) and `retries` (s3fs).
    """
    text = str(url or "").strip()
    if not text:
        raise errors.ConfigurationError("no destination URL given")
    options = _coerce_options(storage_options or {})
    protocol, rest = split_protocol(text)
    fs_retries: int | None = None
    if protocol in (None, "file", "local"):
        text = os.path.abspath(os.path.expanduser(rest))
    elif protocol in ("s3", "s3a"):
        options, fs_retries = _s3_options(options)
    for name in ("secret", "token", "password", "account_key", "sas_token", "client_secret"):
        if isinstance(options.get(name), str):
            errors.register_secret(options[name])
    try:
        fs, root = url_to_fs(text, **options)
    except (ImportError, ValueError, TypeError, KeyError) as exc:
        raise errors.ConfigurationError(f"cannot open destination {text}: {exc}") from exc
    if fs_retries is not None:
        fs.retries = fs_retries  # s3fs reads this attribute per call; not a constructor option
    root = root.rstrip("/") or root
    blank = Destination(fs=fs, root=root, url="")
    return Destination(fs=fs, root=root, url=blank.url_for(root))


def _coerce_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """Coerce --storage-option strings ("true", "3", JSON) and nest dotted keys (a.b=c)."""
    result: dict[str, Any] = {}
    for raw_key, value in options.items():
        *parents, leaf = str(raw_key).split(".")
        target = result
        for parent in parents:
            nested = target.setdefault(parent, {})
            if not isinstance(nested, dict):
                raise errors.ConfigurationError(
                    f"storage option {raw_key}: {parent} is not a mapping"
                )
            target = nested
        target[leaf] = value if leaf in _VERBATIM_OPTIONS else _coerce(raw_key, value)
    return result


def _coerce(key: str, value: Any) -> Any:
    """One option value: booleans, None, numbers and JSON objects/arrays from strings."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    if _INT.fullmatch(text):
        return int(text)
    if _FLOAT.fullmatch(text):
        return float(text)
    if text[:1] in ("{", "["):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise errors.ConfigurationError(f"storage option {key}: invalid JSON: {exc}") from exc
    return value


def _s3_options(options: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """s3fs constructor options with short, bounded timeouts and retries unless overridden."""
    opts = dict(options)
    client_kwargs = dict(opts.pop("client_kwargs", None) or {})
    region = opts.pop("region", None) or opts.pop("region_name", None)
    if region:
        client_kwargs["region_name"] = region
    config_kwargs = dict(opts.pop("config_kwargs", None) or {})
    for name, default in (
        ("connect_timeout", S3_CONNECT_TIMEOUT),
        ("read_timeout", S3_READ_TIMEOUT),
    ):
        if name in opts:
            config_kwargs[name] = opts.pop(name)
        config_kwargs.setdefault(name, default)
    retry_config = dict(config_kwargs.get("retries") or {})
    if "max_attempts" in opts:
        retry_config.pop("max_attempts", None)
        retry_config["total_max_attempts"] = opts.pop("max_attempts")
    if "max_attempts" not in retry_config:
        retry_config.setdefault("total_max_attempts", S3_BOTOCORE_ATTEMPTS)
    retry_config.setdefault("mode", "standard")
    config_kwargs["retries"] = retry_config
    opts["config_kwargs"] = config_kwargs
    if client_kwargs:
        opts["client_kwargs"] = client_kwargs
    # Existence checks must see writes and deletes at once, from any process: no listings cache.
    opts.setdefault("use_listings_cache", False)
    fs_retries = int(opts.pop("retries", S3_FS_RETRIES))
    return opts, max(1, fs_retries)


# -- writing ------------------------------------------------------------------------------------


def put_file_atomic(
    dest: Destination,
    local_path: Path,
    path: str,
    *,
    part_size: int = DEFAULT_PART_SIZE,
    move: bool = False,
    link: bool = False,
) -> None:
    """Store a local file at `path`: afterwards the path holds the whole file or nothing.

    Memory use is one `part_size` buffer whatever the file size. With `move=True` the local file
    is consumed on success (renamed into place when local and on the same device, otherwise
    deleted after the upload) and left untouched on failure. With `link=True` a local
    destination on the same device gets a hard link (no copy) and the local file stays.
    """
    local_path = Path(local_path)
    try:
        size = local_path.stat().st_size
        if move and dest.is_local and _rename_into_place(local_path, path):
            return
        if link and dest.is_local and _link_into_place(local_path, path):
            return
        with _open_source(local_path) as source:
            _put_stream(dest, source, size, path, part_size)
        if move:
            local_path.unlink(missing_ok=True)
    except Exception as exc:
        raise _translate(exc, f"storing {dest.url_for(path)}") from exc


def write_bytes_atomic(dest: Destination, path: str, data: bytes) -> None:
    """Store a small payload (manifest, cache record) at `path`, all or nothing."""
    try:
        _put_stream(dest, io.BytesIO(data), len(data), path, DEFAULT_PART_SIZE)
    except Exception as exc:
        raise _translate(exc, f"storing {dest.url_for(path)}") from exc


def _open_source(local_path: Path) -> BinaryIO:
    """Open the file being stored (the seam tests use to make a source fail mid-read)."""
    return open(local_path, "rb")


def _read_exact(source: BinaryIO, size: int) -> bytes:
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
        yield _read_exact(source, count)  # not kept in this frame: one chunk alive at a time


def _put_stream(dest: Destination, source: BinaryIO, size: int, path: str, part_size: int) -> None:
    """Dispatch an atomic write of `size` bytes from `source` on the destination's protocol."""
    if dest.is_local:
        _put_local(source, size, path)
    elif _is_s3(dest.fs):
        _put_s3(dest.fs, source, size, path, part_size)
    else:
        _put_generic(dest.fs, source, size, path)
    with contextlib.suppress(Exception):
        dest.fs.invalidate_cache(path)


def _temp_sibling(path: str) -> str:
    """A hidden, unique name next to `path`, for a write that is renamed into place."""
    parent, name = posixpath.split(path)
    return posixpath.join(parent, f".{name}.tmp-{uuid.uuid4().hex[:12]}")


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
    with open(local_path, "rb") as handle:
        os.fsync(handle.fileno())
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


def _link_into_place(local_path: Path, path: str) -> bool:
    """Hard-link a local file onto `path` atomically; False when links cannot be made there."""
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    with open(local_path, "rb") as handle:
        os.fsync(handle.fileno())
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
    _fsync_dir(parent)
    return True


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


def _put_s3(fs: Any, source: BinaryIO, size: int, path: str, part_size: int) -> None:
    """One PUT up to `part_size`, else a multipart upload that is aborted on any failure."""
    bucket, key, _ = fs.split_path(path)
    if size <= part_size:
        fs.call_s3("put_object", Bucket=bucket, Key=key, Body=_read_exact(source, size))
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
        if isinstance(_translate(exc, "listing uploads"), errors.TransientError):
            raise
        log.debug("cannot list multipart uploads of s3://%s/%s: %s", bucket, key, exc)
        return  # e.g. no s3:ListBucketMultipartUploads permission: nothing to clean
    for upload in answer.get("Uploads", []) or []:
        if upload.get("Key") == key:
            log.info("aborting stale multipart upload of s3://%s/%s", bucket, key)
            fs.call_s3(
                "abort_multipart_upload", Bucket=bucket, Key=key, UploadId=upload["UploadId"]
            )


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


# -- reading and checking -----------------------------------------------------------------------


def read_bytes(dest: Destination, path: str) -> bytes | None:
    """The whole content of a small stored file, or None when it does not exist."""
    what = f"reading {dest.url_for(path)}"
    try:
        if dest.is_local:
            return Path(path).read_bytes()
        if _is_s3(dest.fs):  # one GET, not HEAD + GET
            return bytes(dest.fs.cat_file(path, max_concurrency=1))
        return bytes(dest.fs.cat_file(path))
    except FileNotFoundError as exc:
        _raise_if_bucket_missing(exc, what)
        return None
    except Exception as exc:
        raise _translate(exc, what) from exc


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
    dest: Destination, path: str, *, size: int, sha256: str, read_back: bool = False
) -> None:
    """Check the stored file's size, and its sha256 when `read_back` or reading is cheap.

    Raises errors.IntegrityError on a missing file or any mismatch. Local and memory stores are
    always read back; remote stores only on request (a read-back doubles the transfer).
    """
    url = dest.url_for(path)
    actual = stored_size(dest, path)
    if actual is None:
        raise errors.IntegrityError(f"{url} is missing from the store")
    if actual != size:
        raise errors.IntegrityError(f"{url} holds {actual} bytes, expected {size}")
    if not (read_back or dest.is_local or _protocols(dest.fs)[0] == "memory"):
        return
    digest = _stored_sha256(dest, path)
    if digest != sha256.lower():
        raise errors.IntegrityError(f"{url} has sha256 {digest}, expected {sha256.lower()}")


def _stored_sha256(dest: Destination, path: str) -> str:
    """Stream the stored file through sha256, one chunk in memory at a time."""
    digest = hashlib.sha256()
    chunk_size = COPY_CHUNK
    try:
        if dest.is_local:
            handle: Any = open(path, "rb")  # noqa: SIM115 - closed by the with below
        elif _is_s3(dest.fs):  # one ranged GET per part-sized read, nothing cached
            chunk_size = DEFAULT_PART_SIZE
            handle = dest.fs.open(path, "rb", block_size=chunk_size, cache_type="none")
        else:
            handle = dest.fs.open(path, "rb")
        with handle:
            while chunk := handle.read(chunk_size):
                digest.update(chunk)
    except Exception as exc:
        raise _translate(exc, f"reading back {dest.url_for(path)}") from exc
    return digest.hexdigest()


def remove(dest: Destination, path: str) -> None:
    """Delete the file at `path`; a file that is already gone is fine."""
    what = f"removing {dest.url_for(path)}"
    try:
        if dest.is_local:
            os.unlink(path)
        else:
            dest.fs.rm_file(path)
    except FileNotFoundError as exc:
        _raise_if_bucket_missing(exc, what)
    except Exception as exc:
        raise _translate(exc, what) from exc
    finally:
        with contextlib.suppress(Exception):
            dest.fs.invalidate_cache(path)


def _info(dest: Destination, path: str) -> dict[str, Any] | None:
    """fsspec info for `path`, fresh from the store; None when nothing is there."""
    what = f"checking {dest.url_for(path)}"
    try:
        dest.fs.invalidate_cache(path)
        return dict(dest.fs.info(path))
    except FileNotFoundError as exc:
        _raise_if_bucket_missing(exc, what)
        return None
    except Exception as exc:
        raise _translate(exc, what) from exc


def _raise_if_bucket_missing(exc: FileNotFoundError, what: str) -> None:
    """s3fs reports a missing bucket as FileNotFoundError too: that one is a StorageError."""
    if errors._storage_code(exc) == "NoSuchBucket":
        raise errors.StorageError(f"{what}: the bucket does not exist ({exc})") from exc


# botocore exceptions meaning the credential setup is wrong: permanent, unlike other botocore
# errors, which `errors.storage_error` rightly treats as a store that may come back.
_CREDENTIAL_ERRORS = frozenset(
    {"NoCredentialsError", "PartialCredentialsError", "ProfileNotFound", "InvalidConfigError"}
)


def _translate(exc: BaseException, what: str) -> errors.ArchiverError:
    """`errors.storage_error`, except that missing or broken credentials are a ConfigurationError."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        kind = type(current)
        if kind.__name__ in _CREDENTIAL_ERRORS and kind.__module__.startswith("botocore"):
            return errors.ConfigurationError(f"{what}: S3 credentials: {current}")
        current = current.__cause__ or current.__context__
    return errors.storage_error(exc, what)


def _protocols(fs: fsspec.AbstractFileSystem) -> tuple[str, ...]:
    """The protocol names of a filesystem, as a tuple."""
    protocol = fs.protocol
    return (protocol,) if isinstance(protocol, str) else tuple(protocol)


def _is_s3(fs: fsspec.AbstractFileSystem) -> bool:
    """Whether `fs` is s3fs (checked by protocol, so s3fs is only imported when used)."""
    return "s3" in _protocols(fs) and hasattr(fs, "call_s3")
