"""fsspec's in-process memory filesystem: the generic write, and reading back is free."""

from __future__ import annotations

from .base import Backend

__all__ = ["BACKEND", "MemoryBackend"]


class MemoryBackend(Backend):
    """`memory://` URLs (tests, demos): the generic temp-then-move write."""

    name = "memory"
    hash_on_verify = True

    def url_for(self, path: str) -> str:
        return f"memory://{path.lstrip('/')}"


BACKEND = MemoryBackend
