"""Bringing the catalog up to date from the archive's manifests: lazily, at query time.

No catalog is written on the archiving hot path (on object stores only an empty journal
marker per manifest): every archive path (run, batch, sweep, webhooks, archive by id, another
worker, a copy by hand) ends in a `manifest.json`, and the next query picks up the manifests
the catalog has not seen. Two ways to see them:

* Local disk: every directory's mtime is kept. A sync stats the directories that hold no
  manifest (owner/, name/, year/, month/, day/, and prediction directories whose manifest has
  not arrived yet) and re-lists only those whose mtime moved: a new prediction directory or a
  manifest renamed into place moves it, a removed one too. Directories that hold a manifest
  are not visited again (a manifest is written once, last, and never rewritten by the
  archiver; one edited in place is re-read by `catalog rebuild`). An mtime within
  `RACY_NS` of the scan is not trusted (a change in the same clock tick would not move it):
  such a directory is listed again next time.
* Any other fsspec store (s3://...): a full listing, flat (no delimiter: S3 pages of 1000
  keys) under each top-level prefix at once, `.archiver/` left out, compared with each
  manifest's ETag (or size and mtime); new or changed manifests are read concurrently through
  `Backend.read_many` (one GET each). The full listing runs when the last one is ARCHIVER_CATALOG_LIST_INTERVAL old; in
  between, a query reads only the journal of markers the archiver writes beside each new
  manifest (`journal.py`: one short listing), so manifests copied in by hand show up at the
  next full listing.

Corrupt or foreign manifests are kept in the catalog's `bad` table, never raised.
"""

from __future__ import annotations

import os
import posixpath
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from archiver.storage import Destination
from archiver.storage.translate import translated

from . import journal
from .records import MANIFEST_NAME, ForeignManifest, entry_of
from .store import Catalog, Change

RACY_NS = 2_000_000_000  # an mtime this close to the scan may still move within its tick
READ_CONCURRENCY = 32  # manifest GETs in flight on object stores (a busy server refuses 128)
READ_CHUNK = 1000  # manifests per fetch call (memory stays flat)
LIST_THREADS = 8  # top-level prefixes listed at once
JOURNALED = "journal"  # the stamp of a manifest read through the journal (no ETag known yet)
FLUSH = 5000  # manifests read per catalog transaction

Progress = Callable[[int], None]  # manifests read so far


@dataclass(frozen=True)
class SyncStats:
    read: int  # manifests (re)read
    bad: int  # of them corrupt or foreign
    gone: int  # manifests or directories found removed


def sync(
    dest: Destination,
    catalog: Catalog,
    progress: Progress | None = None,
    *,
    list_interval: float = 0,
    clock: Callable[[], float] = time.time,
) -> SyncStats:
    """Read the manifests `catalog` has not seen in `dest` and write them into it.

    `list_interval`: an object store is listed whole only when its last full listing is that
    many seconds old (ARCHIVER_CATALOG_LIST_INTERVAL; 0: every time); in between, only its
    journal of new manifests is read (`journal.py`)."""
    found = _Found(catalog, progress)
    if dest.backend.directory_mtimes:
        _scan_local(dest, catalog, found)
        return found.finish()
    began = clock()
    listed = float(catalog.meta("listed_at") or "-inf")
    if list_interval > 0 and 0 <= began - listed < list_interval:
        _read_journal(dest, catalog, found)
        stats = found.finish()
        catalog.set_meta("journal_after", datetime.fromtimestamp(began, UTC).isoformat())
        return stats
    _scan_listing(dest, catalog, found)
    stats = found.finish()
    catalog.set_meta("listed_at", repr(began))
    catalog.set_meta("journal_after", datetime.fromtimestamp(began, UTC).isoformat())
    return stats


def rebuild(dest: Destination, catalog: Catalog, progress: Progress | None = None) -> SyncStats:
    """Forget everything and read every manifest again."""
    catalog.clear()
    return sync(dest, catalog, progress)


def is_manifest_path(relative: str) -> bool:
    """A manifest of the archive: `.../manifest.json`, nothing under a dot directory
    (`.archiver/` holds the cache and staging)."""
    parts = relative.split("/")
    return parts[-1] == MANIFEST_NAME and not any(p.startswith(".") for p in parts[:-1])


class _Found:
    """What a scan collects, written into the catalog every `FLUSH` manifests (memory stays
    flat on a first scan of 100k). Directories that hold a manifest are written with it; the
    others only at the end, so a scan that dies midway leaves their old mtimes (or none) and
    the next one lists them again."""

    def __init__(self, catalog: Catalog, progress: Progress | None) -> None:
        self.catalog = catalog
        self.progress = progress
        self.read = self.bad_count = 0
        self.gone: list[str] = []
        self.open_dirs: list[tuple[str, int, bool]] = []
        self._reset()

    def _reset(self) -> None:
        self.change = Change(entries=[], bad=[], gone=[], dirs=[])

    def manifest(self, path: str, stamp: str, data: bytes | BaseException) -> None:
        try:
            if isinstance(data, BaseException):
                raise ForeignManifest(f"unreadable ({type(data).__name__}: {data})")
            self.change.entries.append((path, stamp, entry_of(data)))
        except ForeignManifest as exc:
            self.change.bad.append((path, stamp, str(exc)))
            self.bad_count += 1
        self.read += 1
        if self.progress is not None:
            self.progress(self.read)
        if len(self.change.entries) + len(self.change.bad) >= FLUSH:
            self.catalog.apply(self.change)
            self._reset()

    def finish(self) -> SyncStats:
        self.change.gone.extend(self.gone)
        self.change.dirs.extend(self.open_dirs)
        self.catalog.apply(self.change)
        self._reset()
        return SyncStats(read=self.read, bad=self.bad_count, gone=len(self.gone))


def _scan_local(dest: Destination, catalog: Catalog, found: _Found) -> None:
    root = dest.root
    watched = catalog.open_dirs()  # directories without a manifest, and their mtimes
    now = time.time_ns()

    def visit(start: str) -> None:
        stack = [start]
        while stack:
            rel = stack.pop()
            full = os.path.join(root, rel) if rel else root
            try:
                mtime = os.stat(full).st_mtime_ns  # before listing: a later change moves it
                entries = list(os.scandir(full))
            except (FileNotFoundError, NotADirectoryError):
                if rel:
                    found.gone.append(rel + "/")
                continue
            trusted = mtime if now - mtime > RACY_NS else -1
            names = {e.name: e for e in entries}
            manifest = names.get(MANIFEST_NAME)
            if manifest is not None and manifest.is_file():
                found.change.dirs.append((rel, trusted, True))
                _read_local(found, rel, manifest.path)
                continue
            found.open_dirs.append((rel, trusted, False))
            subdirs = {
                posixpath.join(rel, e.name) if rel else e.name
                for e in entries
                if not e.name.startswith(".") and e.is_dir(follow_symlinks=False)
            }
            known = catalog.children(rel)
            found.gone.extend(child + "/" for child in known if child not in subdirs)
            stack.extend(child for child in subdirs if child not in known)

    if "" not in watched:  # never scanned whole (or a first scan died): from the root
        visit("")
    for rel, mtime in watched.items():
        try:
            current = os.stat(os.path.join(root, rel) if rel else root).st_mtime_ns
        except FileNotFoundError:
            if rel:
                found.gone.append(rel + "/")
            continue
        if current != mtime:
            visit(rel)
    for path, stamp in catalog.bad_stamps().items():  # mended by hand since? read again
        full = os.path.join(root, path)
        try:
            info = os.stat(full)
        except FileNotFoundError:
            found.gone.append(path)
            continue
        if f"{info.st_mtime_ns}:{info.st_size}" != stamp:
            _read_local(found, posixpath.dirname(path), full)


def _read_local(found: _Found, rel_dir: str, full: str) -> None:
    path = posixpath.join(rel_dir, MANIFEST_NAME) if rel_dir else MANIFEST_NAME
    try:
        with open(full, "rb") as handle:
            info = os.fstat(handle.fileno())
            data: bytes | BaseException = handle.read()
    except OSError as exc:
        found.manifest(path, "unreadable", exc)
        return
    found.manifest(path, f"{info.st_mtime_ns}:{info.st_size}", data)


def _scan_listing(dest: Destination, catalog: Catalog, found: _Found) -> None:
    """Every manifest key of the store, listed flat (no delimiter: pages of 1000 keys) under
    each top-level prefix at once, `.archiver/` (cache, journal) left out; those whose stamp
    (ETag) is new are read."""
    current = _listing(dest)
    known = catalog.stamps()
    found.gone.extend(path for path in known if path not in current)
    noted = [(current[p], p) for p, stamp in known.items() if stamp == JOURNALED and p in current]
    catalog.restamp(noted)  # read through the journal: the listing gives their ETags
    todo = [p for p, stamp in current.items() if known.get(p) not in (stamp, JOURNALED)]
    _read_manifests(dest, found, {p: current[p] for p in todo})


def _listing(dest: Destination) -> dict[str, str]:
    """{manifest path relative to dest: stamp} of every manifest in the store."""
    root = dest.root.rstrip("/")
    fs: Any = dest.fs
    top: list[dict[str, Any]] = []  # stays empty when nothing is stored under root yet
    with translated(dest.backend, f"listing {dest.url}", missing_ok=True):
        fs.invalidate_cache(root)
        top = fs.ls(root, detail=True)
    listing: dict[str, dict[str, Any]] = {}
    prefixes = []
    for info in top:
        name = str(info["name"]).rstrip("/")
        if posixpath.basename(name).startswith("."):
            continue
        if info.get("type") == "directory":
            prefixes.append(name)
        else:
            listing[name] = info

    def find(prefix: str) -> dict[str, dict[str, Any]]:
        with translated(dest.backend, f"listing {dest.url}", missing_ok=True):
            return dict(fs.find(prefix, detail=True))
        return {}

    if prefixes:
        with ThreadPoolExecutor(min(LIST_THREADS, len(prefixes))) as pool:
            for part in pool.map(find, prefixes):
                listing.update(part)
    current: dict[str, str] = {}
    for full, info in listing.items():
        rel = str(full)[len(root) :].lstrip("/") if str(full).startswith(root) else ""
        if rel and is_manifest_path(rel):
            current[rel] = _stamp(info)
    return current


def _read_journal(dest: Destination, catalog: Catalog, found: _Found) -> None:
    """The manifests named by journal markers written since the last read or full listing
    began (by this machine's clock, `journal.SKEW` earlier), that the catalog does not hold."""
    after_text = catalog.meta("journal_after")
    after = datetime.fromisoformat(after_text) if after_text else None
    with translated(dest.backend, f"listing {dest.url}", missing_ok=True):
        directories = journal.read(dest, after)
    paths = [posixpath.join(d, MANIFEST_NAME) for d in directories if d]
    new = sorted(set(paths) - catalog.known(paths))
    _read_manifests(dest, found, dict.fromkeys(new, JOURNALED))


def _read_manifests(dest: Destination, found: _Found, todo: dict[str, str]) -> None:
    """Read the manifests `{path: stamp}` READ_CONCURRENCY at once, into `found`."""
    paths = list(todo)
    for start in range(0, len(paths), READ_CHUNK):
        chunk = paths[start : start + READ_CHUNK]
        data = fetch(dest, [dest.path(p) for p in chunk])
        for path in chunk:
            value = data.get(dest.path(path))
            if value is None or isinstance(value, FileNotFoundError):
                continue  # removed since the listing: the next sync forgets it
            if isinstance(value, BaseException):  # the store failed: no verdict on the manifest
                raise dest.backend.translate(value, f"reading {dest.url_for(dest.path(path))}")
            found.manifest(path, todo[path], value)


def fetch(dest: Destination, paths: list[str]) -> dict[str, bytes | BaseException]:
    """`{path: bytes or the exception reading it}` of small files of an object store, read
    concurrently (`Backend.read_many`: one GET each), READ_CONCURRENCY requests in flight."""
    data: dict[str, bytes | BaseException] = {}
    with translated(dest.backend, f"reading manifests in {dest.url}"):
        data = dest.backend.read_many(paths, READ_CONCURRENCY)
    return data


def _stamp(info: dict[str, Any]) -> str:
    """What a listed manifest was at: its ETag, else its size and modification time."""
    etag = info.get("ETag") or info.get("etag")
    if etag:
        return str(etag)
    when = info.get("mtime") or info.get("LastModified") or info.get("created")
    return f"{info.get('size')}:{when}"
