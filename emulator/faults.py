"""Fault injection settings for the emulator, and a thread-safe holder for them.

Every field of :class:`Faults` can be set when the emulator starts (constructor keyword
arguments, CLI flags) and changed while it runs (``Emulator.set_faults`` or
``PATCH /_emulator/faults``).  The count-based faults (see :data:`COUNTERS`) are global
counters: each time one fires it is decremented, until it reaches zero.
"""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass, fields
from typing import Any, Literal, get_args

FinalStatus = Literal["succeeded", "failed", "canceled", "aborted"]
FINAL_STATUSES: tuple[str, ...] = get_args(FinalStatus)

#: Fault fields that are "next N" counters and decrement as they fire.
COUNTERS: tuple[str, ...] = (
    "drop_downloads",
    "truncate_downloads",
    "fail_downloads",
    "fail_reads",
    "throttle_creates",
    "drop_create_responses",
    "fail_predictions",
    "remove_data_after_success",
    "throttle_lists",
    "fail_uploads",
    "refuse_uploads",
)

_FLOATS = (
    "processing_seconds",
    "starting_seconds",
    "finalize_seconds",
    "url_ttl_seconds",
    "retention_seconds",
    "delivery_bytes_per_second",
    "webhook_retry_seconds",
)
_BOOLS = ("first_urls_expired", "hostile_filenames", "data_uri_outputs")
_INTS = (*COUNTERS, "retry_after_seconds", "page_size")


@dataclass(frozen=True)
class Faults:
    """Timing, expiry and failure behaviour of the emulator (see the module docstring)."""

    processing_seconds: float = 0.5
    starting_seconds: float = 0.0
    #: Outputs are published while still processing, this long before success (models that
    #: upload their files, then finish up).
    finalize_seconds: float = 0.0
    url_ttl_seconds: float = 3600.0
    retention_seconds: float = 3600.0
    first_urls_expired: bool = False
    drop_downloads: int = 0
    truncate_downloads: int = 0
    fail_downloads: int = 0
    fail_reads: int = 0
    throttle_creates: int = 0
    retry_after_seconds: int = 1
    drop_create_responses: int = 0
    final_status: FinalStatus = "succeeded"
    error_text: str = "CUDA out of memory"
    fail_predictions: int = 0
    remove_data_after_success: int = 0
    output_host: str | None = None
    hostile_filenames: bool = False
    page_size: int = 100
    #: File outputs come back inline as ``data:<type>;base64,...`` URIs (Replicate's sync API).
    data_uri_outputs: bool = False
    #: Bandwidth of every delivery download in bytes per second (0: as fast as it goes).
    delivery_bytes_per_second: float = 0.0
    #: Next N list requests answer 429 (with ``retry_after_seconds``).
    throttle_lists: int = 0
    #: First wait before a failed ``completed`` webhook delivery is retried (doubling after).
    webhook_retry_seconds: float = 1.0
    #: Next N ``POST /v1/files`` answer 503 (transient), or 413 (refused: too large).
    fail_uploads: int = 0
    refuse_uploads: int = 0

    def __post_init__(self) -> None:
        for name in _FLOATS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TypeError(f"{name} must be a number, got {value!r}")
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value!r}")
            object.__setattr__(self, name, float(value))
        if self.retention_seconds <= 0:
            raise ValueError("retention_seconds must be > 0")
        for name in _BOOLS:
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be a boolean, got {getattr(self, name)!r}")
        for name in _INTS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an integer, got {value!r}")
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value!r}")
        if self.page_size < 1:
            raise ValueError("page_size must be >= 1")
        if self.final_status not in FINAL_STATUSES:
            raise ValueError(f"final_status must be one of {FINAL_STATUSES}")
        if not isinstance(self.error_text, str):
            raise TypeError("error_text must be a string")
        if self.output_host is not None and not isinstance(self.output_host, str):
            raise TypeError("output_host must be a string or None")
        if self.output_host is not None and (not self.output_host or "/" in self.output_host):
            raise ValueError("output_host must be 'host' or 'host:port' (no scheme, no path)")

    def replace(self, **changes: Any) -> Faults:
        """Return a validated copy with ``changes`` applied.

        Unknown names and wrongly typed values raise ``TypeError``; out-of-range values
        raise ``ValueError``.
        """
        unknown = set(changes) - field_names()
        if unknown:
            raise TypeError(f"unknown fault field(s): {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The faults as a JSON-ready dict."""
        return dataclasses.asdict(self)


def field_names() -> set[str]:
    """Names of all fault fields."""
    return {f.name for f in fields(Faults)}


class FaultBox:
    """The emulator's current :class:`Faults`, shared between the server thread and tests."""

    def __init__(self, faults: Faults) -> None:
        self._lock = threading.Lock()
        self._faults = faults

    def get(self) -> Faults:
        """The current faults (an immutable snapshot)."""
        with self._lock:
            return self._faults

    def update(self, **changes: Any) -> Faults:
        """Apply ``changes`` atomically (validated) and return the new faults."""
        with self._lock:
            self._faults = self._faults.replace(**changes)
            return self._faults

    def take(self, counter: str) -> bool:
        """If the ``counter`` fault is armed (> 0), decrement it and return True."""
        with self._lock:
            remaining = getattr(self._faults, counter)
            if remaining <= 0:
                return False
            self._faults = dataclasses.replace(self._faults, **{counter: remaining - 1})
            return True

    def reset_counters(self) -> Faults:
        """Disarm every count-based fault (set them to zero)."""
        return self.update(**dict.fromkeys(COUNTERS, 0))
