"""Every way in keeps input files and logs byte-exact: the run flow, batch, sweep, the webhook
receiver and `archive ID`, each on the emulator over real HTTP."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from archiver.existing import ExistingArchiver
from archiver.manifest import Manifest
from archiver.runtime import Runtime
from archiver.settings import Settings
from archiver.sweep import sweep
from tests.conftest import AUTH
from tests.test_webhooks_receiver import _manifests, _wait_until, receiver, receiver_env

__all__ = ["receiver_env"]  # the receiver's fixture, used below

MODEL = "black-forest-labs/flux-schnell"
UPLOAD = bytes(range(256)) * 1500  # 375 KiB: over the inline limit, so a Files API upload
SMALL = b"\x89PNG\r\n\x1a\n small input"


def file_input(emulator) -> dict:
    """An input naming an uploaded file (Files API) and holding a data URI."""
    uploaded = emulator.upload_file(UPLOAD, "photo.jpg", "image/jpeg")
    inline = "data:image/png;base64," + base64.b64encode(SMALL).decode()
    return {"prompt": "with files", "image": uploaded["urls"]["get"], "mask": inline}


def assert_inputs_and_logs_kept(dest: Path, manifest: Manifest, emulator) -> None:
    """Both input files and the final logs sit in the archive, byte-exact, as recorded."""
    kept = {}
    for entry in manifest.input_files:
        assert entry.status == "archived", entry
        data = (dest / entry.path).read_bytes()
        assert len(data) == entry.size and hashlib.sha256(data).hexdigest() == entry.sha256
        kept[entry.key] = data
    assert kept == {"image": UPLOAD, "mask": SMALL}
    final = httpx.get(
        f"{emulator.base_url}/v1/predictions/{manifest.prediction_id}", headers=AUTH
    ).json()
    assert manifest.logs is not None and final["logs"]
    logs = (dest / manifest.logs.path).read_bytes()
    assert logs == final["logs"].encode()
    assert manifest.logs.sha256 == hashlib.sha256(logs).hexdigest()


def read_manifest(url: str) -> Manifest:
    return Manifest.from_json(Path(url).read_bytes())


def with_runtime(archive_env: Path, work):
    async def go():
        runtime = Runtime.build(Settings(), dest=str(archive_env))
        try:
            return await work(runtime)
        finally:
            await runtime.aclose()

    return asyncio.run(go())


def test_archive_id_keeps_a_foreign_predictions_inputs_and_logs(archive_env, emulator):
    """`archive ID` of a prediction made elsewhere whose input names an uploaded file."""
    made = emulator.add_prediction(model=MODEL, input=file_input(emulator))
    (result,) = with_runtime(archive_env, lambda r: ExistingArchiver(r).many([made["id"]]))
    assert result.outcome == "archived"
    assert_inputs_and_logs_kept(archive_env, read_manifest(result.summary.manifest_url), emulator)


def test_sweep_keeps_inputs_and_logs(archive_env, emulator):
    """A sweep of the last hour archives the inputs and logs of what it finds."""
    made = emulator.add_prediction(model=MODEL, input=file_input(emulator), age_seconds=60)
    report = with_runtime(archive_env, lambda r: sweep(r, since=timedelta(hours=1)))
    (result,) = [p for p in report.predictions if p.prediction_id == made["id"]]
    assert result.outcome == "archived"
    assert_inputs_and_logs_kept(archive_env, read_manifest(result.summary.manifest_url), emulator)


@pytest.mark.slow  # a receiver process
def test_the_webhook_receiver_keeps_inputs_and_logs(receiver_env, archive_env, emulator):
    """A `completed` delivery archives the prediction's input files and logs too."""
    input = file_input(emulator)
    with receiver(receiver_env, archive_env) as rx:
        body = {"input": input, "webhook": rx.url, "webhook_events_filter": ["completed"]}
        with httpx.Client(base_url=emulator.base_url, headers=AUTH) as api:
            api.post(f"/v1/models/{MODEL}/predictions", json=body).raise_for_status()
        _wait_until(lambda: _manifests(archive_env), "the manifest")
    manifest = Manifest.from_json(_manifests(archive_env)[0].read_bytes())
    assert_inputs_and_logs_kept(archive_env, manifest, emulator)


def test_the_run_flow_keeps_inputs_and_logs(run_flow, archive_env, emulator):
    """The archive-prediction flow (Prefect tasks) keeps them."""
    summary = run_flow(MODEL, file_input(emulator))
    assert_inputs_and_logs_kept(archive_env, read_manifest(summary.manifest_url), emulator)


def test_a_batch_keeps_every_items_inputs_and_logs(
    prefect_harness, archive_env, emulator, tmp_path
):
    """Each record of a batch file (the batch flow) keeps its input files and logs."""
    from tests.test_batch import _run_batch

    records = [file_input(emulator), {**file_input(emulator), "prompt": "second"}]
    batch = tmp_path / "files.jsonl"
    batch.write_text("".join(json.dumps(r) + "\n" for r in records))
    state, summary = _run_batch(batch, model=MODEL, dest=str(archive_env))
    assert state.is_completed() and len(summary.items) == 2
    for item in summary.items:
        assert_inputs_and_logs_kept(archive_env, read_manifest(item.manifest_url), emulator)
