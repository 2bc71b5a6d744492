"""See the deadline: each manifest records Replicate's deletion time and the margin left, and each
archive or loss arrives at a real Prefect server as an `archiver.prediction.*` event."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import pytest

from archiver.errors import OutputsRemoved
from archiver.manifest import API_RETENTION, Manifest
from archiver.pipeline import process
from archiver.prediction import ModelRef, PredictionRequest
from archiver.runtime import Runtime
from archiver.settings import Settings
from archiver.sweep import sweep
from tests.conftest import TOKEN
from tests.waiting import wait_until

MODEL = "black-forest-labs/flux-schnell"


def test_manifest_records_the_deadline_and_the_margin(archive_env, emulator):
    """An API prediction: deletes_at = created_at + 1 h, margin = deletes_at - archived_at."""

    async def go():
        runtime = Runtime.build(Settings(), dest=str(archive_env))
        try:
            return await process(runtime, PredictionRequest(ModelRef.parse(MODEL), {"seed": 1}))
        finally:
            await runtime.aclose()

    summary = asyncio.run(go())
    raw = json.loads(open(summary.manifest_url, "rb").read())
    assert set(raw["retention"]) == {"deletes_at", "margin_seconds"}
    manifest = Manifest.model_validate(raw)
    assert manifest.created_at and manifest.retention and summary.retention == manifest.retention
    assert manifest.retention.deletes_at == manifest.created_at + API_RETENTION
    margin = (manifest.retention.deletes_at - manifest.archived_at).total_seconds()
    assert manifest.retention.margin_seconds == margin and 3500 < margin < 3600
    assert raw["retention"]["deletes_at"].endswith("Z") or raw["retention"]["deletes_at"].endswith(
        "+00:00"
    )


def test_web_predictions_have_no_deadline(archive_env, emulator):
    """Replicate keeps a website prediction's outputs: `retention` is null; an old API one
    archived 50 minutes after creation has a margin of about 10 minutes."""
    web = emulator.add_prediction(source="web", age_seconds=7200)
    late = emulator.add_prediction(age_seconds=3000)
    assert web["source"] == "web" and late["source"] == "api"

    async def go():
        runtime = Runtime.build(Settings(), dest=str(archive_env))
        try:
            return await sweep(runtime, since=timedelta(hours=3), source="all")
        finally:
            await runtime.aclose()

    report = asyncio.run(go())
    retention = {p.prediction_id: p.summary.retention for p in report.predictions if p.summary}
    assert retention[web["id"]] is None
    assert 500 < retention[late["id"]].margin_seconds < 600


# -- events at a real Prefect server --------------------------------------------------------------


async def _events(name: str, prediction_id: str) -> list:
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

    event_filter = EventFilter(
        event=EventNameFilter(name=[name]),
        resource=EventResourceFilter(id=[f"replicate.prediction.{prediction_id}"]),
    )
    async with get_client() as client:
        return list((await client.read_events(filter=event_filter, limit=50)).events)


def _await_event(name: str, prediction_id: str) -> list:
    """The events, read back through the events API once the server has them (polled)."""
    return wait_until(
        lambda: asyncio.run(_events(name, prediction_id)),
        timeout=30,
        what=f"{name} for {prediction_id}",
        interval=0.2,
    )


def test_archive_and_loss_events_arrive(run_flow, archive_env, emulator):
    """A run's archive is one `archiver.prediction.archived` event (margin, model, files, dest);
    a damaged archive Replicate can no longer restore, and a prediction whose outputs are gone,
    are each one `archiver.prediction.lost`; no token in any."""
    from flows.archive_existing import archive_existing

    summary = run_flow(MODEL, {"prompt": "seen", "num_outputs": 2})
    (event,) = _await_event("archiver.prediction.archived", summary.prediction_id)
    assert event.resource["archiver.margin"] == "ok"
    assert event.resource["replicate.model"] == MODEL
    assert event.payload["margin_seconds"] == summary.retention.margin_seconds
    assert event.payload["files"] == 2 and event.payload["model"] == MODEL
    assert event.payload["dest"] == str(archive_env)

    (archive_env / summary.files[0].path).unlink()  # damaged, and Replicate's copy gone too
    emulator.set_faults(retention_seconds=0.001)
    with pytest.raises(OutputsRemoved):
        run_flow(MODEL, {"prompt": "seen", "num_outputs": 2})
    (damaged,) = _await_event("archiver.prediction.lost", summary.prediction_id)
    assert (
        "is damaged" in damaged.payload["reason"]
        and summary.files[0].path in (damaged.payload["reason"])
    )

    gone = emulator.add_prediction(age_seconds=5)
    state = asyncio.run(
        archive_existing(prediction_ids=[gone["id"]], dest=str(archive_env), return_state=True)
    )
    assert state.is_failed()
    (lost,) = _await_event("archiver.prediction.lost", gone["id"])
    assert lost.resource["archiver.margin"] == "lost"
    assert "removed" in lost.payload["reason"] and lost.payload["dest"] == str(archive_env)
    for item in (event, damaged, lost):
        assert TOKEN not in item.model_dump_json()


def test_batch_items_archived_are_events_too(prefect_harness, archive_env, emulator, tmp_path):
    """Each item a batch archives is one `archiver.prediction.archived` event with its margin."""
    from flows.batch import archive_batch

    batch = tmp_path / "two.jsonl"
    batch.write_text('{"prompt": "batch one"}\n{"prompt": "batch two", "num_outputs": 2}\n')
    state = asyncio.run(
        archive_batch(file=str(batch), model=MODEL, dest=str(archive_env), return_state=True)
    )
    summary = state.result()
    for item in summary.items:
        (event,) = _await_event("archiver.prediction.archived", item.prediction_id)
        assert event.payload["files"] == len(item.files) and event.payload["model"] == MODEL
        assert event.payload["margin_seconds"] == item.retention.margin_seconds
