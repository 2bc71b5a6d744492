"""HMAC-SHA256 signing of expiring delivery URLs.

A delivery URL looks like ``/delivery/{prediction_id}/{index}/{quoted name}?expires=..&sig=..``.
The signature covers the exact (still percent-encoded) path and the expiry, so changing
either one invalidates the URL.  The host is not signed: ``output_host`` may move it.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
from urllib.parse import quote

from emulator.clock import Clock, SystemClock

DELIVERY_PREFIX = "/delivery/"


def quote_name(name: str) -> str:
    """Percent-encode a file name into a single URL path segment.

    Every reserved character (``/``, ``\\``, ``?``, ``#``, ``%``, control characters, non-ASCII)
    is encoded, and names made only of dots are fully encoded so that no client
    normalises them away as ``.``/``..`` path segments.
    """
    quoted = quote(name, safe="")
    if quoted and set(quoted) == {"."}:
        quoted = "%2E" * len(quoted)
    return quoted


def delivery_path(prediction_id: str, index: int, name: str) -> str:
    """The unsigned, encoded path of one output file."""
    return f"{DELIVERY_PREFIX}{prediction_id}/{index}/{quote_name(name)}"


class UrlSigner:
    """Signs and verifies delivery paths with a per-emulator random secret."""

    def __init__(self, secret: bytes | None = None, clock: Clock | None = None) -> None:
        self._secret = secret or secrets.token_bytes(32)
        self.clock: Clock = clock or SystemClock()

    def signature(self, path: str, expires: int) -> str:
        """Hex HMAC-SHA256 of ``path`` and ``expires``."""
        message = f"{path}\n{expires}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def sign(self, path: str, ttl_seconds: float, *, expired: bool = False) -> str:
        """Return ``path?expires=..&sig=..`` valid for at least ``ttl_seconds``.

        ``expires`` is an integer unix time (rounded up); with ``expired=True`` (or a
        zero TTL) the URL is signed with an expiry already in the past.
        """
        now = self.clock.now()
        if expired or ttl_seconds <= 0:
            expires = math.floor(now) - 1
        else:
            expires = math.ceil(now + ttl_seconds)
        return f"{path}?expires={expires}&sig={self.signature(path, expires)}"

    def verify(self, path: str, expires: str | None, sig: str | None) -> bool:
        """True when ``sig`` matches ``path`` and ``expires`` (expiry itself is not checked)."""
        if not expires or not sig or not expires.lstrip("-").isdigit():
            return False
        return hmac.compare_digest(self.signature(path, int(expires)), sig)

    def expired(self, expires: str) -> bool:
        """True once the (already verified) ``expires`` time has passed."""
        return self.clock.now() > int(expires)
