"""Command-line input parsing: `-i key=value` pairs, `key=@file` uploads, `--input-json`."""

from __future__ import annotations

import base64
import json
import mimetypes
import sys
from pathlib import Path
from typing import Any

from .errors import ConfigurationError
from .storage import StorageOptions

MAX_INLINE_FILE = 100 * 2**20


def parse_value(text: str) -> Any:
    """JSON when the text is valid JSON (numbers, booleans, lists...), else the text itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def file_data_uri(path: Path) -> str:
    """A local file as a data URI, the way Replicate accepts file inputs inline."""
    try:
        size = path.stat().st_size
        if size > MAX_INLINE_FILE:
            raise ConfigurationError(f"{path}: {size} bytes is too large to send inline")
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"cannot read input file {path}: {exc.strerror}") from exc
    mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def parse_pairs(pairs: list[str]) -> dict[str, Any]:
    """`["steps=4", "prompt=a cat", "image=@cat.png"]` -> an input object."""
    result: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigurationError(f"-i expects KEY=VALUE, got {pair!r}")
        if value.startswith("@"):
            result[key.strip()] = file_data_uri(Path(value[1:]).expanduser())
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


def parse_options(pairs: list[str]) -> dict[str, Any]:
    """`--storage-option K=V` pairs, parsed by `StorageOptions.parse` (its secrets registered)."""
    raw: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigurationError(f"--storage-option expects KEY=VALUE, got {pair!r}")
        raw[key.strip()] = value
    return StorageOptions.parse(raw).to_dict()
