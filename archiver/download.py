"""Download every output file of a succeeded prediction into local staging, at once.

Each file streams (on a `Delivery` worker thread; sha256 and size computed on the way,
Content-Length checked) into a temp file of that attempt's own
(`<staging>/<prediction id>/.<name>.tmp-<random>`, created exclusively: no attempt ever opens a
path another one writes), which is fsynced, made read-only and renamed to `<name>` when whole.
A staged file is therefore immutable: a later attempt only ever replaces the name, never the
bytes behind it. `staged.json` (written atomically) records the whole set with every file's
size and sha256, and an earlier staging is reused only when every file still hashes to what was
recorded; otherwise it is discarded and downloaded again. A URL the delivery host refuses
(401/403/404/410) or a stream that breaks re-fetches the prediction for freshly signed URLs (one
re-fetch shared by all files that need it) and tries that file again. Delivery requests never
carry the API token, and only allow-listed hosts are contacted. `data:` URI outputs are decoded
(within a size bound) and staged without a request.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

from .datauri import DataUri, decode, is_data_uri, write_atomic
from .delivery import Delivery
from .errors import DownloadInterrupted, OutputsRemoved, ServiceUnavailable, UrlExpired
from .inputfiles import InputStager, find_input_files
from .iothreads import run_io
from .outputs import HostAllowList, OutputFile, file_outputs, public_url, url_at
from .prediction import Prediction
from .progress import NullProgress, ProgressSink
from .replicate_api import ReplicateAPI
from .retry import RetryPolicy, Sleep, given_up, retry_call, should_retry
from .staging import (
    STAGED_MARKER,
    Staged,
    StagedFile,
    discard_staging,
    identity_of,
    load_staged,
    staging_directory,
    temp_path,
    write_marker,
)

__all__ = [
    "STAGED_MARKER",
    "DownloadOptions",
    "Staged",
    "StagedFile",
    "discard_staging",
    "download_outputs",
    "identity_of",
    "load_staged",
    "staging_directory",
    "strip_query",
]


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


async def download_outputs(
    prediction: Prediction,
    *,
    api: ReplicateAPI,
    delivery: Delivery,
    staging_root: Path,
    options: DownloadOptions | None = None,
) -> Staged:
    """Stage every output file of `prediction` locally; re-fetch URLs that expire."""
    options = options or DownloadOptions()
    # File-system calls run in threads: hundreds of predictions share one event loop.
    existing = await run_io(_staged_or_prepare, staging_root, prediction)
    if existing is not None:
        return existing
    allow = delivery.allow
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
    limit = asyncio.Semaphore(options.concurrency)

    async def one(item: OutputFile) -> StagedFile:
        if item.pointer in inline:
            uri = inline[item.pointer]
            return await run_io(_stage_inline, item, uri, directory, options.progress)
        async with limit:
            return await _download_file(item, directory, delivery, refresher, options)

    staged_files = asyncio.gather(*(one(item) for item in files))
    refs = find_input_files(prediction.input, str(api.http.base_url), delivery)
    if refs:  # none: no I/O, no task (the hot path of predictions without file inputs)
        stager = InputStager(
            api,
            delivery,
            directory,
            max_data_uri_bytes=options.max_data_uri_bytes,
            chunk_size=options.chunk_size,
            policy=options.retry_policy(),
            sleep=options.sleep,
        )
        staged_inputs, outputs = await asyncio.gather(stager.stage(refs), staged_files)
    else:
        staged_inputs, outputs = [], await staged_files
    staged = Staged(
        prediction=refresher.current,
        directory=str(directory),
        files=list(outputs),
        refetches=refresher.refetches,
        inputs=staged_inputs,
    )
    await run_io(write_marker, directory, staged)
    return staged


def _staged_or_prepare(staging_root: Path, prediction: Prediction) -> Staged | None:
    """An intact earlier download of `prediction`, or None with its staging directory made
    (one trip to an I/O thread for both)."""
    existing = load_staged(staging_root, prediction)
    if existing is None:
        staging_directory(staging_root, prediction.id).mkdir(parents=True, exist_ok=True)
    return existing


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
    delivery: Delivery,
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
        return await _stream_to_file(item, url, directory, delivery, options)

    def retry_if(exc: BaseException) -> bool:
        return isinstance(exc, UrlExpired) or should_retry(exc)

    async def before_retry(exc: BaseException) -> None:
        nonlocal url, generation
        if isinstance(exc, UrlExpired | DownloadInterrupted):
            url, generation = await refresher.fresh_url(item, generation)

    try:
        return await retry_call(
            policy,
            attempt,
            what=f"the download of {item.name} of {refresher.current.id}",
            sleep=options.sleep,
            retry_if=retry_if,
            before_retry=before_retry,
        )
    except (UrlExpired, DownloadInterrupted, ServiceUnavailable) as exc:
        if tries < policy.attempts:
            raise  # not the download giving up: the re-fetch did, with its own error
        raise given_up(
            DownloadInterrupted(f"{item.name}: gave up after {tries} attempts: {exc}")
        ) from exc


async def _stream_to_file(
    item: OutputFile, url: str, directory: Path, delivery: Delivery, options: DownloadOptions
) -> StagedFile:
    progress = options.progress
    fetched = await delivery.fetch(
        url,
        temp_path(directory, item.name),  # this attempt's own: never shared, never reused
        directory / item.name,
        name=item.name,
        chunk_size=options.chunk_size,
        started=progress.file_started,
        received=progress.bytes_done,
    )
    progress.file_done(item.name)
    return StagedFile(
        name=item.name,
        pointer=item.pointer,
        size=fetched.size,
        sha256=fetched.sha256,
        content_type=fetched.content_type,
        source_url=strip_query(fetched.url),
        identity=fetched.identity,
    )


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
