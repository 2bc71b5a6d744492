"""The one way a flow (or a flow's hook) opens and closes the archiver's runtime."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Any

from archiver.progress import current_progress
from archiver.runtime import Runtime
from flows.settings import checked_storage_options, checked_store_urls, flow_settings


@contextlib.asynccontextmanager
async def flow_runtime(
    dest: str | None,
    storage_options: Mapping[str, Any] | None = None,
    *,
    file: str | None = None,
) -> AsyncIterator[Runtime]:
    """The run's settings (`flow_settings`), its `storage_options` parameter free of secrets
    and its URLs checked before anything is paid
    (`checked_store_urls`, a batch `file` too), and a runtime on them reporting to the caller's
    progress sink; closed when the block ends, however it ends."""
    await checked_storage_options(storage_options)
    settings = await flow_settings()
    await checked_store_urls(settings, dest, file)
    runtime = Runtime.build(
        settings,
        dest=dest,
        storage_options=dict(storage_options or {}),
        progress=current_progress(),
    )
    try:
        yield runtime
    finally:
        await runtime.aclose()
