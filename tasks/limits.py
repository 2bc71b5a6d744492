"""Prefect's side of the create rate limit: provision the global concurrency limit, take slots.

Why here and not in `archiver/` or `flows/`: provisioning talks to the Prefect API (a limit is
a server object, shared by every flow run and worker on that server), so it cannot live in the
Prefect-free domain; and `flows/` only wires. The coalescing of waiters, which needs no Prefect,
is `archiver.ratelimit.CoalescingLimiter`; this module only gives it Prefect's `rate_limit` as
the way to take slots. It holds no task: provisioning is two API calls at the start of a run,
too small for a task run of its own.
"""

from __future__ import annotations

import contextlib

from prefect import get_run_logger

from archiver.ratelimit import CoalescingLimiter, CreateLimiter, TokenBucket
from archiver.settings import Settings


async def prefect_create_limiter(settings: Settings) -> CreateLimiter | None:
    """Prefect's global rate limit `settings.create_limit_name` (created if missing) when a
    Prefect server is configured; None (the runtime's in-process bucket) otherwise."""
    from prefect.concurrency.asyncio import rate_limit
    from prefect.settings import get_current_settings

    if not get_current_settings().api.url:
        return None
    logger = get_run_logger()
    fallback = TokenBucket.per_minute(settings.create_rate_per_minute, settings.create_burst_size)
    try:
        if not await _ensure_limit(settings):
            return None
    except Exception as exc:  # noqa: BLE001 - any failure here means: limit in-process
        logger.warning(
            "create rate limit stays in-process: cannot use Prefect's global "
            "concurrency limit %r: %s",
            settings.create_limit_name,
            exc,
        )
        return None

    async def take(count: int) -> None:
        await rate_limit(settings.create_limit_name, occupy=count, strict=True)

    return CoalescingLimiter(take, fallback, logger.warning)


async def _ensure_limit(settings: Settings) -> bool:
    """Create the decaying global concurrency limit if missing; False if it cannot rate-limit."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    name = settings.create_limit_name
    async with get_client() as client:
        try:
            limit = await client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            with contextlib.suppress(ObjectAlreadyExists):  # another run created it just now
                await client.create_global_concurrency_limit(
                    GlobalConcurrencyLimitCreate(
                        name=name,
                        limit=settings.create_burst_size,
                        slot_decay_per_second=settings.create_rate_per_minute / 60.0,
                        active=True,
                    )
                )
            return True
    if not limit.slot_decay_per_second or not limit.active:
        get_run_logger().warning(
            "global concurrency limit %r is inactive or has no slot decay: the create rate "
            "limit stays in-process",
            name,
        )
        return False
    wanted = (settings.create_burst_size, settings.create_rate_per_minute / 60.0)
    if (limit.limit, limit.slot_decay_per_second) != wanted:
        get_run_logger().info(
            "creates are limited by the existing global concurrency limit %r (limit %d, decay "
            "%g/s), not by this run's settings (%d, %g/s)",
            name,
            limit.limit,
            limit.slot_decay_per_second,
            *wanted,
        )
    return True
