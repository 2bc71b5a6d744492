"""Tasks of the archive-existing and archive-recent flows: one domain call each."""

from __future__ import annotations

from datetime import timedelta

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from archiver.existing import ExistingArchiver, ExistingResult
from archiver.runtime import Runtime
from archiver.sweep import Source, SweepReport, sweep

from .events import emit_outcome
from .retry import retry_transient


@task(name="sweep-window", cache_policy=NO_CACHE, retries=2, retry_condition_fn=retry_transient)
async def sweep_window(
    runtime: Runtime, since: timedelta, source: Source, concurrency: int
) -> SweepReport:
    dest = runtime.dest.url
    report = await sweep(
        runtime,
        since=since,
        source=source,
        concurrency=concurrency,
        on_result=lambda result: emit_outcome(result, dest),
    )
    logger = get_run_logger()
    for result in report.lost:
        logger.error("%s %s: %s", result.prediction_id, result.outcome, result.error)
    logger.info("%s", report.headline())
    return report


@task(name="archive-by-id", cache_policy=NO_CACHE)
async def archive_by_id(archiver: ExistingArchiver, prediction_id: str) -> ExistingResult:
    return await by_id(archiver, prediction_id, archived_event=False)  # the archive task's


async def by_id(
    archiver: ExistingArchiver, prediction_id: str, *, archived_event: bool = True
) -> ExistingResult:
    """archive-by-id without a task run (the webhook receiver's groups, whose steps are plain
    calls too): the event of its outcome, `archived` included unless `archived_event` is off."""
    result = await archiver.by_id(prediction_id)
    if archived_event or result.outcome == "removed":
        emit_outcome(result, archiver.runtime.dest.url)
    log = get_run_logger().error if result.lost else get_run_logger().info
    log("%s: %s%s", prediction_id, result.outcome, f" ({result.error})" if result.error else "")
    return result
