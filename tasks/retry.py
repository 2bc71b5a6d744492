"""The Prefect side of the retry policy: a plain function, as Prefect 3.8 requires."""

from __future__ import annotations

from typing import Any

from archiver.retry import should_retry


def retry_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect `retry_condition_fn`: retry only when the task failed with a transient error."""
    error = state.data if isinstance(state.data, BaseException) else None
    if error is None:
        try:
            state.result(raise_on_failure=True, _sync=True)
        except BaseException as exc:  # noqa: BLE001 - we classify, never swallow
            error = exc
    return should_retry(error)
