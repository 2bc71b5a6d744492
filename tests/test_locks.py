"""Locks stay held while their holder works, and a lost lock stops a create before it is paid.

Redis tests use the Redis at 127.0.0.1:6379 (ARCHIVER_TEST_REDIS_URL to change it) and keys of
their own; they are skipped, saying why, when it is not reachable.
"""

from __future__ import annotations

import asyncio
import os
import re
import uuid

import pytest

from archiver.errors import LockLost
from archiver.locks import FileKeyLock, RedisKeyLock
from archiver.pipeline import process
from archiver.prediction import ModelRef, PredictionRequest
from archiver.runtime import Runtime
from archiver.settings import Settings
from tests.waiting import await_until, settle

pytestmark = pytest.mark.slow  # real Redis TTLs outlived on purpose

MODEL = "black-forest-labs/flux-schnell"
DEADLINE = 60.0


@pytest.fixture
def redis_url() -> str:
    """The test Redis, or a skip that says why."""
    url = os.environ.get("ARCHIVER_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    import redis  # the dev extra installs it: missing means a broken install, not a skip

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=2)
        client.ping()
        client.close()
    except Exception as exc:  # noqa: BLE001 - any failure means: no Redis for this test
        pytest.skip(f"Redis at {url} is not reachable: {exc}")
    return url


def test_redis_lock_stays_held_past_its_ttl_while_its_holder_works(redis_url):
    """A holder busy for 4 TTLs keeps the lock: a second worker gets it only after release."""
    key = f"test-{uuid.uuid4().hex}"
    ttl = 0.5

    async def go() -> list[str]:
        first, second = RedisKeyLock(redis_url, ttl=ttl), RedisKeyLock(redis_url, ttl=ttl)
        events: list[str] = []

        async def waiter() -> None:
            async with second.hold(key):
                events.append("second acquired")

        async with first.hold(key) as lease:
            task = asyncio.create_task(waiter())
            await asyncio.sleep(4 * ttl)  # the holder's work, longer than the TTL
            await lease.ensure_held()  # still ours: no exception
            events.append("first releases")
        await asyncio.wait_for(task, DEADLINE)
        await first.client.aclose()
        await second.client.aclose()
        return events

    assert asyncio.run(go()) == ["first releases", "second acquired"]


def test_lost_redis_lease_fails_the_fencing_check(redis_url):
    """When another worker took the key (our TTL ran out), ensure_held raises LockLost."""
    key = f"test-{uuid.uuid4().hex}"

    async def go() -> None:
        lock = RedisKeyLock(redis_url, ttl=30)
        try:
            async with lock.hold(key) as lease:
                await lease.ensure_held()
                # Another worker's token now sits under our key, as after an expiry and a take.
                await lock.client.set(f"replicate-archiver:lock:{key}", b"someone-else", px=30000)
                with pytest.raises(LockLost):
                    await lease.ensure_held()
            await lock.client.delete(f"replicate-archiver:lock:{key}")
        finally:
            await lock.client.aclose()

    asyncio.run(go())


def test_lost_lease_stops_the_create_before_it_is_sent(redis_url, archive_env, emulator):
    """A create fenced by a lease that was lost raises LockLost and pays for nothing."""
    key = f"test-{uuid.uuid4().hex}"
    request = PredictionRequest(ModelRef.parse(MODEL), {"prompt": key})

    async def go() -> None:
        runtime = Runtime.build(Settings(), dest=str(archive_env))
        lock = RedisKeyLock(redis_url, ttl=30)
        try:
            async with lock.hold(key) as lease:
                await lock.client.delete(f"replicate-archiver:lock:{key}")  # expired under us
                with pytest.raises(LockLost):
                    await runtime.api.create(request, fence=lease.ensure_held)
        finally:
            await lock.client.aclose()
            await runtime.aclose()

    asyncio.run(go())
    assert emulator.stats().creates_accepted == 0


def test_create_held_past_the_lock_ttl_is_paid_once(redis_url, archive_env, emulator):
    """One worker's create outlasts the Redis TTL through 429s; a second worker waiting for the
    same input resumes that prediction instead of creating another."""
    emulator.set_faults(throttle_creates=3, retry_after_seconds=1)
    request = PredictionRequest(ModelRef.parse(MODEL), {"prompt": uuid.uuid4().hex})
    ttl = 0.5  # the create takes about 3 s: 6 TTLs

    async def go():
        workers = [Runtime.build(Settings(), dest=str(archive_env)) for _ in range(2)]
        for worker in workers:
            worker.lock = RedisKeyLock(redis_url, ttl=ttl)
        try:
            first = asyncio.create_task(process(workers[0], request))

            await await_until(  # the first worker's intent record: its create has begun
                lambda: workers[0].cache.get(request.cache_key) is not None,
                DEADLINE,
                "the first worker's create to begin",
            )
            second = asyncio.create_task(process(workers[1], request))
            return await asyncio.wait_for(asyncio.gather(first, second), DEADLINE)
        finally:
            for worker in workers:
                await worker.lock.client.aclose()
                await worker.aclose()

    one, two = asyncio.run(go())
    assert emulator.stats().creates_accepted == 1
    assert one.prediction_id == two.prediction_id
    assert one.predictions_created + two.predictions_created == 1


def test_file_lock_serialises_holders_and_never_expires(tmp_path):
    """A flock excludes a second holder of the same key until released; its lease stays held."""
    lock = FileKeyLock(tmp_path / "locks")

    async def go() -> list[str]:
        events: list[str] = []

        async def waiter() -> None:
            events.append("second tries")
            async with lock.hold("k"):
                events.append("second acquired")

        async with lock.hold("k") as lease:
            task = asyncio.create_task(waiter())
            await await_until(lambda: "second tries" in events, what="the second holder")
            await settle()  # it would hold the key now if nothing kept it out
            await lease.ensure_held()
            events.append("first releases")
        await asyncio.wait_for(task, DEADLINE)
        return events

    assert asyncio.run(go()) == ["second tries", "first releases", "second acquired"]


def test_file_locks_share_a_few_files_and_exclude_across_processes(tmp_path, monkeypatch):
    """Every key locks a byte of one of a few fixed files (no file per key), distinct keys do
    not block each other, and a holder in another process excludes this one until released."""
    import subprocess
    import sys

    from archiver import locks

    refused: list[tuple] = []  # every attempt that found the byte locked elsewhere
    attempt = locks._try

    def watched(take, *args):
        if attempt(take, *args):
            return True
        refused.append(args)
        return False

    monkeypatch.setattr(locks, "_try", watched)
    lock = FileKeyLock(tmp_path / "locks")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import asyncio, sys\n"
            "from pathlib import Path\n"
            "from archiver.locks import FileKeyLock\n"
            "async def main():\n"
            "    async with FileKeyLock(Path(sys.argv[1])).hold('shared'):\n"
            "        print('held', flush=True)\n"
            "        sys.stdin.readline()\n"
            "asyncio.run(main())\n",
            str(tmp_path / "locks"),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"

        async def go() -> tuple[bool, bool]:
            async with lock.hold("a"), lock.hold("b"), lock.hold("c"):
                pass  # distinct keys: all held at once
            blocked = asyncio.ensure_future(_enter(lock, "shared"))
            await await_until(lambda: len(refused) >= 2 or blocked.done(), what="two attempts")
            was_blocked = not blocked.done()
            assert holder.stdin is not None
            holder.stdin.write("\n")
            holder.stdin.flush()
            await asyncio.wait_for(blocked, DEADLINE)
            return was_blocked, blocked.result()

        assert asyncio.run(go()) == (True, True)
    finally:
        holder.kill()
        holder.wait()
    names = [p.name for p in (tmp_path / "locks").iterdir()]
    assert names and all(re.fullmatch(r"keys-\d\d\.lock", name) for name in names), names


async def _enter(lock: FileKeyLock, key: str) -> bool:
    async with lock.hold(key):
        return True
