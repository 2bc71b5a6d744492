"""What find-in-archive and verify-archive show in the Prefect UI: the matches as a table and a
thumbnail gallery (the run gallery's renderer), and verify's problems as markdown.

Rendering only: the thumbnails come made (`archiver.previews.archived_previews`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..catalog.verify import VerifyReport
from ..previews import Preview
from .render import MAX_LISTED, _code, _md, gallery

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
    results: Sequence[Mapping[str, Any]], previews: Mapping[str, Preview], query: str, total: int
) -> str:
    """The matches' files captioned by prediction, with the thumbnails of `previews` (`{path:
    Preview}`, made by `archiver.previews.archived_previews`); at most MAX_THUMBNAILS shown."""
    entries: list[tuple[str, Preview]] = []
    for result in results:
        for f in result["files"]:
            name = f["path"].rsplit("/", 1)[-1]
            preview = previews.get(f["path"]) or Preview(
                name=name, size=f["size"], content_type=f.get("content_type")
            )
            entries.append((f"{result['prediction_id']}/{name}", preview))
    note = f"{total} match(es) for {_code(query) if query else 'the filters'}"
    if total > len(results):
        note += f"; the newest {len(results)} shown"
    return gallery(entries, title="Matches", note=note + ".")


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
