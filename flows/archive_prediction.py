"""Flow: one prediction, generated, downloaded the moment it succeeds, and archived."""

from __future__ import annotations

from typing import Annotated, Any

from prefect import flow
from pydantic import Field

from archiver.pipeline import OnDataRemoved, RunSummary, Steps, process
from archiver.prediction import ModelRef, PredictionRequest
from archiver.previews import PreviewBudget, use_previews
from archiver.retry import RetryPolicies
from archiver.settings import Settings
from flows.hooks import announce, cancel_in_flight
from flows.runtime import flow_runtime
from tasks.archive import archive
from tasks.artifacts import publish_run
from tasks.download import download
from tasks.generate import generate

# Parameter types for the JSON schema Prefect stores with a deployment: it renders the UI's run
# form, and (enforce_parameter_schema) the API rejects bad values before a run exists. The model
# pattern is in the schema only, so in-process calls still get ModelRef.parse's own error.
MODEL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*(:[A-Za-z0-9]+)?$"
ModelParam = Annotated[
    str,
    Field(
        json_schema_extra={"pattern": MODEL_PATTERN, "examples": ["black-forest-labs/flux-schnell"]}
    ),
]
DeadlineParam = Annotated[float, Field(ge=1, le=86400)] | None
WebhookParam = Annotated[str, Field(pattern=r"^https?://[^\s]+$", max_length=2048)] | None


def task_steps(settings: Settings) -> Steps:
    """The pipeline's steps as Prefect tasks, with the retry policy from settings."""
    policy = RetryPolicies.from_settings(settings).step  # store outages only: see archiver.retry
    retries, delays = policy.retries, policy.delays()
    return Steps(
        generate=generate.with_options(retries=retries, retry_delay_seconds=delays),
        download=download.with_options(retries=retries, retry_delay_seconds=delays),
        archive=archive.with_options(retries=retries, retry_delay_seconds=delays),
    )


@flow(
    name="archive-prediction",
    on_running=[announce],
    on_cancellation=[cancel_in_flight],
    on_crashed=[cancel_in_flight],
)
async def archive_prediction(
    model: ModelParam,
    # A JSON object from the start (default {}): the UI's form opens a JSON editor at once.
    input: dict[str, Any] = {},  # noqa: B006 - Prefect hands each run its own copy
    dest: str | None = None,
    deployment: bool = False,
    refresh: bool = False,
    on_data_removed: OnDataRemoved = "fail",
    deadline: DeadlineParam = None,
    storage_options: dict[str, str] | None = None,
    webhook: WebhookParam = None,
    file_digests: dict[str, str] | None = None,
) -> RunSummary:
    """Generate a Replicate prediction, download every output at once, archive it with a manifest.

    Args:
        model: Replicate model `owner/name` or `owner/name:version` (with `deployment` on: a
            Replicate deployment's `owner/name`), e.g. `black-forest-labs/flux-schnell`.
        input: The model input, a JSON object, e.g. `{"prompt": "a lighthouse", "seed": 7}`.
        dest: Archive root: a local path or fsspec URL (s3://bucket/prefix); empty: the
            worker's ARCHIVER_DEST. Never user:password@ (refused): see docs/safety.md.
        deployment: Treat `model` as a Replicate deployment.
        refresh: Pay for a new prediction even if this input was archived before.
        on_data_removed: If Replicate already removed the outputs: fail, or rerun once.
        deadline: Seconds (1-86400) after which Replicate cancels the prediction (Cancel-After).
        storage_options: Non-secret fsspec options (endpoint_url, region...); credentials
            belong in the worker's environment, never in parameters.
        webhook: Receiver URL for the prediction's `completed` event (`python -m flows
            webhooks`), so the outputs are kept even if this run dies.
        file_digests: `{URL: sha256}` of inputs uploaded with the Files API (`run -i
            key=@file` fills it): the cache key hashes their content, not their URL.
    """
    async with flow_runtime(dest, storage_options) as runtime:
        use_previews(PreviewBudget())  # the gallery's thumbnails, made while files are staged
        request = PredictionRequest(
            ModelRef.parse(model, deployment=deployment),
            dict(input or {}),
            deadline,
            webhook,
            dict(file_digests or {}),
        )
        summary = await process(
            runtime,
            request,
            refresh=refresh,
            on_data_removed=on_data_removed,
            steps=task_steps(runtime.settings),
        )
        await publish_run(summary, request.input, runtime.dest, runtime.settings.presign_seconds)
        return summary
