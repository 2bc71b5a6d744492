"""Flow: archive predictions that already exist on the account, by id (never creates one)."""

from __future__ import annotations

import asyncio
from typing import Annotated

from prefect import flow
from prefect.states import Failed
from pydantic import Field

from archiver.existing import ArchiveReport, ExistingArchiver, IncompleteArchive
from archiver.progress import current_progress
from archiver.report.previews import PreviewBudget, use_previews
from archiver.runtime import Runtime
from flows.archive_prediction import task_steps
from flows.hooks import announce
from flows.settings import checked_store_urls, flow_settings
from tasks.artifacts import publish_report
from tasks.existing import archive_by_id

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
    settings = await flow_settings()
    await checked_store_urls(settings, dest)
    runtime = Runtime.build(
        settings, dest=dest, storage_options=storage_options, progress=current_progress()
    )
    use_previews(PreviewBudget())  # one gallery's worth of thumbnails, made from staged files
    try:
        archiver = ExistingArchiver(runtime, task_steps(settings))
        unique = list(dict.fromkeys(prediction_ids))
        results = await asyncio.gather(*(archive_by_id(archiver, i) for i in unique))
        report = ArchiveReport(dest=runtime.dest.url, predictions=list(results))
        await publish_report(report, runtime.dest, settings.presign_seconds)
    finally:
        await runtime.aclose()
    if not report.ok:  # a paid result lost or not archived: the run fails, the report is kept
        return Failed(message=IncompleteArchive.of(report).message, data=report)  # type: ignore[return-value]
    return report
