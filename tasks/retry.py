"""The Prefect side of the retry policy: a plain function, as Prefect 3.8 requires."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable
from typing import Any

from prefect.states import get_state_exception

from archiver.retry import should_retry


def retry_transient(task: Any, task_run: Any, state: Any) -> bool | Awaitable[bool]:
    """Prefect `retry_condition_fn`: retry only a transient error no request retry gave up on."""
    if isinstance(state.data, BaseException):  # what Prefect passes for a raised exception
        return should_retry(state.data)
    # Otherwise Prefect's public lookup; on an event loop it is a coroutine, which Prefect awaits.
    found = get_state_exception(state)
    if inspect.isawaitable(found):
        return _classify(found)
    return should_retry(found)


async def _classify(pending: Awaitable[BaseException]) -> bool:
    return should_retry(await pending)
