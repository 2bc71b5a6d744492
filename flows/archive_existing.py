"""Flows: archive predictions that already exist on the account, by id (never creates one):
`archive-existing` (a deployment; a task run per prediction) and `archive-webhooks` (the webhook
receiver's groups; no task runs, its artifacts and each prediction's event only)."""

from __future__ import annotations

import asyncio
from typing import Annotated

from prefect import flow
from prefect.states import Failed
from pydantic import Field

from archiver.existing import ArchiveReport, ExistingArchiver, IncompleteArchive
from archiver.pipeline import Steps
from archiver.previews import PreviewBudget, use_previews
from flows.archive_prediction import task_steps
from flows.hooks import announce
from flows.runtime import flow_runtime
from tasks.artifacts import publish_report
from tasks.existing import archive_by_id, by_id

PredictionId = Annotated[
    str,
    Field(
        pattern=r"^[A-Za-z0-9]{1,64}$",
        json_schema_extra={"examples": ["gm3qorzdhgbfurvjtvhg6dckhu"]},
    ),
]


@flow(name="archive-existing", on_running=[announce])
async def archive_existing(
    prediction_ids: Annotated[list[PredictionId], Field(min_length=1, max_length=1000)],
    dest: str | None = None,
    storage_options: dict[str, str] | None = None,
) -> ArchiveReport:
    """Archive existing Replicate predictions by id: wait for running ones, skip archived ones.

    Args:
        prediction_ids: Ids of predictions on this account, e.g. `["gm3qorzdhgbfurvjtvhg6dckhu"]`.
        dest: Archive root (local path or fsspec URL); empty: the worker's ARCHIVER_DEST.
        storage_options: Non-secret fsspec options; credentials stay in the worker's environment.
    """
    return await _archive_ids(prediction_ids, dest, storage_options, tasks=True)


@flow(name="archive-webhooks")
async def archive_webhooks(
    prediction_ids: Annotated[list[PredictionId], Field(min_length=1, max_length=1000)],
    dest: str | None = None,
) -> ArchiveReport:
    """Archive a group of predictions the webhook receiver was told about (`python -m flows
    webhooks`): as `archive-existing`, without a task run per prediction (a burst of deliveries
    is many groups; each one's summary and gallery artifacts show what it archived).

    Args:
        prediction_ids: Ids of predictions on this account, e.g. `["gm3qorzdhgbfurvjtvhg6dckhu"]`.
        dest: Archive root (local path or fsspec URL); empty: ARCHIVER_DEST.
    """
    return await _archive_ids(prediction_ids, dest, None, tasks=False)


async def _archive_ids(
    prediction_ids: list[str],
    dest: str | None,
    storage_options: dict[str, str] | None,
    *,
    tasks: bool,
) -> ArchiveReport:
    async with flow_runtime(dest, storage_options) as runtime:
        use_previews(PreviewBudget())  # one gallery's worth of thumbnails, from staged files
        archiver = ExistingArchiver(runtime, task_steps(runtime.settings) if tasks else Steps())
        step = archive_by_id if tasks else by_id  # a task run each, or plain calls (+ events)
        unique = list(dict.fromkeys(prediction_ids))
        results = await asyncio.gather(*(step(archiver, i) for i in unique))
        report = ArchiveReport(dest=runtime.dest.url, predictions=list(results))
        await publish_report(report, runtime.dest, runtime.settings.presign_seconds)
    if not report.ok:  # a paid result lost or not archived: the run fails, the report is kept
        return Failed(message=IncompleteArchive.of(report).message, data=report)  # type: ignore[return-value]
    return report
