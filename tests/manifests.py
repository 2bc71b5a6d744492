"""Validation of every `manifest.json` the tests write against the packaged JSON Schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema

from archiver.manifest import MANIFEST_NAME, manifest_schema


def validate_manifest(data: Any) -> None:
    """Raise `jsonschema.ValidationError` unless `data` (parsed JSON) is a valid manifest."""
    validator = jsonschema.Draft202012Validator(
        manifest_schema(), format_checker=jsonschema.FormatChecker()
    )
    error = jsonschema.exceptions.best_match(validator.iter_errors(data))
    if error is not None:
        raise error


def validate_manifests_under(root: Path) -> int:
    """Validate each manifest.json below `root` the archiver wrote (a JSON object naming a
    prediction: tests also store stand-ins like `{}`, or corrupt one on purpose); how many."""
    count = 0
    for path in root.rglob(MANIFEST_NAME):
        try:
            data = json.loads(path.read_bytes())
        except (OSError, ValueError):
            continue
        if not isinstance(data, dict) or "prediction_id" not in data:
            continue
        try:
            validate_manifest(data)
        except jsonschema.ValidationError as exc:
            raise AssertionError(f"{path} breaks manifest.schema.json: {exc.message}") from exc
        count += 1
    return count
