"""Accepted webhook deliveries, recorded durably so a restart neither repeats nor forgets them.

One small JSON record per `webhook-id` (named by its sha256: ids are not ours to trust as file
names) under `<store>/webhooks/`, the cache's store by default. A record is written before the
delivery is answered; `state` is `accepted` until the archive job finishes (`done`), or
`ignored` for events that need nothing (not a succeeded, completed prediction).
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, Field

from ..storage import Destination, read_bytes, write_bytes_atomic

DIRECTORY = "webhooks"


class InboxRecord(BaseModel):
    """One accepted delivery."""

    webhook_id: str
    prediction_id: str
    status: str
    state: Literal["accepted", "done", "ignored"]
    outcome: str | None = None
    received_at: datetime = Field(default_factory=lambda: datetime.now(UTC))


class WebhookInbox:
    """Records under `store` (a Destination: local disk, S3...)."""

    def __init__(self, store: Destination) -> None:
        self.store = store

    def _path(self, webhook_id: str) -> str:
        name = hashlib.sha256(webhook_id.encode()).hexdigest()
        return self.store.path(DIRECTORY, name[:2], f"{name}.json")

    def get(self, webhook_id: str) -> InboxRecord | None:
        data = read_bytes(self.store, self._path(webhook_id))
        if data is None:
            return None
        try:
            return InboxRecord.model_validate_json(data)
        except ValueError:
            return None

    def put(self, record: InboxRecord) -> InboxRecord:
        write_bytes_atomic(
            self.store, self._path(record.webhook_id), record.model_dump_json().encode()
        )
        return record

    def pending(self) -> list[InboxRecord]:
        """Accepted deliveries whose archive job never finished (e.g. the receiver died)."""
        root = self.store.path(DIRECTORY)
        try:
            paths = self.store.fs.find(root)
        except FileNotFoundError:
            return []
        records = []
        for path in sorted(paths):
            if not str(path).endswith(".json"):
                continue
            data = read_bytes(self.store, str(path))
            try:
                record = InboxRecord.model_validate_json(data or b"")
            except ValueError:
                continue
            if record.state == "accepted":
                records.append(record)
        return records
