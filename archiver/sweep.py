"""Sweep: list the account's recent predictions and archive every succeeded one not yet kept.

Replicate removes an API prediction's outputs an hour after it was created, whoever created it.
A sweep lists the predictions created within a window (`GET /v1/predictions?created_after=..
&created_before=..`, newest first, following `next`), and gives each one an outcome:

    archived  its outputs are now in the archive
    cached    it was archived before (nothing downloaded)
    removed   its outputs were gone before we got there: a paid result lost
    failed    archiving it failed (the error says why; the next sweep tries again)
    skipped   it failed, was canceled or aborted: nothing to keep
    pending   still running: the next sweep (its window overlaps) picks it up

It never creates a prediction. Each list page is retried by `archiver.retry` alone (the
`list_page` policy: `ARCHIVER_API_ATTEMPTS` tries, 429s waiting their `Retry-After`, all waits
within `ARCHIVER_LIST_WAIT_BUDGET`); when it gives up, the sweep stops with its one-line error.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Literal
from urllib.parse import urlencode

from .errors import ConfigurationError
from .existing import ArchiveReport, ExistingArchiver, ExistingResult
from .pipeline import Steps
from .prediction import Prediction
from .replicate_api import ReplicateAPI
from .runtime import Runtime

Source = Literal["api", "web", "all"]
SOURCES: tuple[str, ...] = ("api", "web", "all")
MAX_WINDOW = timedelta(days=14)
_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def parse_duration(text: str) -> timedelta:
    """`90s`, `55m`, `2h`, `1d`, `1h30m` as a timedelta; ConfigurationError naming the value."""
    match = _DURATION.match(text.strip().lower())
    if not text.strip() or not match or not any(match.groups()):
        raise ConfigurationError(
            f"invalid duration {text!r}: expected a number with a unit, like 90s, 55m or 2h"
        )
    days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
    value = timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
    if value <= timedelta(0) or value > MAX_WINDOW:
        raise ConfigurationError(f"invalid duration {text!r}: must be between 1s and 14d")
    return value


def iso(moment: datetime) -> str:
    """ISO 8601 UTC with a `Z`, as the list filters take it."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class SweepReport(ArchiveReport):
    """Every listed prediction and its outcome, and the window listed."""

    created_after: datetime
    created_before: datetime
    source: str


async def list_recent(
    api: ReplicateAPI,
    *,
    created_after: datetime,
    created_before: datetime,
    source: Source = "api",
) -> list[Prediction]:
    """The predictions created in `[created_after, created_before)`, newest first, each once.

    `source="web"` asks the API for website predictions only; `"api"` keeps those created
    through the API; `"all"` keeps both.
    """
    query = {"created_after": iso(created_after), "created_before": iso(created_before)}
    if source == "web":
        query["source"] = "web"
    url: str | None = f"/v1/predictions?{urlencode(query)}"
    seen: dict[str, Prediction] = {}
    while url:
        page = await api.list_page(url)  # retried there, within its budget
        for item in page.get("results") or []:
            prediction = Prediction.model_validate(item)
            if not _wanted(prediction, source, created_after, created_before):
                continue
            seen.setdefault(prediction.id, prediction)
        next_url = page.get("next")
        url = next_url if isinstance(next_url, str) and next_url else None
    return list(seen.values())


def _wanted(prediction: Prediction, source: Source, after: datetime, before: datetime) -> bool:
    if source != "all" and (prediction.source or "api") != source:
        return False
    created = prediction.created_at
    return created is None or after <= created < before


async def sweep(
    runtime: Runtime,
    *,
    since: timedelta,
    source: Source = "api",
    concurrency: int = 8,
    steps: Steps = Steps(),
    now: datetime | None = None,
    on_result: Callable[[ExistingResult], None] | None = None,
) -> SweepReport:
    """List the window ending `now` (default: the current time) and archive what needs it."""
    if source not in SOURCES:
        raise ConfigurationError(f"invalid source {source!r}: expected api, web or all")
    before = now or datetime.now(UTC)
    after = before - since
    predictions = await list_recent(
        runtime.api,
        created_after=after,
        created_before=before,
        source=source,
    )
    archiver = ExistingArchiver(runtime, steps)
    gate = asyncio.Semaphore(concurrency)

    async def one(prediction: Prediction) -> ExistingResult:
        async with gate:
            if prediction.status in ("failed", "canceled", "aborted"):
                result = ExistingResult(
                    prediction_id=prediction.id,
                    outcome="skipped",
                    status=prediction.status,
                    model=prediction.model or None,
                )
            else:
                result = await archiver.prediction(prediction, wait=False)
        if on_result is not None:
            on_result(result)
        return result

    results = await asyncio.gather(*(one(p) for p in predictions))
    return SweepReport(
        created_after=after,
        created_before=before,
        source=source,
        dest=runtime.dest.url,
        predictions=list(results),
    )
