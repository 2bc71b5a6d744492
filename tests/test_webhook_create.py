"""`--webhook` reaches the create: `webhook` plus `webhook_events_filter: ["completed"]`."""

from __future__ import annotations

import asyncio

from archiver.batch import BatchRunner
from archiver.batchfile import BatchItem
from archiver.runtime import Runtime
from archiver.settings import Settings
from tests.waiting import wait_until

URL = "http://127.0.0.1:9/webhooks/replicate"  # nobody listens: the attempts are recorded


def _attempts(emulator, count: int) -> list[dict]:
    """The emulator's webhook attempts, once there are `count`."""
    wait_until(lambda: len(emulator.stats().webhooks) >= count, 30, f"{count} webhook attempts")
    return emulator.stats().webhooks


def test_batch_items_carry_the_webhook(archive_env, emulator):
    """Every prediction a batch creates with a webhook notifies it, `completed` only."""
    items = [
        BatchItem(index=i, line=i + 1, model="emulator/image", input={"seed": i}) for i in range(2)
    ]

    async def go():
        runtime = Runtime.build(Settings(), dest=str(archive_env))
        try:
            return await BatchRunner.of(runtime, webhook=URL).run_many(items)
        finally:
            await runtime.aclose()

    results = asyncio.run(go())
    assert [r.outcome for r in results] == ["archived", "archived"]
    attempts = _attempts(emulator, 2)
    assert {(a["url"], a["event"]) for a in attempts} == {(URL, "completed")}
    assert {a["prediction_id"] for a in attempts} == {r.prediction_id for r in results}


def test_no_webhook_by_default(archive_env, emulator):
    """Without --webhook the create asks for no delivery."""
    items = [BatchItem(index=0, line=1, model="emulator/image", input={"seed": 9})]

    async def go():
        runtime = Runtime.build(Settings(), dest=str(archive_env))
        try:
            return await BatchRunner.of(runtime).run_many(items)
        finally:
            await runtime.aclose()

    assert [r.outcome for r in asyncio.run(go())] == ["archived"]
    assert emulator.stats().webhooks == []
