"""The archiver's exceptions, and the one place foreign errors are translated into them.

    ArchiverError
    ├── TransientError ............ worth retrying: the same call may succeed later
    │   ├── RateLimited ........... 429 on create; carries the wait the API asked for
    │   ├── ServiceUnavailable .... 5xx, timeouts, connection errors talking to the API
    │   ├── DownloadInterrupted ... a delivery stream broke or came up short
    │   ├── StorageUnavailable .... the archive store is down or erroring
    │   └── LockLost .............. a held lock expired or was taken: stop before acting
    ├── UrlExpired ................ delivery answered 401/403/404/410: re-fetch the prediction
    └── PermanentError ............ retrying cannot help: fail at once with this message
        ├── AuthenticationError ... the API rejected the token
        ├── InvalidRequest ........ bad model reference or input (4xx other than 401/429)
        ├── PredictionFailed ...... the model failed; carries the model's error text
        ├── PredictionCanceled .... canceled (by a user, a deadline, or us)
        ├── PredictionAborted ..... terminated before it started (deadline passed)
        ├── OutputsRemoved ........ Replicate already deleted the outputs (data_removed)
        ├── HostNotAllowed ........ an output URL points outside the delivery allow-list
        │                           (other host or scheme, ftp:// file://..., user:pass@)
        ├── InvalidOutput ......... a data: URI output is malformed or over its size bound
        ├── IntegrityError ........ size or sha256 disagrees with what was downloaded
        ├── StorageError .......... the store refused for good (no bucket, access denied, full)
        └── ConfigurationError .... bad settings or command-line input

Every message is one line, and none of them ever contains the API token: `redact()` removes
it (and signed query strings, URL userinfo, data: URI payloads) before a message leaves this
module.
"""

from __future__ import annotations

import errno
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where used: commands that never talk HTTP start faster
    import httpx
    import urllib3

__all__ = [
    "ArchiverError",
    "AuthenticationError",
    "ConfigurationError",
    "DownloadInterrupted",
    "HostNotAllowed",
    "IntegrityError",
    "InvalidOutput",
    "InvalidRequest",
    "LockLost",
    "OutputsRemoved",
    "PermanentError",
    "PredictionAborted",
    "PredictionCanceled",
    "PredictionFailed",
    "RateLimited",
    "ServiceUnavailable",
    "StorageError",
    "StorageUnavailable",
    "TransientError",
    "UrlExpired",
    "api_error",
    "redact",
    "storage_error",
]


class ArchiverError(Exception):
    """Base class: every error the archiver raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(redact(" ".join(str(message).split())))


class TransientError(ArchiverError):
    """The same operation may succeed if tried again later."""

    #: Set when a retry loop gave up on this error (`archiver.retry.given_up`): no outer
    #: layer (a Prefect task retry, a batch item retry) may run the same request again.
    exhausted: bool = False


class PermanentError(ArchiverError):
    """Retrying cannot help; report and stop."""


class RateLimited(TransientError):
    """The API throttled a create; `retry_after` is the wait it asked for, in seconds."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ServiceUnavailable(TransientError):
    """The Replicate API (or the network to it) failed in a way that may pass."""


class DownloadInterrupted(TransientError):
    """A delivery stream broke off, or ended before its Content-Length."""


class StorageUnavailable(TransientError):
    """The archive store is unreachable or answered with a retryable error."""


class LockLost(TransientError):
    """A held lock expired or was taken (e.g. Redis unreachable): a retry takes it again."""


class UrlExpired(ArchiverError):
    """The delivery host refused a URL: it expired, was revoked, or its data is gone."""


class AuthenticationError(PermanentError):
    """The API rejected the token."""


class InvalidRequest(PermanentError):
    """The API rejected the request itself: unknown model or version, invalid input."""


class PredictionFailed(PermanentError):
    """The model ran and failed."""


class PredictionCanceled(PermanentError):
    """The prediction was canceled before it finished."""


class PredictionAborted(PermanentError):
    """The prediction was terminated before it started, usually by its deadline."""


class OutputsRemoved(PermanentError):
    """Replicate deleted the prediction's outputs before they were archived."""


class HostNotAllowed(PermanentError):
    """An output URL is not a delivery URL we may fetch: host, scheme or credentials."""


class InvalidOutput(PermanentError):
    """An output value cannot be archived as it is: a bad or oversized `data:` URI."""


class IntegrityError(PermanentError):
    """What was stored or received disagrees with the expected size or sha256."""


class StorageError(PermanentError):
    """The archive store refused the operation for good."""


class ConfigurationError(PermanentError):
    """Settings or command-line input are invalid."""


# -- redaction --------------------------------------------------------------------------------

_SECRETS: set[str] = set()
_BEARER = re.compile(r"(?i)(bearer\s+)[^\s'\"]+")
_SIGNED_QUERY = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s?'\"]+)\?[^\s'\"]*")
# A userinfo already masked as `***@` (archiver.storage.location) is left as it is.
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)(?!\*\*\*@)[^\s/?#@'\"]*@")
_DATA_PAYLOAD = re.compile(r"(?i)\b(data:[\w!#$&^.+/;=-]*),[^\s'\"]+")


def register_secret(value: str | None) -> None:
    """Make `redact` remove this value (the API token, storage secrets) wherever it appears."""
    if value and len(value) >= 4:
        _SECRETS.add(value)


def redact(text: str) -> str:
    """Remove registered secrets, bearer tokens, URL userinfo and query strings (signatures)
    and data: URI payloads from text."""
    for secret in _SECRETS:
        text = text.replace(secret, "***")
    text = _BEARER.sub(r"\1***", text)
    text = _USERINFO.sub(r"\1", text)
    text = _DATA_PAYLOAD.sub(r"\1,...", text)
    return _SIGNED_QUERY.sub(r"\1", text)


def one_line(error: BaseException | str) -> str:
    """An error as one redacted line: an `ArchiverError`'s own message, else the type and the
    first line of its text."""
    if isinstance(error, str):
        text = error
    elif isinstance(error, ArchiverError):
        text = str(error)
    else:
        text = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    lines = text.strip().splitlines()
    return redact(lines[0] if lines else "unknown error")


# -- translation at the boundary --------------------------------------------------------------

# HTTP status from the Replicate API -> exception class. Anything 5xx not listed is transient.
API_STATUS: Mapping[int, type[ArchiverError]] = {
    400: InvalidRequest,
    401: AuthenticationError,
    402: InvalidRequest,  # billing required: retrying will not pay the bill
    403: AuthenticationError,
    404: InvalidRequest,
    408: ServiceUnavailable,
    409: ServiceUnavailable,
    422: InvalidRequest,
    425: ServiceUnavailable,
    429: RateLimited,
}

_RESETS_IN = re.compile(r"resets in ~?\s*(\d+(?:\.\d+)?)\s*s", re.IGNORECASE)


def retry_after_seconds(headers: Mapping[str, str], detail: str, default: float = 1.0) -> float:
    """The wait a 429 asks for: `Retry-After` if numeric, else the "resets in ~Ns" detail."""
    value = (headers.get("retry-after") or "").strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    match = _RESETS_IN.search(detail or "")
    return float(match.group(1)) if match else default


def api_error(status: int, detail: str, headers: Mapping[str, str] | None = None) -> ArchiverError:
    """Translate one HTTP error answer of the Replicate API into our exception."""
    headers = headers or {}
    kind = API_STATUS.get(status) or (ServiceUnavailable if status >= 500 else InvalidRequest)
    message = f"Replicate API answered {status}: {detail or 'no detail'}"
    if kind is RateLimited:
        return RateLimited(message, retry_after_seconds(headers, detail))
    return kind(message)


def from_httpx(exc: httpx.HTTPError, what: str) -> ArchiverError:
    """Translate a transport-level httpx error (no response) into a transient error."""
    import httpx

    name = type(exc).__name__
    if isinstance(exc, httpx.InvalidURL | httpx.UnsupportedProtocol):
        return ConfigurationError(f"{what}: {name}: {exc}")
    return ServiceUnavailable(f"{what}: {name}: {exc or 'no detail'}")


def from_urllib3(exc: urllib3.exceptions.HTTPError, what: str) -> ArchiverError:
    """Translate a urllib3 error of a delivery download (`archiver.delivery`): a stream that
    broke or stalled after the request was sent is `DownloadInterrupted` (the caller re-fetches
    fresh URLs), a bad URL is a `ConfigurationError`, anything else (refused, unreachable,
    TLS) `ServiceUnavailable`."""
    name = type(exc).__name__
    import urllib3

    errors = urllib3.exceptions
    if isinstance(exc, errors.ProtocolError | errors.ReadTimeoutError | errors.DecodeError):
        return DownloadInterrupted(f"{what}: stream broke off: {name}: {exc}")
    if isinstance(exc, errors.LocationValueError):
        return ConfigurationError(f"{what}: {name}: {exc}")
    return ServiceUnavailable(f"{what}: {name}: {exc or 'no detail'}")


_TRANSIENT_OS_ERRORS = (ConnectionError, TimeoutError)
# The device is full (or the quota spent): an immediate retry cannot help; freeing space can.
_DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})


def storage_error(exc: BaseException, what: str) -> ArchiverError:
    """Translate an error from fsspec / aiohttp / the OS into our exception: the generic part
    of the one storage translation. `archiver.storage` applies it at its boundary, after the
    destination's backend had its say (each backend translates its store's own error codes:
    `archiver/storage/backends/`).
    """
    if isinstance(exc, ArchiverError):
        return exc
    if isinstance(exc, OSError) and exc.errno in _DISK_FULL:
        return StorageError(
            f"{what}: no space left on the device (disk full); free space, then rerun"
        )
    message = f"{what}: {type(exc).__name__}: {exc}"
    module = type(exc).__module__ or ""
    if isinstance(exc, _TRANSIENT_OS_ERRORS) or module.startswith("aiohttp"):
        # Endpoint unreachable, connection reset, read timeout: the store may come back.
        return StorageUnavailable(message)
    return StorageError(message)
