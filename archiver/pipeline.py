"""The three steps of the pipeline as plain functions of a `Runtime`, and their summary.

`flows/` runs each step as a Prefect task; `process` chains them without an orchestrator (for
coarse-grained batch items, benchmarks, and tests that need no Prefect).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, Field

from .archive import archive_staged
from .download import Staged, discard_staging, download_outputs
from .errors import OutputsRemoved
from .generate import Generated, finalize, generate
from .manifest import Manifest
from .prediction import Prediction, PredictionRequest
from .report.previews import Preview, current_budget, previews_of
from .runtime import Runtime

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
    staged = await download_outputs(
        prediction,
        api=runtime.api,
        http=runtime.http,
        staging_root=runtime.staging,
        allow=runtime.allow,
        options=runtime.download_options(),
    )
    runtime.progress.prediction_done(prediction.id, "downloaded")
    return staged


async def archive_step(runtime: Runtime, generated: Generated, staged: Staged) -> Manifest:
    """Wait for the final state if the files came early, archive them, record the cache entry,
    then drop the staging."""
    settings = runtime.settings
    final = await finalize(runtime.api, staged.prediction, timeout=settings.prediction_timeout)
    manifest = await asyncio.to_thread(
        archive_staged,
        staged.model_copy(update={"prediction": final}),
        runtime.dest,
        cache_key=generated.record.key,
        template=settings.path_template,
        part_size=settings.part_size,
        read_back=settings.read_back,
    )
    await asyncio.to_thread(runtime.cache.mark_archived, generated.record, runtime.dest, manifest)
    await asyncio.to_thread(discard_staging, runtime.staging, manifest.prediction_id)
    runtime.progress.prediction_done(manifest.prediction_id, "archived")
    return manifest


@dataclass(frozen=True)
class Steps:
    """The three steps; a flow passes its Prefect tasks here, which share these signatures."""

    generate: Callable[[Runtime, PredictionRequest, bool], Awaitable[Generated]] = generate_step
    download: Callable[[Runtime, Prediction], Awaitable[Staged]] = download_step
    archive: Callable[[Runtime, Generated, Staged], Awaitable[Manifest]] = archive_step


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
    """
    generated = await steps.generate(runtime, request, refresh)
    if generated.manifest is not None:
        return RunSummary.of(runtime, generated.manifest, cached=True, created=0, refetches=0)
    created = int(generated.created)
    try:
        staged = await steps.download(runtime, generated.prediction)
    except OutputsRemoved:
        if on_data_removed != "rerun":
            raise
        generated = await steps.generate(runtime, request, True)
        created += int(generated.created)
        staged = await steps.download(runtime, generated.prediction)
    previews = await _previews(staged)  # before the archive step discards the staging
    manifest = await steps.archive(runtime, generated, staged)
    summary = RunSummary.of(
        runtime, manifest, cached=False, created=created, refetches=staged.refetches
    )
    return summary.model_copy(update={"previews": previews}) if previews else summary


async def _previews(staged: Staged) -> list[Preview]:
    """Thumbnails of the staged images, within the budget a flow installed (none: none)."""
    budget = current_budget()
    if budget is None:
        return []
    files = [(f.name, f.content_type, f.size, staged.path_of(f)) for f in staged.files]
    return await asyncio.to_thread(previews_of, files, budget)
