"""Predictions "made elsewhere" on the account (other scripts, teammates, the website).

``POST /_emulator/predictions`` (``Emulator.add_prediction``) adds one, created in the past,
in any final status (or still ``starting``), from either source: the double for predictions
this project did not create, which a sweep or ``archive ID`` must still keep.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from emulator.models import DEMO_MODEL


@dataclass(frozen=True)
class ForeignPrediction:
    """What ``POST /_emulator/predictions`` asks for, validated."""

    model: str
    input: dict[str, Any]
    status: str
    source: str
    age_seconds: float
    error: str | None

    @classmethod
    def parse(cls, body: Any) -> ForeignPrediction:
        if not isinstance(body, dict):
            raise TypeError("body must be a JSON object")
        unknown = set(body) - {"model", "input", "status", "source", "age_seconds", "error"}
        if unknown:
            raise TypeError(f"unknown field(s): {', '.join(sorted(unknown))}")
        status = body.get("status", "succeeded")
        if status not in ("starting", "succeeded", "failed", "canceled", "aborted"):
            raise ValueError(f"status must be starting or a final status, not {status!r}")
        source = body.get("source", "api")
        if source not in ("api", "web"):
            raise ValueError(f"source must be api or web, not {source!r}")
        age = body.get("age_seconds", 0)
        if isinstance(age, bool) or not isinstance(age, int | float) or age < 0:
            raise ValueError(f"age_seconds must be a number >= 0, not {age!r}")
        input_ = body.get("input", {})
        model = body.get("model", DEMO_MODEL)
        if not isinstance(input_, dict) or not isinstance(model, str) or "/" not in model:
            raise TypeError("input must be an object and model 'owner/name'")
        error = body.get("error")
        return cls(model, input_, status, source, float(age), None if error is None else str(error))
