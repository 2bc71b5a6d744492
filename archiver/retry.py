"""Every retry policy of the archiver, as data, and the one loop that applies them.

Why a small loop of our own, not stamina, tenacity or Prefect's task retries: the domain is
Prefect-free (batch items run without a task each), the loop must run code *between* attempts
(find a lost create before paying again, re-sign expired delivery URLs), honour a 429's
`Retry-After`, take an injected `sleep` so tests never wait, and mark the error it gives up on
so no outer layer retries it again. That is `retry_call`, about 20 lines; with a library the
hooks would be the same code in its vocabulary, plus a dependency. Prefect's task retries remain,
driven by the `step` policy below and by the same `should_retry` predicate.

One rule keeps counts from multiplying: **every request is retried in exactly one place**.

* Replicate API and delivery requests are retried here, inside the domain, once each. Our API
  client is an `httpx.AsyncClient` with no transport retries (not the replicate client, whose
  transport retries GETs on its own). When a loop gives up, its error is marked `exhausted`
  (`given_up`) and `should_retry` refuses it, so neither a Prefect task retry nor a batch
  item retry runs that request again.
* Archive store requests are retried at step level only (`step`: Prefect task retries in
  flows, `retry_call` in batches). botocore makes one attempt per request
  (`total_max_attempts` 1) and s3fs one (`retries` 1): see `STORE_REQUEST_ATTEMPTS`. A step
  retry re-runs a step whose API requests already succeeded (a resumed generate reads the
  prediction once; a download finds its staging intact), never a request that gave up.

Worst case per step against a host that fails every request, with the default settings
(delays start at `ARCHIVER_RETRY_DELAY` 0.5 s, double, cap at
`ARCHIVER_RETRY_MAX_DELAY` 30 s, +-10 % jitter; a 429 waits its `Retry-After`, at most
`ARCHIVER_MAX_RATE_LIMIT_WAIT`). Every retry logs one INFO line on the `archiver.retry`
logger: what is retried, why (the error, redacted) and how long it waits, so a storm shows.
`tests/test_retry_bounds*.py` drive such a host and assert these counts:

| step | policy (setting) | worst case, requests |
| --- | --- | --- |
| read a prediction, cancel, read a Files API file | `api_get` (`API_ATTEMPTS` 4) | 4 GETs |
| upload an input file (`POST /v1/files`) | `upload` (`API_ATTEMPTS` 4) | 4 POSTs (a repeat costs a duplicate file, never a payment) |
| find a lost create (per list page) | `api_get` | 4 GETs |
| a sweep's list page | `list_page` (`API_ATTEMPTS` 4, `LIST_WAIT_BUDGET` 300 s) | 4 GETs; a 429 waits its `Retry-After` while all waits stay within the budget, else the sweep stops at once |
| create | `create` (`CREATE_ATTEMPTS` 6) | 6 POSTs if none reaches the server; a 5xx or lost answer is looked up before paying again, and if the lookup gives up the create stops: 1 POST + 4 GETs |
| wait for a prediction | `wait_poll` (`WAIT_FAILURES` 8) | 8 consecutive failed polls, then `ServiceUnavailable` (not an hour of swallowed errors) |
| download one file | `download_file` (`DOWNLOAD_ATTEMPTS` 5) | 5 delivery GETs (each may follow 5 redirects); between them at most 4 re-fetches of the prediction (`api_get` each) when URLs expire or streams break |
| a pipeline step (generate, download, archive) | `step` (`TASK_RETRIES` 3 + 1) | 4 runs of the step, only for transient errors no loop above handled: store outages; each store request is 1 HTTP request |
| read a batch file | `READ_BATCH` | 3 reads, only for transient errors (a store outage) |
| archive a prediction a webhook announced | `webhook_job` (`WEBHOOK_ATTEMPTS` 5) | 5 archive jobs of the delivery (e.g. a prediction the API answers 404 for), each queued again in the receiver's durable inbox for its delay (no slot held while waiting), then the delivery is recorded `failed`; a permanent error (a refused output URL) at once, after 1 |
| take slots of Prefect's global create limit | `PREFECT_LIMIT` | 8 requests answered 503 (a busy server; they skip the Prefect client's own retry), 2.3 s in all, then creates are limited in-process; other errors are retried by the Prefect client alone; a full limit (423) is waited out as the server asks, as Prefect does |
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from .errors import PermanentError, RateLimited, TransientError, UrlExpired, redact

if TYPE_CHECKING:
    from .settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")
E = TypeVar("E", bound=BaseException)
Sleep = Callable[[float], Awaitable[None]]

#: Attempts per archive store request inside botocore and inside s3fs (each): the `step`
#: policy is the only retry of store requests.
STORE_REQUEST_ATTEMPTS = 1


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to try one step: `attempts` tries in all (1 = no retry).

    The wait before retry n (1-based) is `first_delay * multiplier**(n-1)`, capped at
    `max_delay`, spread by +-`jitter` (a fraction). A `RateLimited` error waits its
    `retry_after` instead, capped at `retry_after_cap`; a `UrlExpired` does not wait (fresh
    URLs are the cure, not time). All waits of one call stay within `budget`, if set.
    """

    attempts: int = 4
    first_delay: float = 2.0
    max_delay: float = 60.0
    multiplier: float = 2.0
    jitter: float = 0.0
    retry_after_cap: float = 120.0
    #: Seconds all waits of one call may add up to (None: no budget beyond `attempts`). A
    #: wait that would overrun it, a 429's `Retry-After` included, ends the loop at once.
    budget: float | None = None

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"a retry policy needs attempts >= 1, got {self.attempts}")

    @property
    def retries(self) -> int:
        return self.attempts - 1

    def delays(self) -> list[float]:
        """The nominal wait before each retry (no jitter): exponential, capped."""
        return [self.backoff(n) for n in range(1, self.attempts)]

    def backoff(self, retry: int) -> float:
        return min(self.first_delay * self.multiplier ** (retry - 1), self.max_delay)

    def wait(self, retry: int, error: BaseException, rand: Callable[[], float]) -> float:
        """The wait before retry number `retry` after `error`."""
        if isinstance(error, RateLimited):
            return min(error.retry_after, self.retry_after_cap)
        if isinstance(error, UrlExpired):
            return 0.0
        spread = 1.0 + self.jitter * (2.0 * rand() - 1.0)
        return min(self.backoff(retry) * spread, self.max_delay)


@dataclass(frozen=True)
class RetryPolicies:
    """One policy per step (see the module docstring for each one's worst case)."""

    api_get: RetryPolicy = RetryPolicy(4, 0.5, 30.0, jitter=0.1)
    list_page: RetryPolicy = RetryPolicy(4, 0.5, 30.0, jitter=0.1, budget=300.0)
    create: RetryPolicy = RetryPolicy(6, 0.5, 30.0, jitter=0.1)
    wait_poll: RetryPolicy = RetryPolicy(8, 0.5, 30.0, jitter=0.1)
    download_file: RetryPolicy = RetryPolicy(5, 0.5, 30.0, jitter=0.1)
    upload: RetryPolicy = RetryPolicy(4, 0.5, 30.0, jitter=0.1)
    step: RetryPolicy = RetryPolicy(4, 2.0, 60.0)
    webhook_job: RetryPolicy = RetryPolicy(5, 0.5, 30.0, jitter=0.1)

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicies:
        s = settings
        common = {
            "first_delay": s.retry_delay,
            "max_delay": s.retry_max_delay,
            "jitter": 0.1,
            "retry_after_cap": s.max_rate_limit_wait,
        }
        return cls(
            api_get=RetryPolicy(s.api_attempts, **common),
            list_page=RetryPolicy(s.api_attempts, **common, budget=s.list_wait_budget),
            create=RetryPolicy(s.create_attempts, **common),
            wait_poll=RetryPolicy(s.wait_failures, **common),
            download_file=RetryPolicy(s.download_attempts, **common),
            upload=RetryPolicy(s.api_attempts, **common),
            step=RetryPolicy(s.task_retries + 1, s.task_retry_delay, max_delay=600.0),
            webhook_job=RetryPolicy(s.webhook_attempts, **common),
        )


#: Reading a batch file (`batchfile.read_batch`): one read, no loop inside.
READ_BATCH = RetryPolicy(attempts=3, first_delay=1.0, max_delay=4.0)

#: Taking slots of Prefect's global create limit (`tasks/limits.py`): a SQLite-backed server
#: answers 503 when two writes collide, and the collision is over in milliseconds; Prefect's
#: client would wait 2 s before its retry, holding back every create of the batch.
PREFECT_LIMIT = RetryPolicy(attempts=8, first_delay=0.02, max_delay=1.0, jitter=0.5)


def should_retry(exc: BaseException | None) -> bool:
    """True for errors that may pass if the same step runs again, and no loop gave up on."""
    return isinstance(exc, TransientError) and not exc.exhausted


def next_try(
    policy: RetryPolicy,
    failed: int,
    error: BaseException,
    rand: Callable[[], float] = random.random,
) -> float | None:
    """The wait before trying again after `failed` failed attempts, or None when the policy's
    attempts are spent or the error is permanent by its class (trying again cannot help): for
    loops that keep their attempts durably (the webhook inbox), not in a call stack.

    Each try is the whole job again, later (as a rerun would be), so a transient error a loop
    inside gave up on is tried again, within the policy's attempts; so is an error of no class
    of ours (a crashed orchestration)."""
    if failed >= policy.attempts or isinstance(error, PermanentError):
        return None
    return policy.wait(failed, error, rand)


def given_up(exc: E) -> E:
    """Mark `exc` as the error a retry loop gave up on: no outer layer retries it."""
    if isinstance(exc, TransientError):
        exc.exhausted = True
    return exc


async def retry_call(
    policy: RetryPolicy,
    attempt: Callable[[], Awaitable[T]],
    *,
    what: str = "a call",
    sleep: Sleep = asyncio.sleep,
    retry_if: Callable[[BaseException], bool] = should_retry,
    before_retry: Callable[[BaseException], Awaitable[None]] | None = None,
    rand: Callable[[], float] = random.random,
) -> T:
    """`await attempt()` up to `policy.attempts` times while `retry_if(error)` holds, waiting
    at most `policy.budget` seconds in all.

    Between tries: log one INFO line (`what`, why, how long: redacted), sleep as the policy
    says, then `before_retry(error)` (its own errors end the loop as they are). The error given
    up on is raised, marked with `given_up`.
    """
    waited = 0.0
    for number in range(1, policy.attempts + 1):
        try:
            return await attempt()
        except Exception as exc:
            delay = policy.wait(number, exc, rand)
            over_budget = policy.budget is not None and waited + delay > policy.budget
            if number >= policy.attempts or not retry_if(exc) or over_budget:
                given_up(exc)
                raise
            error = exc
        log.info(
            "retrying %s in %.1fs (try %d of %d): %s",
            redact(what),
            delay,
            number + 1,
            policy.attempts,
            redact(_one_line(error)),
        )
        await sleep(delay)
        waited += delay
        if before_retry is not None:
            await before_retry(error)
    raise AssertionError("unreachable")


def _one_line(error: BaseException) -> str:
    lines = str(error).splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}".rstrip(": ")
