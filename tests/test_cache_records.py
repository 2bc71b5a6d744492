"""A cache record's later states are appended to its file on local disk, durably, and a torn
or foreign addition is never taken for a state."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from archiver.cache import MAX_LINES, CacheRecord, PredictionCache, latest_record
from archiver.storage import open_destination

KEY = "ab" + "0" * 62


@pytest.fixture
def cache(tmp_path: Path) -> PredictionCache:
    return PredictionCache(open_destination(str(tmp_path / "cache")))


def _intent() -> CacheRecord:
    return CacheRecord(key=KEY, model="owner/model", state="creating")


def _path(cache: PredictionCache) -> Path:
    [path] = Path(cache.store.root).rglob("*.json")
    return path


def test_later_states_are_appended_to_the_same_file(cache):
    """Pending and archived go into the intent's own file (same inode: no new file, no rename),
    and the latest state is what a get returns."""
    intent = cache.put(_intent())
    inode = _path(cache).stat().st_ino
    cache.put(intent.model_copy(update={"state": "pending", "prediction_id": "p1"}))
    cache.put(intent.model_copy(update={"state": "archived", "prediction_id": "p1"}))
    assert _path(cache).stat().st_ino == inode
    assert _path(cache).read_bytes().count(b"\n") == 2
    record = cache.get(KEY)
    assert record is not None and (record.state, record.prediction_id) == ("archived", "p1")
    assert not [p for p in _path(cache).parent.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize(
    "tail",
    [
        pytest.param(b'\n{"key":"' + KEY.encode() + b'","model":"owner/mo', id="torn-line"),
        pytest.param(b"\n" + b"\0" * 300, id="zeros"),
        pytest.param(b"\n\x8f\x01garbage\twith a tab", id="garbage"),
    ],
)
def test_a_torn_append_leaves_the_state_before(cache, tail):
    """What a crash mid-append can leave at the end of the file is skipped: the reader gets the
    last whole state, and the next put still appends a readable one after it."""
    intent = cache.put(_intent())
    cache.put(intent.model_copy(update={"state": "pending", "prediction_id": "p1"}))
    with _path(cache).open("ab") as out:
        out.write(tail)
    record = cache.get(KEY)
    assert record is not None and record.state == "pending"
    cache.put(intent.model_copy(update={"state": "archived", "prediction_id": "p1"}))
    record = cache.get(KEY)
    assert record is not None and record.state == "archived"


def test_a_line_from_another_file_is_not_taken(cache, tmp_path):
    """A whole, checksummed line of another record file (stale bytes a file system without a
    journal may show after a crash) fails this file's checksum: the state stays as it was."""
    intent = cache.put(_intent())
    other = PredictionCache(open_destination(str(tmp_path / "other")))
    first = other.put(_intent())
    other.put(first.model_copy(update={"state": "archived", "prediction_id": "elsewhere"}))
    stale = _path(other).read_bytes().partition(b"\n")[2]
    assert stale and latest_record(_path(other).read_bytes(), KEY).state == "archived"
    with _path(cache).open("ab") as out:
        out.write(b"\n" + stale)
    record = cache.get(KEY)
    assert record is not None and record == intent


def test_a_long_record_file_is_written_whole_again(cache):
    """After MAX_LINES states the next put replaces the file with one line (new inode)."""
    intent = cache.put(_intent())
    inode = _path(cache).stat().st_ino
    for number in range(MAX_LINES - 1):
        cache.put(intent.model_copy(update={"state": "pending", "prediction_id": f"p{number}"}))
    assert _path(cache).read_bytes().count(b"\n") == MAX_LINES - 1
    cache.put(intent.model_copy(update={"state": "archived", "prediction_id": "last"}))
    assert _path(cache).stat().st_ino != inode
    assert b"\n" not in _path(cache).read_bytes()
    record = cache.get(KEY)
    assert record is not None and record.prediction_id == "last"


def test_a_corrupt_first_record_is_replaced_whole(cache):
    """A file whose first record is unreadable is no record, and the next put rewrites it."""
    cache.put(_intent())
    _path(cache).write_bytes(b"{not json")
    assert cache.get(KEY) is None
    cache.put(_intent())
    record = cache.get(KEY)
    assert record is not None and record.state == "creating"


def test_object_stores_get_whole_records(tmp_path):
    """On a store without appends (memory://, like S3) every put writes the record whole."""
    cache = PredictionCache(open_destination(f"memory://cache-{os.getpid()}-{tmp_path.name}"))
    intent = cache.put(_intent())
    cache.put(intent.model_copy(update={"state": "archived", "prediction_id": "p1"}))
    [path] = cache.store.fs.glob(cache.store.path("*/*.json"))
    assert b"\n" not in cache.store.fs.cat_file(path)
    record = cache.get(KEY)
    assert record is not None and record.state == "archived"
