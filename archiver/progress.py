"""Progress reporting hooks: the domain calls them, the CLI (rich) and Prefect (artifacts) listen.

Besides progress, a run announces itself once it exists (`announce_run`): the flows call it from
a Prefect `on_running` hook with the flow run's id and UI URL, and the CLI, which started the run
in process, prints the URL and keeps the id (to mark the run Cancelled after a Ctrl-C).
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from typing import Protocol


class ProgressSink(Protocol):
    """Receives progress events; every method must be cheap and must not raise."""

    def prediction_done(self, prediction_id: str, status: str) -> None: ...

    def file_started(self, name: str, size: int | None) -> None: ...

    def bytes_done(self, count: int) -> None: ...

    def file_done(self, name: str) -> None: ...


class NullProgress:
    """Reports nothing."""

    def prediction_done(self, prediction_id: str, status: str) -> None:
        pass

    def file_started(self, name: str, size: int | None) -> None:
        pass

    def bytes_done(self, count: int) -> None:
        pass

    def file_done(self, name: str) -> None:
        pass


_current: ContextVar[ProgressSink | None] = ContextVar("archiver_progress", default=None)


def current_progress() -> ProgressSink:
    """The sink the caller (e.g. the CLI's progress bar) installed, or one that reports nothing."""
    return _current.get() or NullProgress()


def use_progress(sink: ProgressSink) -> None:
    """Install `sink` for runs started from this context."""
    _current.set(sink)


RunListener = Callable[[str, str | None], None]
_run_listener: ContextVar[RunListener | None] = ContextVar("archiver_run_listener", default=None)


def use_run_listener(listener: RunListener) -> None:
    """Call `listener(run_id, ui_url)` when a run started from this context begins."""
    _run_listener.set(listener)


def announce_run(run_id: str, ui_url: str | None) -> None:
    """A run has begun (its UI page is `ui_url`, None when the API has no UI)."""
    listener = _run_listener.get()
    if listener is not None:
        listener(run_id, ui_url)
