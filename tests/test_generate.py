"""Creating predictions: rate limits, lost answers, API errors, and terminal states."""

import pytest

from archiver.errors import AuthenticationError, PredictionAborted, PredictionFailed

MODEL = "black-forest-labs/flux-schnell"


def test_429_on_create_waits_and_creates_once(run_flow, emulator):
    """A throttled create waits as Retry-After says, then succeeds: one prediction."""
    emulator.set_faults(throttle_creates=2, retry_after_seconds=1)
    summary = run_flow(MODEL, {"prompt": "throttled"})
    stats = emulator.stats()
    assert stats.create_attempts == 3 and stats.creates_accepted == 1
    assert summary.predictions_created == 1


def test_lost_create_answer_is_found_not_paid_twice(run_flow, emulator):
    """The connection drops after the server created it: we find that prediction, not a new one."""
    emulator.set_faults(drop_create_responses=1)
    summary = run_flow(MODEL, {"prompt": "lost answer"})
    stats = emulator.stats()
    assert stats.creates_accepted == 1 and stats.list_calls >= 1
    assert summary.prediction_id == stats.created_ids[0]


def test_api_5xx_on_reads_is_retried(run_flow, emulator):
    """503 on GET prediction is transient."""
    emulator.set_faults(first_urls_expired=True, fail_reads=2)
    assert run_flow(MODEL, {"prompt": "flaky api"}).refetches >= 1


def test_failed_prediction_fails_at_once_with_the_model_error(run_flow, emulator):
    """status failed -> PredictionFailed carrying the model's error text; no retry, no rerun."""
    emulator.set_faults(final_status="failed", error_text="NSFW content detected")
    with pytest.raises(PredictionFailed, match="NSFW content detected"):
        run_flow(MODEL, {"prompt": "fails"})
    assert emulator.stats().creates_accepted == 1


def test_aborted_prediction_is_reported(run_flow, emulator):
    """A deadline before start -> aborted, which the replicate client cannot parse but we can."""
    emulator.set_faults(starting_seconds=3)
    with pytest.raises(PredictionAborted, match="aborted"):
        run_flow(MODEL, {"prompt": "never starts"}, deadline=1)


def test_missing_token_is_permanent(run_flow, emulator, monkeypatch):
    """A 401 from the API fails at once with an authentication error, creating nothing."""
    monkeypatch.delenv("REPLICATE_API_TOKEN")
    with pytest.raises(AuthenticationError, match="401"):
        run_flow(MODEL, {"prompt": "no token"})
    assert emulator.stats().creates_accepted == 0
