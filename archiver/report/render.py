"""Markdown and tables that show a person what a run archived (Prefect renders them as artifacts).

* `run_summary`: one prediction: id, model, input, cached or not, re-fetches, and every file's
  full location (an absolute path, or `s3://bucket/key`), size and sha256;
* `gallery`: thumbnails embedded as `data:` URIs (at most `MAX_THUMBNAILS`, the rest counted),
  each with its file name; other outputs listed by name, type and size;
* `batch_summary` / `batch_table`: the same for every item of a batch;
* `artifact_key`: a stable key (lowercase letters, digits, dashes) so Prefect tracks the latest.

Pure functions of the summaries (and of the signed links a caller got from
`Destination.signed_links`); the thumbnails they embed are made by `archiver.previews`.
"""

from __future__ import annotations

import json
import mimetypes
import re
from collections.abc import Mapping, Sequence
from typing import Any

from ..batch import BatchSummary
from ..pipeline import FileSummary, RunSummary
from ..previews import MAX_THUMBNAILS, OVER_LIMIT, Preview, is_image

COLUMNS = 4  # thumbnails per gallery row
MAX_LISTED = 5000  # file rows of a markdown summary (the table artifact has them all)
MAX_INPUT_CHARS = 2000


def artifact_key(*parts: str) -> str:
    """`("archive-prediction", "on-demand", "gallery")` -> `archive-prediction-on-demand-gallery`."""
    text = "-".join(p for p in parts if p)
    key = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return key[:200].strip("-") or "archiver"


def _md(text: str) -> str:
    """Text safe inside a markdown table cell or link text."""
    return (
        str(text)
        .replace("\\", "\\\\")
        .replace("|", "\\|")
        .replace("[", "\\[")
        .replace("]", "\\]")
        .replace("\n", " ")
    )


def _code(text: str, cell: bool = False) -> str:
    """Inline code that survives backticks in `text`, and its pipes inside a table `cell`."""
    body = str(text).replace("\n", " ")
    if cell:
        body = body.replace("|", "\\|")
    fence = "``" if "`" in body else "`"
    return f"{fence} {body} {fence}" if fence == "``" else f"`{body}`"


def _size(size: int) -> str:
    return f"{size:,} B"


def _location(f: FileSummary, links: Mapping[str, str], cell: bool = False) -> str:
    link = links.get(f.url)
    code = _code(f.url, cell)
    return f"{code} ([download]({link}))" if link else code


def _input_block(value: Mapping[str, Any]) -> str:
    text = json.dumps(dict(value), indent=2, sort_keys=True, default=str)
    if len(text) > MAX_INPUT_CHARS:
        text = text[:MAX_INPUT_CHARS] + "\n…"
    return "```json\n" + text.replace("```", "`\u200b``") + "\n```"


def run_summary(
    summary: RunSummary, input: Mapping[str, Any], *, links: Mapping[str, str] | None = None
) -> str:
    """Markdown for one archived prediction: what it was and where every file is."""
    links = links or {}
    created = (
        "archived earlier: no new prediction"
        if summary.cached
        else f"{summary.predictions_created} new prediction(s)"
    )
    lines = [
        f"## Archived prediction `{summary.prediction_id}`",
        "",
        f"- **prediction id**: {_code(summary.prediction_id)}",
        f"- **model**: {_code(summary.model)}",
        f"- **cached**: {'yes' if summary.cached else 'no'} ({created})",
        f"- **re-fetches**: {summary.refetches}",
        f"- **manifest**: {_code(summary.manifest_url)}",
        f"- **files**: {len(summary.files)}, {_size(sum(f.size for f in summary.files))}",
        "",
        "### Input",
        "",
        _input_block(input),
        "",
        "### Files",
        "",
    ]
    for f in summary.files:
        lines += [
            f"- **{_md(f.name)}**, {_size(f.size)}",
            f"  - location: {_location(f, links)}",
            f"  - sha256: {_code(f.sha256)}",
        ]
    return "\n".join(lines) + "\n"


def gallery(
    entries: Sequence[tuple[str, Preview]],
    *,
    title: str = "Gallery",
    images_total: int | None = None,
    note: str | None = None,
) -> str:
    """Markdown with the thumbnails of `(caption, preview)` entries and a list of the rest.

    At most MAX_THUMBNAILS thumbnails; images beyond them (`images_total` counts every image
    of the run, also those without a preview) are counted, not shown.
    """
    with_thumbnail = [i for i, (_, p) in enumerate(entries) if p.thumbnail][:MAX_THUMBNAILS]
    shown = [entries[i] for i in with_thumbnail]
    # Listed: non-images, and images that could not be shown (unreadable, too large); images
    # merely beyond the limit are only counted.
    picked = set(with_thumbnail)
    others = [
        (c, p)
        for i, (c, p) in enumerate(entries)
        if i not in picked
        and (not is_image(p.name, p.content_type) or (p.note and p.note != OVER_LIMIT))
    ]
    images = sum(1 for _, p in entries if is_image(p.name, p.content_type))
    images_total = max(images_total if images_total is not None else images, len(shown))
    lines = [f"## {title}", ""]
    counts = f"{images_total} image(s), {len(shown)} shown"
    if images_total > len(shown):
        counts += f"; {images_total - len(shown)} more not shown"
    lines += [counts + ".", ""]
    if note:
        lines += [note, ""]
    for start in range(0, len(shown), COLUMNS):
        row = shown[start : start + COLUMNS]
        pad = [""] * (COLUMNS - len(row))
        if start == 0:
            lines += ["|" + " |" * COLUMNS, "|" + " --- |" * COLUMNS]
        cells = [f'<img src="{p.thumbnail}" alt="{_attr(p.name)}">' for _, p in row]
        lines.append("| " + " | ".join(cells + pad) + " |")
        lines.append("| " + " | ".join([_md(c) for c, _ in row] + pad) + " |")
    if others:
        lines += ["", "### Other files", "", "| file | type | size | note |"]
        lines.append("| --- | --- | ---: | --- |")
        for caption, p in others[:MAX_LISTED]:
            kind = p.content_type or "unknown"
            lines.append(
                f"| {_md(caption)} | {_md(kind)} | {_size(p.size)} | {_md(p.note or '')} |"
            )
        if len(others) > MAX_LISTED:
            lines.append(f"\n{len(others) - MAX_LISTED} more file(s) not listed.")
    return "\n".join(lines) + "\n"


def _attr(text: str) -> str:
    return (
        str(text)
        .replace("&", "&amp;")
        .replace('"', "&quot;")
        .replace("<", "&lt;")
        .replace("|", "&#124;")
    )


def run_gallery(summary: RunSummary) -> str:
    """The gallery of one prediction; files without a preview are listed from the summary."""
    by_name = {p.name: p for p in summary.previews}
    missing = "archived earlier: no thumbnail" if summary.cached else None
    entries = [
        (
            f.name,
            by_name.get(f.name)
            or Preview(
                name=f.name, size=f.size, note=missing, content_type=mimetypes.guess_type(f.name)[0]
            ),
        )
        for f in summary.files
    ]
    note = None
    if summary.cached and not any(p.thumbnail for p in summary.previews):
        note = (
            "Archived by an earlier run; thumbnails are made from local files only, never "
            "downloaded again."
        )
    return gallery(entries, title=f"Gallery of `{summary.prediction_id}`", note=note)


def batch_gallery(summary: BatchSummary) -> str:
    """The gallery of a batch: the first thumbnails over all items, every image counted."""
    entries: list[tuple[str, Preview]] = []
    images = 0
    for item in summary.items:
        by_name = {p.name: p for p in item.previews}
        for f in item.files:
            images += is_image(f.name, by_name[f.name].content_type if f.name in by_name else None)
            entries.append(
                (
                    f"item {item.index}: {f.name}",
                    by_name.get(f.name) or Preview(name=f.name, size=f.size),
                )
            )
    return gallery(entries, title="Batch gallery", images_total=images)


def batch_summary(summary: BatchSummary, *, links: Mapping[str, str] | None = None) -> str:
    """Markdown: the headline and every archived file with its full location, size, sha256."""
    links = links or {}
    lines = [
        "## Archived files",
        "",
        f"{summary.headline()}; batch file {_code(summary.file)}; archive {_code(summary.dest)}",
        "",
        "| item | outcome | prediction | file | size | sha256 | location |",
        "| ---: | --- | --- | --- | ---: | --- | --- |",
    ]
    files = [(item, f) for item in summary.items for f in item.files]
    for item, f in files[:MAX_LISTED]:
        lines.append(
            f"| {item.index} | {item.outcome} | {_code(item.prediction_id or '', True)} | "
            f"{_md(f.name)} | {_size(f.size)} | {_code(f.sha256, True)} | "
            f"{_location(f, links, True)} |"
        )
    if len(files) > MAX_LISTED:
        lines.append(f"\n{len(files) - MAX_LISTED} more file(s) are listed in the table artifact.")
    failed = summary.failed
    if failed:
        lines += ["", "### Failed items", "", "| item | line | error |", "| ---: | ---: | --- |"]
        lines += [f"| {i.index} | {i.line} | {_md(i.error or '')} |" for i in failed[:MAX_LISTED]]
    return "\n".join(lines) + "\n"


def batch_table(summary: BatchSummary) -> list[dict[str, Any]]:
    """A row per archived file, and one per item without files (failed), for a table artifact."""
    table: list[dict[str, Any]] = []
    for item in summary.items:
        base = {
            "item": item.index,
            "line": item.line,
            "model": item.model or "",
            "outcome": item.outcome,
            "prediction_id": item.prediction_id or "",
        }
        if not item.files:
            table.append(
                {
                    **base,
                    "file": "",
                    "size": 0,
                    "sha256": "",
                    "url": item.manifest_url or "",
                    "error": item.error or "",
                }
            )
        table.extend(
            {**base, "file": f.path, "size": f.size, "sha256": f.sha256, "url": f.url, "error": ""}
            for f in item.files
        )
    return table


def progress_text(s: Mapping[str, int]) -> str:
    """A batch's progress snapshot as one line."""
    return (
        f"{s['finished']}/{s['total']} items ({s['archived']} archived, {s['cached']} "
        f"cached, {s['failed']} failed); {s['files']} files, {s['bytes']:,} bytes downloaded"
    )
