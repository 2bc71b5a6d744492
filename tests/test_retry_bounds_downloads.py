"""Delivery hosts and stores that fail every request: a file's download and a store write make
their documented worst-case requests, and neither a batch nor a flow multiplies them.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from archiver.batch import run_batch
from archiver.batchfile import BatchItem
from archiver.delivery import Delivery
from archiver.download import DownloadOptions, download_outputs
from archiver.errors import DownloadInterrupted, StorageUnavailable
from archiver.outputs import HostAllowList
from archiver.retry import STORE_REQUEST_ATTEMPTS, retry_call
from archiver.runtime import Runtime
from archiver.settings import Settings
from archiver.storage import open_destination, write_bytes_atomic
from tests.failing_hosts import FOREVER, MODEL, POLICIES, Sleeps, api_at, request_for, url_of


def _download(
    emulator, tmp_path: Path, prompt: str, *, before: dict | None = None, after: dict | None = None
) -> tuple[Sleeps, BaseException]:
    sleep = Sleeps()
    emulator.set_faults(**(before or {}))

    async def go() -> BaseException:
        api = api_at(emulator.base_url, sleep)
        delivery = Delivery(
            streams=4,
            timeout=30,
            user_agent="test",
            allow=HostAllowList(emulator.delivery_host),
        )
        try:
            prediction = await api.create(request_for(prompt))
            prediction = await api.wait(prediction, timeout=60)
            emulator.set_faults(**(after or {}))
            options = DownloadOptions(policy=POLICIES.download_file, sleep=sleep)
            with pytest.raises(DownloadInterrupted) as caught:
                await download_outputs(
                    prediction,
                    api=api,
                    delivery=delivery,
                    staging_root=tmp_path,
                    options=options,
                )
            return caught.value
        finally:
            delivery.close()
            await api.aclose()

    return sleep, asyncio.run(go())


def test_download_against_a_delivery_host_that_always_fails(emulator, tmp_path):
    """Delivery answers 503 forever: 5 requests per file, no re-fetch, then DownloadInterrupted."""
    sleep, error = _download(emulator, tmp_path, "cdn down", after={"fail_downloads": FOREVER})
    stats = emulator.stats()
    assert [d["status"] for d in stats.downloads] == [503] * POLICIES.download_file.attempts
    assert stats.reads == 0 and error.exhausted
    assert len(sleep.waits) == POLICIES.download_file.attempts - 1 == 4


def test_download_of_urls_that_always_expire(emulator, tmp_path):
    """Every URL is dead on arrival: 5 delivery requests and 4 re-fetches, then it gives up."""
    sleep, error = _download(emulator, tmp_path, "always expired", before={"url_ttl_seconds": 0})
    stats = emulator.stats()
    assert [d["status"] for d in stats.downloads] == [403] * POLICIES.download_file.attempts
    assert stats.reads == POLICIES.download_file.attempts - 1 == 4
    assert error.exhausted and sleep.waits == [0.0] * 4, "fresh URLs, not time, are the cure"


def test_s3_store_that_always_fails_takes_one_request_per_try(down_host):
    """botocore and s3fs make one attempt each: one store request per step try, no multiplying."""
    options = {"endpoint_url": url_of(down_host), "key": "k", "secret": "s", "region": "us-east-1"}
    dest = open_destination("s3://bucket/archive", options)
    with pytest.raises(StorageUnavailable):
        write_bytes_atomic(dest, dest.path("manifest.json"), b"{}")
    per_try = sum(down_host.requests.values())
    assert per_try == STORE_REQUEST_ATTEMPTS == 1

    sleep = Sleeps()
    step = POLICIES.step

    async def archive() -> None:
        await asyncio.to_thread(write_bytes_atomic, dest, dest.path("manifest.json"), b"{}")

    with pytest.raises(StorageUnavailable):
        asyncio.run(retry_call(step, archive, sleep=sleep))
    assert sum(down_host.requests.values()) == per_try + step.attempts * per_try
    assert sleep.waits == step.delays() == [2.0, 4.0, 8.0]


def test_batch_item_does_not_multiply_download_retries(archive_env, emulator, monkeypatch):
    """A batch item whose files never download: 5 delivery requests, not 5 x the step retries."""
    monkeypatch.setenv("ARCHIVER_RETRY_DELAY", "0")
    emulator.set_faults(fail_downloads=FOREVER)
    item = BatchItem(index=0, line=1, model=MODEL, input={"prompt": "batch cdn down"})

    async def go():
        runtime = Runtime.build(Settings(), dest=str(archive_env))
        try:
            return await run_batch(runtime, [item])
        finally:
            await runtime.aclose()

    summary = asyncio.run(go())
    assert summary.counts["failed"] == 1 and "gave up after 5 attempts" in summary.items[0].error
    stats = emulator.stats()
    assert len(stats.downloads) == POLICIES.download_file.attempts
    assert stats.creates_accepted == 1


def test_flow_does_not_multiply_download_retries(run_flow, emulator, monkeypatch):
    """Through Prefect: the download task is not retried after its requests gave up: 5 requests."""
    monkeypatch.setenv("ARCHIVER_RETRY_DELAY", "0")
    emulator.set_faults(fail_downloads=FOREVER)
    with pytest.raises(DownloadInterrupted, match="gave up after 5 attempts"):
        run_flow(MODEL, {"prompt": "flow cdn down"})
    stats = emulator.stats()
    assert len(stats.downloads) == POLICIES.download_file.attempts
    assert stats.creates_accepted == 1
