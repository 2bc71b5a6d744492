"""Replicate's official OpenAPI schema (a copy ships next to this module) and a validator.

``validate(body, "schemas_prediction_response")`` checks a JSON body against a component
schema, with OpenAPI's ``nullable: true`` turned into a JSON-Schema union with ``null``.
Needs the ``jsonschema`` package (a dev dependency), imported lazily.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any

SCHEMA_FILE = "replicate-openapi.json"


@lru_cache(maxsize=1)
def load_schema() -> dict[str, Any]:
    """The OpenAPI document, loaded relative to this package."""
    text = resources.files(__package__).joinpath(SCHEMA_FILE).read_text(encoding="utf-8")
    return json.loads(text)


def nullable_to_jsonschema(node: Any) -> Any:
    """Recursively rewrite ``nullable: true`` into ``type: [T, "null"]`` (or ``anyOf``)."""
    if isinstance(node, list):
        return [nullable_to_jsonschema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: nullable_to_jsonschema(value) for key, value in node.items()}
    if out.pop("nullable", False):
        if isinstance(out.get("type"), str):
            out["type"] = [out["type"], "null"]
            if "enum" in out:
                out["enum"] = [*out["enum"], None]
        else:
            out = {"anyOf": [out, {"type": "null"}]}
    return out


@lru_cache(maxsize=1)
def _components() -> dict[str, Any]:
    return nullable_to_jsonschema(load_schema()["components"])


def response_schema(path: str, method: str, status: str, media: str = "application/json") -> Any:
    """The (converted) schema of one documented response, e.g. ``("/predictions", "get", "200")``."""
    operation = load_schema()["paths"][path][method]
    return nullable_to_jsonschema(operation["responses"][status]["content"][media]["schema"])


def validate(body: Any, schema: str | dict[str, Any]) -> None:
    """Raise ``jsonschema.ValidationError`` unless ``body`` matches.

    ``schema`` is a component name (``"schemas_prediction_response"``) or a schema dict
    (for instance from :func:`response_schema`); ``$ref``s resolve against the document.
    """
    import jsonschema

    if isinstance(schema, str):
        root: dict[str, Any] = {"$ref": f"#/components/schemas/{schema}"}
    else:
        root = nullable_to_jsonschema(schema)
    root["components"] = _components()
    validator = jsonschema.Draft7Validator(root, format_checker=jsonschema.FormatChecker())
    error = jsonschema.exceptions.best_match(validator.iter_errors(body))
    if error is not None:
        raise error
