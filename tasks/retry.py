"""The Prefect side of the retry policy: a plain function, as Prefect 3.8 requires."""

from __future__ import annotations

from typing import Any

from prefect.states import get_state_exception

from archiver.retry import should_retry


def retry_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect `retry_condition_fn`: retry only a transient error no request retry gave up on."""
    error = state.data if isinstance(state.data, BaseException) else get_state_exception(state)
    return should_retry(error)
