"""Task: stream every output file of a prediction into local staging, at once, and return them
with the prediction's final, succeeded state."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from archiver.download import Staged
from archiver.errors import OutputsRemoved
from archiver.pipeline import download_step
from archiver.prediction import Prediction
from archiver.runtime import Runtime

from .events import emit_lost
from .retry import retry_transient


@task(name="download", cache_policy=NO_CACHE, retry_condition_fn=retry_transient)
async def download(runtime: Runtime, prediction: Prediction) -> Staged:
    try:
        staged = await download_step(runtime, prediction)
    except OutputsRemoved as exc:
        emit_lost(prediction.id, prediction.model, str(exc), runtime.dest.url)
        raise
    total = sum(f.size for f in staged.files)
    get_run_logger().info(
        "staged %d file(s), %d bytes, of %s (%d re-fetch(es))",
        len(staged.files),
        total,
        prediction.id,
        staged.refetches,
    )
    return staged
