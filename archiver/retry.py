"""Retry policy as data, and "should I retry?" as a plain predicate.

Only `TransientError`s are retried; everything else (a `PermanentError`, a bug) fails at once.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import TransientError


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry a step."""

    retries: int = 3
    first_delay: float = 2.0
    multiplier: float = 2.0
    max_delay: float = 60.0

    def delays(self) -> list[float]:
        """The wait before each retry: exponential, capped."""
        return [
            min(self.first_delay * self.multiplier**attempt, self.max_delay)
            for attempt in range(self.retries)
        ]


def should_retry(exc: BaseException | None) -> bool:
    """True for errors that may pass if the same step runs again."""
    return isinstance(exc, TransientError)
