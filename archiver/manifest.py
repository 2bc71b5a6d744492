"""`manifest.json`: the record of one archived prediction, written last so it marks completeness."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from functools import cache
from importlib import resources
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from . import __version__
from .outputs import public_url

#: The version `archive_staged` writes. A manifest without the field is version 1 (outputs
#: only); version 2 adds `input_files` and `logs`. The JSON Schema of every version ships as
#: `manifest.schema.json` beside this module (docs/manifest.md documents each field).
SCHEMA_VERSION = 2
MANIFEST_NAME = "manifest.json"
#: Replicate deletes an API prediction's inputs, outputs, files and logs this long after it was
#: created (website predictions keep theirs).
API_RETENTION = timedelta(hours=1)
LOGS_NAME = "logs.txt"
INPUTS_DIRECTORY = "inputs"
SCHEMA_FILE = "manifest.schema.json"


class ArchivedFile(BaseModel):
    """One output file as it sits in the archive."""

    name: str
    path: str = Field(description="Path relative to the archive root (dest).")
    size: int
    sha256: str
    content_type: str | None = None
    source_url: str = Field(
        description="Where it was downloaded from, without userinfo or query string; for a "
        "data: URI its header only (data:image/png;base64)."
    )
    pointer: str = Field(description="Position of the file in the prediction's output tree.")

    @field_validator("source_url")
    @classmethod
    def _public(cls, value: str) -> str:
        """Never credentials, signatures or inline payloads in a manifest."""
        return public_url(value)


class Retention(BaseModel):
    """When Replicate deletes the prediction's outputs, and the margin the archive had left."""

    deletes_at: datetime = Field(description="created_at + 1 hour (UTC).")
    margin_seconds: float = Field(description="deletes_at - archived_at; negative: too late.")

    @classmethod
    def of(
        cls, source: str | None, created_at: datetime | None, archived_at: datetime
    ) -> Retention | None:
        """The deadline of an API prediction (a missing `source` counts as one); None for a
        website prediction (kept by Replicate) or one whose creation time is unknown."""
        if source not in (None, "api") or created_at is None:
            return None
        deletes_at = (created_at + API_RETENTION).astimezone(UTC)
        return cls(deletes_at=deletes_at, margin_seconds=(deletes_at - archived_at).total_seconds())


class InputFile(BaseModel):
    """One file-valued input (a data URI, a Files API URL, a delivery URL, another URL)."""

    key: str = Field(description="The input key.")
    index: int | None = Field(description="Position in a list value; None for a plain value.")
    path: str | None = Field(
        default=None, description="Path relative to dest (archived inputs only)."
    )
    size: int | None = None
    sha256: str | None = None
    content_type: str | None = None
    source: str = Field(
        description="The URL without userinfo or query string, or 'data URI'.",
    )
    status: Literal["archived", "unavailable", "reference"]
    reason: str | None = Field(default=None, description="Why it is unavailable.")

    @field_validator("source")
    @classmethod
    def _public(cls, value: str) -> str:
        return value if value == "data URI" else public_url(value)


class LogsFile(BaseModel):
    """The prediction's final logs, as archived."""

    path: str = Field(description="Path relative to dest (`<directory>/logs.txt`).")
    size: int
    sha256: str


class Manifest(BaseModel):
    """Everything needed to trust and find an archived prediction. Never holds the token."""

    schema_version: int = Field(
        default=1, description="Absent in the first version's manifests: they read as 1."
    )
    prediction_id: str
    model: str
    version: str | None = None
    deployment: str | None = None
    status: str
    input: dict[str, Any]
    created_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    metrics: dict[str, Any] | None = None
    web_url: str | None = Field(
        default=None, description="Version 2: the prediction's page (`urls.web`), if given."
    )
    output: Any = Field(
        default=None, description="The output tree, each file URL replaced by {'file': path}."
    )
    files: list[ArchivedFile] = []
    input_files: list[InputFile] = Field(
        default=[], description="Every file-valued input (version 2; empty in version 1)."
    )
    logs: LogsFile | None = Field(default=None, description="Version 2: the logs, if any.")
    cache_key: str
    directory: str = Field(description="The prediction's directory, relative to dest.")
    tool: dict[str, str] = Field(
        default_factory=lambda: {"name": "replicate-archiver", "version": __version__}
    )
    archived_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    retention: Retention | None = Field(
        default=None, description="Replicate's deletion deadline; null when it keeps the data."
    )

    @property
    def path(self) -> str:
        """The manifest's own path relative to dest."""
        return f"{self.directory}/{MANIFEST_NAME}"

    def to_json(self) -> bytes:
        return self.model_dump_json(indent=2).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Manifest:
        return cls.model_validate_json(data)


@cache
def manifest_schema() -> dict[str, Any]:
    """The JSON Schema of `manifest.json` (every version), shipped with the package."""
    text = resources.files(__package__).joinpath(SCHEMA_FILE).read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema
