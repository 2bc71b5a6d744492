"""The task of a batch run: archive a chunk of its items.

A batch of hundreds of items runs as a few coarse tasks (one per chunk of items), not three
tasks per item: Prefect's per-task cost would otherwise dominate. Each item is retried inside
its chunk (`BatchRunner`), and never raises: its failure is its outcome. Reading the batch file
is no task (`archiver.batchfile.read_batch`, with its own retries): a task run of its own cost
the start of every batch about 40 ms, for one read.
"""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from archiver.batch import BatchRunner, ItemResult
from archiver.batchfile import BatchItem

from .events import emit_items


@task(name="archive-items", cache_policy=NO_CACHE)
async def archive_items(runner: BatchRunner, items: list[BatchItem]) -> list[ItemResult]:
    results = await runner.run_many(items)
    emit_items(results, runner.runtime.dest.url)
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
