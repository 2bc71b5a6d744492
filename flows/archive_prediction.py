"""Flow: one prediction, generated, downloaded the moment it succeeds, and archived."""

from __future__ import annotations

from typing import Any

from prefect import flow

from archiver.pipeline import OnDataRemoved, RunSummary, Steps, process
from archiver.prediction import ModelRef, PredictionRequest
from archiver.progress import current_progress
from archiver.retry import RetryPolicy
from archiver.runtime import Runtime
from archiver.settings import Settings
from flows.settings import flow_settings
from tasks.archive import archive
from tasks.download import download
from tasks.generate import generate


def task_steps(settings: Settings) -> Steps:
    """The pipeline's steps as Prefect tasks, with the retry policy from settings."""
    policy = RetryPolicy(retries=settings.task_retries, first_delay=settings.task_retry_delay)
    options = {"retries": policy.retries, "retry_delay_seconds": policy.delays()}
    return Steps(
        generate=generate.with_options(**options),
        download=download.with_options(**options),
        archive=archive.with_options(**options),
    )


@flow(name="archive-prediction", log_prints=False)
async def archive_prediction(
    model: str,
    input: dict[str, Any] | None = None,
    dest: str | None = None,
    deployment: bool = False,
    refresh: bool = False,
    on_data_removed: OnDataRemoved = "fail",
    deadline: float | None = None,
    storage_options: dict[str, str] | None = None,
) -> RunSummary:
    """Generate a Replicate prediction, download every output at once, archive it with a manifest.

    Args:
        model: `owner/name` or `owner/name:version` (or a deployment's `owner/name`).
        input: The model input.
        dest: Archive destination (local path or fsspec URL); default from settings.
        deployment: Treat `model` as a Replicate deployment.
        refresh: Pay for a new prediction even if this input was archived before.
        on_data_removed: If Replicate already removed the outputs: fail, or rerun once.
        deadline: Seconds after which Replicate cancels the prediction (Cancel-After).
        storage_options: Non-secret fsspec options (endpoint_url, region...).
    """
    settings = flow_settings()
    runtime = Runtime.build(
        settings, dest=dest, storage_options=storage_options, progress=current_progress()
    )
    try:
        request = PredictionRequest(
            ModelRef.parse(model, deployment=deployment), dict(input or {}), deadline
        )
        return await process(
            runtime,
            request,
            refresh=refresh,
            on_data_removed=on_data_removed,
            steps=task_steps(settings),
        )
    finally:
        await runtime.aclose()
