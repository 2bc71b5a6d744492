"""Tasks of a batch run: read the batch file, and archive a chunk of its items.

A batch of hundreds of items runs as a few coarse tasks (one per chunk of items), not three
tasks per item: Prefect's per-task cost would otherwise dominate. Each item is retried inside
its chunk (`BatchRunner`), and never raises: its failure is its outcome.
"""

from __future__ import annotations

import asyncio

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from archiver.batch import BatchRunner, ItemResult
from archiver.batchfile import BatchItem, load_batch
from archiver.retry import READ_BATCH
from archiver.runtime import Runtime

from .retry import retry_transient


@task(
    name="read-batch",
    cache_policy=NO_CACHE,
    retries=READ_BATCH.retries,
    retry_delay_seconds=READ_BATCH.delays(),
    retry_condition_fn=retry_transient,
)
async def read_batch(runtime: Runtime, file: str, model: str | None) -> list[BatchItem]:
    options = runtime.settings.storage_options
    items = await asyncio.to_thread(load_batch, file, default_model=model, storage_options=options)
    get_run_logger().info("%s: %d record(s)", file, len(items))
    return items


@task(name="archive-items", cache_policy=NO_CACHE)
async def archive_items(runner: BatchRunner, items: list[BatchItem]) -> list[ItemResult]:
    results = await runner.run_many(items)
    logger = get_run_logger()
    for result in results:  # successes are in the table artifact; one log line each is noise
        if result.outcome == "failed":
            logger.warning("item %d (line %d) failed: %s", result.index, result.line, result.error)
    outcomes = [r.outcome for r in results]
    logger.info(
        "%d archived, %d cached, %d failed",
        outcomes.count("archived"),
        outcomes.count("cached"),
        outcomes.count("failed"),
    )
    return results
