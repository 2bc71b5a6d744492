"""find-in-archive and verify-archive flow runs (local disk and moto): the matches as a table and
a thumbnail gallery, the check's problems as markdown, and a failed run when anything is wrong."""

from __future__ import annotations

import asyncio
import json

from flows.catalog import find_in_archive, verify_archive
from tests.archives import prediction, write_local
from tests.test_run_artifacts import _artifacts


def _archive(root):
    write_local(root, prediction("p1", "Lighthouse at dusk", images=True))
    write_local(root, prediction("p2", "a fox", created="2026-12-02T10:00:00Z", images=True))


def test_find_in_archive_leaves_a_table_and_a_gallery(prefect_harness, tmp_path):
    root = tmp_path / "archive"
    _archive(root)
    state = asyncio.run(find_in_archive(query="light", dest=str(root), return_state=True))
    document = state.result()
    assert document["total"] == 1 and document["results"][0]["prediction_id"] == "p1"
    artifacts = _artifacts(state.state_details.flow_run_id)
    table = artifacts["find-in-archive-results"]
    [row] = json.loads(table) if isinstance(table, str) else table
    assert row["prediction"] == "p1" and row["prompt"] == "Lighthouse at dusk"
    assert row["manifest"].startswith(str(root)) and row["files"] == 2
    gallery = artifacts["find-in-archive-gallery"]
    assert gallery.count('src="data:image/jpeg;base64,') == 2 and "p1/out-0.png" in gallery


def test_find_in_archive_on_s3_fetches_thumbnails(prefect_harness, moto_s3, moto_bucket, aws_env):
    """Credentials from the worker's environment, never parameters; thumbnails fetched."""
    from archiver.storage import open_destination

    aws_env.setenv("ARCHIVER_STORAGE_OPTIONS", json.dumps(moto_s3.storage_options()))
    dest = open_destination(f"s3://{moto_bucket}/archive", moto_s3.storage_options())
    files = prediction("p1", "Lighthouse at dusk", images=True)
    for path in sorted(files, key=lambda p: p.endswith("manifest.json")):
        dest.fs.pipe_file(dest.path(path), files[path])
    state = asyncio.run(
        find_in_archive(
            query="lighthouse",
            dest=f"s3://{moto_bucket}/archive",
            return_state=True,
        )
    )
    assert state.result()["total"] == 1
    gallery = _artifacts(state.state_details.flow_run_id)["find-in-archive-gallery"]
    assert gallery.count('src="data:image/jpeg;base64,') == 2


def test_verify_archive_fails_its_run_and_lists_the_problems(prefect_harness, tmp_path):
    root = tmp_path / "archive"
    _archive(root)
    clean = asyncio.run(verify_archive(dest=str(root), return_state=True))
    assert clean.is_completed() and clean.result().ok == 4
    assert (
        "Every file matches"
        in _artifacts(clean.state_details.flow_run_id)["verify-archive-problems"]
    )

    broken = "black-forest-labs/flux-schnell/2026/12/02/p2/out-1.png"
    (root / broken).write_bytes(b"truncated")
    state = asyncio.run(verify_archive(dest=str(root), return_state=True))
    assert state.is_failed()
    assert state.message == "2 manifest(s), 4 file(s), " + state.message.split("file(s), ")[1]
    assert "1 corrupt" in state.message
    markdown = _artifacts(state.state_details.flow_run_id)["verify-archive-problems"]
    assert f"`{broken}`" in markdown and "| corrupt | p2 |" in markdown


def test_a_prediction_the_pipeline_just_archived_is_found_and_intact(run_flow, archive_env):
    """No catalog code on the archiving path: the manifest the run wrote is the next query's."""
    from archiver.catalog import Catalog, Filters, catalog_file, find, manifest_paths, sync
    from archiver.catalog.verify import verify
    from archiver.storage import open_destination

    summary = run_flow(
        "black-forest-labs/flux-schnell", {"prompt": "Harbour at night", "num_outputs": 2}
    )
    dest = open_destination(str(archive_env))
    with Catalog(catalog_file(dest)) as store:
        sync(dest, store)
        total, [match] = find(store, Filters.parse(["harb"]), limit=5, manifest_url=str)
        report = verify(dest, manifest_paths(store, Filters()), workers=2)
    assert total == 1 and match["prediction_id"] == summary.prediction_id
    assert [f["sha256"] for f in match["files"]] == [f.sha256 for f in summary.files]
    assert report.ok == 3 and report.clean  # two outputs and logs.txt
