"""Flow: sweep the account's recent predictions and archive every succeeded one not yet kept."""

from __future__ import annotations

from typing import Annotated, Literal

from prefect import flow
from prefect.states import Failed
from pydantic import Field

from archiver.existing import IncompleteArchive
from archiver.previews import PreviewBudget, use_previews
from archiver.sweep import SweepReport, parse_duration
from flows.hooks import announce
from flows.runtime import flow_runtime
from tasks.artifacts import publish_report
from tasks.existing import sweep_window

DURATION_PATTERN = r"^(\d+d)?(\d+h)?(\d+m)?(\d+s)?$"


@flow(name="archive-recent", on_running=[announce])
async def archive_recent(
    since: Annotated[str, Field(pattern=DURATION_PATTERN, examples=["15m", "2h"])] = "1h",
    source: Literal["api", "web", "all"] = "api",
    concurrency: Annotated[int, Field(ge=1, le=100)] = 8,
    dest: str | None = None,
    storage_options: dict[str, str] | None = None,
) -> SweepReport:
    """List the predictions created in the last `since` and archive each succeeded one.

    Args:
        since: Window to list, e.g. `90s`, `55m`, `2h`: wider than the schedule's interval so
            consecutive sweeps overlap.
        source: `api` (the predictions whose outputs Replicate deletes), `web`, or `all`.
        concurrency: Predictions archived at once.
        dest: Archive root (local path or fsspec URL); empty: the worker's ARCHIVER_DEST.
        storage_options: Non-secret fsspec options; credentials stay in the worker's environment.
    """
    window = parse_duration(since)
    async with flow_runtime(dest, storage_options) as runtime:
        use_previews(PreviewBudget())  # one gallery's worth of thumbnails, from staged files
        report = await sweep_window(runtime, window, source, concurrency)
        await publish_report(report, runtime.dest, runtime.settings.presign_seconds)
    if not report.ok:  # a paid result lost or not archived: the run fails, the report is kept
        return Failed(message=IncompleteArchive.of(report).message, data=report)  # type: ignore[return-value]
    return report
