"""Checks a CLI command makes before anything starts (no network), and the disk-full message.

Each raises `ConfigurationError` with one line naming the problem and the value.
"""

from __future__ import annotations

import os
from pathlib import Path

_DEST: list[str] = []  # the destination of the running command, for the disk-full message


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
    if parts.scheme not in ("http", "https") or not parts.hostname or " " in url:
        raise ConfigurationError(f"--webhook must be an http(s) URL, got {url!r}")
    if parts.username or parts.password:
        raise ConfigurationError("--webhook must not carry credentials (user:password@)")
    return url
