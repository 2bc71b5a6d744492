"""Archive a prediction that already exists on the account, by id: never create one.

The predictions other scripts, apps, teammates or the website made on the same account are
archived exactly as `run` archives its own: the same download and archive steps (re-fetching
on expiry), the same layout and `manifest.json`, the same cache store and key lock. Their cache
record has no request key: it is keyed `prediction:<id>`.

One already archived is recognised by its manifest, found through its cache record or at the
path the template gives it (so a prediction `run` archived counts too) and downloads nothing,
once every file the manifest lists is there with its size (`intact`); a damaged one is restored
from the same prediction while Replicate has its outputs, else it is `removed`, naming the file.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel

from .cache import CacheRecord
from .errors import (
    ArchiverError,
    InvalidRequest,
    OutputsRemoved,
    PermanentError,
    PredictionAborted,
    PredictionCanceled,
    PredictionFailed,
    one_line,
)
from .generate import Ready
from .intact import Damage, damaged_error, damaged_files
from .manifest import Manifest
from .pipeline import (
    RunSummary,
    Steps,
    manifest_in_place,
    prediction_lock_key,
    staged_previews,
)
from .prediction import Prediction
from .replicate_api import ensure_succeeded
from .runtime import Runtime

Outcome = Literal["archived", "cached", "removed", "failed", "skipped", "pending"]
#: Outcomes after which nothing paid for is lost (a skipped prediction produced nothing).
SAFE_OUTCOMES: frozenset[str] = frozenset({"archived", "cached", "skipped", "pending"})
NOT_SUCCEEDED = (PredictionFailed, PredictionCanceled, PredictionAborted)


def foreign_key(prediction_id: str) -> str:
    """The cache key of a prediction archived by id (it has no request to hash)."""
    return f"prediction:{prediction_id}"


class ExistingResult(BaseModel):
    """What became of one existing prediction: JSON-safe and token-free."""

    prediction_id: str
    outcome: Outcome
    status: str | None = None  # the prediction's status when we looked
    model: str | None = None
    error: str | None = None
    #: A `failed` one whose error is permanent by its class (e.g. a refused output URL):
    #: archiving it again cannot help. An id the API does not know is not (it may yet).
    permanent: bool = False
    summary: RunSummary | None = None

    @property
    def lost(self) -> bool:
        """True when a paid result was not archived (removed or failed)."""
        return self.outcome not in SAFE_OUTCOMES


class ArchiveReport(BaseModel):
    """Every prediction asked about and its outcome: JSON-safe and token-free."""

    dest: str
    predictions: list[ExistingResult]

    def counts(self) -> dict[str, int]:
        outcomes: list[str] = [p.outcome for p in self.predictions]
        names = ("archived", "cached", "removed", "failed", "skipped", "pending")
        return {name: outcomes.count(name) for name in names}

    @property
    def lost(self) -> list[ExistingResult]:
        """Predictions that had (or may have had) outputs and were not archived."""
        return [p for p in self.predictions if p.lost]

    @property
    def ok(self) -> bool:
        """True when every prediction that still had outputs was archived."""
        return not self.lost

    def headline(self) -> str:
        counts = self.counts()
        parts = ", ".join(f"{n} {name}" for name, n in counts.items() if n)
        return f"{len(self.predictions)} prediction(s): {parts or 'nothing to do'}"


class IncompleteArchive(PermanentError):
    """Some predictions that had outputs were not archived (a flow run fails with this)."""

    @property
    def message(self) -> str:
        return str(self)

    @classmethod
    def of(cls, report: ArchiveReport) -> IncompleteArchive:
        first = report.lost[0]
        return cls(
            f"{len(report.lost)} prediction(s) not archived, e.g. {first.prediction_id}: "
            f"{first.outcome} ({first.error or 'no detail'})"
        )


async def archived_manifest(
    runtime: Runtime, prediction: Prediction
) -> tuple[Manifest | None, list[Damage]]:
    """The prediction's manifest in `runtime.dest`, if it was archived (by any way in), and the
    files it lists that are not there with their size (`intact`)."""
    return await asyncio.to_thread(_archived, runtime, prediction)


def _archived(runtime: Runtime, prediction: Prediction) -> tuple[Manifest | None, list[Damage]]:
    manifest = None
    record = runtime.cache.get(foreign_key(prediction.id))
    if record is not None:
        manifest = runtime.cache.archived_manifest(record, runtime.dest)
    if manifest is None:
        manifest = manifest_in_place(runtime, prediction)
    return manifest, [] if manifest is None else damaged_files(runtime.dest, manifest)


@dataclass(frozen=True)
class ExistingArchiver:
    """Archives existing predictions with a runtime's clients (and a flow's task steps)."""

    runtime: Runtime
    steps: Steps = Steps()

    async def by_id(self, prediction_id: str, *, wait: bool = True) -> ExistingResult:
        """Fetch the prediction, wait for it if running (`wait`), then archive it.

        An id unknown to the account is a `failed` result naming it.
        """
        try:
            prediction = await self.runtime.api.get(prediction_id)
        except InvalidRequest as exc:
            return ExistingResult(
                prediction_id=prediction_id,
                outcome="failed",
                error=f"prediction {prediction_id!r}: not found on this account ({one_line(exc)})",
            )
        return await self.prediction(prediction, wait=wait)

    async def many(
        self, prediction_ids: list[str], *, concurrency: int = 8
    ) -> list[ExistingResult]:
        """`by_id` for each id (duplicates once), `concurrency` at a time, in the given order."""
        gate = asyncio.Semaphore(concurrency)

        async def one(prediction_id: str) -> ExistingResult:
            async with gate:
                return await self.by_id(prediction_id)

        unique = list(dict.fromkeys(prediction_ids))
        return list(await asyncio.gather(*(one(i) for i in unique)))

    async def prediction(self, prediction: Prediction, *, wait: bool = False) -> ExistingResult:
        """Archive `prediction` (as listed or fetched); every outcome is a result, not raised,
        except errors that concern the whole run (authentication, configuration)."""
        try:
            if not prediction.terminal:
                manifest, damage = await archived_manifest(self.runtime, prediction)
                if manifest is not None and not damage:
                    return self._result(prediction, "cached")
                if not wait:
                    return self._result(prediction, "pending")
                prediction = await self._wait(prediction)
            return await self._archive(prediction)
        except NOT_SUCCEEDED as exc:
            return self._result(prediction, "skipped", exc)
        except OutputsRemoved as exc:
            return self._result(prediction, "removed", exc)
        except ArchiverError as exc:
            if _whole_run_error(exc):
                raise
            return self._result(prediction, "failed", exc)

    async def _wait(self, prediction: Prediction) -> Prediction:
        timeout = self.runtime.settings.prediction_timeout
        try:
            return await self.runtime.api.wait(prediction, timeout=timeout, early=True)
        except TimeoutError as exc:
            raise PredictionCanceled(
                f"prediction {prediction.id} is still {prediction.status} after {timeout:g}s"
            ) from exc

    async def _archive(self, prediction: Prediction) -> ExistingResult:
        runtime = self.runtime
        key = foreign_key(prediction.id)
        # The same lock `run` holds while it downloads and archives this prediction.
        async with runtime.lock.hold(prediction_lock_key(prediction.id)) as lease:
            manifest, damage = await archived_manifest(runtime, prediction)
            if manifest is not None and not damage:
                summary = RunSummary.of(runtime, manifest, cached=True, created=0, refetches=0)
                return self._result(prediction, "cached", summary=summary)
            if manifest is not None:  # damaged: restore from the same prediction, re-fetched
                prediction = await runtime.api.get(prediction.id)  # (fresh URLs), or fail
                if not prediction.outputs_available:
                    raise damaged_error(manifest, damage)
            if prediction.status in ("failed", "canceled", "aborted"):
                ensure_succeeded(prediction)
            if not prediction.outputs_available:
                raise OutputsRemoved(
                    f"prediction {prediction.id} ({prediction.model or 'unknown model'}): "
                    "Replicate already removed its outputs"
                )
            record = CacheRecord(
                key=key, model=prediction.model, state="pending", prediction_id=prediction.id
            )
            previous = await asyncio.to_thread(runtime.cache.get, key)
            if previous is not None:
                record = record.model_copy(update={"archives": previous.archives})
            await asyncio.to_thread(runtime.cache.put, record)
            staged = await self.steps.download(runtime, prediction)
            previews = await staged_previews(staged)  # before archive discards the staging
            await lease.ensure_held()  # fencing: nobody else can be archiving it now
            ready = Ready(record=record, prediction=prediction, created=False)
            manifest = await self.steps.archive(runtime, ready, staged)
        summary = RunSummary.of(
            runtime, manifest, cached=False, created=0, refetches=staged.refetches
        ).model_copy(update={"previews": previews})
        return self._result(prediction, "archived", summary=summary)

    @staticmethod
    def _result(
        prediction: Prediction,
        outcome: Outcome,
        error: BaseException | None = None,
        *,
        summary: RunSummary | None = None,
    ) -> ExistingResult:
        return ExistingResult(
            prediction_id=prediction.id,
            outcome=outcome,
            status=prediction.status,
            model=prediction.model or None,
            error=one_line(error) if error is not None else None,
            permanent=outcome == "failed" and isinstance(error, PermanentError),
            summary=summary,
        )


def _whole_run_error(exc: BaseException) -> bool:
    """Errors no other prediction would escape: bad token, bad configuration."""
    from .errors import AuthenticationError, ConfigurationError

    return isinstance(exc, AuthenticationError | ConfigurationError)
