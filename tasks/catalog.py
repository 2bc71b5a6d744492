"""Publish what find-in-archive and verify-archive found, as Prefect artifacts (stable keys per
deployment, like the run artifacts). Publishing never fails a run; its outcome does."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prefect import get_run_logger
from prefect.artifacts import acreate_markdown_artifact, acreate_table_artifact

from archiver.catalog.verify import VerifyReport
from archiver.previews import PreviewBudget, archived_previews
from archiver.report import catalog as render
from archiver.storage import Destination
from tasks.artifacts import key


async def publish_find(document: Mapping[str, Any], dest: Destination, query: str) -> None:
    """The matches as a table, and a gallery of their images."""
    results, total = document["results"], document["total"]
    files = [(f["path"], f.get("content_type"), f["size"]) for r in results for f in r["files"]]
    try:
        previews = archived_previews(files, dest, PreviewBudget())
        await acreate_table_artifact(
            key=key("results"),
            table=render.find_table(results),
            description=f"{total} match(es) for {query!r} in {dest.url}",
        )
        await acreate_markdown_artifact(
            key=key("gallery"),
            markdown=render.find_gallery(results, previews, query, total),
            description=f"images of the matches for {query!r}",
        )
    except Exception as exc:  # noqa: BLE001 - the search result is the run's return value
        get_run_logger().warning("could not publish the search artifacts: %s", exc)


async def publish_verify(report: VerifyReport) -> None:
    """The check's headline and every problem, as markdown."""
    try:
        await acreate_markdown_artifact(
            key=key("problems"),
            markdown=render.verify_markdown(report),
            description=report.headline(),
        )
    except Exception as exc:  # noqa: BLE001 - the run's state says whether the archive is whole
        get_run_logger().warning("could not publish the check's artifact: %s", exc)
