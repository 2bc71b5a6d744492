"""Parsing of the ``Prefer`` and ``Cancel-After`` headers, version references and list dates."""

from __future__ import annotations

import re
from datetime import UTC, datetime

MAX_WAIT_SECONDS = 60
_WAIT = re.compile(r"^wait(?:=(\d+))?$")
_NUMBER = r"\d+(?:\.\d+)?"
_DURATION = re.compile(rf"^(?:{_NUMBER}(?:h|ms|m|s))+$")
_PART = re.compile(rf"({_NUMBER})(h|ms|m|s)")
_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
_VERSION_ID = re.compile(r"^[0-9a-f]{64}$")


def parse_prefer_wait(header: str | None) -> float | None:
    """Seconds to block for ``Prefer: wait`` (60) or ``wait=N`` (1..60); None otherwise."""
    for token in (header or "").split(","):
        match = _WAIT.match(token.strip())
        if match:
            if match.group(1) is None:
                return float(MAX_WAIT_SECONDS)
            seconds = int(match.group(1))
            return float(seconds) if 1 <= seconds <= MAX_WAIT_SECONDS else None
    return None


def parse_duration(text: str) -> float:
    """Parse ``30``, ``30s``, ``0.2s``, ``5m``, ``1h30m45s``, ``250ms`` into positive seconds.

    Unlike the real API (minimum 5 s) any positive value is accepted, so tests stay fast.
    Raises ValueError for anything else.
    """
    value = text.strip()
    if re.fullmatch(_NUMBER, value):
        seconds = float(value)
    elif _DURATION.match(value):
        seconds = sum(float(n) * _UNITS[unit] for n, unit in _PART.findall(value))
    else:
        raise ValueError(f"invalid duration {text!r}")
    if seconds <= 0:
        raise ValueError(f"duration must be positive: {text!r}")
    return seconds


def split_version(ref: str) -> tuple[str | None, str | None]:
    """``(model, version_id)`` of ``owner/name:id``, ``owner/name`` or a bare id.

    Either part may be None; raises ValueError when ``ref`` is none of those forms.
    """
    if ":" in ref:
        model, _, vid = ref.partition(":")
        if model.count("/") == 1 and all(model.split("/")) and vid:
            return model, vid
        raise ValueError(ref)
    if ref.count("/") == 1 and all(ref.split("/")):
        return ref, None
    if _VERSION_ID.match(ref):
        return None, ref
    raise ValueError(ref)


def parse_iso_timestamp(value: str | None) -> float | None:
    """Unix seconds of an ISO 8601 date-time query value (None when absent)."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(f"not an ISO 8601 date-time: {value!r}") from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()
