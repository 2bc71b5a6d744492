"""Task: write the staged files and the manifest into the archive, atomically, manifest last."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from archiver.download import Staged
from archiver.generate import Ready
from archiver.manifest import Manifest
from archiver.pipeline import archive_step
from archiver.runtime import Runtime

from .events import emit_archived
from .retry import retry_transient


@task(name="archive", cache_policy=NO_CACHE, retry_condition_fn=retry_transient)
async def archive(runtime: Runtime, ready: Ready, staged: Staged) -> Manifest:
    manifest = await archive_step(runtime, ready, staged)
    get_run_logger().info("archived %s to %s", manifest.prediction_id, manifest.path)
    emit_archived(manifest, runtime.dest.url)
    return manifest
