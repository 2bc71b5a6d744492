"""The catalog file: SQLite (standard library) with an FTS5 index over input text.

Derived from manifests only: deleting the file loses nothing (`catalog rebuild`). Tables:

    manifests  one row per manifest: its path (relative to dest), stamp (what it was read
               at: mtime and size, or the store's ETag), the fields queries filter on
    files      the files each manifest vouches for (outputs, archived inputs, logs)
    search     FTS5 over the input's text values, rowid = manifests.id
    bad        manifest.json files that are corrupt or foreign (skipped by find, reported by
               verify), with the reason
    dirs       local archives: every directory seen, its mtime and whether it holds a
               manifest (`scan.py` re-lists only directories whose mtime moved)

Writers hold SQLite's write lock for one short transaction (`BEGIN IMMEDIATE`), in WAL mode so
readers never wait; every write is an upsert or a delete of what its writer saw gone, so two
processes bringing the catalog up to date at once lose nothing.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from archiver.errors import StorageError

from .records import Entry

SCHEMA = 1
T = TypeVar("T")
BUSY_TIMEOUT_MS = 120_000

_DDL = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS manifests(
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL UNIQUE,
    stamp TEXT NOT NULL,
    prediction_id TEXT NOT NULL,
    model TEXT NOT NULL,
    version TEXT,
    created_at TEXT NOT NULL,
    status TEXT,
    input TEXT NOT NULL,
    prompt TEXT NOT NULL,
    predict_time REAL,
    outputs INTEGER NOT NULL,
    output_bytes INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS manifests_created ON manifests(created_at);
CREATE INDEX IF NOT EXISTS manifests_model ON manifests(model, created_at);
CREATE INDEX IF NOT EXISTS manifests_prediction ON manifests(prediction_id);
CREATE TABLE IF NOT EXISTS files(
    manifest_id INTEGER NOT NULL,
    kind TEXT NOT NULL,
    path TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    content_type TEXT
);
CREATE INDEX IF NOT EXISTS files_manifest ON files(manifest_id);
CREATE INDEX IF NOT EXISTS files_sha256 ON files(sha256);
CREATE VIRTUAL TABLE IF NOT EXISTS search USING fts5(text, tokenize='unicode61 remove_diacritics 2');
CREATE TABLE IF NOT EXISTS bad(path TEXT PRIMARY KEY, stamp TEXT NOT NULL, reason TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS dirs(
    path TEXT PRIMARY KEY, mtime_ns INTEGER NOT NULL, leaf INTEGER NOT NULL
) WITHOUT ROWID;
"""


@dataclass(frozen=True)
class Change:
    """What one sync found: manifests to (re)write, bad ones, paths gone, directories seen."""

    entries: list[tuple[str, str, Entry]]  # (path, stamp, entry)
    bad: list[tuple[str, str, str]]  # (path, stamp, reason)
    gone: list[str]  # manifest paths, or directory prefixes ending in "/"
    dirs: list[tuple[str, int, bool]]  # (path, mtime_ns, leaf)

    def __bool__(self) -> bool:
        return bool(self.entries or self.bad or self.gone or self.dirs)


class Catalog:
    """One catalog file. Cheap to open; use as a context manager (closes the connection)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
            self.db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            if self.db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            if not self._has_schema():
                with self.write():
                    for statement in _DDL.split(";"):
                        if statement.strip():
                            self.db.execute(statement)
                    self.db.execute(
                        "INSERT OR REPLACE INTO meta VALUES('schema', ?)", (str(SCHEMA),)
                    )
        except (sqlite3.Error, OSError) as exc:
            raise StorageError(
                f"cannot open the catalog {path}: {exc} (ARCHIVER_CATALOG_DIR sets where it lives)"
            ) from exc

    def _has_schema(self) -> bool:
        row = self.db.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='dirs'"
        ).fetchone()
        return row is not None

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.db.close()

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One transaction holding the write lock from its start (others wait, then go on)."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # -- what scans compare against ------------------------------------------------------

    def stamps(self) -> dict[str, str]:
        """Every manifest path read (good or bad) and the stamp it was read at."""
        rows = self.db.execute(
            "SELECT path, stamp FROM manifests UNION ALL SELECT path, stamp FROM bad"
        )
        return dict(rows.fetchall())

    def known(self, paths: list[str]) -> set[str]:
        """Those of `paths` the catalog holds (good or bad)."""
        held: set[str] = set()
        for chunk in _chunks(paths, 500):
            marks = ",".join("?" * len(chunk))
            rows = self.db.execute(
                f"SELECT path FROM manifests WHERE path IN ({marks})"  # noqa: S608
                f" UNION ALL SELECT path FROM bad WHERE path IN ({marks})",  # noqa: S608
                chunk + chunk,
            )
            held.update(path for (path,) in rows)
        return held

    def restamp(self, stamps: list[tuple[str, str]]) -> None:
        """Set the stamps of manifests already read: [(stamp, path)]."""
        if stamps:
            with self.write() as db:
                db.executemany("UPDATE manifests SET stamp = ? WHERE path = ?", stamps)
                db.executemany("UPDATE bad SET stamp = ? WHERE path = ?", stamps)

    def meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        with self.write() as db:
            db.execute("INSERT OR REPLACE INTO meta VALUES(?, ?)", (key, value))

    def bad_stamps(self) -> dict[str, str]:
        return dict(self.db.execute("SELECT path, stamp FROM bad").fetchall())

    def open_dirs(self) -> dict[str, int]:
        """Directories seen without a manifest (watched for changes), and their mtimes."""
        return dict(self.db.execute("SELECT path, mtime_ns FROM dirs WHERE leaf = 0").fetchall())

    def children(self, parent: str) -> set[str]:
        """The directories known directly under `parent` ("" for the root)."""
        if not parent:
            rows = self.db.execute(
                "SELECT path FROM dirs WHERE path != '' AND instr(path, '/') = 0"
            )
            return {path for (path,) in rows}
        rows = self.db.execute(
            "SELECT path FROM dirs WHERE path > ? AND path < ?", (parent + "/", parent + "0")
        )
        depth = parent.count("/") + 1
        return {path for (path,) in rows if path.count("/") == depth}

    # -- applying a scan -----------------------------------------------------------------

    def apply(self, change: Change) -> None:
        """Write what a scan found, in one transaction."""
        if not change:
            return
        try:
            with self.write() as db:
                for prefix in change.gone:
                    self._forget(db, prefix)
                for path, stamp, reason in change.bad:
                    self._delete_manifest(db, path)
                    db.execute("INSERT OR REPLACE INTO bad VALUES(?, ?, ?)", (path, stamp, reason))
                for path, stamp, entry in change.entries:
                    self._put(db, path, stamp, entry)
                db.executemany(
                    "INSERT OR REPLACE INTO dirs VALUES(?, ?, ?)",
                    ((p, m, int(leaf)) for p, m, leaf in change.dirs),
                )
        except sqlite3.Error as exc:
            raise StorageError(f"cannot update the catalog {self.path}: {exc}") from exc

    def clear(self) -> None:
        with self.write() as db:
            for table in ("manifests", "files", "search", "bad", "dirs"):
                db.execute(f"DELETE FROM {table}")  # noqa: S608 - fixed names
            db.execute("DELETE FROM meta WHERE key = 'listed_at'")

    def _put(self, db: sqlite3.Connection, path: str, stamp: str, entry: Entry) -> None:
        self._delete_manifest(db, path)
        db.execute("DELETE FROM bad WHERE path = ?", (path,))
        outputs = entry.outputs
        cursor = db.execute(
            "INSERT INTO manifests(path, stamp, prediction_id, model, version, created_at, status,"
            " input, prompt, predict_time, outputs, output_bytes)"
            " VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                path,
                stamp,
                entry.prediction_id,
                entry.model,
                entry.version,
                entry.created_at,
                entry.status,
                json.dumps(entry.input, separators=(",", ":")),
                entry.prompt[:200],
                entry.predict_time,
                len(outputs),
                sum(f.size for f in outputs),
            ),
        )
        rowid = cursor.lastrowid
        db.executemany(
            "INSERT INTO files VALUES(?, ?, ?, ?, ?, ?)",
            ((rowid, f.kind, f.path, f.size, f.sha256, f.content_type) for f in entry.files),
        )
        db.execute("INSERT INTO search(rowid, text) VALUES(?, ?)", (rowid, entry.text))

    def _delete_manifest(self, db: sqlite3.Connection, path: str) -> None:
        row = db.execute("SELECT id FROM manifests WHERE path = ?", (path,)).fetchone()
        if row is not None:
            db.execute("DELETE FROM files WHERE manifest_id = ?", row)
            db.execute("DELETE FROM search WHERE rowid = ?", row)
            db.execute("DELETE FROM manifests WHERE id = ?", row)

    def _forget(self, db: sqlite3.Connection, prefix: str) -> None:
        """A manifest path, or everything under a directory prefix ending in "/"."""
        if not prefix.endswith("/"):
            self._delete_manifest(db, prefix)
            db.execute("DELETE FROM bad WHERE path = ?", (prefix,))
            return
        pattern = _like_prefix(prefix)
        ids = db.execute(
            "SELECT id FROM manifests WHERE path LIKE ? ESCAPE '\\'", (pattern,)
        ).fetchall()
        db.executemany("DELETE FROM files WHERE manifest_id = ?", ids)
        db.executemany("DELETE FROM search WHERE rowid = ?", ids)
        db.executemany("DELETE FROM manifests WHERE id = ?", ids)
        db.execute("DELETE FROM bad WHERE path LIKE ? ESCAPE '\\'", (pattern,))
        db.execute(
            "DELETE FROM dirs WHERE path = ? OR path LIKE ? ESCAPE '\\'", (prefix[:-1], pattern)
        )

    def files_of(self, ids: Iterable[int]) -> dict[int, list[dict[str, object]]]:
        """The output files of each manifest id, as find's JSON shows them."""
        result: dict[int, list[dict[str, object]]] = {}
        for chunk in _chunks(list(ids), 500):
            marks = ",".join("?" * len(chunk))
            rows = self.db.execute(
                "SELECT manifest_id, path, size, sha256, content_type FROM files"
                f" WHERE kind = 'output' AND manifest_id IN ({marks}) ORDER BY rowid",  # noqa: S608
                chunk,
            )
            for manifest_id, path, size, sha256, content_type in rows:
                result.setdefault(manifest_id, []).append(
                    {"path": path, "size": size, "sha256": sha256, "content_type": content_type}
                )
        return result


def _like_prefix(prefix: str) -> str:
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


def _chunks(items: list[T], size: int) -> Iterator[list[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
