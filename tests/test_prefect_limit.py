"""Prefect's global create limit, through a real Prefect server: slots taken, a busy server's
answers retried at once (not after the Prefect client's 2 s), failures left to the in-process
limit."""

import asyncio
import os

import httpx
from prefect import flow
from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate

from archiver.retry import RetryPolicy
from archiver.settings import Settings
from tasks.limits import PrefectCreateLimit

INCREMENT = "/v2/concurrency_limits/increment"


class FaultyTransport(httpx.AsyncBaseTransport):
    """Passes every request to the server, except that the first increments get the given
    answers instead (None: pass that one through too). Counts the increments sent, and the
    requests the real server answered busy (503: SQLite write collisions happen; each is
    retried after one short wait)."""

    def __init__(self, answers: list[httpx.Response | None]) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.answers = list(answers)
        self.increments = 0
        self.server_busy = 0  # any request of the limit's client
        self.increments_busy = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        increment = request.url.path.endswith(INCREMENT)
        if increment:
            self.increments += 1
            answer = self.answers.pop(0) if self.answers else None
            if answer is not None:
                return answer
        response = await self.inner.handle_async_request(request)
        if response.status_code == 503:
            self.server_busy += 1
            self.increments_busy += increment
        return response

    @property
    def sent(self) -> int:
        """Increments sent, less those the real server answered busy."""
        return self.increments - self.increments_busy

    async def aclose(self) -> None:
        await self.inner.aclose()


def busy() -> httpx.Response:
    return httpx.Response(503, json={"exception_message": "Service Unavailable"})


def settings_for(name: str) -> Settings:
    """A limit of its own: a burst of 10, 1 create a minute (the slots barely decay meanwhile);
    every create waits for its slot (no advance: `test_ratelimit` covers it)."""
    env = {
        "ARCHIVER_CREATE_LIMIT_NAME": name,
        "ARCHIVER_CREATE_LIMIT_ADVANCE": "0",
        "ARCHIVER_CREATE_RATE_PER_MINUTE": "1",
        "ARCHIVER_CREATE_BURST": "10",
    }
    os.environ.update(env)
    try:
        return Settings()
    finally:
        for key in env:
            del os.environ[key]


def limit_through(
    api: str, transport: FaultyTransport, name: str, sleeps: list[float], **options
) -> PrefectCreateLimit:
    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    def client(httpx_settings: dict) -> PrefectClient:
        return PrefectClient(api, httpx_settings={**httpx_settings, "transport": transport})

    return PrefectCreateLimit(settings_for(name), client=client, sleep=sleep, **options)


async def active_slots(name: str) -> int:
    async with get_client() as client:
        return (await client.read_global_concurrency_limit_by_name(name)).active_slots


def unique(tmp_path) -> str:
    return f"test-limit-{os.getpid()}-{tmp_path.name}".lower().replace("_", "-")


def existing(name: str, decay: float = 1 / 60, active: bool = True) -> str:
    """The limit `name` on the server, as a run before this one left it (burst 10)."""

    async def create() -> None:
        async with get_client() as client:
            await client.create_global_concurrency_limit(
                GlobalConcurrencyLimitCreate(
                    name=name, limit=10, slot_decay_per_second=decay, active=active
                )
            )

    asyncio.run(create())
    return name


def take_in_a_flow(limit: PrefectCreateLimit, *counts: int) -> bool:
    """In a flow run: set the limit up, take each of `counts` slots in turn, close it; whether
    set-up gave a limiter."""

    @flow
    async def take() -> bool:
        try:
            limiter = await limit.setup()
            for count in counts:
                await limit.take(count)
        finally:
            await limit.aclose()
        return limiter is not None

    return asyncio.run(take())


def test_busy_answers_are_retried_at_once_by_our_policy_alone(prefect_harness, tmp_path):
    """Two 503s (SQLite busy) then the server: the slots are taken after two of our short
    waits, with no retry of the Prefect client's own (which waits 2 s, then 4 s)."""
    name, sleeps = existing(unique(tmp_path)), []
    transport = FaultyTransport([busy(), busy()])
    limit = limit_through(prefect_harness, transport, name, sleeps)

    assert take_in_a_flow(limit, 3)
    assert transport.sent == 3
    assert len(sleeps) == 2 + transport.server_busy and all(wait < 0.1 for wait in sleeps)
    assert asyncio.run(active_slots(name)) == 3


def test_a_full_limit_is_waited_out_as_the_server_says(prefect_harness, tmp_path):
    """A 423 with Retry-After 0.25: the take waits 0.25 s, then gets its slot."""
    name, sleeps = existing(unique(tmp_path)), []
    locked = httpx.Response(423, headers={"Retry-After": "0.25"})
    transport = FaultyTransport([locked])
    limit = limit_through(prefect_harness, transport, name, sleeps)

    take_in_a_flow(limit, 1)
    assert transport.sent == 2 and len(sleeps) == 1 + transport.server_busy
    assert sleeps.count(0.25) == 1 and all(w < 0.1 for w in sleeps if w != 0.25)
    assert asyncio.run(active_slots(name)) == 1


def test_a_server_that_stays_busy_leaves_creates_to_the_in_process_limit(prefect_harness, tmp_path):
    """Every increment answered 503: exactly the policy's attempts are sent (no client retry
    multiplies them), then creates go through the in-process bucket, with one warning."""
    name, sleeps = unique(tmp_path), []
    transport = FaultyTransport([busy() for _ in range(50)])
    short = RetryPolicy(attempts=3, first_delay=0.01)
    limit = limit_through(prefect_harness, transport, name, sleeps, policy=short)

    @flow
    async def create_twice() -> int:
        try:
            limiter = await limit.setup()
            assert limiter is not None
            await limiter()
            await limiter()
            return limiter.fallback.acquired
        finally:
            await limit.aclose()

    assert asyncio.run(create_twice()) == 2
    assert transport.increments == 3 and len(sleeps) == 2 + transport.server_busy


def create_twice(limit: PrefectCreateLimit):
    """A flow run that creates twice through `limit`: (creates the fallback let through, why
    the limit was given up)."""

    @flow
    async def create_twice() -> tuple[int, str]:
        try:
            limiter = await limit.setup()
            assert limiter is not None
            await limiter()
            await limiter()
            return limiter.fallback.acquired, str(limiter.broken)
        finally:
            await limit.aclose()

    return create_twice()


def test_a_limit_that_cannot_rate_limit_leaves_creates_in_process(prefect_harness, tmp_path):
    """An inactive limit, or one without slot decay: the first create finds out (one
    increment, sent while the limit is read) and every create goes through the runtime's
    bucket, with one warning that names the limit and why."""
    for decay, active in ((1.0, False), (0.0, True)):
        name = existing(f"{unique(tmp_path)}-{int(active)}", decay, active)
        transport = FaultyTransport([])
        limit = limit_through(prefect_harness, transport, name, [])

        acquired, reason = asyncio.run(create_twice(limit))
        assert acquired == 2 and transport.sent == 1
        assert reason == f"global concurrency limit {name!r} is inactive or has no slot decay"
        assert asyncio.run(active_slots(name)) == 0


def test_a_missing_limit_is_created_by_the_first_take(prefect_harness, tmp_path):
    """No limit of that name yet: the first take creates it (burst and decay from settings)
    and takes its slots from it; later takes only increment."""
    name, sleeps = unique(tmp_path), []
    transport = FaultyTransport([])
    limit = limit_through(prefect_harness, transport, name, sleeps)

    take_in_a_flow(limit, 2, 1)

    async def created() -> tuple[int, float, int]:
        async with get_client() as client:
            found = await client.read_global_concurrency_limit_by_name(name)
            return found.limit, found.slot_decay_per_second, found.active_slots

    burst, decay, slots = asyncio.run(created())
    assert (burst, round(decay, 4), slots) == (10, round(1 / 60, 4), 3)
    # 2 increments, plus 1 if the first was asked before the limit existed
    assert 2 <= transport.sent <= 3 and len(sleeps) == transport.server_busy
    assert all(wait < 0.1 for wait in sleeps)


def test_a_client_that_cannot_be_made_leaves_creates_in_process(prefect_harness, tmp_path):
    """The limit's client fails to build (e.g. a bad CA bundle): no create waits on it, every
    create goes through the runtime's bucket, and the reason names the limit."""
    name = unique(tmp_path)

    def no_client(httpx_settings: dict) -> PrefectClient:
        raise OSError("cannot load the CA bundle")

    limit = PrefectCreateLimit(settings_for(name), client=no_client)
    acquired, reason = asyncio.run(create_twice(limit))
    assert acquired == 2
    assert reason == (
        f"no client for Prefect's global concurrency limit {name!r}: cannot load the CA bundle"
    )
