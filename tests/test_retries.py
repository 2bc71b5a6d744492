"""Prefect task retries: transient errors are retried, permanent ones fail at once."""

import pytest

from archiver import pipeline
from archiver.errors import StorageError, StorageUnavailable

MODEL = "black-forest-labs/flux-schnell"


def _flaky(monkeypatch, error: Exception, failures: int) -> list[int]:
    calls: list[int] = []
    real = pipeline.archive_staged

    def archive_staged(*args, **kwargs):
        calls.append(1)
        if len(calls) <= failures:
            raise error
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline, "archive_staged", archive_staged)
    return calls


def test_transient_error_is_retried_by_prefect(run_flow, monkeypatch, emulator):
    """A store outage during archive is retried by the task and the run succeeds."""
    calls = _flaky(monkeypatch, StorageUnavailable("store down (test)"), failures=2)
    summary = run_flow(MODEL, {"prompt": "retry me"})
    assert len(calls) == 3 and len(summary.files) == 1
    assert emulator.stats().creates_accepted == 1


def test_permanent_error_is_not_retried(run_flow, monkeypatch):
    """A permanent storage error fails the run on the first attempt."""
    calls = _flaky(monkeypatch, StorageError("access denied (test)"), failures=5)
    with pytest.raises(StorageError):
        run_flow(MODEL, {"prompt": "do not retry me"})
    assert len(calls) == 1


def test_retry_condition_is_a_plain_function():
    """Prefect 3.8 only calls retry_condition_fn when it is a plain function."""
    import inspect

    from tasks.archive import archive
    from tasks.download import download
    from tasks.generate import generate

    for task in (generate, download, archive):
        assert inspect.isfunction(task.retry_condition_fn)


def test_retry_condition_refuses_errors_a_retry_loop_gave_up_on():
    """Prefect re-runs a step for a fresh transient error, never for one a request loop gave up on."""
    from prefect.states import Failed

    from archiver.errors import ServiceUnavailable
    from archiver.retry import given_up
    from tasks.retry import retry_transient

    assert retry_transient(None, None, Failed(data=StorageUnavailable("store down (test)")))
    assert not retry_transient(None, None, Failed(data=given_up(ServiceUnavailable("api down"))))
    assert not retry_transient(None, None, Failed(message="no exception attached"))
