"""Download every output file of a succeeded prediction into local staging, at once.

Each file streams in chunks (sha256 and size computed on the way, Content-Length checked) into
a temp file of that attempt's own (`<staging>/<prediction id>/.<name>.tmp-<random>`, created
exclusively: no attempt ever opens a path another one writes), which is fsynced, made read-only
and renamed to `<name>` when whole. A staged file is therefore immutable: a later attempt only
ever replaces the name, never the bytes behind it. `staged.json` (written atomically) records the
whole set with every file's size and sha256, and an earlier staging is reused only when every
file still hashes to what was recorded; otherwise it is discarded and downloaded again. A URL the delivery host refuses (401/403/404/410) or a stream that breaks re-fetches
the prediction for freshly signed URLs (one re-fetch shared by all files that need it) and tries
that file again. Delivery requests never carry the API token, and only allow-listed hosts are
contacted. `data:` URI outputs are decoded (within a size bound) and staged without a request.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import httpx
from pydantic import BaseModel

from .datauri import DataUri, decode, is_data_uri, write_atomic
from .errors import (
    DownloadInterrupted,
    OutputsRemoved,
    ServiceUnavailable,
    UrlExpired,
    from_httpx,
)
from .iothreads import run_io
from .outputs import HostAllowList, OutputFile, file_outputs, public_url, url_at
from .prediction import Prediction
from .progress import NullProgress, ProgressSink
from .replicate_api import ReplicateAPI
from .retry import RetryPolicy, Sleep, given_up, retry_call, should_retry

EXPIRED_STATUSES = frozenset({401, 403, 404, 410})
STAGED_MARKER = "staged.json"
MAX_REDIRECTS = 5


class StagedFile(BaseModel):
    """A whole output file in local staging, with what we measured while receiving it."""

    name: str
    pointer: str
    size: int
    sha256: str
    content_type: str | None = None
    source_url: str  # without its query string (signatures expire and are not for keeping)
    # The staged file as it was hashed: (st_dev, st_ino, st_size, st_mtime_ns), taken from the
    # descriptor the bytes were written (or re-read) and hashed through, after its fsync. The
    # archive proves a hard link holds exactly these bytes by this identity (see `archive`).
    # Not kept in staged.json: a reused staging is re-hashed, which measures it afresh.
    identity: tuple[int, int, int, int] | None = None


class Staged(BaseModel):
    """All output files of one prediction, staged locally and ready to archive."""

    prediction: Prediction
    directory: str
    files: list[StagedFile]
    refetches: int = 0

    def path_of(self, staged: StagedFile) -> Path:
        return Path(self.directory) / staged.name


@dataclass
class DownloadOptions:
    """How hard to try; from settings."""

    concurrency: int = 4
    attempts: int = 5
    chunk_size: int = 2**20
    backoff: float = 0.5
    progress: ProgressSink = field(default_factory=NullProgress)
    max_data_uri_bytes: int = 8 * 2**20
    policy: RetryPolicy | None = None  # default: `attempts` tries, `backoff` doubling
    sleep: Sleep = asyncio.sleep

    def retry_policy(self) -> RetryPolicy:
        return self.policy or RetryPolicy(self.attempts, self.backoff, 30.0)


def strip_query(url: str) -> str:
    """The URL as recorded: without userinfo, query string or fragment (see `public_url`)."""
    return public_url(url)


def staging_directory(staging_root: Path, prediction_id: str) -> Path:
    return staging_root / prediction_id


def load_staged(staging_root: Path, prediction: Prediction) -> Staged | None:
    """A complete earlier download of this prediction, if every file still has the size and
    sha256 recorded while it was downloaded. A staging that fails the check is discarded."""
    directory = staging_directory(staging_root, prediction.id)
    try:
        data = json.loads((directory / STAGED_MARKER).read_text())
        staged = Staged.model_validate({**data, "prediction": prediction})
    except (OSError, ValueError):
        return None
    files = []
    for item in staged.files:
        identity = _intact(staged.path_of(item), item)
        if identity is None:
            discard_staging(staging_root, prediction.id)
            return None
        files.append(item.model_copy(update={"identity": identity}))
    return staged.model_copy(update={"files": files})


def _intact(path: Path, item: StagedFile) -> tuple[int, int, int, int] | None:
    """The identity of the file at `path` if it has exactly the size and sha256 measured while
    it was received (hashed through one descriptor, unchanged while it was read); else None."""
    try:
        if not path.is_file() or path.stat().st_size != item.size:
            return None
        digest = hashlib.sha256()
        with path.open("rb") as source:
            before = identity_of(os.fstat(source.fileno()))
            while chunk := source.read(2**20):
                digest.update(chunk)
            if identity_of(os.fstat(source.fileno())) != before:
                return None
    except OSError:
        return None
    return before if digest.hexdigest() == item.sha256 else None


def identity_of(stat: os.stat_result) -> tuple[int, int, int, int]:
    """What tells one file's bytes from any other's, short of reading them: the inode (device
    and number) and its size and modification time (every write changes them)."""
    return (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)


def _write_marker(directory: Path, staged: Staged) -> None:
    """Write `staged.json` all or nothing: a temp file of our own, fsynced, renamed."""
    marker = staged.model_dump(
        mode="json", exclude={"prediction": True, "files": {"__all__": {"identity"}}}
    )
    temp = _temp_path(directory, STAGED_MARKER)
    try:
        with temp.open("x") as out:
            out.write(json.dumps(marker, indent=1))
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, directory / STAGED_MARKER)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def _temp_path(directory: Path, name: str) -> Path:
    """A hidden name beside `name` that no other attempt, thread or process can share."""
    return directory / f".{name}.tmp-{uuid.uuid4().hex}"


def discard_staging(staging_root: Path, prediction_id: str) -> None:
    """Remove a prediction's staging once its manifest is written."""
    shutil.rmtree(staging_directory(staging_root, prediction_id), ignore_errors=True)


async def download_outputs(
    prediction: Prediction,
    *,
    api: ReplicateAPI,
    http: httpx.AsyncClient,
    staging_root: Path,
    allow: HostAllowList,
    options: DownloadOptions | None = None,
) -> Staged:
    """Stage every output file of `prediction` locally; re-fetch URLs that expire."""
    options = options or DownloadOptions()
    # File-system calls run in threads: hundreds of predictions share one event loop.
    existing = await run_io(load_staged, staging_root, prediction)
    if existing is not None:
        return existing
    refresher = _Refresher(api, prediction, allow)
    if not prediction.outputs_available:
        await refresher.refresh(0)  # raises OutputsRemoved when they are gone
    files = file_outputs(refresher.current.output)
    inline: dict[str, DataUri] = {}  # data: URIs, decoded: staged from memory, never fetched
    for item in files:  # all of them, before a single request is made
        if is_data_uri(item.url):
            what = f"output {item.pointer or '/'} ({item.name})"
            inline[item.pointer] = decode(item.url, max_bytes=options.max_data_uri_bytes, what=what)
        else:
            allow.check(item.url)
    directory = staging_directory(staging_root, prediction.id)
    await run_io(directory.mkdir, parents=True, exist_ok=True)
    limit = asyncio.Semaphore(options.concurrency)

    async def one(item: OutputFile) -> StagedFile:
        if item.pointer in inline:
            uri = inline[item.pointer]
            return await run_io(_stage_inline, item, uri, directory, options.progress)
        async with limit:
            return await _download_file(item, directory, http, refresher, options)

    staged_files = list(await asyncio.gather(*(one(item) for item in files)))
    staged = Staged(
        prediction=refresher.current,
        directory=str(directory),
        files=staged_files,
        refetches=refresher.refetches,
    )
    await run_io(_write_marker, directory, staged)
    return staged


class _Refresher:
    """Re-fetches the prediction once for every group of files that found their URLs dead."""

    def __init__(self, api: ReplicateAPI, prediction: Prediction, allow: HostAllowList) -> None:
        self.api = api
        self.current = prediction
        self.allow = allow
        self.generation = 0
        self.refetches = 0
        self._lock = asyncio.Lock()

    async def refresh(self, seen: int) -> int:
        """Re-fetch unless another file already did since generation `seen`."""
        async with self._lock:
            if self.generation == seen:
                self.current = await self.api.get(self.current.id)
                self.generation += 1
                self.refetches += 1
            if not self.current.outputs_available:
                raise OutputsRemoved(
                    f"the outputs of prediction {self.current.id} were removed by Replicate "
                    f"(status {self.current.status}, data_removed={self.current.data_removed}) "
                    "before they were archived; rerun with --on-data-removed rerun to pay for "
                    "a new prediction"
                )
            return self.generation

    async def fresh_url(self, item: OutputFile, seen: int) -> tuple[str, int]:
        generation = await self.refresh(seen)
        url = url_at(self.current.output, item.pointer)
        if url is None:
            raise OutputsRemoved(f"output {item.pointer or '/'} of {self.current.id} is gone")
        self.allow.check(url)
        return url, generation


async def _download_file(
    item: OutputFile,
    directory: Path,
    http: httpx.AsyncClient,
    refresher: _Refresher,
    options: DownloadOptions,
) -> StagedFile:
    """One file, with the `download_file` policy: a refused URL or a broken stream re-fetches
    the prediction (fresh URLs) before the next try; a 5xx only waits."""
    policy = options.retry_policy()
    url, generation, tries = item.url, 0, 0

    async def attempt() -> StagedFile:
        nonlocal tries
        tries += 1
        return await _stream_to_file(item, url, directory, http, refresher.allow, options)

    def retry_if(exc: BaseException) -> bool:
        return isinstance(exc, UrlExpired) or should_retry(exc)

    async def before_retry(exc: BaseException) -> None:
        nonlocal url, generation
        if isinstance(exc, UrlExpired | DownloadInterrupted):
            url, generation = await refresher.fresh_url(item, generation)

    try:
        return await retry_call(
            policy, attempt, sleep=options.sleep, retry_if=retry_if, before_retry=before_retry
        )
    except (UrlExpired, DownloadInterrupted, ServiceUnavailable) as exc:
        if tries < policy.attempts:
            raise  # not the download giving up: the re-fetch did, with its own error
        raise given_up(
            DownloadInterrupted(f"{item.name}: gave up after {tries} attempts: {exc}")
        ) from exc


async def _stream_to_file(
    item: OutputFile,
    url: str,
    directory: Path,
    http: httpx.AsyncClient,
    allow: HostAllowList,
    options: DownloadOptions,
) -> StagedFile:
    part = _temp_path(directory, item.name)  # this attempt's own: never shared, never reused
    try:
        for _ in range(MAX_REDIRECTS + 1):
            async with http.stream("GET", url) as response:
                if response.is_redirect and "location" in response.headers:
                    url = str(response.url.join(response.headers["location"]))
                    allow.check(url)
                    continue
                _check_status(item, response)
                size, digest, identity = await _receive(response, part, options, name=item.name)
                content_type = response.headers.get("content-type")
                break
        else:
            raise ServiceUnavailable(f"{item.name}: more than {MAX_REDIRECTS} redirects")
    except httpx.HTTPError as exc:
        part.unlink(missing_ok=True)
        if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError | httpx.ReadTimeout):
            raise DownloadInterrupted(f"{item.name}: stream broke off: {exc}") from exc
        raise from_httpx(exc, f"download {item.name}") from exc
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    try:  # read-only from here on: nothing may change bytes the archive may hard-link
        os.chmod(part, 0o444)
        os.replace(part, directory / item.name)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    options.progress.file_done(item.name)
    return StagedFile(
        name=item.name,
        pointer=item.pointer,
        size=size,
        sha256=digest,
        content_type=content_type,
        source_url=strip_query(url),
        identity=identity,
    )


def _check_status(item: OutputFile, response: httpx.Response) -> None:
    status = response.status_code
    if status in EXPIRED_STATUSES:
        raise UrlExpired(f"{item.name}: delivery answered {status} (URL expired or revoked)")
    if status != 200:
        raise ServiceUnavailable(f"{item.name}: delivery answered {status}")


async def _receive(
    response: httpx.Response, part: Path, options: DownloadOptions, *, name: str | None = None
) -> tuple[int, str, tuple[int, int, int, int]]:
    """Write the body to `part` (a new file: it must not exist), hashing as it goes; fsync it;
    check it against Content-Length. `name` is the file's name for progress reports. Returns
    the size, the sha256 and the identity of the file written (see `StagedFile.identity`)."""
    declared = response.headers.get("content-length")
    encoded = response.headers.get("content-encoding", "identity") != "identity"
    expected = int(declared) if declared and declared.isdigit() and not encoded else None
    options.progress.file_started(name or part.name, expected)
    digest = hashlib.sha256()
    size = 0
    # Writing and hashing happen in worker threads of their own, about `chunk_size` bytes at a
    # time, so the event loop keeps serving every other transfer (both release the GIL on large
    # buffers) and the data path never queues behind the fsyncs of cache and manifest writes.
    # The file is created by the first write and fsynced by the last: a file of up to
    # `chunk_size` bytes costs one trip to a writer thread.
    loop = asyncio.get_running_loop()
    chunks = response.aiter_bytes() if encoded else response.aiter_raw()
    sink = _Sink(part)
    try:
        batch: list[bytes] = []
        pending = 0
        async for chunk in chunks:
            batch.append(chunk)
            pending += len(chunk)
            if pending >= options.chunk_size:
                await loop.run_in_executor(_WRITERS, sink.write, digest, batch)
                size += pending
                options.progress.bytes_done(pending)
                batch, pending = [], 0
        identity = await loop.run_in_executor(_WRITERS, sink.finish, digest, batch)
        size += pending
        if pending:
            options.progress.bytes_done(pending)
    finally:
        sink.close()
    if expected is not None and size != expected:
        raise DownloadInterrupted(f"{part.name}: received {size} of {expected} bytes")
    return size, digest.hexdigest(), identity


# One writer per delivery stream a runtime opens at once (`runtime.DELIVERY_STREAMS`): a file's
# final fsync never waits for a free thread behind another file's.
_WRITERS = ThreadPoolExecutor(max_workers=16, thread_name_prefix="archiver-download")


class _Sink:
    """A download's temp file, created exclusively (it must not exist) by the first write."""

    def __init__(self, part: Path) -> None:
        self.part = part
        self.file: BinaryIO | None = None

    def write(self, digest: Any, chunks: list[bytes]) -> None:
        if self.file is None:
            self.file = self.part.open("xb")
        for chunk in chunks:
            self.file.write(chunk)
            digest.update(chunk)

    def finish(self, digest: Any, chunks: list[bytes]) -> tuple[int, int, int, int]:
        """Write the last chunks, flush and fsync; the identity of the file as written."""
        self.write(digest, chunks)
        assert self.file is not None
        self.file.flush()
        os.fsync(self.file.fileno())
        return identity_of(os.fstat(self.file.fileno()))

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


def _stage_inline(
    item: OutputFile, uri: DataUri, directory: Path, progress: ProgressSink
) -> StagedFile:
    """Stage a decoded `data:` URI output as a whole file (its source: the header only)."""
    progress.file_started(item.name, len(uri.data))
    write_atomic(uri.data, directory / item.name)
    progress.bytes_done(len(uri.data))
    progress.file_done(item.name)
    return StagedFile(
        name=item.name,
        pointer=item.pointer,
        size=len(uri.data),
        sha256=uri.sha256,
        content_type=uri.content_type,
        source_url=uri.source,
    )
