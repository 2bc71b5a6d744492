"""Publish what a flow run archived as Prefect artifacts: a summary and a gallery, per run
(and a progress artifact while a batch runs).

Thin: the markdown comes from `archiver.report.render`; this module picks stable keys (per
deployment, so the Artifacts page tracks the latest; `<flow>-<deployment>-<kind>`, or
`<flow>-<kind>` outside a deployment) and creates the artifacts. Artifacts never fail a run:
the files are archived already, so a failure to publish is logged and swallowed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Any

from prefect import get_run_logger
from prefect.artifacts import (
    acreate_markdown_artifact,
    acreate_progress_artifact,
    acreate_table_artifact,
    aupdate_progress_artifact,
)

from archiver.batch import BatchProgress, BatchSummary
from archiver.existing import ArchiveReport
from archiver.pipeline import RunSummary
from archiver.previews import PreviewBudget, local_previews
from archiver.report import render
from archiver.report.existing import report_gallery, report_summary
from archiver.storage import Destination


def key(kind: str) -> str:
    """The artifact key of `kind` for the current flow run (stable per deployment).

    Outside a deployment (its run context says so) no API call is made: `prefect.runtime`'s
    deployment name reads the flow run from the API every time it is asked."""
    from prefect.context import FlowRunContext
    from prefect.runtime import deployment, flow_run

    context = FlowRunContext.get()
    run = context.flow_run if context else None
    name = "" if run is not None and run.deployment_id is None else (deployment.name or "")
    return render.artifact_key(flow_run.flow_name or "archiver", name, kind)


async def publish_run(
    summary: RunSummary, input: Mapping[str, Any], dest: Destination, presign_seconds: int = 0
) -> None:
    """Summary and gallery artifacts of one archived prediction."""
    try:
        if summary.cached and not summary.previews:  # a local archive still has the files
            previews = local_previews(summary, dest, PreviewBudget())
            summary = summary.model_copy(update={"previews": previews})
        links = dest.signed_links((f.url for f in summary.files), presign_seconds)
        await acreate_markdown_artifact(
            key=key("summary"),
            markdown=render.run_summary(summary, input, links=links),
            description=f"{summary.prediction_id}: {len(summary.files)} file(s) archived",
        )
        await acreate_markdown_artifact(
            key=key("gallery"),
            markdown=render.run_gallery(summary),
            description=f"{summary.prediction_id}: outputs",
        )
    except Exception as exc:  # noqa: BLE001 - never fail an archived run over its artifacts
        get_run_logger().warning("could not publish the run's artifacts: %s", exc)


async def publish_batch(summary: BatchSummary, dest: Destination, presign_seconds: int = 0) -> None:
    """Table, summary and gallery artifacts of a batch, sent at once (the run is over: nothing
    else contends for a SQLite-backed server's lock now)."""
    try:
        files = [f for item in summary.items for f in item.files]
        links = dest.signed_links((f.url for f in files), presign_seconds)
        await asyncio.gather(
            acreate_table_artifact(
                key=key("files"), table=render.batch_table(summary), description=summary.headline()
            ),
            acreate_markdown_artifact(
                key=key("summary"),
                markdown=render.batch_summary(summary, links=links),
                description="archived files",
            ),
            acreate_markdown_artifact(
                key=key("gallery"), markdown=render.batch_gallery(summary), description="outputs"
            ),
        )
    except Exception as exc:  # noqa: BLE001 - never fail an archived batch over its artifacts
        get_run_logger().warning("could not publish the batch's artifacts: %s", exc)


async def publish_report(
    report: ArchiveReport, dest: Destination, presign_seconds: int = 0
) -> None:
    """Summary and gallery artifacts of a run that archived existing predictions."""
    try:
        files = [f for item in report.predictions if item.summary for f in item.summary.files]
        links = dest.signed_links((f.url for f in files), presign_seconds)
        await acreate_markdown_artifact(
            key=key("summary"),
            markdown=report_summary(report, links=links),
            description=report.headline(),
        )
        await acreate_markdown_artifact(
            key=key("gallery"), markdown=report_gallery(report), description="outputs"
        )
    except Exception as exc:  # noqa: BLE001 - never fail an archived run over its artifacts
        get_run_logger().warning("could not publish the run's artifacts: %s", exc)


PROGRESS_EVERY = 2.0  # seconds between progress artifact updates


async def new_progress_artifact() -> Any:
    """Create a batch's progress artifact (0 %); its id, for `progress_artifact`."""
    return await acreate_progress_artifact(progress=0.0, description="reading the batch file")


@contextlib.asynccontextmanager
async def progress_artifact(
    artifact_id: asyncio.Future[Any], progress: BatchProgress
) -> AsyncIterator[None]:
    """Keep the progress artifact `artifact_id` (a future: it may still be being created) up
    to date, at most every PROGRESS_EVERY seconds while the body runs. The last update is the
    caller's (`final_progress`, sent together with the run's other artifacts), unless the body
    raises: then it is sent here. Best effort: an artifact that could not be created is not
    followed."""

    async def follow() -> None:
        last: dict[str, int] | None = None
        while True:
            await asyncio.sleep(PROGRESS_EVERY)
            snapshot = progress.snapshot()
            if snapshot != last:
                await _update(artifact_id, snapshot)
                last = snapshot

    follower = asyncio.create_task(follow())
    try:
        yield
    except BaseException:
        await _stop(follower)
        await final_progress(artifact_id, progress)
        raise
    await _stop(follower)


async def final_progress(artifact_id: asyncio.Future[Any], progress: BatchProgress) -> None:
    """The progress artifact's last update: where the batch ended."""
    await _update(artifact_id, progress.snapshot())


async def _stop(follower: asyncio.Task[None]) -> None:
    follower.cancel()
    with contextlib.suppress(BaseException):
        await follower


async def _update(artifact_id: asyncio.Future[Any], snapshot: dict[str, int]) -> None:
    percent = 100.0 * snapshot["finished"] / snapshot["total"] if snapshot["total"] else 100.0
    with contextlib.suppress(Exception):  # progress is best effort; never fail the batch
        await aupdate_progress_artifact(
            # shielded: a cancelled follower must not cancel the artifact's creation itself
            await asyncio.shield(artifact_id),
            progress=percent,
            description=render.progress_text(snapshot),
        )
