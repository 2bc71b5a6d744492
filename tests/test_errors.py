"""The exception tree: translation tables, rate-limit waits, redaction."""

import errno
import os

import httpx
import pytest
from botocore.exceptions import NoCredentialsError

from archiver import errors
from archiver.errors import (
    AuthenticationError,
    InvalidRequest,
    RateLimited,
    ServiceUnavailable,
    StorageError,
    StorageUnavailable,
    api_error,
    from_httpx,
    redact,
    register_secret,
    storage_error,
)
from archiver.retry import RetryPolicy, should_retry


def test_api_statuses_map_to_transient_or_permanent():
    """401 auth, 422 invalid, 5xx transient, 429 rate limited with its wait."""
    assert isinstance(api_error(401, "no"), AuthenticationError)
    assert isinstance(api_error(422, "bad input"), InvalidRequest)
    assert isinstance(api_error(502, "bad gateway"), ServiceUnavailable)
    limited = api_error(429, "Request was throttled. Your rate limit resets in ~7s.")
    assert isinstance(limited, RateLimited) and limited.retry_after == 7
    assert api_error(429, "x", {"retry-after": "3"}).retry_after == 3


def test_transport_errors_are_transient():
    """A refused connection is worth retrying."""
    assert should_retry(from_httpx(httpx.ConnectError("refused"), "GET /v1/x"))


def test_storage_codes_classify():
    """The S3 backend's codes: NoSuchBucket is permanent, SlowDown transient; a refused
    endpoint is transient for any store."""
    from archiver.storage.backends.s3 import S3Backend

    class ClientError(Exception):
        def __init__(self, code: str) -> None:
            self.response = {"Error": {"Code": code}}

    s3 = S3Backend(None)  # translating needs no filesystem
    assert isinstance(s3.translate(ClientError("NoSuchBucket"), "put"), StorageError)
    assert isinstance(s3.translate(ClientError("SlowDown"), "put"), StorageUnavailable)
    assert isinstance(s3.translate(ClientError("503"), "put"), StorageUnavailable)
    assert isinstance(storage_error(ConnectionRefusedError(), "put"), StorageUnavailable)


def test_only_transient_errors_are_retried():
    """The retry predicate: transient yes, permanent and bugs no."""
    assert should_retry(ServiceUnavailable("x"))
    assert not should_retry(InvalidRequest("x"))
    assert not should_retry(ValueError("bug"))
    assert RetryPolicy(attempts=5, first_delay=1, max_delay=5).delays() == [1, 2, 4, 5]


def test_messages_never_carry_secrets_or_signatures():
    """Registered secrets, bearer tokens and signed query strings are scrubbed from messages."""
    register_secret("r8_supersecret")
    message = str(
        errors.ArchiverError("boom r8_supersecret Bearer abc123\nhttps://h/x.png?expires=1&sig=ff")
    )
    assert "r8_supersecret" not in message and "abc123" not in message and "sig=" not in message
    assert "\n" not in message
    assert redact("nothing to hide") == "nothing to hide"


def test_storage_credentials_and_disk_full_translate_at_the_boundary():
    """The S3 backend makes missing S3 credentials a ConfigurationError; storage_error makes a
    full disk (ENOSPC from the kernel's /dev/full) a permanent one-line StorageError naming the
    path."""
    from archiver.storage.backends.s3 import S3Backend

    wrapped = OSError("wrapped")
    wrapped.__cause__ = NoCredentialsError()
    s3 = S3Backend(None)  # translating needs no filesystem
    assert isinstance(s3.translate(wrapped, "reading s3://b/x"), errors.ConfigurationError)
    assert os.path.exists("/dev/full"), "this test needs Linux's /dev/full (ENOSPC on write)"
    with pytest.raises(OSError) as caught, open("/dev/full", "wb", buffering=0) as full:
        full.write(b"x")
    assert caught.value.errno == errno.ENOSPC
    translated = storage_error(caught.value, "storing /data/archive/out.bin")
    assert isinstance(translated, StorageError)
    assert str(translated).startswith("storing /data/archive/out.bin: no space left")


def test_missing_s3_credentials_say_where_credentials_go_not_an_internal_path():
    """No S3 credentials: one line naming the bucket, AWS_ACCESS_KEY_ID/AWS_PROFILE and
    --storage-option, never the cache file that happened to be read first."""
    from archiver.storage.backends.s3 import S3Backend

    wrapped = OSError("wrapped")
    wrapped.__cause__ = NoCredentialsError()
    s3 = S3Backend(None)  # translating needs no filesystem
    message = str(s3.translate(wrapped, "reading s3://bucket/archive/.archiver/cache/ab.json"))
    assert message.startswith("no usable S3 credentials for s3://bucket (NoCredentialsError")
    assert "AWS_ACCESS_KEY_ID" in message and "AWS_PROFILE" in message
    assert "--storage-option" in message and ".archiver" not in message
