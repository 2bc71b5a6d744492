"""A cache hit checks what it claims: a file deleted or truncated under a kept manifest is restored
from the same prediction (0 new ones), or the run fails with one line naming the file."""

from __future__ import annotations

import asyncio
import hashlib
import json
from datetime import timedelta
from pathlib import Path

import pytest

from archiver.errors import OutputsRemoved, redact
from archiver.existing import ExistingArchiver
from archiver.manifest import Manifest
from archiver.pipeline import RunSummary, process
from archiver.prediction import ModelRef, PredictionRequest
from archiver.runtime import Runtime
from archiver.settings import Settings
from archiver.sweep import sweep

MODEL = "black-forest-labs/flux-schnell"


def _run(dest: str, input: dict, options: dict | None = None) -> RunSummary:
    async def go() -> RunSummary:
        runtime = Runtime.build(Settings(), dest=dest, storage_options=options)
        try:
            request = PredictionRequest(ModelRef.parse(MODEL), input)
            return await process(runtime, request)
        finally:
            await runtime.aclose()

    return asyncio.run(go())


def _remove_outputs(emulator) -> None:
    """Replicate's retention applies to every finished API prediction from now on."""
    emulator.set_faults(retention_seconds=0.001)


def _manifest(path: Path) -> Manifest:
    return Manifest.from_json(path.read_bytes())


@pytest.mark.parametrize("damage", ["delete", "truncate"])
def test_run_restores_a_damaged_archive_from_the_same_prediction(archive_env, emulator, damage):
    """Delete or truncate one archived file, keep the manifest, rerun: restored byte-exact, not
    cached, 0 new predictions, the prediction re-fetched for fresh URLs."""
    input = {"prompt": "restore me", "num_outputs": 2, "seed": 5}
    first = _run(str(archive_env), input)
    victim = archive_env / first.files[1].path
    original = victim.read_bytes()
    if damage == "delete":
        victim.unlink()
    else:
        victim.write_bytes(original[: len(original) // 2])
    reads = emulator.stats().reads
    second = _run(str(archive_env), input)
    assert not second.cached and second.prediction_id == first.prediction_id
    assert victim.read_bytes() == original
    assert hashlib.sha256(original).hexdigest() == first.files[1].sha256
    assert emulator.stats().creates_accepted == 1 and second.predictions_created == 0
    assert emulator.stats().reads > reads, "the same prediction is read again for fresh URLs"
    manifest = _manifest(Path(first.manifest_url))
    assert [f.sha256 for f in manifest.files] == [f.sha256 for f in first.files]
    third = _run(str(archive_env), input)
    assert third.cached and emulator.stats().creates_accepted == 1


def test_run_fails_in_one_line_naming_the_file_when_outputs_are_gone(archive_env, emulator):
    """Outputs removed on Replicate: exit with one line naming the missing file and prediction,
    nothing paid again, the manifest left as it was."""
    input = {"prompt": "lost later", "seed": 6}
    first = _run(str(archive_env), input)
    victim = archive_env / first.files[0].path
    victim.unlink()
    manifest_path = Path(first.manifest_url)
    before = manifest_path.read_bytes()
    _remove_outputs(emulator)
    with pytest.raises(OutputsRemoved) as caught:
        _run(str(archive_env), input)
    message = str(caught.value)
    # Messages are redacted (a storage secret registered by another test may mask a path part).
    assert "\n" not in message and redact(str(victim)) in message and "is missing" in message
    assert first.prediction_id in message
    assert emulator.stats().creates_accepted == 1
    assert manifest_path.read_bytes() == before and not victim.exists()


def _sweep(dest: str) -> list:
    async def go():
        runtime = Runtime.build(Settings(), dest=dest)
        try:
            return (await sweep(runtime, since=timedelta(hours=1))).predictions
        finally:
            await runtime.aclose()

    return asyncio.run(go())


def _by_id(dest: str, prediction_id: str):
    async def go():
        runtime = Runtime.build(Settings(), dest=dest)
        try:
            return await ExistingArchiver(runtime).by_id(prediction_id)
        finally:
            await runtime.aclose()

    return asyncio.run(go())


def test_sweep_and_archive_by_id_restore_or_report_removed(archive_env, emulator):
    """`sweep` and `archive ID` check the files too: a truncated one is restored (archived,
    not cached); with the outputs gone it is `removed`, the error naming the file."""
    made = emulator.add_prediction(age_seconds=30, input={"prompt": "swept", "num_outputs": 2})
    (first,) = _sweep(str(archive_env))
    assert first.outcome == "archived"
    victim = archive_env / first.summary.files[0].path
    original = victim.read_bytes()
    victim.write_bytes(original[:10])
    (again,) = _sweep(str(archive_env))
    assert again.outcome == "archived" and victim.read_bytes() == original
    assert _by_id(str(archive_env), made["id"]).outcome == "cached"
    victim.unlink()
    assert _by_id(str(archive_env), made["id"]).outcome == "archived" and victim.exists()
    victim.unlink()
    _remove_outputs(emulator)
    for result in (_by_id(str(archive_env), made["id"]), *_sweep(str(archive_env))):
        assert result.outcome == "removed" and result.lost
        assert redact(str(victim)) in result.error and made["id"] in result.error
    assert emulator.stats().creates_accepted == 0


# -- on a real S3 server --------------------------------------------------------------------------


@pytest.mark.s3
def test_s3_archive_damage_is_restored_or_named(moto_s3, moto_bucket, archive_env, emulator):
    """On S3 (moto): a deleted and a truncated object under a kept manifest are restored
    byte-exact with 0 new predictions; with the outputs removed the run fails naming the file."""
    options = {
        "endpoint_url": moto_s3.endpoint_url,
        "key": "k",
        "secret": "s",
        "region": "us-east-1",
    }
    dest = f"s3://{moto_bucket}/archive"
    input = {"prompt": "s3 damage", "num_outputs": 3, "seed": 8}
    first = _run(dest, input, options)
    client = moto_s3.client()

    def key(item) -> str:
        return f"archive/{item.path}"

    def body(item) -> bytes:
        return client.get_object(Bucket=moto_bucket, Key=key(item))["Body"].read()

    originals = [body(f) for f in first.files]
    client.delete_object(Bucket=moto_bucket, Key=key(first.files[0]))
    client.put_object(Bucket=moto_bucket, Key=key(first.files[2]), Body=originals[2][:100])
    second = _run(dest, input, options)
    assert not second.cached and [body(f) for f in first.files] == originals
    assert emulator.stats().creates_accepted == 1 and second.predictions_created == 0
    manifest_key = first.manifest_url.removeprefix(f"s3://{moto_bucket}/")
    manifest = json.loads(client.get_object(Bucket=moto_bucket, Key=manifest_key)["Body"].read())
    assert [f["size"] for f in manifest["files"]] == [len(b) for b in originals]
    assert _run(dest, input, options).cached

    client.delete_object(Bucket=moto_bucket, Key=key(first.files[1]))
    _remove_outputs(emulator)
    with pytest.raises(OutputsRemoved) as caught:
        _run(dest, input, options)
    assert redact(f"s3://{moto_bucket}/{key(first.files[1])} is missing") in str(caught.value)
    assert emulator.stats().creates_accepted == 1
