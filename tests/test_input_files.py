"""Input files and logs are archived byte-exact beside the outputs (data URIs, Files API URLs with
the token, delivery URLs without it, other hosts as references), and a gone input is recorded."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
from pathlib import Path

import httpx
import replicate

from archiver.manifest import Manifest
from archiver.pipeline import process
from archiver.prediction import ModelRef, PredictionRequest
from archiver.runtime import Runtime
from archiver.settings import Settings
from tests.conftest import AUTH
from tests.waiting import await_until

MODEL = "black-forest-labs/flux-schnell"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 64


def process_one(archive_env: Path, input: dict) -> Manifest:
    """`process` without Prefect, as a batch item runs; the manifest it wrote."""

    async def go():
        runtime = Runtime.build(Settings(), dest=str(archive_env))
        try:
            request = PredictionRequest(ModelRef.parse(MODEL), input)
            return await process(runtime, request)
        finally:
            await runtime.aclose()

    summary = asyncio.run(go())
    return Manifest.from_json(Path(summary.manifest_url).read_bytes())


def replicate_client(emulator, monkeypatch) -> replicate.Client:
    for key, value in emulator.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("REPLICATE_API_TOKEN", "emulator-token")
    return replicate.Client()


def archived(archive_env: Path, manifest: Manifest, key: str, index: int | None = None) -> bytes:
    (entry,) = [f for f in manifest.input_files if f.key == key and f.index == index]
    assert entry.status == "archived" and entry.path is not None
    data = (archive_env / entry.path).read_bytes()
    assert len(data) == entry.size and hashlib.sha256(data).hexdigest() == entry.sha256
    return data


def test_every_kind_of_input_file_is_kept_and_the_logs_too(archive_env, emulator, monkeypatch):
    """A data URI, a list of them, a Files API upload (real replicate client) and another
    prediction's delivery URL are archived byte-exact under inputs/; another host's URL is a
    reference never fetched; logs.txt holds the final logs; the token went to the API only."""
    client = replicate_client(emulator, monkeypatch)
    upload = bytes(range(256)) * 2048  # 512 KiB: what the CLI uploads rather than inlines
    uploaded = client.files.create(io.BytesIO(upload), filename="photo.jpg")
    delivery_url = client.run(MODEL, input={"prompt": "source"})[0]
    with httpx.Client() as http:
        delivered = http.get(delivery_url).content
    inline = "data:image/png;base64," + base64.b64encode(PNG).decode()
    input = {
        "prompt": "uses files",
        "image": uploaded.urls["get"],
        "mask": inline,
        "frames": [inline, "data:text/plain,hello"],
        "style": delivery_url,
        "elsewhere": "https://example.com/ref.png?token=secret",
    }
    emulator.reset_stats()
    manifest = process_one(archive_env, input)
    assert manifest.schema_version == 2
    assert archived(archive_env, manifest, "image") == upload
    assert archived(archive_env, manifest, "mask") == PNG
    assert archived(archive_env, manifest, "frames", 0) == PNG
    assert archived(archive_env, manifest, "frames", 1) == b"hello"
    assert archived(archive_env, manifest, "style") == delivered
    paths = {(f.key, f.index): f.path for f in manifest.input_files}
    assert paths[("image", None)].endswith("/inputs/image.jpg")
    assert paths[("frames", 1)].endswith("/inputs/frames-1.txt")
    (reference,) = [f for f in manifest.input_files if f.key == "elsewhere"]
    assert reference.status == "reference" and reference.path is None
    assert reference.source == "https://example.com/ref.png"
    by_key = {f.key: f for f in manifest.input_files}
    assert by_key["mask"].source == "data URI" and by_key["image"].content_type == "image/jpeg"
    assert "?" not in by_key["style"].source and "?" not in by_key["image"].source
    # Logs: the prediction's final logs, byte-exact.
    final = httpx.get(
        f"{emulator.base_url}/v1/predictions/{manifest.prediction_id}", headers=AUTH
    ).json()
    assert manifest.logs is not None
    logs = (archive_env / manifest.logs.path).read_bytes()
    assert logs == final["logs"].encode() and manifest.logs.size == len(logs)
    assert manifest.logs.sha256 == hashlib.sha256(logs).hexdigest()
    assert manifest.logs.path == f"{manifest.directory}/logs.txt"
    assert manifest.web_url == final["urls"]["web"] and manifest.metrics
    stats = emulator.stats()
    assert stats.file_downloads == 1 and stats.delivery_authorization_headers == []
    assert "example.com" not in str(stats.downloads)


def test_an_input_already_gone_is_recorded_and_the_outputs_still_archived(archive_env, emulator):
    """A Files API input deleted before the archive: outputs archived, the input unavailable."""
    uploaded = emulator.upload_file(PNG, "gone.png", "image/png")
    expired = emulator.base_url + "/delivery/nope/0/x.png?expires=1&sig=0"
    emulator.set_faults(processing_seconds=0.3)

    async def go():
        runtime = Runtime.build(Settings(), dest=str(archive_env))
        try:
            request = PredictionRequest(
                ModelRef.parse(MODEL), {"image": uploaded["urls"]["get"], "style": expired}
            )
            task = asyncio.create_task(process(runtime, request))
            await await_until(  # created: the model already has its input
                lambda: emulator.stats().creates_accepted == 1, what="the create"
            )
            emulator.delete_file(uploaded["id"])
            return await task
        finally:
            await runtime.aclose()

    summary = asyncio.run(go())
    manifest = Manifest.from_json(Path(summary.manifest_url).read_bytes())
    assert len(manifest.files) == 1 and (archive_env / manifest.files[0].path).is_file()
    by_key = {f.key: f for f in manifest.input_files}
    assert by_key["image"].status == "unavailable" and "404" in (by_key["image"].reason or "")
    assert by_key["style"].status == "unavailable" and by_key["image"].path is None
    assert not (archive_env / manifest.directory / "inputs").exists() or not list(
        (archive_env / manifest.directory / "inputs").iterdir()
    )


def test_a_prediction_without_file_inputs_has_no_inputs_directory(archive_env):
    """Nothing to keep: no inputs/ directory, an empty input_files list, the logs kept."""
    manifest = process_one(archive_env, {"prompt": "plain", "seed": 5})
    assert manifest.input_files == [] and manifest.logs is not None
    assert not (archive_env / manifest.directory / "inputs").exists()
