"""Markdown for runs that archive predictions made elsewhere (`archive`, `sweep`, webhooks):
every prediction's outcome, every archived file's full location, size and sha256, and one
gallery over all of them. Pure functions of the report, like `render`."""

from __future__ import annotations

from collections.abc import Mapping

from ..existing import ArchiveReport
from ..previews import Preview, is_image
from .render import MAX_LISTED, _code, _location, _md, _size, gallery


def report_summary(report: ArchiveReport, *, links: Mapping[str, str] | None = None) -> str:
    """The headline, a row per prediction (outcome, error), then every archived file."""
    links = links or {}
    lines = [
        "## Archived predictions",
        "",
        f"{report.headline()}; archive {_code(report.dest)}",
        "",
        "| prediction | model | outcome | status | cached | re-fetches | note |",
        "| --- | --- | --- | --- | --- | ---: | --- |",
    ]
    for item in report.predictions[:MAX_LISTED]:
        summary = item.summary
        lines.append(
            f"| {_code(item.prediction_id, True)} | {_md(item.model or '')} | {item.outcome} | "
            f"{_md(item.status or '')} | {'yes' if summary and summary.cached else 'no'} | "
            f"{summary.refetches if summary else 0} | {_md(item.error or '')} |"
        )
    files = [(i, f) for i in report.predictions if i.summary for f in i.summary.files]
    if files:
        lines += ["", "### Files", "", "| prediction | file | size | sha256 | location |"]
        lines.append("| --- | --- | ---: | --- | --- |")
        for item, f in files[:MAX_LISTED]:
            lines.append(
                f"| {_code(item.prediction_id, True)} | {_md(f.name)} | {_size(f.size)} | "
                f"{_code(f.sha256, True)} | {_location(f, links, True)} |"
            )
        if len(files) > MAX_LISTED:
            lines.append(f"\n{len(files) - MAX_LISTED} more file(s) not listed.")
    return "\n".join(lines) + "\n"


def report_gallery(report: ArchiveReport) -> str:
    """The thumbnails made while the files were staged, over all predictions, every image
    counted (cached predictions were not downloaded again, so they show none)."""
    entries: list[tuple[str, Preview]] = []
    images = 0
    for item in report.predictions:
        if item.summary is None:
            continue
        by_name = {p.name: p for p in item.summary.previews}
        for f in item.summary.files:
            preview = by_name.get(f.name) or Preview(name=f.name, size=f.size)
            images += is_image(f.name, preview.content_type)
            entries.append((f"{item.prediction_id}: {f.name}", preview))
    return gallery(entries, title="Gallery", images_total=images)
