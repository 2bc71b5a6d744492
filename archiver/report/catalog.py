"""What find-in-archive and verify-archive show in the Prefect UI: the matches as a table and a
thumbnail gallery (the run gallery's renderer), and verify's problems as markdown.

Thumbnails are made from the archived files: read from local disk, or fetched from other stores
up to `MAX_FETCH` bytes each, within the gallery's budget (`PreviewBudget`)."""

from __future__ import annotations

import mimetypes
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..catalog.verify import VerifyReport
from ..storage import Destination
from .previews import MAX_THUMBNAILS, Preview, PreviewBudget, is_image, thumbnail
from .render import MAX_LISTED, _code, _md, gallery

MAX_FETCH = 16 * 2**20  # largest remote image fetched for a thumbnail
PROMPT_CHARS = 80


def find_table(results: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per match, newest first: what `python -m flows find` prints on a terminal."""
    return [
        {
            "created": r["created_at"],
            "model": r["model"],
            "prediction": r["prediction_id"],
            "prompt": _prompt(r["input"]),
            "files": len(r["files"]),
            "manifest": r["manifest"],
        }
        for r in results
    ]


def _prompt(value: Mapping[str, Any]) -> str:
    text = next((v for k, v in value.items() if k == "prompt" and isinstance(v, str)), "")
    text = text or next((v for v in value.values() if isinstance(v, str)), "")
    flat = " ".join(text.split())
    return flat if len(flat) <= PROMPT_CHARS else flat[: PROMPT_CHARS - 1] + "…"


def find_gallery(
    results: Sequence[Mapping[str, Any]], dest: Destination, query: str, total: int
) -> str:
    """Thumbnails of the matches' images (at most MAX_THUMBNAILS), captioned by prediction."""
    budget = PreviewBudget(MAX_THUMBNAILS)
    entries: list[tuple[str, Preview]] = []
    for result in results:
        for f in result["files"]:
            name = f["path"].rsplit("/", 1)[-1]
            preview = Preview(
                name=name,
                size=f["size"],
                content_type=f.get("content_type") or mimetypes.guess_type(name)[0],
            )
            if is_image(name, preview.content_type) and budget.take():
                made = _thumbnail(dest, f["path"], f["size"])
                if isinstance(made, str):
                    preview.note = made
                else:
                    preview.thumbnail, preview.width, preview.height = made
            entries.append((f"{result['prediction_id']}/{name}", preview))
    note = f"{total} match(es) for {_code(query) if query else 'the filters'}"
    if total > len(results):
        note += f"; the newest {len(results)} shown"
    return gallery(entries, title="Matches", note=note + ".")


def _thumbnail(dest: Destination, path: str, size: int) -> tuple[str, int, int] | str:
    full = dest.path(path)
    if dest.is_local:
        return thumbnail(Path(full))
    if size > MAX_FETCH:
        return "too large to fetch for a thumbnail"
    try:
        return thumbnail(bytes(dest.fs.cat_file(full)))
    except Exception as exc:  # noqa: BLE001 - a gallery never fails the search
        return f"not fetched ({type(exc).__name__})"


def verify_markdown(report: VerifyReport) -> str:
    """The headline, then every problem: outcome, prediction, path and why."""
    lines = ["## Archive check", "", f"`{report.dest}`: {report.headline()}.", ""]
    if report.clean:
        return "\n".join([*lines, "Every file matches its manifest."]) + "\n"
    lines += ["| outcome | prediction | path | detail |", "| --- | --- | --- | --- |"]
    for p in report.problems[:MAX_LISTED]:
        lines.append(
            f"| {p.outcome} | {_md(p.prediction_id or '-')} | {_code(p.path, cell=True)} "
            f"| {_md(p.detail)} |"
        )
    if len(report.problems) > MAX_LISTED:
        lines.append(f"\n{len(report.problems) - MAX_LISTED} more problem(s) not listed.")
    return "\n".join(lines) + "\n"
