"""Flow: archive every record of a batch file (JSONL, CSV or JSON list at any fsspec URL).

One runtime for the whole batch; items run concurrently (at most `concurrency` in flight) in a
few coarse `archive-items` tasks; one item's failure never stops the others. Creates go through
Prefect's global rate limit when a Prefect server is configured (so every flow run on it shares
Replicate's budget), else through an in-process token bucket. A progress artifact follows the
run; at the end a table artifact lists every item and a markdown artifact links every archived
file. If any item failed the flow run ends Failed, its result still the full `BatchSummary`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import (
    acreate_markdown_artifact,
    acreate_progress_artifact,
    acreate_table_artifact,
    aupdate_progress_artifact,
)
from prefect.states import Failed

from archiver.batch import BatchProgress, BatchRunner, BatchSummary, ItemResult, chunked
from archiver.pipeline import OnDataRemoved
from archiver.progress import current_progress
from archiver.ratelimit import CreateLimiter, TokenBucket
from archiver.runtime import Runtime
from archiver.settings import Settings
from flows.archive_prediction import WebhookParam
from flows.settings import flow_settings
from tasks.batch import archive_items, read_batch

PROGRESS_EVERY = 2.0  # seconds between progress artifact updates
MAX_LINKED_FILES = 5000  # rows of the markdown artifact


@flow(name="archive-batch", log_prints=False)
async def archive_batch(
    file: str,
    model: str | None = None,
    dest: str | None = None,
    concurrency: int = 8,
    refresh: bool = False,
    on_data_removed: OnDataRemoved = "fail",
    deadline: float | None = None,
    webhook: WebhookParam = None,
) -> BatchSummary:
    """Archive every record of a batch file; rerunning it skips what is already archived.

    Args:
        file: The batch file: local path or fsspec URL (s3://, gs://, memory://...); JSONL,
            CSV (columns are input keys) or a JSON list. A record is an input object or
            `{"model": "owner/name", "input": {...}}`.
        model: Model for records that name none (`owner/name` or `owner/name:version`).
        dest: Archive destination (local path or fsspec URL); default from settings.
        concurrency: Items in flight at once (created and not yet archived).
        refresh: Pay for new predictions even for inputs archived before.
        on_data_removed: If Replicate already removed an item's outputs: fail, or rerun once.
        deadline: Seconds after which Replicate cancels each prediction (Cancel-After).
        webhook: Receiver URL for each prediction's `completed` event (`python -m flows
            webhooks`), so the outputs are kept even if this run dies.
    """
    settings = await flow_settings()
    runtime = Runtime.build(settings, dest=dest)  # creates limited in-process until...
    try:
        limiter, items = await asyncio.gather(
            prefect_create_limiter(settings), read_batch(runtime, file, model)
        )
        if limiter is not None:  # ...Prefect's global limit, shared by every run, takes over
            runtime.api.before_create = limiter
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
        async with _progress_artifact(progress):
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
    finally:
        await runtime.aclose()
    summary = BatchSummary(file=file, dest=runtime.dest.url, items=results)
    await _publish(summary)
    get_run_logger().info("%s", summary.headline())
    if summary.failed:
        return Failed(message=summary.headline(), data=summary)  # type: ignore[return-value]
    return summary


def _archive_chunk(runner: BatchRunner, chunk: list) -> Awaitable[list[ItemResult]]:
    first, last = chunk[0].index, chunk[-1].index
    return archive_items.with_options(task_run_name=f"items {first}-{last}")(runner, chunk)


# -- the create rate limit --------------------------------------------------------------------


async def prefect_create_limiter(settings: Settings) -> CreateLimiter | None:
    """Prefect's global rate limit `settings.create_limit_name` (created if missing) when a
    Prefect server is configured; None (the runtime's in-process bucket) otherwise."""
    from prefect.settings import get_current_settings

    if not get_current_settings().api.url:
        return None
    logger = get_run_logger()
    fallback = TokenBucket.per_minute(settings.create_rate_per_minute, settings.create_burst_size)
    try:
        if not await _ensure_limit(settings):
            return None
    except Exception as exc:  # noqa: BLE001 - any failure here means: limit in-process
        logger.warning(
            "create rate limit stays in-process: cannot use Prefect's global "
            "concurrency limit %r: %s",
            settings.create_limit_name,
            exc,
        )
        return None
    return PrefectRateLimit(settings.create_limit_name, fallback, logger.warning)


async def _ensure_limit(settings: Settings) -> bool:
    """Create the decaying global concurrency limit if missing; False if it cannot rate-limit."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    name = settings.create_limit_name
    async with get_client() as client:
        try:
            limit = await client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            with contextlib.suppress(ObjectAlreadyExists):  # another run created it just now
                await client.create_global_concurrency_limit(
                    GlobalConcurrencyLimitCreate(
                        name=name,
                        limit=settings.create_burst_size,
                        slot_decay_per_second=settings.create_rate_per_minute / 60.0,
                        active=True,
                    )
                )
            return True
    if not limit.slot_decay_per_second or not limit.active:
        get_run_logger().warning(
            "global concurrency limit %r is inactive or has no slot decay: the create rate "
            "limit stays in-process",
            name,
        )
        return False
    wanted = (settings.create_burst_size, settings.create_rate_per_minute / 60.0)
    if (limit.limit, limit.slot_decay_per_second) != wanted:
        get_run_logger().info(
            "creates are limited by the existing global concurrency limit %r (limit %d, decay "
            "%g/s), not by this run's settings (%d, %g/s)",
            name,
            limit.limit,
            limit.slot_decay_per_second,
            *wanted,
        )
    return True


class PrefectRateLimit:
    """Awaitable create limiter on a Prefect global rate limit, in-process if that fails.

    Waiters that queue up together take their slots in one request (`occupy=n`), so a burst of
    creates costs a few API calls instead of one serialized call each.
    """

    def __init__(
        self, name: str, fallback: TokenBucket, warn: Callable[..., Any], max_batch: int = 50
    ) -> None:
        self.name = name
        self.fallback = fallback
        self.max_batch = max(1, min(max_batch, fallback.burst))
        self._warn = warn
        self._waiters: list[asyncio.Future[None]] = []
        self._pump: asyncio.Task[None] | None = None
        self.broken: BaseException | None = None

    async def __call__(self) -> None:
        if self.broken is None:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            if self._pump is None or self._pump.done():
                self._pump = asyncio.create_task(self._take_slots())
            try:
                await waiter
                return
            except _LimitUnavailable:
                pass
        await self.fallback()

    async def _take_slots(self) -> None:
        from prefect.concurrency.asyncio import rate_limit

        while self._waiters:
            batch = self._waiters[: self.max_batch]
            try:
                await rate_limit(self.name, occupy=len(batch), strict=True)
            except Exception as exc:  # noqa: BLE001 - deleted limit, API down: go in-process
                self.broken = exc
                self._warn("create rate limit falls back to in-process: %s", exc)
                for waiter in self._waiters:
                    if not waiter.done():
                        waiter.set_exception(_LimitUnavailable())
                self._waiters.clear()
                return
            del self._waiters[: len(batch)]
            for waiter in batch:
                if not waiter.done():
                    waiter.set_result(None)


class _LimitUnavailable(Exception):
    pass


# -- artifacts --------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def _progress_artifact(progress: BatchProgress):
    """A progress artifact, updated at most every PROGRESS_EVERY seconds while the body runs.

    Created before the body starts: on a SQLite-backed server, creating it while the first
    creates take their rate-limit slots made those wait ~2 s for the database lock.
    """
    artifact_id = await acreate_progress_artifact(
        progress=0.0, description=_progress_text(progress.snapshot())
    )

    async def follow() -> None:
        last: dict[str, int] | None = None
        while True:
            await asyncio.sleep(PROGRESS_EVERY)
            snapshot = progress.snapshot()
            if snapshot != last:
                await _update(artifact_id, snapshot)
                last = snapshot

    follower = asyncio.create_task(follow())
    try:
        yield
    finally:
        follower.cancel()
        with contextlib.suppress(BaseException):
            await follower
        await _update(artifact_id, progress.snapshot())


async def _update(artifact_id: Any, snapshot: dict[str, int]) -> None:
    percent = 100.0 * snapshot["finished"] / snapshot["total"] if snapshot["total"] else 100.0
    with contextlib.suppress(Exception):  # progress is best effort; never fail the batch
        await aupdate_progress_artifact(
            artifact_id, progress=percent, description=_progress_text(snapshot)
        )


def _progress_text(s: dict[str, int]) -> str:
    return (
        f"{s['finished']}/{s['total']} items ({s['archived']} archived, {s['cached']} "
        f"cached, {s['failed']} failed); {s['files']} files, {s['bytes']:,} bytes downloaded"
    )


async def _publish(summary: BatchSummary) -> None:
    """A table artifact with a row per archived file (and per failed item), and a markdown
    artifact linking every archived file."""
    table: list[dict[str, Any]] = []
    for item in summary.items:
        base = {
            "item": item.index,
            "line": item.line,
            "model": item.model or "",
            "outcome": item.outcome,
            "prediction_id": item.prediction_id or "",
        }
        if not item.files:
            table.append(
                {
                    **base,
                    "file": "",
                    "size": 0,
                    "sha256": "",
                    "url": item.manifest_url or "",
                    "error": item.error or "",
                }
            )
        for f in item.files:
            table.append(
                {
                    **base,
                    "file": f.path,
                    "size": f.size,
                    "sha256": f.sha256,
                    "url": f.url,
                    "error": "",
                }
            )
    rows = ["| item | outcome | file | size | sha256 |", "| ---: | --- | --- | ---: | --- |"]
    files = [(item, f) for item in summary.items for f in item.files]
    for item, f in files[:MAX_LINKED_FILES]:
        rows.append(
            f"| {item.index} | {item.outcome} | [{_md(f.path)}]({_link(f.url)}) | "
            f"{f.size:,} | `{f.sha256[:12]}` |"
        )
    more = (
        f"\n\n{len(files) - MAX_LINKED_FILES} more file(s) are listed in the table artifact."
        if len(files) > MAX_LINKED_FILES
        else ""
    )
    text = (
        f"## Archived files\n\n{summary.headline()}; archive `{summary.dest}`\n\n"
        + "\n".join(rows)
        + more
    )
    # One after the other: concurrent writes contend for a SQLite-backed server's lock.
    await acreate_table_artifact(table=table, description=summary.headline())
    await acreate_markdown_artifact(markdown=text, description="archived files")


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("[", "\\[").replace("]", "\\]")


def _link(url: str) -> str:
    target = f"file://{url}" if url.startswith("/") else url
    return target.replace(" ", "%20").replace(")", "%29").replace("(", "%28")
