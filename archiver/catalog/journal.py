"""The journal of an object-store archive: one empty marker object per manifest written.

Listing a whole bucket per query does not scale (20k keys are 20 pages of 1000, 6 s on a
SeaweedFS on loopback, most of it the server's), so after writing a manifest to an object
store the archiver also writes an empty marker whose key sorts by time:

    <dest>/.archiver/journal/20261207T203015.123456Z_<the prediction directory, %-quoted>

A query lists only the markers written since it last looked (one ListObjectsV2 with
StartAfter, usually an empty page) and reads the manifests they name. Markers are a hint: a
manifest is still found without one (written by an earlier version, copied in by hand, a marker
that failed to write) by the full listing, which runs when the last one is older than
ARCHIVER_CATALOG_LIST_INTERVAL, and on `catalog rebuild`. Local archives have no journal (a
few directory stats find new manifests there).

Each read starts `SKEW` (60 s) before the previous read (or full listing) began, by the
reader's clock: a worker whose clock lags by up to that much is still seen, one whose clock
runs ahead only has its markers listed again until real time passes them (markers of manifests
the catalog holds cost only their listing: 1000 a page). A worker whose clock lags by more has
its manifests found by the next full listing.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from urllib.parse import quote, unquote

from archiver.storage import Destination, write_bytes_atomic

log = logging.getLogger(__name__)

JOURNAL = ".archiver/journal"
SKEW = timedelta(seconds=60)  # how far behind the newest marker seen each read starts
_FORMAT = "%Y%m%dT%H%M%S.%fZ"


def marker(directory: str, when: datetime) -> str:
    """The marker's path relative to dest for a manifest in `directory`."""
    return f"{JOURNAL}/{when.astimezone(UTC):{_FORMAT}}_{quote(directory, safe='')}"


def note(dest: Destination, directory: str, when: datetime | None = None) -> None:
    """After a manifest is written: its marker, where the store keeps a journal (object
    stores, not local disk: `Backend.journaled`). A marker that cannot be written is only
    logged: the next full listing finds the manifest."""
    if not dest.backend.journaled:
        return
    try:
        write_bytes_atomic(dest, dest.path(marker(directory, when or datetime.now(UTC))), b"")
    except Exception as exc:  # noqa: BLE001 - a hint only; the manifest is in place
        log.warning("catalog journal marker for %s not written: %s", directory, exc)


def cursor_key(after: datetime) -> str:
    """The marker name a read starts after: `SKEW` before `after`."""
    return f"{after - SKEW:{_FORMAT}}"


def read(dest: Destination, after: datetime | None) -> list[str]:
    """The prediction directories of the markers named after `after` - SKEW (every marker
    when `after` is None): one `Backend.list_after` (on S3 one ListObjectsV2 with StartAfter;
    elsewhere the journal directory listed whole). Foreign errors are the caller's to
    translate."""
    prefix = dest.path(JOURNAL).rstrip("/") + "/"
    start = prefix + cursor_key(after) if after is not None else None
    directories: list[str] = []
    for name in dest.backend.list_after(prefix, start):
        stamp, _, quoted = name.partition("_")
        try:
            datetime.strptime(stamp, _FORMAT)
        except ValueError:
            continue  # not a marker of ours
        directories.append(unquote(quoted))
    return directories
