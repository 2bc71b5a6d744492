"""The whole pipeline (flow, tasks) archiving to a real S3 server (SeaweedFS) and other fsspec
stores: every file, the manifest and the cache land; a rerun is free."""

from __future__ import annotations

import hashlib
import json
import uuid

import pytest

from archiver.manifest import Manifest
from tests.s3_runs import MODEL, cache_records, check_archived, secret_options

pytestmark = pytest.mark.s3


# -- full run on SeaweedFS, cache on object storage ------------------------------------------


@pytest.mark.parametrize("cache", ["in-dest", "other-bucket"])
def test_seaweedfs_full_run_and_cache_on_object_storage(
    cache, run_flow, emulator, seaweedfs_s3, seaweedfs_bucket, monkeypatch
):
    """A flow run lands every file and manifest.json in S3; the cache in S3 makes a rerun free."""
    bucket, prefix = seaweedfs_bucket, "archive/runs"
    secret_options(monkeypatch, seaweedfs_s3)
    if cache == "in-dest":
        monkeypatch.delenv("ARCHIVER_CACHE_URL")
        cache_bucket, cache_prefix = bucket, f"{prefix}/.archiver/cache"
    else:
        cache_bucket, cache_prefix = seaweedfs_s3.make_bucket(), "cache"
        monkeypatch.setenv("ARCHIVER_CACHE_URL", f"s3://{cache_bucket}/{cache_prefix}")
    options = {"endpoint_url": seaweedfs_s3.endpoint_url}
    dest = f"s3://{bucket}/{prefix}"
    input = {"prompt": "a lighthouse", "num_outputs": 2, "seed": 5}

    first = run_flow(MODEL, input, dest=dest, storage_options=options)
    manifest = check_archived(seaweedfs_s3, bucket, prefix, first)
    assert [f.name for f in manifest.files] == ["out-0.png", "out-1.png"]
    assert manifest.output == [{"file": f.path} for f in manifest.files]
    [record] = cache_records(seaweedfs_s3, cache_bucket, cache_prefix)
    assert record["state"] == "archived" and record["prediction_id"] == first.prediction_id
    assert record["archives"] == {dest: manifest.path}
    if cache == "other-bucket":
        stored = [k for k in seaweedfs_s3.keys(bucket) if k.startswith(f"{prefix}/.archiver/")]
        assert all(k.startswith(f"{prefix}/.archiver/journal/") for k in stored)  # catalog's only

    second = run_flow(MODEL, input, dest=dest, storage_options=options)
    assert second.cached and second.predictions_created == 0
    assert second.prediction_id == first.prediction_id
    assert emulator.stats().creates_accepted == 1


# -- any fsspec protocol through the same code path -----------------------------------------


def test_memory_destination_full_run(run_flow, emulator, monkeypatch):
    """A memory:// destination gets every file, the manifest and the cache; a rerun is cached."""
    import fsspec

    monkeypatch.delenv("ARCHIVER_CACHE_URL")
    root = f"archive-{uuid.uuid4().hex[:8]}"
    fs = fsspec.filesystem("memory")
    try:
        summary = run_flow(
            MODEL, {"prompt": "in memory", "num_outputs": 2}, dest=f"memory://{root}"
        )
        assert summary.manifest_url.startswith(f"memory://{root}/")
        manifest = Manifest.from_json(fs.cat_file(summary.manifest_url))
        assert len(manifest.files) == 2
        for item in manifest.files:
            data = fs.cat_file(f"memory://{root}/{item.path}")
            assert len(data) == item.size and hashlib.sha256(data).hexdigest() == item.sha256
        [record] = fs.glob(f"/{root}/.archiver/cache/*/*.json")
        assert json.loads(fs.cat_file(record))["state"] == "archived"
        assert not [p for p in fs.find(f"/{root}") if ".tmp-" in p]
        again = run_flow(MODEL, {"prompt": "in memory", "num_outputs": 2}, dest=f"memory://{root}")
        assert again.cached and emulator.stats().creates_accepted == 1
    finally:
        fs.rm(f"/{root}", recursive=True)
