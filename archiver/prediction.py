"""What we ask Replicate for (`PredictionRequest`) and what it answers (`Prediction`).

`Prediction` is our own model of the API's prediction object: unlike the replicate client's, it
accepts every status the API documents (including `aborted`) and keeps unknown fields out.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from .errors import ConfigurationError

Status = Literal["starting", "processing", "succeeded", "failed", "canceled", "aborted"]
TERMINAL: frozenset[str] = frozenset({"succeeded", "failed", "canceled", "aborted"})

_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]*"
_MODEL_REF = re.compile(rf"^(?P<owner>{_NAME})/(?P<name>{_NAME})(?::(?P<version>[A-Za-z0-9]+))?$")


@dataclass(frozen=True)
class ModelRef:
    """`owner/name` (official or latest), `owner/name:version`, or a deployment `owner/name`."""

    owner: str
    name: str
    version: str | None = None
    deployment: bool = False

    @classmethod
    def parse(cls, text: str, *, deployment: bool = False) -> ModelRef:
        match = _MODEL_REF.match(text.strip())
        if not match:
            raise ConfigurationError(
                f"invalid model reference {text!r}: expected owner/name or owner/name:version"
            )
        if deployment and match["version"]:
            raise ConfigurationError(f"a deployment takes no version: {text!r}")
        return cls(match["owner"], match["name"], match["version"], deployment)

    @property
    def slug(self) -> str:
        return f"{self.owner}/{self.name}"

    def __str__(self) -> str:
        prefix = "deployment:" if self.deployment else ""
        suffix = f":{self.version}" if self.version else ""
        return f"{prefix}{self.slug}{suffix}"


def canonical_json(value: Any) -> str:
    """Stable JSON text of a value: sorted keys, no whitespace (the basis of cache keys)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def content_keyed(input: dict[str, Any], digests: dict[str, str]) -> dict[str, Any]:
    """`input` with each value (or list item) that `digests` names replaced by its content's
    `{"sha256": ...}`."""
    if not digests:
        return input

    def keyed(value: Any) -> Any:
        if isinstance(value, str) and value in digests:
            return {"sha256": digests[value]}
        return [keyed(item) for item in value] if isinstance(value, list) else value

    return {key: keyed(value) for key, value in input.items()}


def request_key(model: ModelRef, input: dict[str, Any]) -> str:
    text = canonical_json({"model": str(model), "input": input})
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class PredictionRequest:
    """One prediction to pay for at most once: a model reference and its input."""

    model: ModelRef
    input: dict[str, Any] = field(default_factory=dict)
    deadline: float | None = None  # seconds, sent as Cancel-After; not part of the cache key
    webhook: str | None = None  # receiver URL for the `completed` event; not part of the key
    # {URL: sha256} of inputs uploaded with the Files API: the key hashes their content.
    file_digests: dict[str, str] = field(default_factory=dict)

    @property
    def cache_key(self) -> str:
        """sha256 of the model reference and the input: equal requests share one prediction.

        An uploaded file's URL counts as its content (`{"sha256": ...}`): the same local file
        uploaded twice (two URLs) is one request."""
        return request_key(self.model, content_keyed(self.input, self.file_digests))

    def matches(self, prediction: Prediction) -> bool:
        """True when `prediction` was created from this request (used after a lost response)."""
        same_model = prediction.model == self.model.slug or self.model.deployment
        same_version = self.model.version in (None, prediction.version)
        return (
            same_model
            and same_version
            and canonical_json(prediction.input) == canonical_json(self.input)
        )


class Prediction(BaseModel):
    """A prediction as the API returns it (the fields this project reads)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: str
    status: Status
    model: str = ""
    version: str | None = None
    input: dict[str, Any] = {}
    output: Any = None
    error: Any = None
    logs: str | None = None
    metrics: dict[str, Any] | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    data_removed: bool = False
    deployment: str | None = None
    urls: dict[str, str] = {}
    source: str | None = None  # "api" or "web": how it was created

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def outputs_available(self) -> bool:
        """Succeeded with outputs, or still processing with every file output already there."""
        if self.data_removed or self.output is None:
            return False
        return self.status == "succeeded" or self.files_ready_early

    @property
    def files_ready_early(self) -> bool:
        """Still processing, but all its output files are published: download may start."""
        from .outputs import files_complete

        return self.status == "processing" and files_complete(self.output, self.input)

    def summary(self) -> dict[str, Any]:
        """The metadata a manifest keeps (no URLs: they carry signatures and expire)."""
        return self.model_dump(
            mode="json",
            include={
                "id",
                "model",
                "version",
                "status",
                "input",
                "created_at",
                "started_at",
                "completed_at",
                "metrics",
                "deployment",
            },
        )
