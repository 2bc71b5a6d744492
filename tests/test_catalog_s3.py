"""find and verify on real S3 servers (moto, SeaweedFS): the catalog file lives locally, new and
removed manifests are seen by the next query through a listing or the journal, problems are named, and an
unreachable store is one line and exit 1."""

from __future__ import annotations

import json

import pytest

from archiver.catalog import Catalog, Filters, catalog_file, find, manifest_paths, sync
from archiver.catalog.verify import verify
from archiver.storage import open_destination
from tests.archives import flows_cli, manifest_path, prediction
from tests.s3servers import unused_endpoint


@pytest.fixture(params=["moto", "seaweedfs"])
def s3(request):
    """(server, bucket) on each real S3 server."""
    server = request.getfixturevalue(f"{request.param}_s3")
    bucket = request.getfixturevalue(f"{request.param}_bucket")
    return server, bucket


def _put(dest, files):
    for path in sorted(files, key=lambda p: p.endswith("manifest.json")):
        dest.fs.pipe_file(dest.path(path), files[path])


def _ids(dest, store, *words):
    sync(dest, store)
    total, results = find(store, Filters.parse(list(words)), limit=50, manifest_url=str)
    return [r["prediction_id"] for r in results]


def test_find_and_verify_on_s3(s3, tmp_path):
    server, bucket = s3
    dest = open_destination(f"s3://{bucket}/archive", server.storage_options())
    p1 = prediction("p1", "lighthouse at dusk", created="2026-12-01T10:00:00Z")
    p2 = prediction("p2", "a fox", created="2026-12-02T10:00:00Z", schema=2)
    _put(dest, p1)
    _put(dest, p2)
    dest.fs.pipe_file(dest.path("other/tool/manifest.json"), b'{"not": "ours"}')
    location = catalog_file(dest, str(tmp_path / "catalogs"))
    assert location.parent == tmp_path / "catalogs"
    with Catalog(location) as store:
        assert _ids(dest, store) == ["p2", "p1"]
        _put(dest, prediction("p3", "lighthouse at dawn", created="2026-12-03T10:00:00Z"))
        dest.fs.rm(dest.path(manifest_path(p2)))
        assert _ids(dest, store, "lighthouse") == ["p3", "p1"]
        assert _ids(dest, store) == ["p3", "p1"]
        report = verify(dest, manifest_paths(store, Filters()), workers=4)
    assert report.ok == 4 and [p.outcome for p in report.problems] == ["unreadable"]
    day = "black-forest-labs/flux-schnell/2026/12/01/p1"
    dest.fs.pipe_file(dest.path(f"{day}/out-0.png"), b"other bytes")
    dest.fs.rm(dest.path(f"{day}/out-1.png"))
    with Catalog(location) as store:
        report = verify(dest, manifest_paths(store, Filters.parse(prediction_id="p1")), workers=4)
    assert {(p.path, p.outcome) for p in report.problems} == {
        (f"{day}/out-0.png", "corrupt"),
        (f"{day}/out-1.png", "missing"),
    }


def test_cli_on_moto_and_an_unreachable_store(moto_s3, moto_bucket, tmp_path):
    dest = open_destination(f"s3://{moto_bucket}/archive", moto_s3.storage_options())
    _put(dest, prediction("p1", "lighthouse at dusk"))
    env = {
        "ARCHIVER_STORAGE_OPTIONS": json.dumps(moto_s3.storage_options()),
        "ARCHIVER_CATALOG_DIR": str(tmp_path / "catalogs"),
    }
    found = flows_cli("find", "light", "--json", "--dest", f"s3://{moto_bucket}/archive", env=env)
    assert found.returncode == 0, found.stderr
    [match] = json.loads(found.stdout)["results"]
    assert match["manifest"].startswith(f"s3://{moto_bucket}/archive/") and len(match["files"]) == 2
    assert list((tmp_path / "catalogs").glob("*.sqlite3"))
    checked = flows_cli("verify", "--dest", f"s3://{moto_bucket}/archive", env=env)
    assert checked.returncode == 0 and "2 ok" in checked.stdout, checked.stderr

    down = {
        **env,
        "ARCHIVER_STORAGE_OPTIONS": json.dumps(
            {**moto_s3.storage_options(), "endpoint_url": unused_endpoint()}
        ),
    }
    for command in ("find", "verify", "usage"):
        result = flows_cli(command, "--dest", f"s3://{moto_bucket}/archive", env=down)
        assert result.returncode == 1, (command, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1 and "error:" in result.stderr


def test_an_object_store_listing_stays_fresh_for_the_list_interval(tmp_path):
    """ARCHIVER_CATALOG_LIST_INTERVAL: within it the catalog answers without listing; after
    it (or with 0) the next query sees the new manifest."""
    dest = open_destination(f"memory://catalog-interval-{tmp_path.name}")
    _put(dest, prediction("p1", "lighthouse one"))
    now = [1000.0]
    with Catalog(tmp_path / "c.sqlite3") as store:

        def ids():
            sync(dest, store, list_interval=60, clock=lambda: now[0])
            return [
                r["prediction_id"] for r in find(store, Filters(), limit=9, manifest_url=str)[1]
            ]

        assert ids() == ["p1"]
        _put(dest, prediction("p2", "lighthouse two", created="2026-12-02T10:00:00Z"))
        now[0] += 59
        assert ids() == ["p1"]
        now[0] += 2
        assert ids() == ["p2", "p1"]
        _put(dest, prediction("p3", "three", created="2026-12-03T10:00:00Z"))
        sync(dest, store)  # interval 0: always lists
        assert store.db.execute("SELECT count(*) FROM manifests").fetchone()[0] == 3


def test_within_the_list_interval_the_journal_finds_what_the_archiver_wrote(s3, tmp_path):
    """Between full listings a query reads only the journal: a manifest with a marker is found
    at once, one copied in by hand at the next full listing; journaled manifests are not read
    again by that listing (their ETags are filled in)."""
    from archiver.catalog.journal import JOURNAL, note

    server, bucket = s3
    dest = open_destination(f"s3://{bucket}/journal", server.storage_options())
    now = [1000.0]
    with Catalog(tmp_path / "c.sqlite3") as store:

        def ids():
            sync(dest, store, list_interval=60, clock=lambda: now[0])
            return [
                r["prediction_id"] for r in find(store, Filters(), limit=9, manifest_url=str)[1]
            ]

        _put(dest, prediction("p1", "one", created="2026-12-01T10:00:00Z"))
        assert ids() == ["p1"]  # the first query lists whole
        p2 = prediction("p2", "two", created="2026-12-02T10:00:00Z")
        _put(dest, p2)
        note(dest, manifest_path(p2).rsplit("/", 1)[0])
        _put(dest, prediction("p3", "by hand", created="2026-12-03T10:00:00Z"))
        now[0] += 30
        assert ids() == ["p2", "p1"]
        assert dest.fs.find(dest.path(JOURNAL))  # the marker note() wrote
        now[0] += 31
        assert ids() == ["p3", "p2", "p1"]
        stamps = dict(store.db.execute("SELECT prediction_id, stamp FROM manifests"))
    assert "journal" not in stamps.values()


def test_a_worker_whose_clock_runs_ahead_hides_no_other_markers(moto_s3, moto_bucket, tmp_path):
    """A marker stamped an hour ahead does not move where the next read starts: a marker
    written after it with the right time is still read."""
    from datetime import UTC, datetime, timedelta

    from archiver.catalog.journal import note

    dest = open_destination(f"s3://{moto_bucket}/ahead", moto_s3.storage_options())
    now = datetime.now(UTC)
    with Catalog(tmp_path / "c.sqlite3") as store:
        sync(dest, store, list_interval=3600)  # the full listing
        for name, when in (("p1", now + timedelta(hours=1)), ("p2", now)):
            files = prediction(name, f"{name} words", created="2026-12-01T10:00:00Z")
            _put(dest, files)
            note(dest, manifest_path(files).rsplit("/", 1)[0], when=when)
            sync(dest, store, list_interval=3600)  # the journal only
        rows = store.db.execute("SELECT prediction_id FROM manifests ORDER BY 1").fetchall()
    assert rows == [("p1",), ("p2",)]
