"""The flow run a CLI command starts in process: where to see it, and how it ends after Ctrl-C.

Every flow announces itself once it is running (`flows.hooks.announce`); the first announcement
of a command is its run: its UI URL goes to stderr as `flow run: URL` (and into `--json` as
`flow_run_url`). Prefect records an in-process run whose task was cancelled as Crashed; after a
Ctrl-C the command cancelled the run cleanly (its predictions too), so the run is then set to
Cancelled, which is what happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, TypeVar

from cli import interrupts

T = TypeVar("T")
CANCEL_TIMEOUT = 5.0  # seconds; interrupts.GRACE bounds the whole exit anyway


@dataclass(frozen=True)
class StartedRun:
    run_id: str
    url: str | None


_started: list[StartedRun] = []


def started() -> StartedRun | None:
    """The run this command started, once it is running."""
    return _started[0] if _started else None


def _listen(run_id: str, url: str | None) -> None:
    if _started:
        return  # a nested run of the same command: the first one is the command's run
    _started.append(StartedRun(run_id, url))
    if url:
        sys.stderr.write(f"flow run: {url}\n")
        sys.stderr.flush()


def run(coro: Awaitable[T]) -> T:
    """Run a flow call (as `interrupts.run`), announcing it; a Ctrl-C leaves it Cancelled."""
    from archiver.progress import use_run_listener

    use_run_listener(_listen)
    try:
        return interrupts.run(coro)
    except KeyboardInterrupt:
        if _started:
            _mark_cancelled(_started[0].run_id)
        raise


def _mark_cancelled(run_id: str) -> None:
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.states import Cancelled

    async def go() -> None:
        async with get_client() as client:
            await client.set_flow_run_state(
                UUID(run_id),
                Cancelled(message="Cancelled from the command line (Ctrl-C)"),
                force=True,
            )

    # On failure the run stays Crashed: exiting 130 now is what matters.
    with contextlib.suppress(Exception):
        asyncio.run(asyncio.wait_for(go(), CANCEL_TIMEOUT))


def as_json(model: Any) -> str:
    """A pydantic result as the `--json` document, with the run's `flow_run_url`."""
    run = started()
    document = {**model.model_dump(mode="json"), "flow_run_url": run.url if run else None}
    return json.dumps(document, indent=2)
