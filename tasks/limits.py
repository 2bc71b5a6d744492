"""Prefect's side of the create rate limit: provision the global concurrency limit, take slots.

Why here and not in `archiver/` or `flows/`: provisioning talks to the Prefect API (a limit is
a server object, shared by every flow run and worker on that server), so it cannot live in the
Prefect-free domain; and `flows/` only wires. The coalescing of waiters, which needs no Prefect,
is `archiver.ratelimit.CoalescingLimiter`; `PrefectCreateLimit.take` is how it takes slots. It
holds no task: provisioning is one or two API calls, too small for a task run of its own. They
go out with the run's first request for slots, not before it: the limit is read (and created
if missing) while the slots are asked for, one round trip, not two (a busy server took
0.1-0.16 s for each on this project's machine). The batch's first `create_limit_advance`
creates do not wait for that round trip at all: they are counted in it.

Why not Prefect's `rate_limit()`: it sends the same request (`increment_concurrency_slots`,
waiting out each 423 as the server asks), but through Prefect's client, which answers a 503 by
sleeping 2 s (then 4, 8...) before the next try. A SQLite-backed Prefect server answers 503 when
two writes collide (SQLITE_BUSY), and at a batch's start the flow's task runs are being recorded
while the first slots are taken: measured on this project's machine, the first create of a
200-item batch then went out after 2.1-6.9 s instead of 0.3 s, in 1 run of 4 with `rate_limit`.
Here the limit's own client fails fast on those answers (an httpx response hook), and the take
is tried again within milliseconds (`archiver.retry.PREFECT_LIMIT`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import httpx
from prefect import get_run_logger
from prefect.client.orchestration import PrefectClient, get_client
from prefect.events import emit_event

from archiver.aio import settle
from archiver.errors import ConfigurationError, ServiceUnavailable
from archiver.ratelimit import CoalescingLimiter, CreateLimiter, TokenBucket
from archiver.retry import PREFECT_LIMIT, RetryPolicy, Sleep, retry_call
from archiver.settings import Settings

#: What a busy Prefect server answers (a SQLite-backed one when two writes collide): tried again
#: here at once, not after the Prefect client's 2 s. Other answers keep the client's handling
#: (a 429 waits its Retry-After there).
BUSY = 503
LOCKED = 423  # the rate limit is full: wait as long as the server says (`Retry-After`)

ClientFactory = Callable[[dict[str, Any]], PrefectClient]


def _client(httpx_settings: dict[str, Any]) -> PrefectClient:
    return get_client(httpx_settings=httpx_settings)


class PrefectCreateLimit:
    """Prefect's global create limit `settings.create_limit_name`, for one flow run.

    `await setup()` gives the run's `CreateLimiter` at once (None without a Prefect server: the
    runtime's in-process bucket applies), `await aclose()` at the end of the run. Slots are
    taken through a client of its own, opened in the background by `setup()`; the first
    `settings.create_limit_advance` creates go out meanwhile and are counted in the first take
    (`CoalescingLimiter`). A client that cannot be made, or a limit that turns out unusable at
    the first take (inactive, no slot decay), leaves the creates to the in-process bucket.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        client: ClientFactory = _client,
        policy: RetryPolicy = PREFECT_LIMIT,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.settings = settings
        self._make_client = client
        self._policy = policy
        self._sleep = sleep
        self._exit = contextlib.AsyncExitStack()
        self._opening: asyncio.Future[PrefectClient] | None = None
        self._client: PrefectClient | None = None
        self._limiter: CoalescingLimiter | None = None
        self._checked = False  # whether a take checked the limit (exists, can rate-limit)

    @property
    def name(self) -> str:
        return self.settings.create_limit_name

    async def setup(self) -> CreateLimiter | None:
        """The run's limiter on the global limit, at once (None without a Prefect server). No
        API call yet: the first `take` checks the limit (see there)."""
        from prefect.settings import get_current_settings

        if not get_current_settings().api.url:
            return None
        settings = self.settings
        self._opening = asyncio.ensure_future(self._open())
        self._limiter = CoalescingLimiter(
            self.take,
            TokenBucket.per_minute(settings.create_rate_per_minute, settings.create_burst_size),
            get_run_logger().warning,
            advance=settings.create_limit_advance,
        )
        return self._limiter

    async def _open(self) -> PrefectClient:
        hooks = {"response": [_fail_fast_when_busy]}
        # On a thread: a Prefect client loads its TLS context's CA bundle when made, some 40 ms
        # of CPU that the batch's items, starting meanwhile, need the event loop for.
        client = await asyncio.to_thread(self._make_client, {"event_hooks": hooks})
        return await self._exit.enter_async_context(client)

    async def take(self, count: int) -> None:
        """Take `count` slots, waiting while the limit is full. Raises when the limit cannot
        rate-limit (inactive, no slot decay), is gone, or the server stays busy
        (`PREFECT_LIMIT`): the caller then limits in-process.

        The first take also checks the limit, creating it if missing, at the same time as it
        asks for the slots: one round trip, not two."""
        if self._client is None:
            if self._opening is None:
                raise RuntimeError("setup() first")
            try:
                self._client = await asyncio.shield(self._opening)
            except Exception as exc:
                raise ServiceUnavailable(
                    f"no client for Prefect's global concurrency limit {self.name!r}: {exc}"
                ) from exc
        if self._checked:
            await self._take(count)
            return
        check = asyncio.ensure_future(
            retry_call(self._policy, self._check_limit, sleep=self._sleep)
        )
        try:
            try:
                await self._take(count)
                missing = False
            except LookupError:  # asked before the check created it
                missing = True
            except Exception:  # the check's error says more (no slot decay: the take got 422)
                await asyncio.wait([check])
                if not check.cancelled() and (reason := check.exception()) is not None:
                    raise reason from None
                raise
            await check  # an unusable limit raises here, whatever the take got
        except BaseException:
            check.cancel()
            await asyncio.wait([check])
            raise
        self._checked = True
        if missing:
            await self._take(count)

    async def _take(self, count: int) -> None:
        while True:
            locked_for = await retry_call(
                self._policy, lambda: self._increment(count), sleep=self._sleep
            )
            if locked_for is None:
                return
            await self._sleep(locked_for)

    async def aclose(self) -> None:
        """Ask for the slots still owed (creates sent ahead), then close the client."""
        if self._limiter is not None:
            await self._limiter.aclose()
        if self._opening is not None:
            await settle(self._opening)  # its error, if any, the first take reported
        await self._exit.aclose()

    async def _increment(self, count: int) -> float | None:
        """One request for `count` slots: None when granted, else how long to wait."""
        assert self._client is not None, "setup() first"
        try:
            response = await self._client.increment_concurrency_slots(
                names=[self.name], slots=count, mode="rate_limit"
            )
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code == LOCKED:
                return float(exc.response.headers.get("Retry-After", "1"))
            raise
        limits = response.json()
        if not limits:
            raise LookupError(f"global concurrency limit {self.name!r} no longer exists")
        _emit_acquired(limits[0], count)
        return None

    async def _check_limit(self) -> None:
        """Create the decaying limit if missing; `ConfigurationError` if it cannot rate-limit."""
        from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
        from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

        assert self._client is not None, "setup() first"
        settings, name = self.settings, self.name
        try:
            limit = await self._client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            with contextlib.suppress(ObjectAlreadyExists):  # another run created it just now
                await self._client.create_global_concurrency_limit(
                    GlobalConcurrencyLimitCreate(
                        name=name,
                        limit=settings.create_burst_size,
                        slot_decay_per_second=settings.create_rate_per_minute / 60.0,
                        active=True,
                    )
                )
            return
        if not limit.slot_decay_per_second or not limit.active:
            raise ConfigurationError(
                f"global concurrency limit {name!r} is inactive or has no slot decay"
            )
        wanted = (settings.create_burst_size, settings.create_rate_per_minute / 60.0)
        if (limit.limit, limit.slot_decay_per_second) != wanted:
            get_run_logger().info(
                "creates are limited by the existing global concurrency limit %r (limit %d, "
                "decay %g/s), not by this run's settings (%d, %g/s)",
                name,
                limit.limit,
                limit.slot_decay_per_second,
                *wanted,
            )


async def _fail_fast_when_busy(response: httpx.Response) -> None:
    """httpx response hook: a busy server's answer raises here, before Prefect's client would
    sleep 2 s to try again; `retry_call` tries again instead."""
    if response.status_code == BUSY:  # httpx closes the response on the way out
        raise ServiceUnavailable(f"the Prefect API is busy (HTTP {response.status_code})")


def _emit_acquired(limit: dict[str, Any], count: int) -> None:
    """The event Prefect's own `rate_limit` emits, for the UI's event feed."""
    emit_event(
        "prefect.concurrency-limit.acquired",
        resource={
            "prefect.resource.id": f"prefect.concurrency-limit.{limit.get('id')}",
            "prefect.resource.name": str(limit.get("name")),
            "slots-acquired": str(count),
            "limit": str(limit.get("limit")),
        },
    )
