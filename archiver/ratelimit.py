"""Client-side limits: the create rate (a token bucket) and open HTTP requests per client.

`TokenBucket(rate, burst)` lets `burst` calls through at once, then one every `1 / rate` seconds,
first come first served. It is the `before_create` hook of `ReplicateAPI` (await it before each
create request) when no Prefect server is shared; flows swap in Prefect's global rate limit
when one is configured. `LimitedTransport` caps the requests one httpx client has open.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx

from .errors import ConfigurationError

#: What `ReplicateAPI` awaits before every create request.
CreateLimiter = Callable[[], Awaitable[None]]


class TokenBucket:
    """At most `burst` acquisitions at once, refilled at `rate` per second; FIFO for waiters."""

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ConfigurationError(
                f"a rate limit needs rate > 0 and burst >= 1, got {rate}, {burst}"
            )
        self.rate = float(rate)
        self.burst = int(burst)
        self._clock = clock
        self._sleep = sleep
        self._tokens = float(burst)
        self._stamp = clock()
        self._lock: asyncio.Lock | None = None
        self.acquired = 0

    @classmethod
    def per_minute(cls, per_minute: float, burst: int | None = None) -> TokenBucket:
        """`per_minute` acquisitions a minute; a burst of one minute's worth unless given."""
        return cls(per_minute / 60.0, burst or max(1, int(per_minute)))

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(float(self.burst), self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    async def acquire(self) -> None:
        """Wait until a token is free and take it."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:  # waiters queue here in order; only the head sleeps
            self._refill()
            while self._tokens < 1.0:
                await self._sleep((1.0 - self._tokens) / self.rate)
                self._refill()
            self._tokens -= 1.0
            self.acquired += 1

    def charge(self, count: int) -> None:
        """Count `count` acquisitions made without waiting; the waiters after them wait them
        out (the bucket may go below zero)."""
        self._refill()
        self._tokens -= count
        self.acquired += count

    async def __call__(self) -> None:
        await self.acquire()


class LimitedTransport(httpx.AsyncBaseTransport):
    """An httpx transport with at most `limit` requests open at once (until their response is
    closed), spread over `shards` connection pools; the other requests wait here, in order.

    httpcore's pool scans every connection (and asks each idle one's socket whether it was
    closed) on every request and every response close, and scans its queue too: with hundreds
    of creates held open (`Prefer: wait`) that upkeep dominated the CPU. Waiting here keeps each
    pool small (`limit / shards` connections) with no queue of its own.
    """

    def __init__(
        self, make: Callable[[int], httpx.AsyncBaseTransport], limit: int, shards: int = 1
    ) -> None:
        shards = max(1, min(shards, limit))
        per_shard = -(-limit // shards)
        self.limit = limit
        self.shards = [make(per_shard) for _ in range(shards)]
        self._open = [0] * shards
        self._slots: asyncio.Semaphore | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.limit)
        await self._slots.acquire()
        shard = min(range(len(self.shards)), key=self._open.__getitem__)
        self._open[shard] += 1
        try:
            response = await self.shards[shard].handle_async_request(request)
        except BaseException:
            self._release(shard)
            raise
        if isinstance(response.stream, httpx.ByteStream):  # already in memory: nothing open
            self._release(shard)
        else:
            response.stream = _ReleasingStream(response.stream, lambda: self._release(shard))
        return response

    def _release(self, shard: int) -> None:
        self._open[shard] -= 1
        assert self._slots is not None
        self._slots.release()

    async def aclose(self) -> None:
        for shard in self.shards:
            await shard.aclose()


class _ReleasingStream(httpx.AsyncByteStream):
    def __init__(self, stream: Any, release: Callable[[], None]) -> None:
        self._stream = stream
        self._release: Callable[[], None] | None = release

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._stream:
            yield chunk

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        finally:
            if self._release is not None:
                release, self._release = self._release, None
                release()


class CoalescingLimiter:
    """A create limiter on a shared, remote rate limit; in-process once that fails.

    `take(n)` must wait until `n` slots of the shared limit are granted (e.g. Prefect's global
    rate limit, in `tasks/limits.py`). Waiters that queue up together take their slots in one
    `take` call (up to `max_batch`, by default the whole burst the limit allows), so a burst of
    creates costs one remote call, or a few, instead of one serialized call each. When `take`
    raises (limit deleted, API down) every waiter, now and later, goes through `fallback`
    instead, and `warn` is told once.

    The first `advance` calls pass at once, before the shared limit has answered: their slots
    are owed, and asked for by the next `take` (which the first of them starts). Once a `take`
    has answered, every call waits for its slot. A run's first creates so go out without
    waiting a round trip to the limit's server, which is busy recording the run's start; the
    price is that a run starting while the shared limit is full exceeds it by `advance` creates.
    """

    def __init__(
        self,
        take: Callable[[int], Awaitable[Any]],
        fallback: TokenBucket,
        warn: Callable[..., Any],
        max_batch: int | None = None,
        advance: int = 0,
    ) -> None:
        self.take = take
        self.fallback = fallback
        self.max_batch = max(1, min(max_batch or fallback.burst, fallback.burst))
        self._warn = warn
        self._waiters: list[asyncio.Future[None]] = []
        self._pump: asyncio.Task[None] | None = None
        self._advance = max(0, min(advance, self.max_batch))  # calls that may still pass ahead
        self._owed = 0  # slots of calls that passed ahead, not asked for yet
        self.broken: BaseException | None = None

    async def __call__(self) -> None:
        if self.broken is None:
            if self._advance > 0:  # ahead of the limit's first answer: owed, not waited for
                self._advance -= 1
                self._owed += 1
                self._start_pump()
                return
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            self._start_pump()
            try:
                await waiter
                return
            except _LimitUnavailable:
                pass
        await self.fallback()

    @property
    def waiting(self) -> int:
        """How many calls wait for a slot of the shared limit now (creates held back)."""
        return sum(1 for waiter in self._waiters if not waiter.done())

    async def aclose(self) -> None:
        """Wait until the slots of calls that passed ahead are asked for (they were used)."""
        if self._pump is not None:
            await asyncio.wait([self._pump])

    def _start_pump(self) -> None:
        if self._pump is None or self._pump.done():
            self._pump = asyncio.create_task(self._take_slots())

    async def _take_slots(self) -> None:
        while True:
            self._waiters = [w for w in self._waiters if not w.done()]  # cancelled: no slot
            if not (self._waiters or self._owed):
                return
            owed = self._owed
            batch = self._waiters[: max(0, self.max_batch - owed)]
            try:
                await self.take(owed + len(batch))
            except Exception as exc:  # noqa: BLE001 - any failure: go in-process
                self.broken = exc
                self._warn("create rate limit falls back to in-process: %s", exc)
                self.fallback.charge(self._owed)  # creates sent ahead count there instead
                self._owed = self._advance = 0
                for waiter in self._waiters:
                    if not waiter.done():
                        waiter.set_exception(_LimitUnavailable())
                self._waiters.clear()
                return
            self._owed -= owed
            self._advance = 0  # the limit answers: from now on every call waits for its slot
            del self._waiters[: len(batch)]
            for waiter in batch:
                if not waiter.done():
                    waiter.set_result(None)


class _LimitUnavailable(Exception):
    pass
