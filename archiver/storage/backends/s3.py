"""S3 (s3fs): one PUT for small files, else a streamed multipart upload that is aborted on any
failure (an S3 object only appears on CompleteMultipartUpload), one part in memory at a time.
An upload that could not be aborted (the store went down mid-way) is aborted by the next put to
the same key. Errors translate by their S3 error code; client limits are short and bounded.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping
from typing import Any, BinaryIO

import fsspec
from fsspec.core import url_to_fs

from archiver import errors

from ..streams import DEFAULT_PART_SIZE, chunks, read_exact
from .base import Backend, causes

__all__ = ["BACKEND", "S3Backend", "s3_code"]

log = logging.getLogger(__name__)

S3_MIN_PART = 5 * 2**20  # S3 rejects smaller parts (except the last)
S3_MAX_PARTS = 10_000
# Bounded client behaviour against a store that is down: an outage must surface as
# StorageUnavailable in seconds, and the caller's own retries take it from there.
S3_CONNECT_TIMEOUT = 3
S3_READ_TIMEOUT = 30
# One attempt each: store requests are retried by the step policy only (archiver/retry.py).
S3_BOTOCORE_ATTEMPTS = 1  # total attempts per request inside botocore ("standard" mode)
S3_FS_RETRIES = 1  # attempts per request in s3fs's own retry loop, around botocore's

# botocore / s3fs error codes -> exception class. Unknown codes with a 5xx are transient.
S3_CODES: Mapping[str, type[errors.ArchiverError]] = {
    "AccessDenied": errors.StorageError,
    "InvalidAccessKeyId": errors.StorageError,
    "SignatureDoesNotMatch": errors.StorageError,
    "NoSuchBucket": errors.StorageError,
    "InvalidBucketName": errors.StorageError,
    "SlowDown": errors.StorageUnavailable,
    "ServiceUnavailable": errors.StorageUnavailable,
    "InternalError": errors.StorageUnavailable,
    "RequestTimeout": errors.StorageUnavailable,
    "ThrottlingException": errors.StorageUnavailable,
    "NoSuchUpload": errors.StorageUnavailable,  # our upload was aborted under us: start over
    "BadDigest": errors.StorageUnavailable,  # body corrupted in transit: resend
    "XAmzContentSHA256Mismatch": errors.StorageUnavailable,
    "IncompleteBody": errors.StorageUnavailable,
}
# botocore exceptions meaning the credential setup is wrong: permanent, unlike other botocore
# errors, which are treated as a store that may come back.
_CREDENTIAL_ERRORS = frozenset(
    {"NoCredentialsError", "PartialCredentialsError", "ProfileNotFound", "InvalidConfigError"}
)
# The bucket of a storage message ("reading s3://bucket/.archiver/..." -> "s3://bucket").
_STORE = re.compile(r"\b[a-z][a-z0-9+.-]*://[^/\s]+")


class S3Backend(Backend):
    """s3fs, with multipart uploads driven here through its public `call_s3`."""

    name = "s3"
    read_chunk = DEFAULT_PART_SIZE  # one ranged GET per part-sized read
    writes_temp_names = False
    settings_hint = "the bucket name, AWS_* credentials / endpoint_url and ARCHIVER_STORAGE_OPTIONS"

    @classmethod
    def connect(cls, url: str, options: dict[str, Any]) -> tuple[fsspec.AbstractFileSystem, str]:
        """s3fs with the standard AWS chain (AWS_ACCESS_KEY_ID/SECRET, AWS_PROFILE,
        AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL, honoured by botocore itself) and storage options
        over it: `endpoint_url`, `key`, `secret`, `region`, `profile`, `client_kwargs`,
        `config_kwargs`, and the client limits `connect_timeout`, `read_timeout`, `max_attempts`
        (botocore) and `retries` (s3fs)."""
        opts, fs_retries = _s3_options(options)
        fs, root = url_to_fs(url, **opts)
        fs.retries = fs_retries  # s3fs reads this attribute per call; not a constructor option
        return fs, root

    def put_stream(self, source: BinaryIO, size: int, path: str, part_size: int) -> None:
        """One PUT up to `part_size`, else a multipart upload that is aborted on any failure."""
        fs: Any = self.fs
        bucket, key, _ = fs.split_path(path)
        if size <= part_size:
            fs.call_s3("put_object", Bucket=bucket, Key=key, Body=read_exact(source, size))
            return
        part_size = max(part_size, S3_MIN_PART, math.ceil(size / S3_MAX_PARTS))
        self._abort_stale_uploads(bucket, key)
        upload_id = fs.call_s3("create_multipart_upload", Bucket=bucket, Key=key)["UploadId"]
        try:
            parts = []
            for number, body in enumerate(chunks(source, size, part_size), start=1):
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

    def _abort_stale_uploads(self, bucket: str, key: str) -> None:
        """Abort unfinished multipart uploads of exactly this key, left by an earlier failed put."""
        fs: Any = self.fs
        try:
            answer = fs.call_s3("list_multipart_uploads", Bucket=bucket, Prefix=key)
        except Exception as exc:
            if isinstance(self.translate(exc, "listing uploads"), errors.TransientError):
                raise  # translated by the caller's boundary
            log.debug("cannot list multipart uploads of s3://%s/%s: %s", bucket, key, exc)
            return  # e.g. no s3:ListBucketMultipartUploads permission: nothing to clean
        for upload in answer.get("Uploads", []) or []:
            if upload.get("Key") == key:
                log.info("aborting stale multipart upload of s3://%s/%s", bucket, key)
                fs.call_s3(
                    "abort_multipart_upload", Bucket=bucket, Key=key, UploadId=upload["UploadId"]
                )

    def read_bytes(self, path: str) -> bytes:
        return bytes(self.fs.cat_file(path, max_concurrency=1))  # one GET, not HEAD + GET

    def read_many(self, paths: list[str], concurrency: int) -> dict[str, bytes | BaseException]:
        """One GET per file (by default s3fs sends a HEAD first, to split large files)."""
        if not paths:
            return {}
        return dict(
            self.fs.cat(paths, on_error="return", batch_size=concurrency, max_concurrency=1)
        )

    def list_after(self, prefix: str, start_after: str | None) -> list[str]:
        """One paginated ListObjectsV2 with StartAfter (usually one short page)."""
        fs: Any = self.fs
        bucket, key, _ = fs.split_path(prefix)
        request: dict[str, Any] = {"Bucket": bucket, "Prefix": key}
        if start_after is not None:
            request["StartAfter"] = fs.split_path(start_after)[1]
        names: list[str] = []
        while True:
            page = fs.call_s3("list_objects_v2", **request)
            names += [item["Key"][len(key) :] for item in page.get("Contents", [])]
            if not page.get("IsTruncated"):
                return names
            request["ContinuationToken"] = page["NextContinuationToken"]

    def open_read(self, path: str) -> BinaryIO:
        handle: BinaryIO = self.fs.open(
            path, "rb", block_size=self.read_chunk, cache_type="none"
        )  # one ranged GET per part-sized read, nothing cached
        return handle

    def sign(self, path: str, seconds: int) -> str | None:
        return str(self.fs.sign(path, expiration=seconds))

    def classify(self, exc: BaseException, what: str) -> errors.ArchiverError | None:
        for cause in causes(exc):
            kind = type(cause)
            if kind.__name__ in _CREDENTIAL_ERRORS and kind.__module__.startswith("botocore"):
                store = _STORE.search(what)
                return errors.ConfigurationError(
                    f"no usable S3 credentials for {store.group(0) if store else 'the store'} "
                    f"({kind.__name__}: {cause}): set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                    "or AWS_PROFILE, an AwsCredentials block (ARCHIVER_AWS_CREDENTIALS_BLOCK), or "
                    "--storage-option key=... --storage-option secret=... (docs/safety.md)"
                )
        code = s3_code(exc)
        if code == "NoSuchBucket":
            return errors.StorageError(
                f"{what}: the bucket does not exist ({exc}); check {self.settings_hint}"
            )
        message = f"{what}: {type(exc).__name__}: {exc}"
        if code is not None and code in S3_CODES:
            return S3_CODES[code](message)
        if code is not None and code.isdigit() and (int(code) >= 500 or int(code) in (408, 429)):
            return errors.StorageUnavailable(message)  # a bare HTTP status, no S3 error body
        if (type(exc).__module__ or "").startswith("botocore"):
            return errors.StorageUnavailable(message)  # endpoint unreachable, read timeout
        if type(exc) is OSError and exc.errno is None:
            # s3fs wraps botocore failures in bare OSErrors (e.g. exhausted retries): transient.
            return errors.StorageUnavailable(message)
        return None

    def is_absent(self, exc: FileNotFoundError) -> bool:
        return s3_code(exc) != "NoSuchBucket"  # s3fs reports a missing bucket like a file


BACKEND = S3Backend


def s3_code(exc: BaseException) -> str | None:
    """The S3 error code inside a botocore ClientError (possibly wrapped by s3fs), if any."""
    for cause in causes(exc):
        response = getattr(cause, "response", None)
        if isinstance(response, dict):
            code = response.get("Error", {}).get("Code")
            if code:
                return str(code)
    return None


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
