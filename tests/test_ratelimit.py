"""The create rate limit: token bucket semantics, in-process and through Prefect's global limit."""

import asyncio
import json
import os
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from archiver.batch import run_batch
from archiver.batchfile import BatchItem
from archiver.ratelimit import CoalescingLimiter, LimitedTransport, TokenBucket
from archiver.runtime import Runtime
from archiver.settings import Settings
from tests.waiting import await_until, settle

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
    answer = asyncio.Event()

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal open_now, peak
        open_now += 1
        peak = max(peak, open_now)
        await answer.wait()  # the server holds every request until the test lets it answer
        open_now -= 1
        return httpx.Response(200, content=b"x")

    async def main() -> None:
        transport = LimitedTransport(lambda n: httpx.MockTransport(handler), 3, shards=2)
        async with httpx.AsyncClient(transport=transport) as client:
            calls = [asyncio.ensure_future(client.get("http://t/")) for _ in range(12)]
            await await_until(lambda: open_now >= 3, what="three requests at the server")
            await settle()  # a fourth would reach the server now if nothing held it back
            assert open_now == 3
            answer.set()
            responses = await asyncio.gather(*calls)
        assert all(r.status_code == 200 for r in responses)

    asyncio.run(main())
    assert peak == 3


def _created_at(manifest_url: str) -> float:
    data = json.loads(Path(manifest_url).read_text())
    return datetime.fromisoformat(data["created_at"]).timestamp()


def test_in_process_limit_spaces_creates_over_real_http(archive_env, emulator):
    """At 60/min with a burst of 1 the runtime's bucket lets one create through a second: four
    creates over real HTTP pass it at 0, 1, 2 and 3 s of its (injected) clock."""
    os.environ["ARCHIVER_CREATE_RATE_PER_MINUTE"] = "60"
    os.environ["ARCHIVER_CREATE_BURST"] = "1"
    try:
        settings = Settings()
    finally:
        del os.environ["ARCHIVER_CREATE_RATE_PER_MINUTE"], os.environ["ARCHIVER_CREATE_BURST"]
    items = [BatchItem(i, i + 1, MODEL, {"prompt": f"limited {i}"}) for i in range(4)]
    clock = FakeClock()
    passed: list[float] = []

    async def main():
        runtime = Runtime.build(settings, dest=str(archive_env))
        built = runtime.api.before_create
        assert isinstance(built, TokenBucket) and (built.rate, built.burst) == (1.0, 1)
        bucket = TokenBucket(built.rate, built.burst, clock=clock, sleep=clock.sleep)

        async def before_create() -> None:
            await bucket()
            passed.append(clock.now - 100.0)

        runtime.api.before_create = before_create
        try:
            return await run_batch(runtime, items, concurrency=4)
        finally:
            await runtime.aclose()

    summary = asyncio.run(main())
    assert summary.counts == {"archived": 4, "cached": 0, "failed": 0}
    assert passed == [0.0, 1.0, 2.0, 3.0]
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


def test_coalescing_limiter_lets_its_advance_through_and_counts_it_in_the_first_take():
    """With advance 3, five creates at once: three pass before the shared limit answers and the
    first take asks for all five; once it has answered, a later create waits for its take."""
    takes: list[int] = []
    answer = asyncio.Event()

    async def take(count: int) -> None:
        takes.append(count)
        await answer.wait()

    async def main() -> None:
        fallback = TokenBucket(10.0, 100)
        limiter = CoalescingLimiter(take, fallback, print, advance=3)
        calls = [asyncio.ensure_future(limiter()) for _ in range(5)]
        await settle()
        assert [call.done() for call in calls] == [True, True, True, False, False]
        assert takes == [5]
        answer.set()
        await asyncio.gather(*calls)
        answer.clear()
        later = asyncio.ensure_future(limiter())
        await settle()
        assert takes == [5, 1] and not later.done()
        answer.set()
        await later
        assert fallback.acquired == 0

    asyncio.run(main())


def test_coalescing_limiter_asks_for_owed_slots_before_closing_or_charges_its_fallback():
    """A create sent ahead is asked for by `aclose` at the latest (a cancelled waiter is not);
    when the shared limit fails instead, the creates sent ahead are charged to the in-process
    bucket with the ones after."""
    takes: list[int] = []
    answer = asyncio.Event()

    async def take(count: int) -> None:
        await answer.wait()  # the shared limit answers when the test says so
        takes.append(count)

    async def broken(count: int) -> None:
        raise RuntimeError("limit deleted")

    async def main() -> None:
        limiter = CoalescingLimiter(take, TokenBucket(10.0, 100), print, advance=1)
        await limiter()
        waiting = asyncio.ensure_future(limiter())  # past the advance: waits for a take
        await settle()
        waiting.cancel()  # its run was cancelled: no slot is asked for it
        assert takes == []
        answer.set()
        await limiter.aclose()
        assert takes == [1]

        fallback = TokenBucket(10.0, 100)
        limiter = CoalescingLimiter(broken, fallback, lambda *a: None, advance=2)
        await asyncio.gather(*(limiter() for _ in range(3)))
        await limiter.aclose()
        assert fallback.acquired == 3 and limiter.broken is not None

    asyncio.run(main())


@pytest.mark.parametrize("advance", [0, 2])
def test_batch_sends_only_its_advance_of_creates_before_the_global_limit_answers(
    advance, prefect_harness, archive_env, emulator, tmp_path, monkeypatch
):
    """The batch's items write their intents while the global limit is first asked for slots;
    until it answers only `create_limit_advance` creates go out (0: none), and every create is
    counted in a granted take exactly once."""
    import flows.batch
    from archiver.cache import PredictionCache
    from tasks.limits import PrefectCreateLimit

    monkeypatch.setenv("ARCHIVER_CREATE_LIMIT_ADVANCE", str(advance))
    intents: list[str] = []
    put = PredictionCache.put

    def recording_put(self, record):
        intents.append(record.state)
        return put(self, record)

    monkeypatch.setattr(PredictionCache, "put", recording_put)
    seen: dict[str, object] = {}
    granted: list[int] = []
    limiters: list[CoalescingLimiter] = []
    increment, setup = PrefectCreateLimit._increment, PrefectCreateLimit.setup

    async def recording_setup(self):
        limiter = await setup(self)
        limiters.append(limiter)
        return limiter

    async def slow_first_increment(self, count):
        if not seen:  # the first take waits until the creates sent ahead are out, the rest held
            try:
                await await_until(
                    lambda: (
                        intents.count("creating") == 4
                        and intents.count("pending") == advance
                        and limiters[0].waiting == 4 - advance
                    ),
                    what=f"{advance} create(s) out and {4 - advance} held back by the limiter",
                )
            except AssertionError as exc:  # the limiter would take it for a broken limit
                seen["timeout"] = str(exc)
            seen.update(
                intents=intents.count("creating"),
                created=intents.count("pending"),
                creates=emulator.stats().create_attempts,
            )
        locked_for = await increment(self, count)
        if locked_for is None:
            granted.append(count)
        return locked_for

    monkeypatch.setattr(PrefectCreateLimit, "setup", recording_setup)
    monkeypatch.setattr(PrefectCreateLimit, "_increment", slow_first_increment)
    batch = tmp_path / "four.jsonl"
    batch.write_text("".join(json.dumps({"prompt": f"ahead {i}"}) + "\n" for i in range(4)))
    summary = asyncio.run(
        flows.batch.archive_batch(file=str(batch), model=MODEL, dest=str(archive_env))
    )
    assert seen == {"intents": 4, "created": advance, "creates": advance}
    assert summary.counts["archived"] == 4 and sum(granted) == 4
