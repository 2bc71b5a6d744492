"""Accepted webhook deliveries, recorded durably so a restart neither repeats nor forgets them.

One small JSON record per `webhook-id` (named by its sha256: ids are not ours to trust as file
names) under `<store>/webhooks/`, the cache's store by default. A record is written before the
delivery is answered; `state` is `accepted` until its archive finishes (`done`) or runs out of
attempts (`failed`), or `ignored` for events that need nothing (not a succeeded prediction).

The backlog is a durable queue beside the records: one empty file per accepted delivery still to
archive, `webhooks/queue/<10-minute bucket>/<due time, microseconds>-<record's hash>`. Names
sort by the time the entry is due (its arrival; a retry's later time), so listing a bucket in
name order is oldest first, and a reader takes only the few entries it has slots for: nothing
of the backlog is held in memory. An entry is removed when its record is settled; an entry
whose record is no longer `accepted` (a crash between the two writes) is dropped when met.
"""

from __future__ import annotations

import hashlib
import posixpath
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, Field

from ..storage import Destination, create_empty, exists, read_bytes, remove, write_bytes_atomic

DIRECTORY = "webhooks"
QUEUE = "queue"
BUCKET_SECONDS = 600  # one queue directory per 10 minutes of due times: listings stay short


class InboxRecord(BaseModel):
    """One accepted delivery."""

    webhook_id: str
    prediction_id: str
    status: str
    state: Literal["accepted", "done", "ignored", "failed"]
    outcome: str | None = None
    received_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    attempts: int = 0  # archive attempts that failed so far
    queued: str | None = None  # the name of its queue entry while `accepted`


@dataclass(frozen=True)
class QueueEntry:
    """One queued delivery, taken from the queue with its record."""

    name: str  # `<bucket>/<due>-<hash>`
    record: InboxRecord


def _digest(webhook_id: str) -> str:
    return hashlib.sha256(webhook_id.encode()).hexdigest()


def entry_name(webhook_id: str, due: float) -> str:
    """The queue entry of `webhook_id` due at `due` (unix seconds): sorts by due time."""
    micros = int(due * 1_000_000)
    return f"{int(due) // BUCKET_SECONDS:010d}/{micros:017d}-{_digest(webhook_id)}"


def entry_due(name: str) -> float:
    return int(posixpath.basename(name).split("-", 1)[0]) / 1_000_000


class WebhookInbox:
    """Records and the queue under `store` (a Destination: local disk, S3...)."""

    def __init__(self, store: Destination) -> None:
        self.store = store

    def _path(self, webhook_id: str) -> str:
        name = _digest(webhook_id)
        return self.store.path(DIRECTORY, name[:2], f"{name}.json")

    def _entry_path(self, name: str) -> str:
        return self.store.path(DIRECTORY, QUEUE, name)

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

    def accept(self, record: InboxRecord, due: float) -> InboxRecord:
        """Record `record` and, when it is `accepted`, queue it due at `due` (both durable on
        return: the record first, so an entry always has one)."""
        if record.state != "accepted":
            return self.put(record)
        record = self.put(record.model_copy(update={"queued": entry_name(record.webhook_id, due)}))
        assert record.queued is not None
        self._create_entry(self._entry_path(record.queued))
        return record

    def _create_entry(self, path: str) -> None:
        """An empty entry, durable on return (`Backend.create_empty`: on local disk one
        create and one directory fsync, not a temp file's fsync and rename as well)."""
        create_empty(self.store, path)

    def receive(self, record: InboxRecord, due: float) -> InboxRecord | None:
        """The answer's one storage call: None when `record` is new (then recorded, and queued
        if `accepted`); else the record its webhook id already has (queued again if its entry
        died in a crash between the two writes of `accept`)."""
        known = self.get(record.webhook_id)
        if known is None:
            self.accept(record, due)
            return None
        self.ensure_queued(known, due)
        return known

    def ensure_queued(self, record: InboxRecord, due: float) -> InboxRecord:
        """Queue an `accepted` record again if its entry is gone (a crash between the two
        writes of `accept`); a no-op for any other record."""
        if record.state != "accepted":
            return record
        if record.queued and exists(self.store, self._entry_path(record.queued)):
            return record
        return self.accept(record, due)

    def settle(self, entry: QueueEntry, record: InboxRecord) -> None:
        """Store the entry's record as it ended (`done`, `failed`) and remove the entry."""
        self.put(record.model_copy(update={"queued": None}))
        self._remove(entry.name)

    def retry_later(self, entry: QueueEntry, attempts: int, due: float) -> InboxRecord:
        """Queue the entry's delivery again, due at `due`, after `attempts` failed attempts."""
        record = entry.record.model_copy(update={"attempts": attempts})
        record = self.accept(record, due)
        self._remove(entry.name)
        return record

    def _remove(self, name: str) -> None:
        remove(self.store, self._entry_path(name))

    def due(
        self, now: float, limit: int, skip: frozenset[str] = frozenset()
    ) -> tuple[list[QueueEntry], float | None]:
        """Up to `limit` entries due by `now`, oldest first, but those named in `skip` (taken
        already); and when the next entry is not due yet, when it is (else None)."""
        taken: list[QueueEntry] = []
        if limit < 1:
            return taken, None
        for bucket in self._names(self.store.path(DIRECTORY, QUEUE)):
            names = self._names(self.store.path(DIRECTORY, QUEUE, bucket))
            if not names and int(bucket) < int(now) // BUCKET_SECONDS:
                self._remove_bucket(bucket)
            for leaf in names:
                name = f"{bucket}/{leaf}"
                if name in skip:
                    continue
                due = entry_due(name)
                if due > now:
                    return taken, due
                record = self._record_of(leaf)
                if record is None or record.state != "accepted" or record.queued != name:
                    self._remove(name)  # settled or re-queued: a crash left it behind
                    continue
                taken.append(QueueEntry(name, record))
                if len(taken) >= limit:
                    return taken, None
        return taken, None

    def _record_of(self, leaf: str) -> InboxRecord | None:
        digest = leaf.split("-", 1)[1]
        data = read_bytes(self.store, self.store.path(DIRECTORY, digest[:2], f"{digest}.json"))
        try:
            return InboxRecord.model_validate_json(data) if data is not None else None
        except ValueError:
            return None

    def _names(self, directory: str) -> list[str]:
        try:
            names = self.store.backend.list_names(directory)
        except FileNotFoundError:
            return []
        return [n for n in names if not n.startswith(".")]  # not a write's temp file

    def _remove_bucket(self, bucket: str) -> None:
        # object stores have no empty directories to remove: a no-op there
        self.store.backend.remove_empty_directory(self.store.path(DIRECTORY, QUEUE, bucket))

    def backlog(self) -> int:
        """How many entries are queued (counted, not held: for reports and tests)."""
        root = self.store.path(DIRECTORY, QUEUE)
        return sum(
            len(self._names(self.store.path(DIRECTORY, QUEUE, b))) for b in self._names(root)
        )
