"""Google Cloud Storage (gcsfs, extra `[gcs]`): an object appears only when its upload is final.

Small files go up in one request; larger ones through one resumable upload session, one part
(a multiple of 256 KiB) in memory at a time, that is finalized by its last part only. On any
failure the session is cancelled and never finalized, so the final key holds the whole object or
nothing (GCS drops an abandoned session by itself); no temp name, no `mv` (gcsfs's `moveTo`).

gcsfs retries a failed request up to 6 times with backoff (about 30 s against a store that is
down); here every request is tried once, and the step policy (archiver/retry.py) retries. A run
of two small files to an emulator took 191 s and still exited 0: credential look-ups, gcsfs's
experimental filesystem asking a gRPC API the emulator lacks for the bucket's type, then the
temp-then-`mv` write retrying `moveTo` (501 from the emulator) before gcsfs fell back to copy and
delete, which worked: slow, not failed. None of these happen here.
Credentials: gcsfs's own chain (GOOGLE_APPLICATION_CREDENTIALS, gcloud, the metadata server)
unless the `token` storage option names one; against an emulator (STORAGE_EMULATOR_HOST, or an
`endpoint_url` option) the default is `token=anon`, so no credential look-up stalls a run.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import fsspec
import gcsfs.core
import gcsfs.retry

from archiver import errors

from .base import CommitOnClose

__all__ = ["BACKEND", "GcsBackend", "emulator_host"]


GCS_CHUNK = 256 * 2**10  # resumable upload parts are multiples of this
SETTINGS_HINT = (
    "the bucket name, GOOGLE_APPLICATION_CREDENTIALS or the `token` storage option, "
    "and STORAGE_EMULATOR_HOST / `endpoint_url` for an emulator"
)


class OneAttemptGCSFileSystem(gcsfs.core.GCSFileSystem):
    """gcsfs's core filesystem with each HTTP request tried once: retries belong to the step
    policy. The core class, not `gcsfs.GCSFileSystem`: that one is gcsfs's experimental
    extension by default, which asks a gRPC control API for every bucket's type first (60 s
    of retries per bucket against an emulator, which has no such API)."""

    retries = 1
    _request = gcsfs.retry.retry_request(retries=1)(gcsfs.core.GCSFileSystem._request.__wrapped__)


def emulator_host() -> str | None:
    """STORAGE_EMULATOR_HOST when set (gcsfs and Google's clients honour it)."""
    value = os.environ.get("STORAGE_EMULATOR_HOST", "").strip()
    return value if value and value != "default" else None


class GcsBackend(CommitOnClose):
    """`gs://bucket/prefix` through gcsfs."""

    name = "gcs"
    settings_hint = SETTINGS_HINT

    @classmethod
    def connect(cls, url: str, options: dict[str, Any]) -> tuple[fsspec.AbstractFileSystem, str]:
        """gcsfs options as given (`project`, `token`, `endpoint_url`, `requester_pays`, ...);
        `token=anon` by default against an emulator; no listings cache (existence checks must
        see other processes' writes at once)."""
        opts = dict(options)
        if "token" not in opts and (emulator_host() or opts.get("endpoint_url")):
            opts["token"] = "anon"
        opts.setdefault("use_listings_cache", False)
        fs = OneAttemptGCSFileSystem(**opts)
        return fs, url.split("://", 1)[-1].strip("/")

    def check(self, root: str, url: str) -> None:
        """One request for the bucket's metadata: missing, refused or unreachable fails here,
        in one line naming `url` and what to check, before anything is paid."""
        bucket = root.split("/", 1)[0]
        try:
            self.fs.call("GET", "b/{}", bucket, json_out=True)
        except FileNotFoundError as exc:
            raise errors.StorageError(
                f"{url}: the bucket {bucket} does not exist; check {self.settings_hint}"
            ) from exc
        except Exception as exc:
            if type(exc) is OSError and str(exc).startswith("Forbidden"):
                return  # authenticated, not allowed to read the bucket's metadata: writes tell
            what = f"{url}: cannot use the bucket {bucket} (check {self.settings_hint})"
            raise self.translate(exc, what) from exc

    def writer_block(self, part_size: int) -> int:
        return max(GCS_CHUNK, part_size // GCS_CHUNK * GCS_CHUNK)

    def cancel(self, out: Any) -> None:
        out.discard()  # cancel the upload session (its parts never become an object)

    def sign(self, path: str, seconds: int) -> str | None:
        """A V4 signed URL (needs credentials that can sign: a service-account key)."""
        return str(self.fs.sign(path, expiration=seconds, version="v4"))

    def classify(self, exc: BaseException, what: str) -> errors.ArchiverError | None:
        import google.auth.exceptions as auth_errors

        message = f"{what}: {type(exc).__name__}: {exc}"
        if isinstance(exc, auth_errors.DefaultCredentialsError):
            return errors.ConfigurationError(f"{what}: GCS credentials: {exc}")
        if isinstance(exc, auth_errors.TransportError | auth_errors.RefreshError):
            return errors.StorageUnavailable(self.hinted(message))
        code = getattr(exc, "code", None) if isinstance(exc, gcsfs.retry.HttpError) else None
        if code is not None:
            if int(code) >= 500 or int(code) in (408, 429):
                return errors.StorageUnavailable(message)
            return errors.StorageError(self.hinted(message))
        if type(exc).__name__ == "ProxyError":  # gcsfs's translation of a 502
            return errors.StorageUnavailable(message)
        if type(exc) is OSError and str(exc).startswith("Forbidden"):
            return errors.StorageError(self.hinted(message))
        return None


BACKEND = GcsBackend


def _not_a_retry_report(record: logging.LogRecord) -> bool:
    """gcsfs logs each failed request with its traceback; the error we raise says it once."""
    message = record.getMessage()
    return (
        " out of retries on exception" not in message and " non-retriable exception" not in message
    )


logging.getLogger("gcsfs").addFilter(_not_a_retry_report)
