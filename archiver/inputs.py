"""Command-line input parsing: `-i key=value` pairs, `key=@file` uploads, `--input-json`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from .errors import ConfigurationError
from .storage import StorageOptions
from .uploads import local_input


def parse_value(text: str) -> Any:
    """JSON when the text is valid JSON (numbers, booleans, lists...), else the text itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_pairs(pairs: list[str]) -> dict[str, Any]:
    """`["steps=4", "prompt=a cat", "image=@cat.png"]` -> an input object: a file of at most
    256 KB inline as a data URI, a larger one a `LocalFile` for `uploads.resolve_uploads`."""
    result: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigurationError(f"-i expects KEY=VALUE, got {pair!r}")
        if value.startswith("@"):
            result[key.strip()] = local_input(Path(value[1:]).expanduser())
        else:
            result[key.strip()] = parse_value(value)
    return result


def load_input_json(source: str | None) -> dict[str, Any]:
    """The object in a JSON file, or on stdin for `-`."""
    if source is None:
        return {}
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text()
        value = json.loads(text)
    except OSError as exc:
        raise ConfigurationError(f"cannot read --input-json {source}: {exc.strerror}") from exc
    except ValueError as exc:
        raise ConfigurationError(f"--input-json {source} is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise ConfigurationError(f"--input-json {source} must hold a JSON object")
    return value


def option_pairs(pairs: list[str]) -> dict[str, str]:
    """`--storage-option K=V` pairs as given, checked by `StorageOptions.parse` (which registers
    their secrets for redaction): text, as a flow parameter holds them."""
    raw: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigurationError(f"--storage-option expects KEY=VALUE, got {pair!r}")
        raw[key.strip()] = value
    StorageOptions.parse(raw)
    return raw


def parse_options(pairs: list[str]) -> dict[str, Any]:
    """`--storage-option K=V` pairs, parsed by `StorageOptions.parse` (its secrets registered)."""
    return StorageOptions.parse(option_pairs(pairs)).to_dict()
