"""Local `@file` inputs the way Replicate asks: inline up to 256 KB, else the Files API.

`local_input(path)` checks and measures the file before anything starts (one line naming the
path when it is missing, unreadable or over 100 MiB): a small one becomes a data URI, a larger
one a `LocalFile` (path, size, sha256, type). `resolve_uploads` then turns each `LocalFile` into
the URL of an upload (`ReplicateAPI.upload_file`, `POST /v1/files`), so flow parameters hold
URLs, never file bytes, and returns `{URL: sha256}` for the cache key, which hashes the content
(`prediction.content_keyed`). When the same content is archived already in this dest the
upload is skipped: the input gets the URL the archived prediction was made with (the cache
key is the same; nothing is created or fetched from it).
"""

from __future__ import annotations

import base64
import hashlib
import mimetypes
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ArchiverError, AuthenticationError, ConfigurationError
from .iothreads import run_io
from .prediction import ModelRef, content_keyed, request_key

if TYPE_CHECKING:
    from .runtime import Runtime

INLINE_LIMIT = 256 * 1024  # "Use a data URL when you have a small file <= 256kb"
MAX_UPLOAD = 100 * 2**20  # the Files API's limit


@dataclass(frozen=True)
class LocalFile:
    """A local file to upload: measured once, before anything starts."""

    path: Path
    size: int
    sha256: str
    content_type: str

    @property
    def placeholder(self) -> str:
        """Stands for the file in the cache key until it has a URL (hashed as its content)."""
        return f"local-file:sha256:{self.sha256}"


def local_input(path: Path) -> str | LocalFile:
    """A data URI for a file of at most 256 KB, a `LocalFile` to upload for a larger one."""
    try:
        size = path.stat().st_size
        if size > MAX_UPLOAD:
            raise ConfigurationError(
                f"input file {path}: {size} bytes is over the Files API's 100 MiB limit"
            )
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        if size <= INLINE_LIMIT:
            data = path.read_bytes()
            return f"data:{content_type};base64,{base64.b64encode(data).decode()}"
        digest = hashlib.sha256()
        with path.open("rb") as source:
            while chunk := source.read(2**20):
                digest.update(chunk)
    except OSError as exc:
        raise ConfigurationError(f"cannot read input file {path}: {exc.strerror}") from exc
    return LocalFile(path, size, digest.hexdigest(), content_type)


def has_uploads(input: dict[str, Any]) -> bool:
    return any(isinstance(value, LocalFile) for value in input.values())


async def resolve_uploads(
    runtime: Runtime, model: ModelRef, input: dict[str, Any], *, refresh: bool = False
) -> tuple[dict[str, Any], dict[str, str]]:
    """(`input` with each `LocalFile` replaced by a Files API URL, `{URL: sha256}`)."""
    local = {key: value for key, value in input.items() if isinstance(value, LocalFile)}
    if not local:
        return input, {}
    if not refresh:
        reused = await run_io(_archived_urls, runtime, model, input, local)
        if reused is not None:
            return {**input, **reused}, {reused[key]: local[key].sha256 for key in local}
    urls = {}
    for key, file in local.items():
        try:
            uploaded = await runtime.api.upload_file(
                file.path, content_type=file.content_type, metadata={"sha256": file.sha256}
            )
            url = (uploaded.get("urls") or {}).get("get")
            if not isinstance(url, str):
                raise ConfigurationError("the answer holds no urls.get")
        except AuthenticationError:
            raise
        except ArchiverError as exc:
            raise ConfigurationError(f"input file {file.path}: upload refused: {exc}") from exc
        urls[key] = url
    return {**input, **urls}, {urls[key]: local[key].sha256 for key in local}


def _archived_urls(
    runtime: Runtime, model: ModelRef, input: dict[str, Any], local: dict[str, LocalFile]
) -> dict[str, str] | None:
    """The URLs an archived prediction of this very content was made with, if there is one."""
    placeholders = {key: file.placeholder for key, file in local.items()}
    digests = {file.placeholder: file.sha256 for file in local.values()}
    key = request_key(model, content_keyed({**input, **placeholders}, digests))
    record = runtime.cache.get(key)
    manifest = record and runtime.cache.archived_manifest(record, runtime.dest)
    if not manifest:
        return None
    urls = {name: manifest.input.get(name) for name in local}
    if not all(isinstance(url, str) for url in urls.values()):
        return None
    return {name: str(url) for name, url in urls.items()}
