"""Flow: archive every record of a batch file (JSONL, CSV or JSON list at any fsspec URL).

One runtime for the whole batch; items run concurrently (at most `concurrency` in flight) in a
few coarse `archive-items` tasks; one item's failure never stops the others. Creates go through
Prefect's global rate limit when a Prefect server is configured (`tasks/limits.py`), else
through an in-process token bucket. A progress artifact follows the run; at the end a table of
every file, a summary with every file's location, and a gallery of thumbnails are published
(`tasks/artifacts.py`). If any item failed the flow run ends Failed, its result still the full
`BatchSummary`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.states import Failed
from prefect.utilities.annotations import quote

from archiver.aio import settle
from archiver.batch import (
    BatchProgress,
    BatchRunner,
    BatchSummary,
    ItemResult,
    ItemResults,
    chunked,
)
from archiver.batchfile import BatchItem, read_batch
from archiver.pipeline import OnDataRemoved
from archiver.previews import PreviewBudget, use_previews
from archiver.progress import current_progress
from flows.archive_prediction import WebhookParam
from flows.hooks import announce
from flows.runtime import flow_runtime
from tasks.artifacts import (
    final_progress,
    new_progress_artifact,
    progress_artifact,
    publish_batch,
)
from tasks.batch import archive_items
from tasks.limits import PrefectCreateLimit

# The directory holding the installed `flows` package: the checkout, or site-packages.
PROJECT_ROOT = Path(__file__).resolve().parent.parent


@flow(name="archive-batch", log_prints=False, on_running=[announce])
async def archive_batch(
    file: str,
    model: str | None = None,
    dest: str | None = None,
    concurrency: int = 8,
    refresh: bool = False,
    on_data_removed: OnDataRemoved = "fail",
    deadline: float | None = None,
    webhook: WebhookParam = None,
    storage_options: dict[str, str] | None = None,
) -> BatchSummary:
    """Archive every record of a batch file; rerunning it skips what is already archived.

    Args:
        file: The batch file: local path or fsspec URL (s3://, gs://, memory://...); JSONL,
            CSV (columns are input keys) or a JSON list. A record is an input object or
            `{"model": "owner/name", "input": {...}}`. A relative path missing from the working
            directory is looked up in the installed project (e.g. the nightly sample
            `deployments/nightly-prompts.jsonl`): deployment runs start in a temporary directory.
        model: Model for records that name none (`owner/name` or `owner/name:version`).
        dest: Archive destination (local path or fsspec URL); default from settings. Never
            user:password@ (refused): see docs/safety.md.
        concurrency: Items in flight at once (created and not yet archived).
        refresh: Pay for new predictions even for inputs archived before.
        on_data_removed: If Replicate already removed an item's outputs: fail, or rerun once.
        deadline: Seconds after which Replicate cancels each prediction (Cancel-After).
        webhook: Receiver URL for each prediction's `completed` event (`python -m flows
            webhooks`), so the outputs are kept even if this run dies.
        storage_options: Non-secret fsspec options for `dest` and `file`; credentials stay in
            the worker's environment.
    """
    async with flow_runtime(dest, storage_options, file=file) as runtime:
        use_previews(PreviewBudget())  # one gallery's worth of thumbnails for the whole batch
        # Prefect's set-up calls run while the items start (locks, cache look-ups and intents
        # need no API). Prefect's global limit, shared by every run, replaces the in-process
        # one: past the first few, creates wait for its slots.
        progress_id = asyncio.ensure_future(new_progress_artifact())
        create_limit = PrefectCreateLimit(runtime.settings)
        try:
            runtime.api.before_create = await create_limit.setup() or runtime.api.before_create
            items = await read_batch(
                _project_file(file),
                default_model=model,
                storage_options={**runtime.settings.storage_options, **(storage_options or {})},
            )
            get_run_logger().info("%s: %d record(s)", file, len(items))
            progress = BatchProgress(len(items), current_progress())
            runtime.progress = progress
            runner = BatchRunner.of(
                runtime,
                concurrency=concurrency,
                refresh=refresh,
                on_data_removed=on_data_removed,
                deadline=deadline,
                webhook=webhook,
            )
            async with progress_artifact(progress_id, progress):
                chunks = chunked(items)
                outcomes = await asyncio.gather(
                    *(_archive_chunk(runner, chunk) for chunk in chunks), return_exceptions=True
                )
            results: list[ItemResult] = []
            for chunk, outcome in zip(chunks, outcomes, strict=True):
                if isinstance(outcome, BaseException):
                    if not isinstance(outcome, Exception):
                        raise outcome
                    results.extend(ItemResult.failed(item, outcome) for item in chunk)
                else:
                    results.extend(outcome)
        except BaseException:
            await settle(progress_id)  # if still being created (the batch never started): stop
            raise
        finally:
            await create_limit.aclose()
    summary = BatchSummary(file=file, dest=runtime.dest.url, items=ItemResults(results))
    await asyncio.gather(  # two API calls at once: each is a round trip to a busy server
        final_progress(progress_id, progress),
        publish_batch(summary, runtime.dest, runtime.settings.presign_seconds),
    )
    get_run_logger().info("%s", summary.headline())
    if summary.failed:
        return Failed(message=summary.headline(), data=summary)  # type: ignore[return-value]
    return summary


def _archive_chunk(runner: BatchRunner, chunk: list[BatchItem]) -> Awaitable[list[ItemResult]]:
    """The chunk's task run. Its arguments are quoted: Prefect would otherwise walk the runner
    (runtime, settings, clients) and every item, twice, before the task starts."""
    first, last = chunk[0].index, chunk[-1].index
    task = archive_items.with_options(task_run_name=f"items {first}-{last}")
    return task(quote(runner), quote(chunk), return_state=False)


def _project_file(file: str) -> str:
    """`file`, or the installed project's copy of a relative path the working directory lacks."""
    path = Path(file)
    if "://" in file or path.is_absolute() or path.exists():
        return file
    bundled = PROJECT_ROOT / path
    return str(bundled) if bundled.is_file() else file
