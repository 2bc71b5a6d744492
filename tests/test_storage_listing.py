"""Listing and batch reads behind the backend protocol: `list_after` (the catalog journal's
markers), `list_names` and `read_many` (manifests), the same answers on every store and one
request each where S3 allows it."""

from __future__ import annotations

import pytest

from archiver.storage import open_destination, write_bytes_atomic

NAMES = ("20261201T000000.000000Z_a", "20261202T000000.000000Z_b", "20261203T000000.000000Z_c")


def _store(dest, prefix):
    for name in NAMES:
        write_bytes_atomic(dest, dest.path(prefix, name), b"")
    return dest.path(prefix) + "/"


@pytest.fixture(params=["local", "memory"])
def dest(request, tmp_path):
    """A destination on local disk and one in memory."""
    if request.param == "local":
        return open_destination(str(tmp_path / "archive"))
    return open_destination(f"memory://listing-{tmp_path.name}")


def test_list_after_names_the_files_sorting_after_the_start(dest):
    """Every name without a start, those after it with one, [] where nothing is stored."""
    prefix = _store(dest, "journal")
    backend = dest.backend
    assert backend.list_after(prefix, None) == list(NAMES)
    assert backend.list_after(prefix, prefix + NAMES[0]) == list(NAMES[1:])
    assert backend.list_after(prefix, prefix + "20261202T12") == [NAMES[2]]
    assert backend.list_after(dest.path("nothing") + "/", None) == []
    assert backend.list_names(prefix.rstrip("/")) == list(NAMES)


def test_s3_lists_after_a_start_in_one_request(moto_s3, moto_bucket, monkeypatch):
    """On S3 `list_after` is one ListObjectsV2 carrying StartAfter, answering as elsewhere."""
    dest = open_destination(f"s3://{moto_bucket}/listing", moto_s3.storage_options())
    prefix = _store(dest, "journal")
    calls = []
    call_s3 = dest.fs.call_s3
    monkeypatch.setattr(
        dest.fs, "call_s3", lambda method, **kw: calls.append((method, kw)) or call_s3(method, **kw)
    )
    assert dest.backend.list_after(prefix, prefix + NAMES[0]) == list(NAMES[1:])
    assert [(m, kw.get("StartAfter")) for m, kw in calls] == [
        ("list_objects_v2", "listing/journal/" + NAMES[0])
    ]
    assert dest.backend.list_after(dest.path("nothing") + "/", None) == []


def test_s3_reads_many_with_one_get_each(moto_s3, moto_bucket, monkeypatch):
    """`read_many` on S3 sends one GET per file and no HEAD; a missing file maps to
    FileNotFoundError."""
    dest = open_destination(f"s3://{moto_bucket}/many", moto_s3.storage_options())
    paths = [dest.path(f"m{i}.json") for i in range(3)]
    for path in paths:
        dest.fs.pipe_file(path, path.encode())
    methods = []
    call = dest.fs._call_s3

    async def recorded(method, *args, **kwargs):
        methods.append(method)
        return await call(method, *args, **kwargs)

    monkeypatch.setattr(dest.fs, "_call_s3", recorded)
    gone = dest.path("gone.json")
    data = dest.backend.read_many([*paths, gone], 8)
    assert [data[p] for p in paths] == [p.encode() for p in paths]
    assert isinstance(data[gone], FileNotFoundError)
    assert sorted(methods) == ["get_object"] * 4
