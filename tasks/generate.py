"""Task: create (or find, or resume) the prediction and wait for it to succeed."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from archiver.generate import Cached, Generated
from archiver.intact import DamagedArchive
from archiver.pipeline import generate_step
from archiver.prediction import PredictionRequest
from archiver.runtime import Runtime

from .events import emit_lost
from .retry import retry_transient


@task(name="generate", cache_policy=NO_CACHE, retry_condition_fn=retry_transient)
async def generate(runtime: Runtime, request: PredictionRequest, refresh: bool) -> Generated:
    try:
        result = await generate_step(runtime, request, refresh)
    except DamagedArchive as exc:  # archived once, a file lost since, and Replicate's copy too
        emit_lost(exc.prediction_id, exc.model, str(exc), runtime.dest.url)
        raise
    logger = get_run_logger()
    if isinstance(result, Cached):
        logger.info("cache hit: %s already archived (%s)", request.model, result.manifest.path)
    else:
        verb = "created" if result.created else "resumed"
        when = " (while the flow run started)" if result.ahead else ""
        prediction = result.prediction
        logger.info("%s prediction %s%s: %s", verb, prediction.id, when, prediction.status)
    return result
