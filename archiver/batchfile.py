"""Batch files: many prediction requests in one JSONL, CSV or JSON-list file, at any fsspec URL.

Each record is a model input object, or `{"model": "owner/name[:version]", "input": {...}}` to
give that record its own model (the batch's default model applies to the others). CSV columns
are input keys; each cell is parsed like a `-i` value (JSON when it parses, else text) and empty
cells are left out. The format comes from the suffix (`.jsonl`/`.ndjson`, `.csv`, `.json`; `.gz`
and other fsspec compressions are undone first) or, failing that, from the first character.

A file that cannot be read or parsed as a whole is a `ConfigurationError` naming the line; a
record that is wrong on its own (not an object, no model, bad model reference, broken JSONL
line) becomes that item's error, so the rest of the batch still runs.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from fsspec.utils import infer_compression

from .errors import ArchiverError, ConfigurationError
from .inputs import parse_value
from .prediction import ModelRef, PredictionRequest
from .retry import READ_BATCH, Sleep, retry_call
from .storage import open_destination, refuse_credentials

Format = Literal["jsonl", "csv", "json"]
_WRAPPER_KEYS = frozenset({"model", "input"})
_SUFFIXES: dict[str, Format] = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".json": "json",
}


@dataclass(frozen=True)
class BatchItem:
    """One record of a batch file: where it is, its model and input, or why it is unusable."""

    index: int  # 0-based position among the file's records
    line: int  # 1-based line where the record starts
    model: str | None
    input: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def request(self, deadline: float | None = None) -> PredictionRequest:
        """The prediction request of a valid item."""
        if self.error is not None or self.model is None:
            raise ConfigurationError(self.error or f"line {self.line}: no model")
        return PredictionRequest(ModelRef.parse(self.model), dict(self.input), deadline)


def load_batch(
    url: str,
    *,
    default_model: str | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> list[BatchItem]:
    """Read and parse the batch file at `url` (local path or fsspec URL)."""
    return parse_batch(read_text(url, storage_options), name=url, default_model=default_model)


async def read_batch(
    url: str,
    *,
    default_model: str | None = None,
    storage_options: Mapping[str, Any] | None = None,
    sleep: Sleep = asyncio.sleep,
) -> list[BatchItem]:
    """`load_batch` on a worker thread, a transient failure (a store outage) tried again as
    `READ_BATCH` says; a file that is missing or malformed fails at once."""
    return await retry_call(
        READ_BATCH,
        lambda: asyncio.to_thread(
            load_batch, url, default_model=default_model, storage_options=storage_options
        ),
        sleep=sleep,
    )


def read_text(url: str, storage_options: Mapping[str, Any] | None = None) -> str:
    """The whole file as text (UTF-8, BOM dropped), decompressed by suffix."""
    if not str(url or "").strip():
        raise ConfigurationError("no batch file given")
    refuse_credentials(url, setting="batch file")
    location = open_destination(url, storage_options)
    compression = infer_compression(url)
    try:
        with location.fs.open(location.root, "rb", compression=compression) as handle:
            data = handle.read()
    except FileNotFoundError as exc:
        raise ConfigurationError(f"batch file {url} does not exist") from exc
    except IsADirectoryError as exc:
        raise ConfigurationError(f"batch file {url} is a directory") from exc
    except Exception as exc:
        raise location.backend.translate(exc, f"read batch file {url}") from exc
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigurationError(f"batch file {url} is not UTF-8 text (byte {exc.start})") from exc


def detect_format(name: str, text: str) -> Format:
    """The format from the file name's suffix, else from the first non-blank character."""
    lowered = name.lower()
    compression = infer_compression(lowered)
    if compression:
        lowered = lowered.rsplit(".", 1)[0]
    for suffix, kind in _SUFFIXES.items():
        if lowered.endswith(suffix):
            if kind == "json" and not text.lstrip().startswith("["):
                return "jsonl"  # a .json file of one object per line
            return kind
    first = text.lstrip()[:1]
    return "json" if first == "[" else "jsonl" if first == "{" else "csv"


def parse_batch(
    text: str, *, name: str = "batch", default_model: str | None = None
) -> list[BatchItem]:
    """The items of a batch file's text (see the module docstring)."""
    if default_model is not None:
        ModelRef.parse(default_model)  # a bad --model is the whole batch's error
    kind = detect_format(name, text)
    records = {"jsonl": _jsonl, "csv": _csv, "json": _json_list}[kind](text, name)
    items = []
    for index, (line, value) in enumerate(records):
        if isinstance(value, _Broken):
            items.append(BatchItem(index, line, None, {}, f"line {line}: {value.reason}"))
        else:
            items.append(_item(index, line, value, default_model))
    return items


@dataclass(frozen=True)
class _Broken:
    reason: str


def _item(index: int, line: int, value: Any, default_model: str | None) -> BatchItem:
    where = f"line {line}"
    if not isinstance(value, dict):
        kind = type(value).__name__ if value is not None else "null"
        return BatchItem(
            index,
            line,
            None,
            {},
            f"{where}: expected an object (an input, or "
            f'{{"model": ..., "input": {{...}}}}), got {kind}',
        )
    model: Any = None
    payload: Any = value
    if "input" in value and set(value) <= _WRAPPER_KEYS:
        model, payload = value.get("model"), value["input"]
        if not isinstance(payload, dict):
            return BatchItem(index, line, None, {}, f'{where}: "input" must be an object')
        if model is not None and not isinstance(model, str):
            return BatchItem(
                index,
                line,
                None,
                dict(payload),
                f'{where}: "model" must be a string like owner/name',
            )
    model = model or default_model
    if not model:
        return BatchItem(
            index,
            line,
            None,
            dict(payload),
            f'{where}: no model: give the record a "model" or pass --model',
        )
    try:
        ModelRef.parse(model)
    except ArchiverError as exc:
        return BatchItem(index, line, model, dict(payload), f"{where}: {exc}")
    return BatchItem(index, line, model.strip(), dict(payload))


def _jsonl(text: str, name: str) -> Iterator[tuple[int, Any]]:
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            yield number, json.loads(raw)
        except ValueError as exc:
            column = f" (column {exc.colno})" if isinstance(exc, json.JSONDecodeError) else ""
            yield number, _Broken(f"not valid JSON: {getattr(exc, 'msg', exc)}{column}")


def _json_list(text: str, name: str) -> Iterator[tuple[int, Any]]:
    """Elements of a top-level JSON array, each with the line it starts on."""
    decoder = json.JSONDecoder()
    pos = _skip_space(text, 0)
    if text[pos : pos + 1] != "[":
        raise ConfigurationError(f"{name} line {_line(text, pos)}: expected a JSON list of records")
    pos = _skip_space(text, pos + 1)
    if text[pos : pos + 1] == "]":
        _expect_end(text, pos + 1, name)
        return
    elements = []
    while True:
        try:
            value, end = decoder.raw_decode(text, pos)
        except ValueError as exc:
            raise ConfigurationError(f"{name}: not valid JSON: {_json_reason(exc)}") from exc
        elements.append((_line(text, pos), value))
        pos = _skip_space(text, end)
        separator = text[pos : pos + 1]
        if separator == ",":
            pos = _skip_space(text, pos + 1)
        elif separator == "]":
            _expect_end(text, pos + 1, name)
            break
        else:
            raise ConfigurationError(
                f"{name} line {_line(text, pos)}: expected ',' or ']' after a record"
            )
    yield from elements


def _csv(text: str, name: str) -> Iterator[tuple[int, Any]]:
    reader = csv.reader(io.StringIO(text, newline=""))
    header: list[str] | None = None
    header_line = 0
    start = 1
    try:
        for row in reader:
            line, start = start, reader.line_num + 1
            if not any(cell.strip() for cell in row):
                continue
            if header is None:
                header, header_line = [cell.strip() for cell in row], line
                missing = [i + 1 for i, cell in enumerate(header) if not cell]
                if missing:
                    raise ConfigurationError(f"{name} line {line}: column {missing[0]} has no name")
                duplicates = sorted({c for c in header if header.count(c) > 1})
                if duplicates:
                    raise ConfigurationError(
                        f"{name} line {line}: column {duplicates[0]!r} appears twice"
                    )
                continue
            if len(row) > len(header):
                yield (
                    line,
                    _Broken(
                        f"{len(row)} values for the {len(header)} columns of line {header_line}"
                    ),
                )
                continue
            yield (
                line,
                {
                    key: parse_value(cell)
                    for key, cell in zip(header, row, strict=False)
                    if cell != ""
                },
            )
    except csv.Error as exc:
        raise ConfigurationError(f"{name} line {reader.line_num}: not valid CSV: {exc}") from exc


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def _line(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def _expect_end(text: str, pos: int, name: str) -> None:
    pos = _skip_space(text, pos)
    if pos < len(text):
        raise ConfigurationError(f"{name} line {_line(text, pos)}: unexpected text after the list")


def _json_reason(exc: ValueError) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} (line {exc.lineno} column {exc.colno})"
    return str(exc)
