"""Small asyncio helpers shared by flows and tasks."""

from __future__ import annotations

import asyncio
from typing import Any


async def settle(future: asyncio.Future[Any]) -> None:
    """Cancel `future` if still running and wait for it; its error, if any, is its own (read
    here only so asyncio logs no "exception was never retrieved")."""
    future.cancel()
    await asyncio.wait([future])
    if not future.cancelled():
        future.exception()
