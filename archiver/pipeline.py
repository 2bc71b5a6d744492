"""The three steps of the pipeline as plain functions of a `Runtime`, and their summary.

`flows/` runs each step as a Prefect task; `process` chains them without an orchestrator (for
coarse-grained batch items, benchmarks, and tests that need no Prefect).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from .archive import archive_staged, prediction_directory
from .download import Staged, discard_staging, download_outputs
from .errors import ArchiverError, OutputsRemoved
from .generate import Cached, Generated, Ready, finalize, generate
from .inputfiles import stage_logs
from .intact import damaged_files
from .iothreads import run_io
from .manifest import MANIFEST_NAME, Manifest, Retention
from .prediction import Prediction, PredictionRequest
from .previews import Preview, current_budget, previews_of
from .runtime import Runtime
from .storage import read_bytes

OnDataRemoved = Literal["fail", "rerun"]


class FileSummary(BaseModel):
    name: str
    path: str  # relative to dest
    url: str
    size: int
    sha256: str


class RunSummary(BaseModel):
    """What one request ended as: JSON-safe, token-free (it becomes a Prefect result)."""

    model: str
    cache_key: str
    prediction_id: str
    cached: bool
    predictions_created: int
    refetches: int
    manifest_url: str
    files: list[FileSummary]
    retention: Retention | None = None  # the manifest's: Replicate's deadline, our margin
    # The gallery: thumbnails from the staged bytes. In memory only (kept out of JSON).
    previews: list[Preview] = Field(default=[], exclude=True)

    @classmethod
    def of(
        cls, runtime: Runtime, manifest: Manifest, *, cached: bool, created: int, refetches: int
    ) -> RunSummary:
        dest = runtime.dest
        return cls(
            model=manifest.model,
            cache_key=manifest.cache_key,
            prediction_id=manifest.prediction_id,
            cached=cached,
            predictions_created=created,
            refetches=refetches,
            manifest_url=dest.url_for(dest.path(manifest.path)),
            files=[
                FileSummary(
                    name=f.name,
                    path=f.path,
                    url=dest.url_for(dest.path(f.path)),
                    size=f.size,
                    sha256=f.sha256,
                )
                for f in manifest.files
            ],
            retention=manifest.retention,
        )


async def generate_step(runtime: Runtime, request: PredictionRequest, refresh: bool) -> Generated:
    return await generate(
        request,
        api=runtime.api,
        cache=runtime.cache,
        lock=runtime.lock,
        dest=runtime.dest,
        refresh=refresh,
        timeout=runtime.settings.prediction_timeout,
    )


async def download_step(runtime: Runtime, prediction: Prediction) -> Staged:
    """Stage every output file, then wait for the prediction's final, succeeded state (files
    may come out while it still runs): what it returns is ready to archive, storage only."""
    staged = await download_outputs(
        prediction,
        api=runtime.api,
        delivery=runtime.delivery,
        staging_root=runtime.staging,
        options=runtime.download_options(),
    )
    runtime.progress.prediction_done(prediction.id, "downloaded")
    final = await finalize(
        runtime.api, staged.prediction, timeout=runtime.settings.prediction_timeout
    )
    return staged.model_copy(update={"prediction": final})


async def archive_step(runtime: Runtime, ready: Ready, staged: Staged) -> Manifest:
    """Archive the staged files and their manifest, record the cache entry, drop the staging.

    Touches storage only (the archive, the cache, the staging): no API call. One trip to an I/O
    thread for all three, in this order."""
    manifest = await run_io(_archive_record_discard, runtime, ready, staged)
    runtime.progress.prediction_done(manifest.prediction_id, "archived")
    return manifest


def _archive_record_discard(runtime: Runtime, ready: Ready, staged: Staged) -> Manifest:
    settings = runtime.settings
    if staged.logs is None and staged.prediction.logs:  # the final logs: staged in this trip
        logs = stage_logs(Path(staged.directory), staged.prediction)
        staged = staged.model_copy(update={"logs": logs})
    manifest = archive_staged(
        staged,
        runtime.dest,
        cache_key=ready.record.key,
        template=settings.path_template,
        part_size=settings.part_size,
        read_back=settings.read_back,
    )
    runtime.cache.mark_archived(ready.record, runtime.dest, manifest)
    discard_staging(runtime.staging, manifest.prediction_id)
    return manifest


@dataclass(frozen=True)
class Steps:
    """The three steps; a flow passes its Prefect tasks here, which share these signatures."""

    generate: Callable[[Runtime, PredictionRequest, bool], Awaitable[Generated]] = generate_step
    download: Callable[[Runtime, Prediction], Awaitable[Staged]] = download_step
    archive: Callable[[Runtime, Ready, Staged], Awaitable[Manifest]] = archive_step


def prediction_lock_key(prediction_id: str) -> str:
    """The lock held by whoever downloads and archives this prediction (see `process`)."""
    return f"prediction-{prediction_id}"


async def process(
    runtime: Runtime,
    request: PredictionRequest,
    *,
    refresh: bool = False,
    on_data_removed: OnDataRemoved = "fail",
    steps: Steps = Steps(),
) -> RunSummary:
    """generate -> download -> archive for one request.

    A new prediction is paid for only on a cache miss, on `refresh`, or when Replicate already
    removed the outputs and `on_data_removed` is "rerun" (at most once).

    Download and archive of a prediction happen under its own lock (`prediction-<id>`, which
    never expires while held): two runs of the same input never write the same staging or
    archive paths at once. The second one, once it holds the lock, finds the manifest the first
    one wrote and returns it as cached, downloading nothing.
    """
    generated = await steps.generate(runtime, request, refresh)
    if isinstance(generated, Cached):
        return RunSummary.of(runtime, generated.manifest, cached=True, created=0, refetches=0)
    created = int(generated.created)
    try:
        return await _deliver(runtime, steps, generated, created)
    except OutputsRemoved:
        if on_data_removed != "rerun":
            raise
    # Not `refresh`: the record's prediction can no longer deliver, so generate pays for a new
    # one, unless a concurrent run of this input already did (then it is resumed, or cached).
    generated = await steps.generate(runtime, request, False)
    if isinstance(generated, Cached):
        return RunSummary.of(runtime, generated.manifest, cached=True, created=created, refetches=0)
    return await _deliver(runtime, steps, generated, created + int(generated.created))


async def _deliver(runtime: Runtime, steps: Steps, ready: Ready, created: int) -> RunSummary:
    """Download and archive `ready.prediction`, alone: under its lock, unless already done."""
    async with runtime.lock.hold(prediction_lock_key(ready.prediction.id)) as lease:
        manifest = await run_io(_archived_meanwhile, runtime, ready)
        if manifest is not None:
            return RunSummary.of(runtime, manifest, cached=True, created=created, refetches=0)
        staged = await steps.download(runtime, ready.prediction)
        previews = await staged_previews(staged)  # before the archive step discards the staging
        await lease.ensure_held()  # fencing: nobody else can be archiving it now
        manifest = await steps.archive(runtime, ready, staged)
    summary = RunSummary.of(
        runtime, manifest, cached=False, created=created, refetches=staged.refetches
    )
    return summary.model_copy(update={"previews": previews}) if previews else summary


def _archived_meanwhile(runtime: Runtime, ready: Ready) -> Manifest | None:
    """The manifest of `ready.prediction` in this dest, if a run that held its lock before us
    archived it (the cache record names it, and the manifest is still there), or another way
    in (a sweep, a webhook, `archive ID`) did: its manifest sits where the template puts it.
    None too when a file it lists is not there with its size: the caller restores them."""
    manifest = None
    record = runtime.cache.get(ready.record.key)
    if record is not None and record.prediction_id == ready.prediction.id:
        manifest = runtime.cache.archived_manifest(record, runtime.dest)
    if manifest is None:
        manifest = manifest_in_place(runtime, ready.prediction)
    if manifest is None or damaged_files(runtime.dest, manifest):
        return None
    return manifest


def manifest_in_place(runtime: Runtime, prediction: Prediction) -> Manifest | None:
    """The prediction's manifest at the path the template gives it in `runtime.dest`, if any
    (whichever way in archived it); a corrupt or foreign manifest counts as none."""
    try:
        directory = prediction_directory(runtime.settings.path_template, prediction)
    except ArchiverError:
        return None
    dest = runtime.dest
    data = read_bytes(dest, dest.path(f"{directory}/{MANIFEST_NAME}"))
    if data is None:
        return None
    try:
        manifest = Manifest.from_json(data)
    except ValueError:
        return None
    return manifest if manifest.prediction_id == prediction.id else None


async def staged_previews(staged: Staged) -> list[Preview]:
    """Thumbnails of the staged images, within the budget a flow installed (none: none)."""
    budget = current_budget()
    if budget is None:
        return []
    files = [(f.name, f.content_type, f.size, staged.path_of(f)) for f in staged.files]
    return await run_io(previews_of, files, budget)
