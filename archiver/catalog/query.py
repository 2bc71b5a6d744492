"""Filters shared by find, verify and usage, parsed once, and the find query itself."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from archiver.errors import ConfigurationError

from .records import iso
from .store import Catalog

_DURATION = re.compile(r"^(\d+)\s*(s|m|h|d|w)$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_MODEL = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


@dataclass(frozen=True)
class Filters:
    """Which manifests a command looks at. Empty: all of them."""

    words: list[str] = field(default_factory=list)
    model: str | None = None
    since: str | None = None  # ISO UTC, inclusive
    until: str | None = None  # ISO UTC, exclusive
    prediction_id: str | None = None
    sha256: str | None = None

    @classmethod
    def parse(
        cls,
        words: list[str] | None = None,
        *,
        model: str | None = None,
        since: str | None = None,
        until: str | None = None,
        prediction_id: str | None = None,
        sha256: str | None = None,
        now: datetime | None = None,
    ) -> Filters:
        """From command-line text; ConfigurationError naming the bad value."""
        now = now or datetime.now(UTC)
        if model is not None and not _MODEL.match(model):
            raise ConfigurationError(f"invalid --model {model!r}: expected OWNER/NAME")
        if prediction_id is not None and not _ID.match(prediction_id):
            raise ConfigurationError(f"invalid --id {prediction_id!r}: expected a prediction id")
        if sha256 is not None and not _SHA256.match(sha256):
            raise ConfigurationError(f"invalid --sha256 {sha256!r}: expected 64 hex digits")
        return cls(
            words=[w for w in (words or []) if any(c.isalnum() for c in w)],
            model=model,
            since=parse_when(since, "--since", now) if since else None,
            until=parse_when(until, "--until", now, end=True) if until else None,
            prediction_id=prediction_id,
            sha256=sha256.lower() if sha256 else None,
        )

    def where(self) -> tuple[str, list[Any]]:
        """The SQL condition on `manifests m` and its arguments."""
        clauses, args = ["1"], []
        if self.words:
            clauses.append("m.id IN (SELECT rowid FROM search WHERE search MATCH ?)")
            args.append(" AND ".join('"' + w.replace('"', '""') + '"*' for w in self.words))
        for clause, value in (
            ("m.model = ?", self.model),
            ("m.created_at >= ?", self.since),
            ("m.created_at < ?", self.until),
            ("m.prediction_id = ?", self.prediction_id),
            ("m.id IN (SELECT manifest_id FROM files WHERE sha256 = ?)", self.sha256),
        ):
            if value is not None:
                clauses.append(clause)
                args.append(value)
        return " AND ".join(clauses), args

    @property
    def narrowed(self) -> bool:
        """Whether only some manifests are asked for (then unreadable ones cannot match)."""
        return bool(self.words or self.model or self.prediction_id or self.sha256)


def parse_when(text: str, option: str, now: datetime, *, end: bool = False) -> str:
    """`7d`, `12h`, `2w` (ago), or a date / ISO datetime; as the catalog's ISO text.

    A bare date given as an end (`--until 2026-12-01`) includes that whole day."""
    value = text.strip()
    match = _DURATION.match(value.lower())
    if match:
        amount = int(match.group(1)) * _UNITS[match.group(2)]
        if amount <= 0 or amount > 100 * 365 * 86400:
            raise ConfigurationError(f"invalid {option} {text!r}: out of range")
        return iso(now - timedelta(seconds=amount))
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            day = date.fromisoformat(value)
            moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
            return iso(moment + timedelta(days=1) if end else moment)
        return iso(datetime.fromisoformat(value.replace("Z", "+00:00")))
    except ValueError:
        raise ConfigurationError(
            f"invalid {option} {text!r}: expected a duration like 7d or 12h, "
            "or a date like 2026-12-01"
        ) from None


def find(
    catalog: Catalog, filters: Filters, *, limit: int, manifest_url: Any
) -> tuple[int, list[dict[str, Any]]]:
    """`(total, results)`: every match counted, the newest `limit` of them returned as find's
    JSON shows them; `manifest_url(path)` gives a manifest's location."""
    where, args = filters.where()
    db = catalog.db
    total = db.execute(f"SELECT count(*) FROM manifests m WHERE {where}", args).fetchone()[0]  # noqa: S608
    rows = db.execute(
        "SELECT m.id, m.path, m.prediction_id, m.model, m.version, m.created_at, m.input,"
        f" m.prompt, m.outputs FROM manifests m WHERE {where}"  # noqa: S608
        " ORDER BY m.created_at DESC, m.id DESC LIMIT ?",
        [*args, limit],
    ).fetchall()
    files = catalog.files_of(row[0] for row in rows)
    results = [
        {
            "prediction_id": prediction_id,
            "model": model,
            "version": version,
            "created_at": created_at,
            "input": json.loads(input_json),
            "manifest": manifest_url(path),
            "files": files.get(rowid, []),
            "prompt": prompt,
        }
        for rowid, path, prediction_id, model, version, created_at, input_json, prompt, _ in rows
    ]
    return total, results


def manifest_paths(catalog: Catalog, filters: Filters) -> list[tuple[str, str | None]]:
    """`(manifest path, prediction id)` of every manifest the filters select, oldest first;
    with no narrowing filter, also every unreadable one (prediction id None)."""
    where, args = filters.where()
    rows: list[tuple[str, str | None]] = catalog.db.execute(
        f"SELECT m.path, m.prediction_id FROM manifests m WHERE {where} ORDER BY m.path",  # noqa: S608
        args,
    ).fetchall()
    if not filters.narrowed and not filters.since and not filters.until:
        rows += [(path, None) for (path,) in catalog.db.execute("SELECT path FROM bad")]
    return rows
