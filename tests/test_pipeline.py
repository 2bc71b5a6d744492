"""The pipeline end to end on the emulator: archive layout, manifest, outputs of every shape, cache."""

import hashlib
import shutil

import httpx
import pytest

from archiver.cache import latest_record
from archiver.manifest import Manifest
from emulator.clock import ManualClock
from tests.waiting import wait_until

MODEL = "black-forest-labs/flux-schnell"


def _manifest(summary) -> Manifest:
    return Manifest.model_validate_json(open(summary.manifest_url, "rb").read())


def test_outputs_are_archived_with_a_manifest_written_last(run_flow, archive_env, emulator):
    """Every PNG lands under owner/name/yyyy/mm/dd/id with its sha256, size and source URL."""
    summary = run_flow(MODEL, {"prompt": "a red fox", "num_outputs": 2, "seed": 3})
    manifest = _manifest(summary)
    assert manifest.directory.startswith("black-forest-labs/flux-schnell/")
    assert manifest.directory.endswith(f"/{summary.prediction_id}")
    assert [f.name for f in manifest.files] == ["out-0.png", "out-1.png"]
    for item in manifest.files:
        data = (archive_env / item.path).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) == item.size
        assert hashlib.sha256(data).hexdigest() == item.sha256
        assert "?" not in item.source_url and item.content_type == "image/png"
    assert manifest.output == [{"file": f.path} for f in manifest.files]
    assert manifest.input == {"prompt": "a red fox", "num_outputs": 2, "seed": 3}
    assert manifest.status == "succeeded" and manifest.completed_at is not None
    assert emulator.stats().creates_accepted == 1 and summary.predictions_created == 1
    assert not list(archive_env.rglob("*.part*"))


def test_single_file_text_and_mixed_outputs(run_flow, archive_env):
    """A bare URL is one file; text stays in the manifest; mixed outputs keep both."""
    single = _manifest(run_flow("emulator/single-file", {"prompt": "x"}))
    assert [f.pointer for f in single.files] == [""] and single.output == {
        "file": single.files[0].path
    }
    text = _manifest(run_flow("emulator/text", {"prompt": "hello"}))
    assert (
        text.files == []
        and isinstance(text.output, list)
        and all(isinstance(word, str) for word in text.output)
    )
    mixed = _manifest(run_flow("emulator/mixed", {"prompt": "y"}))
    assert isinstance(mixed.output["caption"], str) and len(mixed.files) == 3


def test_same_input_again_pays_for_nothing(run_flow, emulator):
    """A second run of the same model and input returns the archived manifest: 0 new predictions."""
    first = run_flow(MODEL, {"prompt": "cached", "seed": 1})
    second = run_flow(MODEL, {"prompt": "cached", "seed": 1})
    assert second.cached and second.predictions_created == 0
    assert second.prediction_id == first.prediction_id
    assert emulator.stats().creates_accepted == 1


def test_refresh_pays_for_a_new_prediction(run_flow, emulator):
    """--refresh creates a new prediction even though the input is archived."""
    first = run_flow(MODEL, {"prompt": "again"})
    second = run_flow(MODEL, {"prompt": "again"}, refresh=True)
    assert not second.cached and second.prediction_id != first.prediction_id
    assert emulator.stats().creates_accepted == 2


def test_deleted_archive_is_restored_from_the_same_prediction(run_flow, archive_env, emulator):
    """With the manifest gone, a rerun re-downloads from the recorded prediction, paying nothing."""
    first = run_flow(MODEL, {"prompt": "restore me"})
    shutil.rmtree(archive_env / "black-forest-labs")
    second = run_flow(MODEL, {"prompt": "restore me"})
    assert not second.cached and second.predictions_created == 0
    assert second.prediction_id == first.prediction_id
    assert (archive_env / _manifest(second).path).is_file()
    assert emulator.stats().creates_accepted == 1


def test_deleted_archive_with_removed_outputs_pays_once_more(run_flow, archive_env, emulator):
    """If Replicate also deleted the outputs, restoring the archive takes one new prediction."""
    first = run_flow(MODEL, {"prompt": "gone"})
    shutil.rmtree(archive_env / "black-forest-labs")
    emulator.set_faults(retention_seconds=0.01)

    def removed() -> bool:
        return httpx.get(
            f"{emulator.base_url}/v1/predictions/{first.prediction_id}",
            headers={"Authorization": "Bearer t"},
        ).json()["data_removed"]

    wait_until(removed, what="the emulator to remove the first prediction's outputs")
    emulator.set_faults(retention_seconds=3600)
    second = run_flow(MODEL, {"prompt": "gone"})
    assert second.prediction_id != first.prediction_id and second.predictions_created == 1
    assert emulator.stats().creates_accepted == 2


def test_cache_lives_in_the_archive_by_default(run_flow, archive_env, monkeypatch):
    """Without ARCHIVER_CACHE_URL the cache sits in <dest>/.archiver/cache and survives restarts."""
    monkeypatch.delenv("ARCHIVER_CACHE_URL")
    summary = run_flow(MODEL, {"prompt": "where is the cache"})
    records = list((archive_env / ".archiver" / "cache").rglob("*.json"))
    assert len(records) == 1
    record = latest_record(records[0].read_bytes(), records[0].stem)
    assert record is not None
    assert record.state == "archived" and record.prediction_id == summary.prediction_id


def test_staging_is_cleaned_after_the_manifest(run_flow, archive_env, tmp_path):
    """Nothing is left in staging once a prediction is archived."""
    run_flow(MODEL, {"prompt": "clean up"})
    assert (tmp_path / "staging").is_dir(), "the run did not stage in ARCHIVER_STAGING_DIR"
    assert not any(p.is_file() for p in (tmp_path / "staging").rglob("*"))


@pytest.mark.parametrize(
    "emulator", [{"processing_seconds": 0, "clock": ManualClock()}], indirect=True
)
def test_download_starts_while_processing_once_all_files_are_out(run_flow, emulator, monkeypatch):
    """Files published before the prediction finishes are fetched at once; the manifest still
    records the final succeeded state. The emulator's clock stands still, so the prediction
    stays `processing` until the test moves it on, however slow the machine."""
    import threading

    monkeypatch.setenv("ARCHIVER_WAIT_SECONDS", "1")
    emulator.set_faults(finalize_seconds=2)
    result = {}
    thread = threading.Thread(
        target=lambda: result.setdefault(
            "summary", run_flow(MODEL, {"prompt": "early", "num_outputs": 2})
        )
    )
    thread.start()
    wait_until(
        lambda: len([d for d in emulator.stats().downloads if d["status"] == 200]) == 2,
        30,
        "both files downloaded",
    )
    prediction_id = emulator.stats().created_ids[0]
    seen = httpx.get(
        f"{emulator.base_url}/v1/predictions/{prediction_id}",
        headers={"Authorization": "Bearer t"},
    ).json()["status"]
    emulator.clock.advance(2)
    thread.join(60)
    assert seen == "processing", "both files were downloaded before the prediction finished"
    manifest = _manifest(result["summary"])
    assert manifest.status == "succeeded" and manifest.completed_at is not None
