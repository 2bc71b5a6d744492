"""What the catalog keeps of one `manifest.json`: read tolerantly, schema 1 and 2 alike.

`entry_of` takes a manifest's bytes and gives an `Entry` (the fields find, usage and verify
filter on) or raises `ForeignManifest` with one line saying why: not JSON, not an object, not
ours (no prediction id, no files list). Unknown fields are ignored, missing optional ones are
None: manifests written by earlier or later versions, other workers or by hand all read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

MAX_TEXT = 20_000  # characters of input text indexed per manifest
# archiver.manifest.MANIFEST_NAME, not imported from there: its pydantic models would cost a
# query's process ~0.1 s of start-up (tests/test_catalog_sources.py checks they agree).
MANIFEST_NAME = "manifest.json"


class ForeignManifest(ValueError):
    """A manifest.json that is corrupt or not one of ours."""


@dataclass(frozen=True)
class StoredFile:
    """A file a manifest vouches for: `path` relative to dest, its size and sha256."""

    path: str
    size: int
    sha256: str
    content_type: str | None = None
    kind: str = "output"  # output | input | logs

    def as_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "size": self.size,
            "sha256": self.sha256,
            "content_type": self.content_type,
        }


@dataclass(frozen=True)
class Entry:
    """The catalog's row of one manifest."""

    prediction_id: str
    model: str
    version: str | None
    created_at: str  # ISO 8601 UTC with Z: sorts and compares as text
    status: str | None
    input: dict[str, Any]
    predict_time: float | None
    files: list[StoredFile] = field(default_factory=list)  # outputs, archived inputs, logs
    schema_version: int = 1

    @property
    def outputs(self) -> list[StoredFile]:
        return [f for f in self.files if f.kind == "output"]

    @property
    def text(self) -> str:
        """Every text value of the input (prompt, negative_prompt, ...), for word search."""
        return " ".join(_strings(self.input))[:MAX_TEXT]

    @property
    def prompt(self) -> str:
        for name in ("prompt", "text", "caption"):
            value = self.input.get(name)
            if isinstance(value, str):
                return value
        return next(iter(_strings(self.input)), "")


def iso(moment: datetime) -> str:
    """A datetime as the catalog stores it (naive means UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def entry_of(data: bytes) -> Entry:
    """The catalog entry of a manifest's bytes; ForeignManifest when it is not a manifest."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ForeignManifest(f"not JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise ForeignManifest("not a JSON object")
    prediction_id = doc.get("prediction_id")
    if not isinstance(prediction_id, str) or not prediction_id:
        raise ForeignManifest("no prediction_id: not a replicate-archiver manifest")
    if not isinstance(doc.get("files"), list):
        raise ForeignManifest("no files list: not a replicate-archiver manifest")
    try:
        files = [_file(f, "output") for f in doc["files"]]
        files += [
            _file(f, "input")
            for f in doc.get("input_files") or []
            if isinstance(f, dict) and f.get("status", "archived") == "archived" and f.get("path")
        ]
        if isinstance(doc.get("logs"), dict):
            files.append(_file(doc["logs"], "logs"))
        created = _when(doc.get("created_at")) or _when(doc.get("archived_at")) or _EPOCH
        metrics = doc["metrics"] if isinstance(doc.get("metrics"), dict) else {}
        given = doc["input"] if isinstance(doc.get("input"), dict) else {}
        predict_time = metrics.get("predict_time")
        return Entry(
            prediction_id=prediction_id,
            model=str(doc.get("model") or "unknown/unknown"),
            version=doc.get("version") if isinstance(doc.get("version"), str) else None,
            created_at=created,
            status=doc.get("status") if isinstance(doc.get("status"), str) else None,
            input=given,
            predict_time=float(predict_time) if isinstance(predict_time, int | float) else None,
            files=files,
            schema_version=int(doc.get("schema_version") or 1),
        )
    except (TypeError, ValueError, KeyError) as exc:
        raise ForeignManifest(f"malformed ({type(exc).__name__}: {exc})") from None


_EPOCH = "1970-01-01T00:00:00.000000Z"


def _file(value: Any, kind: str) -> StoredFile:
    if not isinstance(value, dict):
        raise TypeError("a file entry is not an object")
    path, size, sha256 = value["path"], value["size"], value["sha256"]
    if not isinstance(path, str) or not isinstance(sha256, str) or isinstance(size, bool):
        raise TypeError(f"bad file entry {path!r}")
    content_type = value.get("content_type")
    return StoredFile(
        path=path,
        size=int(size),
        sha256=sha256.lower(),
        content_type=content_type if isinstance(content_type, str) else None,
        kind=kind,
    )


def _when(value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return iso(datetime.fromisoformat(value.replace("Z", "+00:00")))
    except ValueError:
        return None


def _strings(value: Any) -> list[str]:
    """Text values inside an input, depth first; data: URIs (inline payloads) left out."""
    if isinstance(value, str):
        return [] if value.startswith("data:") else [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []
