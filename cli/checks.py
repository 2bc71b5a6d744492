"""Checks a CLI command makes before anything starts (no network), and the disk-full message.

Each raises `ConfigurationError` with one line naming the problem and the value.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

_DEST: list[str] = []  # the destination of the running command, for the disk-full message
RESOLVE_SECONDS = 10.0  # every host named by a setting resolves within this, all together
# Destination schemes whose netloc is a host name (s3://, gs://, memory:// name a bucket).
HOST_SCHEMES = frozenset({"http", "https", "ftp", "ftps", "sftp", "ssh", "smb", "webdav", "dav"})


def disk_full(exc: BaseException) -> str | None:
    """The path (or destination) an ENOSPC in `exc`'s chain was writing, else None."""
    import errno

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno == errno.ENOSPC:
            return str(current.filename or (_DEST[-1] if _DEST else "the archive"))
        if "No space left on device" in str(current) and _DEST:
            return _DEST[-1]
        current = current.__cause__ or current.__context__
    return None


def local_dest(dest: str | None) -> None:
    """No credentials in a destination URL, and a local destination must exist or be
    creatable: checked before anything starts."""
    from archiver.errors import ConfigurationError
    from archiver.runtime import check_store_urls
    from archiver.settings import Settings

    settings = Settings()
    check_store_urls(settings, dest, dest_setting="--dest")
    target = dest or settings.dest
    _DEST.append(target)
    if "://" in target and not target.startswith("file://"):
        return
    path = Path(target.removeprefix("file://")).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigurationError(f"cannot create --dest {target}: {exc.strerror or exc}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigurationError(f"cannot write to --dest {target}: permission denied")


def hosts(dest: str | None, resolve: Callable[..., Any] | None = None) -> None:
    """Every host a run will reach by name resolves, within `RESOLVE_SECONDS` in all, else one
    line naming the host and the setting that chose it: REPLICATE_BASE_URL, --dest (or
    ARCHIVER_DEST), the storage option endpoint_url, AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL.
    (PREFECT_API_URL gets its own bounded /health check in `cli.prefect_api`.)"""
    from urllib.parse import urlsplit

    from archiver.errors import ConfigurationError
    from archiver.outputs import public_url
    from archiver.settings import Settings
    from archiver.storage import StorageOptions

    settings = Settings()
    target = dest or settings.dest
    named = [("REPLICATE_BASE_URL", settings.base_url)]
    scheme = urlsplit(target).scheme.lower() if "://" in target else ""
    if scheme in HOST_SCHEMES:
        named.append(("--dest" if dest else "ARCHIVER_DEST", target))
    options = StorageOptions.parse(settings.storage_options)
    endpoint = options.get("endpoint_url") or (options.get("client_kwargs") or {}).get(
        "endpoint_url"
    )
    if endpoint:
        named.append(("storage option endpoint_url", str(endpoint)))
    elif scheme in ("s3", "s3a"):
        for variable in ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"):
            if os.environ.get(variable):
                named.append((variable, os.environ[variable]))
                break
    resolve = resolve or socket.getaddrinfo
    deadline = time.monotonic() + RESOLVE_SECONDS
    for setting, url in named:
        host = urlsplit(url).hostname
        if not host or _is_ip(host):
            continue
        problem = _resolve_problem(resolve, host, max(0.0, deadline - time.monotonic()))
        if problem is not None:
            raise ConfigurationError(
                f"host {host} of {setting} ({public_url(url)}) {problem}; check {setting}"
            )


def _is_ip(host: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _resolve_problem(resolve: Callable[..., Any], host: str, timeout: float) -> str | None:
    """Why `host` does not resolve (its lookup runs on a daemon thread, bounded), or None."""
    outcome: dict[str, str] = {}

    def lookup() -> None:
        try:
            resolve(host, None)
        except OSError as exc:
            outcome["error"] = f"does not resolve ({exc.strerror or exc})"

    thread = threading.Thread(target=lookup, name=f"resolve {host}", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        return f"did not resolve within {RESOLVE_SECONDS:g} s"
    return outcome.get("error")


def token() -> None:
    """A missing token is reported here, not as a 401 after Prefect started."""
    from archiver.errors import ConfigurationError
    from archiver.settings import Settings

    settings = Settings()
    if settings.api_token is None and not settings.token_secret_block:
        raise ConfigurationError(
            "REPLICATE_API_TOKEN is not set: export your Replicate API token "
            "(https://replicate.com/account/api-tokens)"
        )


def deadline(text: str | None) -> float | None:
    """--deadline SECONDS: a number from 1 to 86400, or a one-line error naming the value."""
    import math

    from archiver.errors import ConfigurationError

    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 1 <= value <= 86400:
        raise ConfigurationError(f"--deadline must be seconds from 1 to 86400, got {text!r}")
    return value


def on_data_removed(value: str) -> None:
    from archiver.errors import ConfigurationError

    if value not in ("fail", "rerun"):
        raise ConfigurationError(f"--on-data-removed must be fail or rerun, got {value!r}")


def webhook(url: str | None) -> str | None:
    """--webhook URL: an http(s) URL without spaces or credentials, or a one-line error."""
    from urllib.parse import urlsplit

    from archiver.errors import ConfigurationError

    if url is None:
        return None
    parts = urlsplit(url)
    # As the flow's parameter schema says (flows/archive_prediction.py: WebhookParam).
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in url):
        raise ConfigurationError(f"--webhook must be an http(s) URL, got {url!r}")
    if len(url) > 2048:
        raise ConfigurationError(f"--webhook is {len(url)} characters long; at most 2048")
    if parts.username or parts.password:
        raise ConfigurationError("--webhook must not carry credentials (user:password@)")
    return url
