"""The prediction cache: one JSON record per request key, stored through fsspec.

A record moves through three states:

    creating  -- we are about to POST (written first, so a crash mid-create can be recovered
                 by looking the prediction up instead of paying again)
    pending   -- the prediction exists (its id is known) but is not archived yet
    archived  -- a manifest exists at `archives[dest]`

A record counts as a hit only while its manifest still exists in that archive; anything less is
resumed from the recorded prediction (no new payment) while Replicate still has its outputs.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, Field

from .manifest import Manifest
from .storage import Destination, read_bytes, write_bytes_atomic


class CacheRecord(BaseModel):
    """What is known about the prediction made for one request key."""

    key: str
    model: str
    state: Literal["creating", "pending", "archived"]
    prediction_id: str | None = None
    since: datetime = Field(default_factory=lambda: datetime.now(UTC))
    archives: dict[str, str] = Field(
        default_factory=dict, description="dest URL -> manifest path relative to that dest"
    )


class PredictionCache:
    """Cache records under a store (by default `<dest>/.archiver/cache`)."""

    def __init__(self, store: Destination) -> None:
        self.store = store

    def _path(self, key: str) -> str:
        return self.store.path(f"{key[:2]}/{key}.json")

    def get(self, key: str) -> CacheRecord | None:
        data = read_bytes(self.store, self._path(key))
        if data is None:
            return None
        try:
            return CacheRecord.model_validate_json(data)
        except ValueError:
            return None  # a corrupt record is no record: the worst case is a re-check

    def put(self, record: CacheRecord) -> CacheRecord:
        write_bytes_atomic(self.store, self._path(record.key), record.model_dump_json().encode())
        return record

    def archived_manifest(self, record: CacheRecord, dest: Destination) -> Manifest | None:
        """The manifest of `record` in `dest`, if it is still there (else not a hit)."""
        path = record.archives.get(dest.url)
        if record.state != "archived" or path is None:
            return None
        data = read_bytes(dest, dest.path(path))
        if data is None:
            return None
        try:
            return Manifest.from_json(data)
        except ValueError:
            return None

    def mark_archived(self, record: CacheRecord, dest: Destination, manifest: Manifest) -> None:
        archives = {**record.archives, dest.url: manifest.path}
        self.put(
            record.model_copy(
                update={
                    "state": "archived",
                    "prediction_id": manifest.prediction_id,
                    "archives": archives,
                }
            )
        )
