"""Flow state hooks: a run announces itself; a cancelled or crashed run cancels its prediction."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from archiver.generate import cancel_recorded
from archiver.prediction import ModelRef, PredictionRequest
from archiver.progress import announce_run
from flows.runtime import flow_runtime


def announce(flow: Any, flow_run: Any, state: Any) -> None:
    """Prefect on_running hook of every flow: tell whoever started the run where to see it."""
    from prefect.utilities.urls import url_for

    announce_run(str(flow_run.id), url_for(flow_run))


def cancel_in_flight(flow: Any, flow_run: Any, state: Any) -> None:
    """Prefect on_cancellation / on_crashed hook for `archive-prediction`.

    Workers kill a cancelled run's process, so the flow cannot clean up after itself; this hook
    reads the run's parameters, finds the request's cache record and cancels its prediction on
    Replicate if it is still running.
    """
    params = dict(flow_run.parameters or {})
    try:
        request = PredictionRequest(
            ModelRef.parse(params["model"], deployment=bool(params.get("deployment"))),
            dict(params.get("input") or {}),
        )
    except Exception:  # noqa: BLE001 - invalid parameters never created anything
        return

    async def go() -> None:
        async with flow_runtime(params.get("dest"), params.get("storage_options")) as runtime:
            await cancel_recorded(request, api=runtime.api, cache=runtime.cache)

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(go())
        return
    # Called inside the flow's own event loop (an in-process crash, e.g. Ctrl-C): a loop of its own.
    thread = threading.Thread(target=asyncio.run, args=(go(),), name="cancel-in-flight")
    thread.start()
    thread.join()
