"""A prediction's input files and logs, staged beside its outputs (Replicate deletes them too).

Every input value that is a file (a top-level value, or an item of a top-level list) is one of:

* a `data:` URI: decoded (within `max_data_uri_bytes`) and staged; its source is "data URI";
* a Files API URL on the API host (`<base>/v1/files/<id>`): its file object is read with the
  token (`ReplicateAPI.get_file`), and its bytes fetched from the signed `urls.download` on the
  API host (or an allow-listed delivery host), checked against the object's sha256;
* a URL on an allow-listed delivery host: fetched without the token, like outputs;
* any other http(s) URL: a `reference`, recorded and never fetched.

A fetched input is staged as `inputs/<key>.<ext>` (`inputs/<key>-<n>.<ext>` in a list) through
the same `Delivery` worker as outputs: an attempt's own temp file, hashed, fsynced, read-only,
renamed. An input Replicate (or the uploader) already removed is `unavailable` with the reason:
the outputs are still archived. A prediction without file inputs costs no I/O here.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .datauri import decode, extension, is_data_uri, media_type, write_atomic
from .delivery import Delivery
from .errors import (
    ArchiverError,
    DownloadInterrupted,
    InvalidOutput,
    InvalidRequest,
    ServiceUnavailable,
    UrlExpired,
    redact,
)
from .iothreads import run_io
from .manifest import INPUTS_DIRECTORY, LOGS_NAME
from .outputs import is_file_url, public_url, safe_name, unique_name, url_basename
from .prediction import Prediction
from .replicate_api import ReplicateAPI
from .retry import RetryPolicy, Sleep, retry_call
from .staging import StagedInput, StagedLogs, identity_of, temp_path

DATA_URI_SOURCE = "data URI"
#: What makes an input's fetch end as `unavailable` rather than fail the prediction's archive.
#: (A local storage error still fails it: the disk is ours to fix.)
GONE = (UrlExpired, InvalidRequest, InvalidOutput, ServiceUnavailable, DownloadInterrupted)


@dataclass(frozen=True)
class InputRef:
    """One file-valued input: where it sits in the input and what it is."""

    key: str
    index: int | None
    value: str
    kind: str  # "data", "files_api", "delivery" or "reference"


def find_input_files(input: dict[str, Any], api_base: str, delivery: Delivery) -> list[InputRef]:
    """Every file-valued input, in input order (pure: no I/O)."""
    found = []
    for key, value in input.items():
        items = list(enumerate(value)) if isinstance(value, list) else [(None, value)]
        for index, item in items:
            if is_file_url(item):
                found.append(InputRef(key, index, item, _kind(item, api_base, delivery)))
    return found


def _kind(value: str, api_base: str, delivery: Delivery) -> str:
    if is_data_uri(value):
        return "data"
    parts, api = urlsplit(value), urlsplit(api_base)
    same_host = (parts.scheme, parts.netloc) == (api.scheme, api.netloc)
    if same_host and parts.path.startswith("/v1/files/") and parts.path.count("/") == 3:
        return "files_api"
    try:
        delivery.allow.check(value)
    except ArchiverError:
        return "reference"
    return "delivery"


@dataclass
class InputStager:
    """Stages the input files of one prediction into `directory/inputs/`."""

    api: ReplicateAPI
    delivery: Delivery
    directory: Path
    max_data_uri_bytes: int
    chunk_size: int
    policy: RetryPolicy
    sleep: Sleep = asyncio.sleep

    async def stage(self, refs: list[InputRef]) -> list[StagedInput]:
        """Stage each of `refs` (from `find_input_files`), at once."""
        await run_io((self.directory / INPUTS_DIRECTORY).mkdir, parents=True, exist_ok=True)
        taken: set[str] = set()
        names: list[str] = []
        for ref in refs:
            stem = ref.key if ref.index is None else f"{ref.key}-{ref.index}"
            name = unique_name(safe_name(stem, fallback=f"input-{len(names)}"), taken)
            taken.add(name.lower())
            names.append(name)
        return list(
            await asyncio.gather(*(self._one(r, n) for r, n in zip(refs, names, strict=True)))
        )

    async def _one(self, ref: InputRef, stem: str) -> StagedInput:
        source = DATA_URI_SOURCE if ref.kind == "data" else public_url(ref.value)
        base = StagedInput(key=ref.key, index=ref.index, source=source, status="reference")
        if ref.kind == "reference":
            return base
        try:
            if ref.kind == "data":
                return await run_io(self._inline, ref, stem, base)
            url, ext, sha256 = ref.value, _url_extension(ref.value), None
            if ref.kind == "files_api":
                url, ext, sha256 = await self._files_api_download(ref.value)
            return await self._fetch(url, f"{stem}{ext}", base, sha256)
        except GONE as exc:
            return base.model_copy(update={"status": "unavailable", "reason": _reason(exc)})

    def _inline(self, ref: InputRef, stem: str, base: StagedInput) -> StagedInput:
        what = f"input {ref.key}" + ("" if ref.index is None else f"[{ref.index}]")
        uri = decode(ref.value, max_bytes=self.max_data_uri_bytes, what=what)
        name = f"{INPUTS_DIRECTORY}/{stem}{extension(media_type(ref.value)[0])}"
        write_atomic(uri.data, self.directory / name)
        stat = (self.directory / name).stat()
        return base.model_copy(
            update={
                "status": "archived",
                "name": name,
                "size": len(uri.data),
                "sha256": uri.sha256,
                "content_type": uri.content_type,
                "identity": identity_of(stat),
            }
        )

    async def _files_api_download(self, url: str) -> tuple[str, str, str | None]:
        """(signed download URL, extension, sha256) from the file object, read with the token."""
        file = await self.api.get_file(url)
        download = (file.get("urls") or {}).get("download")
        if not isinstance(download, str) or not is_file_url(download):
            raise InvalidRequest(f"{public_url(url)}: the Files API gave no download URL")
        if urlsplit(download).netloc != urlsplit(str(self.api.http.base_url)).netloc:
            try:
                self.delivery.allow.check(download)
            except ArchiverError as exc:
                raise InvalidRequest(f"{public_url(url)}: download URL refused: {exc}") from exc
        ext = extension(str(file.get("content_type") or "")) or _url_extension(
            str(file.get("name") or "")
        )
        sha256 = (file.get("checksums") or {}).get("sha256")
        return download, ext, sha256 if isinstance(sha256, str) else None

    async def _fetch(
        self, url: str, filename: str, base: StagedInput, sha256: str | None
    ) -> StagedInput:
        folder = self.directory / INPUTS_DIRECTORY

        async def attempt() -> StagedInput:
            fetched = await self.delivery.fetch(
                url,
                temp_path(folder, filename),
                folder / filename,
                name=f"input {base.key}",
                chunk_size=self.chunk_size,
            )
            if sha256 is not None and fetched.sha256 != sha256.lower():
                raise InvalidOutput(f"input {base.key}: sha256 differs from the Files API's")
            return base.model_copy(
                update={
                    "status": "archived",
                    "name": f"{INPUTS_DIRECTORY}/{filename}",
                    "size": fetched.size,
                    "sha256": fetched.sha256,
                    "content_type": fetched.content_type,
                    "identity": fetched.identity,
                }
            )

        return await retry_call(self.policy, attempt, sleep=self.sleep)


def _reason(exc: BaseException) -> str:
    """One line for the manifest: redacted, every URL in it without its query (signatures)."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return _QUERY.sub(r"\1", redact(text))


_QUERY = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^\s?#]+)[?#]\S*", re.IGNORECASE)


def _url_extension(url: str) -> str:
    """`.png` of `.../out.png`; "" when the name has no short extension."""
    name = url_basename(url) if "://" in url else url
    _, dot, ext = name.rpartition(".")
    return f".{ext.lower()}" if dot and 0 < len(ext) <= 8 and ext.isalnum() else ""


def stage_logs(directory: Path, prediction: Prediction) -> StagedLogs | None:
    """Stage the final `logs` as `logs.txt` (written like an inline output); None if empty."""
    if not prediction.logs:
        return None
    data = prediction.logs.encode("utf-8")
    path = directory / LOGS_NAME
    write_atomic(data, path)
    return StagedLogs(
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        identity=identity_of(path.stat()),
    )
