"""Progress reporting hooks: the domain calls them, the CLI (rich) and Prefect (artifacts) listen."""

from __future__ import annotations

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
