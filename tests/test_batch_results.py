"""A batch reports each item's outcome the moment that item ends, not when the last one does."""

from __future__ import annotations

import asyncio
import threading

import pytest

from archiver.batch import BatchRunner, ItemResult
from archiver.batchfile import BatchItem
from archiver.runtime import Runtime
from archiver.settings import Settings
from emulator.clock import ManualClock
from tests.waiting import wait_until


@pytest.mark.parametrize(
    "emulator", [{"processing_seconds": 0, "clock": ManualClock()}], indirect=True
)
def test_each_result_is_reported_while_other_items_still_run(archive_env, emulator, monkeypatch):
    """An item that ends early is reported while another is held `processing` by the
    emulator's stopped clock; the held one is reported once the clock moves on."""
    monkeypatch.setenv("ARCHIVER_WAIT_SECONDS", "1")
    emulator.set_faults(finalize_seconds=5)  # on a clock that stands still until advanced
    items = [
        BatchItem(index=0, line=1, model="emulator/image", input={"seed": 1}),
        BatchItem(index=1, line=2, model=None, error="line 2: no model"),
    ]
    seen: list[ItemResult] = []
    results: list[ItemResult] = []

    async def go() -> None:
        runtime = Runtime.build(Settings(), dest=str(archive_env))
        try:
            results.extend(await BatchRunner.of(runtime).run_many(items, on_result=seen.append))
        finally:
            await runtime.aclose()

    thread = threading.Thread(target=lambda: asyncio.run(go()))
    thread.start()
    wait_until(lambda: len(seen) == 1 and len(emulator.stats().created_ids) == 1, 30, "one end")
    assert [(r.index, r.outcome) for r in seen] == [(1, "failed")]
    assert thread.is_alive(), "the held item ended although the clock stood still"
    emulator.clock.advance(5)
    thread.join(60)
    assert [(r.index, r.outcome) for r in seen] == [(1, "failed"), (0, "archived")]
    assert [r.index for r in results] == [0, 1], "results keep the file's order"
