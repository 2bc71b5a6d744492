"""Where the archive is: a `Destination` opened once from the user's URL and storage options."""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import fsspec
from fsspec.core import split_protocol, url_to_fs
from fsspec.implementations.local import LocalFileSystem

from archiver import errors

from .options import StorageOptions

__all__ = [
    "Destination",
    "is_memory",
    "is_s3",
    "mask_credentials",
    "open_destination",
    "refuse_credentials",
]

# user[:password]@ after a `scheme://` (docs/safety.md, "Where credentials go"): an authority
# holding "@", or a colon not followed by a port whose text runs on to an "@" (an AWS secret
# may hold "/": `s3://AKIA..:ab/cd@bucket`). Chained URLs (`simplecache::s3://...`) included.
_USERINFO = re.compile(
    r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://)"
    r"(?P<userinfo>[^/?#@\s]*@|[^/?#@\s:]*:(?!\d*(?:[/?#]|$))[^@\s]*@)"
)
WHERE_CREDENTIALS_GO = (
    "credentials go in the environment (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE), "
    "a Prefect AwsCredentials block (ARCHIVER_AWS_CREDENTIALS_BLOCK), or secret storage options "
    "(--storage-option secret=..., ARCHIVER_STORAGE_OPTIONS), never in a URL; see docs/safety.md"
)

# Bounded client behaviour against a store that is down: an outage must surface as
# StorageUnavailable in seconds, and the caller's own retries take it from there.
S3_CONNECT_TIMEOUT = 3
S3_READ_TIMEOUT = 30
# One attempt each: store requests are retried by the step policy only (archiver/retry.py).
S3_BOTOCORE_ATTEMPTS = 1  # total attempts per request inside botocore ("standard" mode)
S3_FS_RETRIES = 1  # attempts per request in s3fs's own retry loop, around botocore's


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
        if is_memory(self.fs):
            return f"memory://{path.lstrip('/')}"
        return str(self.fs.unstrip_protocol(path))

    @property
    def is_local(self) -> bool:
        """Whether the destination is the local filesystem (paths are OS paths)."""
        return isinstance(self.fs, LocalFileSystem)


def refuse_credentials(url: str | None, *, setting: str = "destination") -> None:
    """Raise ConfigurationError when a storage URL carries user[:password]@: one line naming
    `setting` (--dest, ARCHIVER_DEST...), the URL with its userinfo masked (`s3://***@b/p`)
    and where credentials go. Call it before anything is paid; it prints no secret."""
    text = str(url or "")
    if _USERINFO.search(text) is None:
        return
    masked = mask_credentials(text)
    raise errors.ConfigurationError(
        f"{setting} {masked} carries credentials (user:password@); refused before anything "
        f"started: {WHERE_CREDENTIALS_GO}"
    )


def mask_credentials(text: str) -> str:
    """`text` with the userinfo of every URL in it replaced by `***` (`s3://***@bucket/p`)."""
    return _USERINFO.sub(lambda m: f"{m.group('head')}***@", text)


def open_destination(
    url: str, storage_options: StorageOptions | Mapping[str, Any] | None = None
) -> Destination:
    """Open `url` as a Destination, with fsspec storage options (parsed unless already).

    Local paths are made absolute with "~" expanded. For S3 the standard AWS chain applies
    (AWS_ACCESS_KEY_ID/SECRET, AWS_PROFILE, AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL, all
    honoured by botocore itself); storage options override it: `endpoint_url`, `key`, `secret`,
    `region`, `profile`, `client_kwargs`, `config_kwargs`, and the client limits
    `connect_timeout`, `read_timeout`, `max_attempts` (botocore) and `retries` (s3fs).
    """
    text = str(url or "").strip()
    if not text:
        raise errors.ConfigurationError("no destination URL given")
    refuse_credentials(text)
    options = StorageOptions.parse(storage_options).to_dict()
    protocol, rest = split_protocol(text)
    fs_retries: int | None = None
    if protocol in (None, "file", "local"):
        text = os.path.abspath(os.path.expanduser(rest))
    elif protocol in ("s3", "s3a"):
        options, fs_retries = _s3_options(options)
    try:
        fs, root = url_to_fs(text, **options)
    except (ImportError, ValueError, TypeError, KeyError) as exc:
        raise errors.ConfigurationError(f"cannot open destination {text}: {exc}") from exc
    if fs_retries is not None:
        fs.retries = fs_retries  # s3fs reads this attribute per call; not a constructor option
    root = root.rstrip("/") or root
    blank = Destination(fs=fs, root=root, url="")
    return Destination(fs=fs, root=root, url=blank.url_for(root))


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


def _protocols(fs: fsspec.AbstractFileSystem) -> tuple[str, ...]:
    """The protocol names of a filesystem, as a tuple."""
    protocol = fs.protocol
    return (protocol,) if isinstance(protocol, str) else tuple(protocol)


def is_s3(fs: fsspec.AbstractFileSystem) -> bool:
    """Whether `fs` is s3fs (checked by protocol, so s3fs is only imported when used)."""
    return "s3" in _protocols(fs) and hasattr(fs, "call_s3")


def is_memory(fs: fsspec.AbstractFileSystem) -> bool:
    """Whether `fs` is fsspec's in-process memory filesystem."""
    return _protocols(fs)[0] == "memory"
