"""Prefect events of the deadline: `archiver.prediction.archived` (with the margin left before
Replicate deletes the outputs) and `archiver.prediction.lost` (they were gone before we got
there). docs/deadline.md shows an automation on them.

The resource is the prediction (`replicate.prediction.<id>`); its `archiver.margin` label says
`ok`, `low` (under `LOW_MARGIN`), `none` (Replicate keeps the outputs: a website prediction) or
`lost`, so a trigger can match "lost or low" without reading the payload. A loss's event id is
derived from the prediction and the archive, so a loss seen again (by an overlapping sweep, or
by both a task and its flow) is one event to the server and to its triggers.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from prefect.events import emit_event

from archiver.batch import ItemResult
from archiver.errors import redact
from archiver.existing import ExistingResult
from archiver.manifest import Manifest, Retention
from archiver.pipeline import RunSummary

ARCHIVED = "archiver.prediction.archived"
LOST = "archiver.prediction.lost"
LOW_MARGIN = timedelta(minutes=15)


def margin_label(retention: Retention | None) -> str:
    """`ok`, `low` or `none` (no deadline): the `archiver.margin` label of an archive."""
    if retention is None:
        return "none"
    return "low" if retention.margin_seconds < LOW_MARGIN.total_seconds() else "ok"


def _resource(prediction_id: str, model: str | None, margin: str) -> dict[str, str]:
    return {
        "prefect.resource.id": f"replicate.prediction.{prediction_id}",
        "prefect.resource.name": prediction_id,
        "replicate.model": model or "unknown",
        "archiver.margin": margin,
    }


def _archived(
    prediction_id: str, model: str, retention: Retention | None, files: int, dest: str
) -> None:
    payload: dict[str, Any] = {
        "margin_seconds": retention.margin_seconds if retention else None,
        "deletes_at": retention.deletes_at.isoformat() if retention else None,
        "model": model,
        "files": files,
        "dest": redact(dest),
    }
    emit_event(
        ARCHIVED, resource=_resource(prediction_id, model, margin_label(retention)), payload=payload
    )


def emit_archived(manifest: Manifest, dest: str) -> None:
    """One `archiver.prediction.archived` event for a manifest just written to `dest`."""
    _archived(manifest.prediction_id, manifest.model, manifest.retention, len(manifest.files), dest)


def emit_lost(prediction_id: str, model: str | None, reason: str, dest: str) -> None:
    """One `archiver.prediction.lost` event: the outputs were removed before they were kept."""
    dest = redact(dest)
    emit_event(
        LOST,
        resource=_resource(prediction_id, model, "lost"),
        payload={"model": model, "reason": redact(reason), "dest": dest},
        id=uuid.uuid5(uuid.NAMESPACE_URL, f"{LOST}/{prediction_id}/{dest}"),
    )


def emit_items(results: Sequence[ItemResult], dest: str) -> None:
    """An `archiver.prediction.archived` event for each batch item archived (not cached)."""
    for result in results:
        if result.outcome == "archived" and result.prediction_id:
            model = result.model or "unknown"
            _archived(result.prediction_id, model, result.retention, len(result.files), dest)


def emit_outcome(result: ExistingResult, dest: str) -> None:
    """The event of an existing prediction's outcome, if it has one (archived or removed)."""
    summary: RunSummary | None = result.summary
    if result.outcome == "archived" and summary is not None:
        _archived(result.prediction_id, summary.model, summary.retention, len(summary.files), dest)
    elif result.outcome == "removed":
        emit_lost(result.prediction_id, result.model, result.error or "outputs removed", dest)
