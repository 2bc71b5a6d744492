"""The create rate limit: token bucket semantics, in-process and through Prefect's global limit."""

import asyncio
import json
import os
from datetime import datetime
from pathlib import Path

import httpx

from archiver.batch import run_batch
from archiver.batchfile import BatchItem
from archiver.ratelimit import LimitedTransport, TokenBucket
from archiver.runtime import Runtime
from archiver.settings import Settings

MODEL = "black-forest-labs/flux-schnell"


class FakeClock:
    """A clock that only moves when the bucket sleeps."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_bucket_allows_a_burst_then_one_per_interval_in_order():
    """burst=3 at 2/s: three at once, then one every 0.5 s, waiters served first come first."""
    clock = FakeClock()
    bucket = TokenBucket(2.0, 3, clock=clock, sleep=clock.sleep)
    times: list[tuple[int, float]] = []

    async def take(n: int) -> None:
        await bucket()
        times.append((n, clock.now - 100.0))

    async def main() -> None:
        await asyncio.gather(*(take(n) for n in range(6)))

    asyncio.run(main())
    assert [n for n, _ in times] == list(range(6))
    assert [t for _, t in times] == [0.0, 0.0, 0.0, 0.5, 1.0, 1.5]


def test_bucket_refills_while_idle_but_never_beyond_its_burst():
    """After a long idle spell only `burst` calls pass at once."""
    clock = FakeClock()
    bucket = TokenBucket(1.0, 2, clock=clock, sleep=clock.sleep)

    async def main() -> list[float]:
        stamps = []
        for _ in range(2):
            await bucket()
        clock.now += 3600
        start = clock.now
        for _ in range(3):
            await bucket()
            stamps.append(clock.now - start)
        return stamps

    assert asyncio.run(main()) == [0.0, 0.0, 1.0]


def test_per_minute_defaults_the_burst_to_a_minutes_worth():
    """600/min means 10 per second with a burst of 600, as Replicate allows short bursts."""
    bucket = TokenBucket.per_minute(600)
    assert bucket.rate == 10.0 and bucket.burst == 600
    assert Settings(create_rate_per_minute=30).create_burst_size == 30
    assert Settings(create_rate_per_minute=30, create_burst=2).create_burst_size == 2


def test_limited_transport_keeps_at_most_limit_requests_open():
    """Requests past the limit wait until an earlier response is closed."""
    open_now = 0
    peak = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal open_now, peak
        open_now += 1
        peak = max(peak, open_now)
        await asyncio.sleep(0.01)  # the server's time on the request: requests overlap
        open_now -= 1
        return httpx.Response(200, content=b"x")

    async def main() -> None:
        transport = LimitedTransport(lambda n: httpx.MockTransport(handler), 3, shards=2)
        async with httpx.AsyncClient(transport=transport) as client:
            responses = await asyncio.gather(*(client.get("http://t/") for _ in range(12)))
        assert all(r.status_code == 200 for r in responses)

    asyncio.run(main())
    assert peak == 3


def _created_at(manifest_url: str) -> float:
    data = json.loads(Path(manifest_url).read_text())
    return datetime.fromisoformat(data["created_at"]).timestamp()


def test_in_process_limit_spaces_creates_over_real_http(archive_env, emulator):
    """At 60/min with a burst of 1, four creates span at least ~3 s on the emulator's clock."""
    os.environ["ARCHIVER_CREATE_RATE_PER_MINUTE"] = "60"
    os.environ["ARCHIVER_CREATE_BURST"] = "1"
    try:
        settings = Settings()
    finally:
        del os.environ["ARCHIVER_CREATE_RATE_PER_MINUTE"], os.environ["ARCHIVER_CREATE_BURST"]
    items = [BatchItem(i, i + 1, MODEL, {"prompt": f"limited {i}"}) for i in range(4)]

    async def main():
        runtime = Runtime.build(settings, dest=str(archive_env))
        try:
            return await run_batch(runtime, items, concurrency=4)
        finally:
            await runtime.aclose()

    summary = asyncio.run(main())
    assert summary.counts == {"archived": 4, "cached": 0, "failed": 0}
    created = sorted(_created_at(item.manifest_url) for item in summary.items)
    # The bucket lets one create through per second: 4 creates need 3 s (minus the latency of
    # the first request, allowed generously here); without the limit they take milliseconds.
    assert created[-1] - created[0] >= 2.0
    assert emulator.stats().create_attempts == 4


def test_flow_creates_a_decaying_global_limit_and_creates_through_it(
    prefect_harness, archive_env, emulator, tmp_path, monkeypatch
):
    """With a Prefect server, the batch flow creates the named limit (limit = burst, decay =
    rate/60) and its creates are spaced by it."""
    from prefect.client.orchestration import get_client

    from flows.batch import archive_batch

    name = f"test-create-{os.getpid()}-{tmp_path.name}".lower().replace("_", "-")
    monkeypatch.setenv("ARCHIVER_CREATE_LIMIT_NAME", name)
    monkeypatch.setenv("ARCHIVER_CREATE_RATE_PER_MINUTE", "60")
    monkeypatch.setenv("ARCHIVER_CREATE_BURST", "1")
    batch = tmp_path / "three.jsonl"
    batch.write_text("".join(json.dumps({"prompt": f"gcl {i}"}) + "\n" for i in range(3)))
    summary = asyncio.run(
        archive_batch(file=str(batch), model=MODEL, dest=str(archive_env), concurrency=3)
    )

    async def read_limit():
        async with get_client() as client:
            return await client.read_global_concurrency_limit_by_name(name)

    limit = asyncio.run(read_limit())
    assert limit.limit == 1 and limit.slot_decay_per_second == 1.0
    assert summary.counts["archived"] == 3
    created = sorted(_created_at(item.manifest_url) for item in summary.items)
    assert created[-1] - created[0] >= 1.0  # 2 s by the limit; without it, milliseconds


def test_coalescing_limiter_takes_queued_slots_together_and_falls_back_when_broken():
    """Sixty waiters queued together cost one `take(60)` (up to the burst); once `take` fails,
    every waiter (then and later) goes through the in-process bucket, with one warning."""
    from archiver.ratelimit import CoalescingLimiter

    clock = FakeClock()
    takes: list[int] = []
    warnings: list[str] = []
    broken = False

    async def take(count: int) -> None:
        if broken:
            raise RuntimeError("limit deleted")
        takes.append(count)

    async def main() -> None:
        nonlocal broken
        fallback = TokenBucket(10.0, 100, clock=clock, sleep=clock.sleep)
        limiter = CoalescingLimiter(take, fallback, lambda msg, *a: warnings.append(msg % a))
        await asyncio.gather(*(limiter() for _ in range(60)))
        assert takes == [60] and fallback.acquired == 0
        broken = True
        await asyncio.gather(*(limiter() for _ in range(3)))
        await limiter()
        assert fallback.acquired == 4 and takes == [60]

    asyncio.run(main())
    assert warnings == ["create rate limit falls back to in-process: limit deleted"]


def test_deferred_limiter_holds_creates_until_set_up_then_uses_what_it_gave():
    """Creates wait for the set-up; then they go through the limiter it gave, or through the
    fallback when it gave none; a failed set-up fails each create with its own error."""
    from archiver.ratelimit import DeferredLimiter

    calls: list[str] = []

    async def shared() -> None:
        calls.append("shared")

    async def fallback() -> None:
        calls.append("fallback")

    async def main() -> None:
        loop = asyncio.get_running_loop()
        setup: asyncio.Future = loop.create_future()
        limiter = DeferredLimiter(setup, fallback)
        waiting = [asyncio.ensure_future(limiter()) for _ in range(3)]
        await asyncio.sleep(0.01)
        assert calls == [] and not any(w.done() for w in waiting)
        setup.set_result(shared)
        await asyncio.gather(*waiting)
        assert calls == ["shared"] * 3

        none: asyncio.Future = loop.create_future()
        none.set_result(None)
        await DeferredLimiter(none, fallback)()
        assert calls[-1] == "fallback"

        failed: asyncio.Future = loop.create_future()
        failed.set_exception(RuntimeError("no API"))
        try:
            await DeferredLimiter(failed, fallback)()
        except RuntimeError as exc:
            assert str(exc) == "no API"
        else:
            raise AssertionError("a failed set-up let a create through")

    asyncio.run(main())


def test_batch_items_start_their_local_work_while_prefect_is_set_up(
    prefect_harness, archive_env, emulator, tmp_path, monkeypatch
):
    """The batch flow's items take their locks and write their intents while the global limit
    is still being looked up; no create is sent until the look-up is done."""
    import flows.batch
    from archiver.cache import PredictionCache
    from tasks.limits import PrefectCreateLimit

    intents: list[str] = []
    put = PredictionCache.put

    def recording_put(self, record):
        intents.append(record.state)
        return put(self, record)

    monkeypatch.setattr(PredictionCache, "put", recording_put)
    seen_at_lookup: dict[str, object] = {}
    setup = PrefectCreateLimit.setup

    async def slow_setup(self):
        for _ in range(200):  # until both items wrote their intents (or 10 s)
            if intents.count("creating") == 2:
                break
            await asyncio.sleep(0.05)
        seen_at_lookup.update(intents=list(intents), creates=emulator.stats().create_attempts)
        return await setup(self)

    monkeypatch.setattr(PrefectCreateLimit, "setup", slow_setup)
    batch = tmp_path / "two.jsonl"
    batch.write_text("".join(json.dumps({"prompt": f"overlap {i}"}) + "\n" for i in range(2)))
    summary = asyncio.run(
        flows.batch.archive_batch(file=str(batch), model=MODEL, dest=str(archive_env))
    )
    assert seen_at_lookup == {"intents": ["creating", "creating"], "creates": 0}
    assert summary.counts["archived"] == 2
