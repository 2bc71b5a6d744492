"""Where the archive is: a `Destination` opened once from the user's URL and storage options."""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import fsspec
from fsspec.core import split_protocol

from archiver import errors

from .backends import Backend, backend_for
from .options import StorageOptions

__all__ = ["Destination", "open_destination"]


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
