"""Request counters the emulator keeps so tests can assert what a client actually did."""

from __future__ import annotations

import copy
import dataclasses
import threading
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Stats:
    """A snapshot of what the emulator has seen since start (or the last reset).

    ``downloads`` holds one dict per delivery request, in order:
    ``{"path", "host", "status", "authorization", "bytes_sent"}``.
    """

    create_attempts: int = 0
    creates_accepted: int = 0
    created_ids: list[str] = field(default_factory=list)
    reads: int = 0
    read_ids: list[str] = field(default_factory=list)
    cancels: list[str] = field(default_factory=list)
    list_calls: int = 0
    #: ``POST /v1/files`` that stored a file, and file bytes served by its ``/download``.
    uploads: int = 0
    file_downloads: int = 0
    downloads: list[dict[str, Any]] = field(default_factory=list)
    delivery_authorization_headers: list[str] = field(default_factory=list)
    predictions: int = 0
    #: One dict per webhook delivery attempt: ``{"id", "prediction_id", "event", "url",
    #: "attempt", "status"}`` (status None when the receiver could not be reached).
    webhooks: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The stats as a JSON-ready dict (same field names)."""
        return dataclasses.asdict(self)


class StatsRecorder:
    """Mutable, lock-protected counters behind :class:`Stats`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._data: dict[str, Any] = {}
        self.reset()

    def reset(self) -> None:
        """Forget everything recorded so far."""
        with self._lock:
            self._data = {
                f.name: copy.deepcopy(f.default_factory() if callable(f.default_factory) else 0)
                for f in dataclasses.fields(Stats)
                if f.name != "predictions"
            }

    def _bump(self, name: str) -> None:
        self._data[name] += 1

    def create_attempt(self) -> None:
        """An authenticated create request arrived."""
        with self._lock:
            self._bump("create_attempts")

    def create_accepted(self, prediction_id: str) -> None:
        """A create request produced a prediction."""
        with self._lock:
            self._bump("creates_accepted")
            self._data["created_ids"].append(prediction_id)

    def read(self, prediction_id: str) -> None:
        """A ``GET /v1/predictions/{id}`` arrived (whatever its outcome)."""
        with self._lock:
            self._bump("reads")
            self._data["read_ids"].append(prediction_id)

    def cancel(self, prediction_id: str) -> None:
        """A cancel request arrived."""
        with self._lock:
            self._data["cancels"].append(prediction_id)

    def list_call(self) -> None:
        """A ``GET /v1/predictions`` arrived."""
        with self._lock:
            self._bump("list_calls")

    def files_call(self, name: str) -> None:
        """An upload stored (``uploads``) or a file served (``file_downloads``)."""
        with self._lock:
            self._bump(name)

    def download(
        self, path: str, host: str | None, status: int, authorization: str | None, bytes_sent: int
    ) -> None:
        """A delivery request finished (or was cut off)."""
        entry = {
            "path": path,
            "host": host,
            "status": status,
            "authorization": authorization,
            "bytes_sent": bytes_sent,
        }
        with self._lock:
            self._data["downloads"].append(entry)
            if authorization is not None:
                self._data["delivery_authorization_headers"].append(authorization)

    def webhook(self, attempt: dict[str, Any]) -> None:
        """A webhook delivery attempt finished."""
        with self._lock:
            self._data["webhooks"].append(attempt)

    def snapshot(self, predictions: int) -> Stats:
        """A frozen copy of the counters."""
        with self._lock:
            return Stats(**copy.deepcopy(self._data), predictions=predictions)
