"""Run many prediction requests through one `Runtime`, concurrently, each failing on its own.

`BatchRunner` bounds how many items are in flight (created and not yet archived) with one
semaphore shared by every chunk of the batch, retries each step of an item with the settings'
`step` policy (as Prefect task retries do in a flow: only transient errors no request retry
gave up on), and turns any other error into that item's `failed` outcome: one item never stops
the others. Items already archived are cache hits (0 new predictions), so running
the same file again only retries what failed. `BatchSummary` is JSON-safe and token-free.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, overload

from pydantic import BaseModel, Field, GetCoreSchemaHandler, computed_field
from pydantic_core import core_schema

from .batchfile import BatchItem
from .download import Staged
from .errors import one_line
from .generate import Generated, Ready
from .iothreads import local_disk
from .manifest import Manifest, Retention
from .pipeline import (
    FileSummary,
    OnDataRemoved,
    RunSummary,
    Steps,
    archive_step,
    download_step,
    generate_step,
    process,
)
from .prediction import Prediction, PredictionRequest
from .previews import Preview
from .progress import NullProgress, ProgressSink
from .retry import RetryPolicies, RetryPolicy, Sleep, retry_call
from .runtime import Runtime

Outcome = Literal["archived", "cached", "failed"]


class ItemResult(BaseModel):
    """What one record of the batch ended as."""

    index: int
    line: int
    model: str | None
    input: dict[str, Any]
    outcome: Outcome
    prediction_id: str | None = None
    predictions_created: int = 0
    manifest_url: str | None = None
    files: list[FileSummary] = []
    retention: Retention | None = None  # of the manifest: Replicate's deadline, our margin
    error: str | None = None
    previews: list[Preview] = Field(default=[], exclude=True)  # as RunSummary.previews

    @classmethod
    def done(cls, item: BatchItem, summary: RunSummary) -> ItemResult:
        return cls(
            index=item.index,
            line=item.line,
            model=item.model,
            input=item.input,
            outcome="cached" if summary.cached else "archived",
            prediction_id=summary.prediction_id,
            predictions_created=summary.predictions_created,
            manifest_url=summary.manifest_url,
            files=summary.files,
            retention=summary.retention,
            previews=summary.previews,
        )

    @classmethod
    def failed(cls, item: BatchItem, error: BaseException | str) -> ItemResult:
        return cls(
            index=item.index,
            line=item.line,
            model=item.model,
            input=item.input,
            outcome="failed",
            error=one_line(error),
        )


class ItemResults(Sequence[ItemResult]):
    """A batch's item results: an immutable sequence, (de)serialized as a JSON list.

    Not a list on purpose: Prefect walks a flow's return value looking for futures, into every
    list, dict and model it holds (for 200 items, 50 ms of CPU at the end of each batch run,
    1000 items 0.25 s). A `Sequence` of its own is a leaf there; nothing in it can be a future.
    """

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[ItemResult] = ()) -> None:
        self._items = tuple(items)

    @overload
    def __getitem__(self, index: int) -> ItemResult: ...
    @overload
    def __getitem__(self, index: slice) -> tuple[ItemResult, ...]: ...
    def __getitem__(self, index: int | slice) -> ItemResult | tuple[ItemResult, ...]:
        return self._items[index]

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[ItemResult]:
        return iter(self._items)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ItemResults):
            return self._items == other._items
        return isinstance(other, list | tuple) and self._items == tuple(other)

    __hash__ = None  # type: ignore[assignment]  # equal to lists, which are unhashable

    def __repr__(self) -> str:
        return f"ItemResults({list(self._items)!r})"

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        as_list = handler.generate_schema(list[ItemResult])
        return core_schema.no_info_after_validator_function(
            cls,
            core_schema.union_schema([core_schema.is_instance_schema(cls), as_list]),
            serialization=core_schema.plain_serializer_function_ser_schema(
                list, return_schema=as_list
            ),
        )


class BatchSummary(BaseModel):
    """Every item of a batch with its outcome, in file order."""

    file: str
    dest: str
    items: ItemResults  # validated from a list, too

    @computed_field  # type: ignore[prop-decorator]
    @property
    def counts(self) -> dict[str, int]:
        tally = {"archived": 0, "cached": 0, "failed": 0}
        for item in self.items:
            tally[item.outcome] += 1
        return tally

    @computed_field  # type: ignore[prop-decorator]
    @property
    def predictions_created(self) -> int:
        return sum(item.predictions_created for item in self.items)

    @property
    def failed(self) -> list[ItemResult]:
        return [item for item in self.items if item.outcome == "failed"]

    def headline(self) -> str:
        """`200 items: 150 archived, 48 cached, 2 failed; 150 new predictions`."""
        c = self.counts
        return (
            f"{len(self.items)} items: {c['archived']} archived, {c['cached']} cached, "
            f"{c['failed']} failed; {self.predictions_created} new predictions"
        )


def chunked(
    items: Sequence[BatchItem], *, min_size: int = 100, max_chunks: int = 16
) -> list[list[BatchItem]]:
    """Contiguous slices of at least `min_size` items, at most `max_chunks` of them.

    Each slice becomes one orchestrator task: few, coarse tasks keep the per-task cost (and, on
    a SQLite-backed Prefect server, write contention that stalls other API calls) off the path.
    """
    if not items:
        return []
    size = max(min_size, -(-len(items) // max_chunks))
    return [list(items[start : start + size]) for start in range(0, len(items), size)]


@dataclass
class BatchRunner:
    """Runs items with one runtime; share one runner between all chunks of a batch."""

    runtime: Runtime
    concurrency: int = 8
    refresh: bool = False
    on_data_removed: OnDataRemoved = "fail"
    deadline: float | None = None
    webhook: str | None = None  # receiver URL put on every create (`completed` events)
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    sleep: Sleep = asyncio.sleep
    _slots: asyncio.Semaphore | None = field(default=None, init=False, repr=False)

    @classmethod
    def of(cls, runtime: Runtime, **options: Any) -> BatchRunner:
        """A runner whose retry policy comes from the runtime's settings."""
        settings = runtime.settings
        return cls(runtime, policy=RetryPolicies.from_settings(settings).step, **options)

    async def run_many(self, items: Iterable[BatchItem]) -> list[ItemResult]:
        """Every item, concurrently within the runner's bound; results in the given order."""
        with local_disk() if self.runtime.on_local_disk else contextlib.nullcontext():
            running = asyncio.gather(*(self.run_one(item) for item in items))  # tasks made here
        return list(await running)

    async def run_one(self, item: BatchItem) -> ItemResult:
        """One item, to an outcome; only cancellation escapes."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(max(1, self.concurrency))
        async with self._slots:
            result = await self._attempts(item)
        if result.outcome != "archived":  # archived items were reported by the archive step
            self.runtime.progress.prediction_done(
                result.prediction_id or f"item-{item.index}", result.outcome
            )
        return result

    async def _attempts(self, item: BatchItem) -> ItemResult:
        if item.error is not None:
            return ItemResult.failed(item, item.error)
        try:
            request = replace(item.request(self.deadline), webhook=self.webhook)
            summary = await process(
                self.runtime,
                request,
                refresh=self.refresh,
                on_data_removed=self.on_data_removed,
                steps=self.steps(),
            )
        except Exception as exc:  # noqa: BLE001 - an item's failure is its outcome
            return ItemResult.failed(item, exc)
        return ItemResult.done(item, summary)

    def steps(self) -> Steps:
        """The pipeline's steps, each retried with the `step` policy (as a flow's tasks are)."""
        policy, sleep = self.policy, self.sleep

        async def generate(
            runtime: Runtime, request: PredictionRequest, refresh: bool
        ) -> Generated:
            return await retry_call(
                policy,
                lambda: generate_step(runtime, request, refresh),
                what="the generate step",
                sleep=sleep,
            )

        async def download(runtime: Runtime, prediction: Prediction) -> Staged:
            return await retry_call(
                policy,
                lambda: download_step(runtime, prediction),
                what=f"the download step of {prediction.id}",
                sleep=sleep,
            )

        async def archive(runtime: Runtime, ready: Ready, staged: Staged) -> Manifest:
            return await retry_call(
                policy,
                lambda: archive_step(runtime, ready, staged),
                what="the archive step",
                sleep=sleep,
            )

        return Steps(generate=generate, download=download, archive=archive)


async def run_batch(
    runtime: Runtime, items: Sequence[BatchItem], *, file: str = "", **options: Any
) -> BatchSummary:
    """All items of a batch without an orchestrator (benchmarks, scripts)."""
    results = await BatchRunner.of(runtime, **options).run_many(items)
    return BatchSummary(file=file, dest=runtime.dest.url, items=ItemResults(results))


class BatchProgress:
    """A ProgressSink that counts what a batch has done and passes every event on."""

    def __init__(self, total: int, inner: ProgressSink | None = None) -> None:
        self.total = total
        self.inner = inner or NullProgress()
        self._lock = threading.Lock()
        self.outcomes = {"archived": 0, "cached": 0, "failed": 0}
        self.files = 0
        self.bytes = 0

    @property
    def finished(self) -> int:
        return sum(self.outcomes.values())

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return {
                "total": self.total,
                "finished": self.finished,
                **self.outcomes,
                "files": self.files,
                "bytes": self.bytes,
            }

    def prediction_done(self, prediction_id: str, status: str) -> None:
        if status in self.outcomes:
            with self._lock:
                self.outcomes[status] += 1
        self.inner.prediction_done(prediction_id, status)

    def file_started(self, name: str, size: int | None) -> None:
        self.inner.file_started(name, size)

    def bytes_done(self, count: int) -> None:
        self.bytes += count  # one event loop: no lock needed for a counter read approximately
        self.inner.bytes_done(count)

    def file_done(self, name: str) -> None:
        with self._lock:
            self.files += 1
        self.inner.file_done(name)
