"""Where the archive is: a `Destination` opened once from the user's URL and storage options."""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import fsspec
from fsspec.core import split_protocol

from archiver import errors

from .backends import Backend, backend_for
from .options import StorageOptions

__all__ = ["Destination", "mask_credentials", "open_destination", "refuse_credentials"]

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


@dataclass(frozen=True)
class Destination:
    """An opened archive location: its backend (and its filesystem), the root path inside it,
    and its display URL."""

    fs: fsspec.AbstractFileSystem
    root: str
    url: str
    backend: Backend

    def path(self, *parts: str) -> str:
        """The fs path of `parts` under the root, joined with "/"; ".." is refused."""
        segments = [s for part in parts for s in str(part).split("/") if s not in ("", ".")]
        if ".." in segments:
            raise ValueError(f"path escapes the destination: {'/'.join(parts)!r}")
        return posixpath.join(self.root, *segments) if segments else self.root

    def url_for(self, path: str) -> str:
        """The full URL of an fs path, for display and manifests."""
        return self.backend.url_for(path)

    @property
    def is_local(self) -> bool:
        """Whether the destination is the local filesystem (paths are OS paths)."""
        return self.backend.is_local

    def signed_links(self, urls: Iterable[str], seconds: int) -> dict[str, str]:
        """`{file url: signed https url}` valid for `seconds`, for the files of `urls` under
        this destination; {} when off (0) or the store cannot sign (S3 presigned URLs, GCS
        signed URLs, Azure SAS: the backend decides).

        Best effort: a file that cannot be signed gets no link (a report still shows its
        location).
        """
        if seconds <= 0:
            return {}
        links = {}
        prefix = self.url.rstrip("/") + "/"
        for url in urls:
            if not url.startswith(prefix):
                continue
            try:
                link = self.backend.sign(self.path(url.removeprefix(prefix)), seconds)
            except Exception:  # noqa: BLE001 - a link is optional; the location is always shown
                continue
            if link is None:
                return {}  # this store has no signed links
            links[url] = link
        return links


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

    The backend is chosen here, once, from the URL's protocol (`backends.backend_for`); it
    builds the filesystem from the options (see each backend's `connect`).
    """
    text = str(url or "").strip()
    if not text:
        raise errors.ConfigurationError("no destination URL given")
    refuse_credentials(text)
    options = StorageOptions.parse(storage_options).to_dict()
    protocol, _ = split_protocol(text)
    kind = backend_for(protocol)
    try:
        fs, root = kind.connect(text, options)
    except (ImportError, ValueError, TypeError, KeyError) as exc:
        raise errors.ConfigurationError(f"cannot open destination {text}: {exc}") from exc
    backend = kind(fs)
    root = root.rstrip("/") or root
    return Destination(fs=fs, root=root, url=backend.url_for(root), backend=backend)
