"""A run that died midway is resumed from its cache record, never paid for twice."""

import asyncio
from datetime import UTC, datetime

import pytest

from archiver.cache import CacheRecord
from archiver.errors import StorageError
from archiver.prediction import ModelRef, PredictionRequest
from archiver.runtime import Runtime
from archiver.settings import Settings

MODEL = "black-forest-labs/flux-schnell"


def _crashed_run(archive_env, input: dict, state: str) -> str:
    """Create a prediction the way a run does, then 'crash' leaving only the cache record."""
    request = PredictionRequest(ModelRef.parse(MODEL), input)

    async def go() -> str:
        runtime = Runtime.build(Settings(), dest=str(archive_env))
        try:
            since = datetime.now(UTC)
            prediction = await runtime.api.create(request)
            runtime.cache.put(
                CacheRecord(
                    key=request.cache_key,
                    model=str(request.model),
                    state=state,
                    since=since,
                    prediction_id=prediction.id if state == "pending" else None,
                )
            )
            return prediction.id
        finally:
            await runtime.aclose()

    return asyncio.run(go())


def test_recorded_prediction_is_resumed(run_flow, archive_env, emulator):
    """A pending record (id known, nothing archived) is downloaded, not created again."""
    prediction_id = _crashed_run(archive_env, {"prompt": "resume"}, "pending")
    summary = run_flow(MODEL, {"prompt": "resume"})
    assert summary.prediction_id == prediction_id and summary.predictions_created == 0
    assert emulator.stats().creates_accepted == 1


def test_crash_between_intent_and_answer_is_recovered(run_flow, archive_env, emulator):
    """A 'creating' record without an id finds the prediction by its input instead of paying."""
    prediction_id = _crashed_run(archive_env, {"prompt": "lost intent"}, "creating")
    summary = run_flow(MODEL, {"prompt": "lost intent"})
    assert summary.prediction_id == prediction_id
    assert emulator.stats().creates_accepted == 1


def test_staged_files_are_archived_without_downloading_again(
    run_flow, archive_env, emulator, monkeypatch
):
    """If archiving failed after a full download, the rerun archives from staging."""
    from archiver import pipeline

    real = pipeline.archive_staged

    def store_down(*args, **kwargs):
        raise StorageError("store refused (test)")

    monkeypatch.setattr(pipeline, "archive_staged", store_down)
    with pytest.raises(StorageError):
        run_flow(MODEL, {"prompt": "staged", "num_outputs": 2})
    downloads = len(emulator.stats().downloads)
    monkeypatch.setattr(pipeline, "archive_staged", real)
    summary = run_flow(MODEL, {"prompt": "staged", "num_outputs": 2})
    assert len(summary.files) == 2 and summary.predictions_created == 0
    assert len(emulator.stats().downloads) == downloads == 2


def test_cancelled_flow_run_cancels_its_prediction(archive_env, emulator, monkeypatch):
    """The on_cancellation hook cancels the still-running prediction recorded for the run."""
    from types import SimpleNamespace

    from flows.hooks import cancel_in_flight

    monkeypatch.setenv("ARCHIVER_WAIT_SECONDS", "1")
    emulator.set_faults(processing_seconds=30)
    input = {"prompt": "cancel me"}
    prediction_id = _crashed_run(archive_env, input, "pending")
    run = SimpleNamespace(parameters={"model": MODEL, "input": input, "dest": str(archive_env)})
    cancel_in_flight(None, run, None)
    assert emulator.stats().cancels == [prediction_id]
