"""The archive's catalog: find, verify and account for what was archived.

Derived from manifests only (delete it and `catalog rebuild`, or just query again), brought up
to date lazily by the next query: the archiving hot path writes nothing but, on object stores,
one empty journal marker per manifest.

    records.py  Entry, entry_of: a manifest.json read tolerantly (schema 1 and 2)
    store.py    Catalog: the SQLite file (FTS5 over input text), upserts in one transaction
    scan.py     sync, rebuild: pick up manifests not seen yet (local: directory mtimes;
                object stores: the journal, and a full listing compared with ETags
                every ARCHIVER_CATALOG_LIST_INTERVAL)
    journal.py  note, read: the marker the archiver writes beside each manifest on an
                object store, and the markers a query has not seen
    query.py    Filters (words, model, since/until, id, sha256), find
    verify.py   verify: every file re-read and compared with its manifest
    usage.py    usage: predictions, files, bytes, model time and cost per model/day/month

Where the file lives: `<dest>/.archiver/catalog.sqlite3` for a local archive; for any other
store, in ARCHIVER_CATALOG_DIR or `~/.cache/replicate-archiver/catalog/`, one file per
archive URL.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from archiver.storage import Destination

from .query import Filters, find, manifest_paths, parse_when
from .scan import SyncStats, rebuild, sync
from .store import Catalog

__all__ = [
    "Catalog",
    "Filters",
    "SyncStats",
    "catalog_file",
    "find",
    "manifest_paths",
    "parse_when",
    "rebuild",
    "sync",
]

CACHE_DIR = Path("~/.cache/replicate-archiver/catalog")


def catalog_file(dest: Destination, catalog_dir: str | None = None) -> Path:
    """The catalog file of the archive `dest` (see the module docstring)."""
    if catalog_dir is None and dest.is_local:
        return Path(dest.path(".archiver")) / "catalog.sqlite3"
    readable = re.sub(r"[^A-Za-z0-9.-]+", "-", dest.url).strip("-")[:80]
    digest = hashlib.sha256(dest.url.encode()).hexdigest()[:16]
    directory = Path(catalog_dir) if catalog_dir else CACHE_DIR
    return directory.expanduser() / f"{readable}-{digest}.sqlite3"
