"""data: URI outputs: decoded within a bound, archived as files, recorded without their payload."""

import asyncio
import base64
import hashlib

import httpx
import pytest

from archiver.datauri import decode, extension
from archiver.errors import InvalidOutput
from archiver.manifest import Manifest
from archiver.pipeline import RunSummary, process
from archiver.prediction import ModelRef, PredictionRequest
from archiver.runtime import Runtime
from archiver.settings import Settings

MODEL = "black-forest-labs/flux-schnell"


def test_base64_and_percent_encoded_forms_decode():
    """;base64 payloads and percent-encoded ones decode to their bytes, keeping the media type."""
    png = decode("data:image/png;base64,iVBORw0KGgo=", max_bytes=100, what="output /0")
    assert png.data == b"\x89PNG\r\n\x1a\n" and png.content_type == "image/png"
    assert png.source == "data:image/png;base64"
    text = decode("data:text/plain;charset=utf-8,caf%C3%A9%20au%20lait", max_bytes=100, what="x")
    assert text.data == "café au lait".encode() and text.content_type == "text/plain;charset=utf-8"
    assert text.source == "data:text/plain;charset=utf-8"


def test_media_type_defaults_to_us_ascii_text():
    """Without a media type a data: URI is text/plain;charset=US-ASCII (RFC 2397), named .txt."""
    bare = decode("data:,Hello%2C%20World", max_bytes=100, what="x")
    assert bare.data == b"Hello, World" and bare.content_type == "text/plain;charset=US-ASCII"
    assert decode("data:;base64,SGk=", max_bytes=10, what="x").content_type == (
        "text/plain;charset=US-ASCII"
    )
    assert extension(bare.content_type) == ".txt" and extension("image/png") == ".png"


@pytest.mark.parametrize(
    "uri",
    [
        "data:image/png;base64," + base64.b64encode(b"x" * 101).decode(),
        "data:text/plain," + "y" * 101,
        "data:image/png;base64,@@not*base64@@",
        "data:image/png;base64,A",
    ],
)
def test_oversized_or_undecodable_uris_are_one_line_errors_naming_the_output(uri):
    """Over the bound or not base64: InvalidOutput naming the output, without the payload."""
    with pytest.raises(InvalidOutput, match="output /3") as caught:
        decode(uri, max_bytes=100, what="output /3")
    message = str(caught.value)
    assert "\n" not in message and uri.split(",", 1)[1][:20] not in message


def _run(input: dict, **settings) -> RunSummary:
    """One pipeline run (generate, download, archive) without Prefect, over real HTTP."""

    async def go() -> RunSummary:
        runtime = Runtime.build(Settings(**settings))
        try:
            return await process(runtime, PredictionRequest(ModelRef.parse(MODEL), input))
        finally:
            await runtime.aclose()

    return asyncio.run(go())


def test_data_uri_outputs_are_archived_as_files(archive_env, emulator):
    """Inline PNGs are archived as output-N.png with sha256, size and type; no download made."""
    emulator.set_faults(data_uri_outputs=True)
    summary = _run({"prompt": "inline", "num_outputs": 2, "seed": 5}, dest=str(archive_env))
    manifest = Manifest.model_validate_json(open(summary.manifest_url, "rb").read())
    assert [f.name for f in manifest.files] == ["output-0.png", "output-1.png"]
    assert emulator.stats().downloads == []
    emulator.set_faults(data_uri_outputs=False)
    served = httpx.get(
        f"{emulator.base_url}/v1/predictions/{summary.prediction_id}",
        headers={"Authorization": "Bearer t"},
    ).json()["output"]
    for item, url in zip(manifest.files, served, strict=True):
        data = (archive_env / item.path).read_bytes()
        assert data == httpx.get(url).content and data.startswith(b"\x89PNG")
        assert item.size == len(data) and item.sha256 == hashlib.sha256(data).hexdigest()
        assert item.content_type == "image/png" and item.source_url == "data:image/png;base64"
    assert manifest.output == [{"file": f.path} for f in manifest.files]
    assert "base64," not in open(summary.manifest_url).read()


def test_data_uri_over_the_bound_fails_the_run_and_archives_nothing(archive_env, emulator):
    """A data: URI larger than ARCHIVER_MAX_DATA_URI_BYTES fails in one line naming the output."""
    emulator.set_faults(data_uri_outputs=True)
    with pytest.raises(InvalidOutput, match=r"output /0 \(output-0.png\).*MAX_DATA_URI_BYTES=64"):
        _run({"prompt": "too big"}, dest=str(archive_env), max_data_uri_bytes=64)
    assert not (archive_env / "black-forest-labs").exists()
