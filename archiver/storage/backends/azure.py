"""Azure Blob Storage (adlfs, extra `[azure]`): a blob appears only when its block list commits.

Small files go up in one request; larger ones as staged blocks, one part in memory at a time,
committed by the last write only. On any failure nothing is committed, so the final name holds the
whole blob or nothing (uncommitted blocks are invisible, dropped by the next commit to the name or
by Azure after a week); no temp name, no copy.

Credentials come from the environment, as adlfs reads it: AZURE_STORAGE_CONNECTION_STRING, or
AZURE_STORAGE_ACCOUNT_NAME with AZURE_STORAGE_ACCOUNT_KEY (or AZURE_STORAGE_SAS_TOKEN, or a service
principal: AZURE_STORAGE_CLIENT_ID / _SECRET / TENANT_ID); AZURE_STORAGE_ANON=true for a public
container. The `account_url` storage option (not a secret) points these at another endpoint than
https://NAME.blob.core.windows.net, e.g. Azurite's http://127.0.0.1:10000/devstoreaccount1. With none of them the destination is refused at once: adlfs would otherwise walk
Azure's default credential chain (managed identity on a metadata address, the Azure CLI...).
The SDK retries a request up to 3 times with 15 s+ backoff; here every request is tried once, and
the step policy (archiver/retry.py) retries.
"""

from __future__ import annotations

import os
from typing import Any

import fsspec
from adlfs import AzureBlobFileSystem
from azure.core import exceptions as azure_errors
from azure.storage.blob.aio import BlobServiceClient
from fsspec.asyn import sync

from archiver import errors

from .base import CommitOnClose, causes

__all__ = ["BACKEND", "AzureBackend"]


SETTINGS_HINT = (
    "the container name and AZURE_STORAGE_CONNECTION_STRING "
    "(or AZURE_STORAGE_ACCOUNT_NAME + AZURE_STORAGE_ACCOUNT_KEY)"
)
# adlfs option <- the environment variable it reads when the option is not given.
_ENV_OPTIONS = {
    "connection_string": "AZURE_STORAGE_CONNECTION_STRING",
    "account_name": "AZURE_STORAGE_ACCOUNT_NAME",
    "account_key": "AZURE_STORAGE_ACCOUNT_KEY",
    "sas_token": "AZURE_STORAGE_SAS_TOKEN",
    "client_id": "AZURE_STORAGE_CLIENT_ID",
    "client_secret": "AZURE_STORAGE_CLIENT_SECRET",
    "tenant_id": "AZURE_STORAGE_TENANT_ID",
}
_SECRET_OPTIONS = ("connection_string", "account_key", "sas_token", "client_secret")
_CREDENTIALS = ("connection_string", "account_key", "sas_token", "client_id", "credential")
CONNECT_TIMEOUT = 3
READ_TIMEOUT = 30
_ONE_ATTEMPT: dict[str, Any] = {
    "retry_total": 0,
    "retry_connect": 0,
    "retry_read": 0,
    "retry_status": 0,
}


class OneAttemptAzureBlobFileSystem(AzureBlobFileSystem):
    """adlfs whose blob service client tries each request once: retries belong to the step
    policy."""

    def __init__(self, *args: Any, account_url: str | None = None, **kwargs: Any) -> None:
        self._endpoint = account_url.rstrip("/") if account_url else None
        super().__init__(*args, **kwargs)

    def do_connect(self) -> None:
        super().do_connect()
        if self._endpoint and self.connection_string is None:
            self.account_url = self._endpoint  # Azurite, a sovereign cloud: not https://NAME...
        if self.connection_string is not None:
            self.service_client = BlobServiceClient.from_connection_string(
                self.connection_string, **_ONE_ATTEMPT
            )
        elif self.account_name is not None and (self.credential or self.account_key):
            self.service_client = BlobServiceClient(
                account_url=self.account_url,
                credential=self.credential or self.account_key,
                **_ONE_ATTEMPT,
            )


class AzureBackend(CommitOnClose):
    """`az://container/prefix` (also `abfs://`) through adlfs."""

    name = "azure"
    settings_hint = SETTINGS_HINT

    @classmethod
    def connect(cls, url: str, options: dict[str, Any]) -> tuple[fsspec.AbstractFileSystem, str]:
        """adlfs with credentials from the environment (or options); short timeouts."""
        opts = dict(options)
        # Read here, not by adlfs, so that they are part of the filesystem's cache key (a
        # changed key must not reuse a client built with the old one) and redacted.
        for option, variable in _ENV_OPTIONS.items():
            if opts.get(option) is None and os.environ.get(variable):
                opts[option] = os.environ[variable]
        if opts.get("anon") is None and os.environ.get("AZURE_STORAGE_ANON"):
            opts["anon"] = os.environ["AZURE_STORAGE_ANON"].lower() not in ("false", "0", "f")
        for option in _SECRET_OPTIONS:
            errors.register_secret(opts.get(option))
        for part in str(opts.get("connection_string") or "").split(";"):
            if part.lower().startswith(("accountkey=", "sharedaccesssignature=")):
                errors.register_secret(part.split("=", 1)[1])
        if not any(opts.get(name) for name in _CREDENTIALS) and opts.get("anon") is not True:
            raise ValueError(f"no Azure credentials: set {SETTINGS_HINT}")
        opts.setdefault("connection_timeout", CONNECT_TIMEOUT)
        opts.setdefault("read_timeout", READ_TIMEOUT)
        fs = OneAttemptAzureBlobFileSystem(**opts)
        return fs, url.split("://", 1)[-1].strip("/")

    def url_for(self, path: str) -> str:
        return f"az://{path.lstrip('/')}"  # adlfs's first protocol is abfs://; both open here

    def check(self, root: str, url: str) -> None:
        """One request for the container: missing, refused or unreachable fails here, in one
        line naming `url` and what to check, before anything is paid."""
        container = root.split("/", 1)[0]
        fs: Any = self.fs

        async def exists() -> bool:
            found: bool = await fs.service_client.get_container_client(container).exists()
            return found

        try:
            found = sync(fs.loop, exists)
        except azure_errors.HttpResponseError as exc:
            if exc.status_code == 403 and not isinstance(
                exc, azure_errors.ClientAuthenticationError
            ):
                return  # e.g. a SAS for blobs only: not allowed to ask, writes tell
            what = f"{url}: cannot use the container {container} (check {self.settings_hint})"
            raise self.translate(exc, what) from exc
        except Exception as exc:
            what = f"{url}: cannot use the container {container} (check {self.settings_hint})"
            raise self.translate(exc, what) from exc
        if not found:
            raise errors.StorageError(
                f"{url}: the container {container} does not exist; check {self.settings_hint}"
            )

    def classify(self, exc: BaseException, what: str) -> errors.ArchiverError | None:
        message = f"{what}: {type(exc).__name__}: {_first_line(exc)}"
        for cause in causes(exc):  # adlfs wraps some SDK errors (RuntimeError, OSError)
            if type(cause).__name__ == "CredentialUnavailableError":
                return errors.ConfigurationError(self.hinted(message))
            if isinstance(cause, azure_errors.ClientAuthenticationError):
                return errors.StorageError(self.hinted(message))
            if isinstance(
                cause, azure_errors.ServiceRequestError | azure_errors.ServiceResponseError
            ):
                return errors.StorageUnavailable(message)
            if isinstance(cause, azure_errors.HttpResponseError):
                status = cause.status_code or 0
                if status >= 500 or status in (408, 429):
                    return errors.StorageUnavailable(message)
                return errors.StorageError(self.hinted(message))
        return None

    def is_absent(self, exc: FileNotFoundError) -> bool:
        cause = exc.__cause__
        code = getattr(cause, "error_code", None)
        return str(code or "") != "ContainerNotFound"


def _first_line(exc: BaseException) -> str:
    """The Azure SDK's messages run over many lines (code, headers, body): the first one."""
    return str(exc).strip().splitlines()[0] if str(exc).strip() else "no detail"


BACKEND = AzureBackend
