"""Terminal output for the CLI: a rich progress bar (a ProgressSink) and summary tables."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from archiver.pipeline import RunSummary

if TYPE_CHECKING:
    from archiver.batch import BatchSummary

stderr = Console(stderr=True)


class RichProgress:
    """Files and bytes on a progress bar, on stderr, only when it is a terminal."""

    def __init__(self, *, enabled: bool = True, predictions: int | None = None) -> None:
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[done]}"),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeElapsedColumn(),
            console=stderr,
            disable=not (enabled and stderr.is_terminal),
            transient=False,
        )
        self._lock = threading.Lock()
        self._files = 0
        self._done = 0
        self._predictions = predictions
        self._finished_predictions = 0
        self._failed_predictions = 0
        self._bytes = self._progress.add_task("archiving", total=None, done="")

    def __enter__(self) -> RichProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def _label(self) -> str:
        text = f"{self._done}/{self._files} files"
        if self._predictions:
            text += f", {self._finished_predictions}/{self._predictions} predictions"
            if self._failed_predictions:
                text += f" ({self._failed_predictions} failed)"
        return text

    def prediction_done(self, prediction_id: str, status: str) -> None:
        with self._lock:
            if status in ("archived", "cached", "failed"):  # a batch item's final outcome
                self._finished_predictions += 1
                self._failed_predictions += status == "failed"
            self._progress.update(self._bytes, done=self._label())

    def file_started(self, name: str, size: int | None) -> None:
        with self._lock:
            self._files += 1
            task = self._progress.tasks[0]
            if size is not None:
                self._progress.update(self._bytes, total=(task.total or 0) + size)
            self._progress.update(self._bytes, done=self._label())

    def bytes_done(self, count: int) -> None:
        self._progress.advance(self._bytes, count)

    def file_done(self, name: str) -> None:
        with self._lock:
            self._done += 1
            self._progress.update(self._bytes, done=self._label())


def print_summary(summaries: Iterable[RunSummary]) -> None:
    """One table row per archived file, then a line per prediction."""
    console = Console()
    table = Table(title="archived", show_lines=False)
    for column in ("file (under dest)", "size", "sha256"):
        table.add_column(column, overflow="fold")
    notes = []
    for summary in summaries:
        for item in summary.files:
            table.add_row(item.path, f"{item.size:,}", item.sha256[:12])
        if summary.cached and summary.predictions_created:  # paid here, archived by a twin run
            how = f"{summary.predictions_created} new prediction(s), archived meanwhile by another run"
        elif summary.cached:
            how = "from cache, 0 new predictions"
        else:
            how = (
                f"{summary.predictions_created} new prediction(s), {summary.refetches} re-fetch(es)"
            )
        notes.append(
            f"{summary.model} {summary.prediction_id}: {how}; manifest {summary.manifest_url}"
        )
    console.print(table)
    for note in notes:
        console.print(note)


def print_batch_summary(summary: BatchSummary) -> None:
    """One row per item of a batch (outcome, prediction, files or error), then the totals."""
    console = Console()
    table = Table(title=f"batch {summary.file}", show_lines=False)
    for column in ("#", "line", "model", "outcome", "prediction", "files", "bytes / error"):
        table.add_column(column, overflow="fold")
    styles = {"archived": "green", "cached": "cyan", "failed": "bold red"}
    for item in summary.items:
        detail = escape(item.error) if item.error else f"{sum(f.size for f in item.files):,}"
        table.add_row(
            str(item.index),
            str(item.line),
            escape(item.model or ""),
            f"[{styles[item.outcome]}]{item.outcome}[/]",
            item.prediction_id or "",
            str(len(item.files)),
            detail,
        )
    console.print(table)
    console.print(f"{summary.headline()}; archive {summary.dest}")
