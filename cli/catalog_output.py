"""How find, verify and usage show their results: rich tables on a terminal, tab-separated
lines in a pipe, a progress bar on stderr while verify reads."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import typer

PROMPT_CHARS = 48


def _short(text: str, width: int = PROMPT_CHARS) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def print_matches(results: list[dict[str, Any]]) -> None:
    """created, model, prediction id, the start of the prompt, file count, manifest."""
    rows = [
        (
            r["created_at"][:16].replace("T", " "),
            r["model"],
            r["prediction_id"],
            _short(r.get("prompt") or ""),
            str(len(r["files"])),
            r["manifest"],
        )
        for r in results
    ]
    if not rows:
        return
    if not sys.stdout.isatty():
        for row in rows:
            typer.echo("\t".join(row))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("created (UTC)", "model", "prediction", "prompt", "files", "manifest")
    for row in rows:
        table.add_row(*row)
    Console().print(table)


def print_usage(report: Any) -> None:
    priced = report.total.cost is not None
    header = [report.by, "predictions", "files", "bytes", "model time (s)"]
    header += ["cost (USD)"] if priced else []

    def cells(row: Any) -> list[str]:
        values = [row.group, f"{row.predictions}", f"{row.files}", f"{row.bytes:,}"]
        values.append(f"{row.predict_time:,.1f}")
        if priced:
            cost = f"{row.cost:,.4f}"
            values.append(cost + (" + unpriced" if row.unpriced else ""))
        return values

    rows = [cells(r) for r in report.rows] + [cells(report.total)]
    if not sys.stdout.isatty():
        typer.echo("\t".join(header))
        for row in rows:
            typer.echo("\t".join(row))
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(*header)
        for index, row in enumerate(rows):
            table.add_row(*row, end_section=index == len(rows) - 2)
        Console().print(table)
    if report.total.unpriced:
        typer.echo(f"no price for: {', '.join(report.total.unpriced)}", err=True)


@contextmanager
def bytes_bar(enabled: bool) -> Iterator[Callable[[int, int], None] | None]:
    """A bar of files checked and bytes read on stderr (a terminal only)."""
    if not enabled or not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import Progress, TextColumn, TransferSpeedColumn

    with Progress(
        TextColumn("verifying: {task.fields[files]} file(s), {task.completed:,.0f} bytes"),
        TransferSpeedColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as progress:
        task = progress.add_task("verify", total=None, files=0)

        def update(files: int, size: int) -> None:
            progress.update(task, completed=size, files=files)

        yield update
