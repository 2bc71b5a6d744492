"""Built-in emulated models: output shapes, deterministic bytes, model and version objects."""

from __future__ import annotations

import hashlib
import io
import json

import httpx
from PIL import Image

from emulator import BUILTIN_MODELS, large_file_chunks, version_id
from emulator.files import BLOCK_SIZE


def run(api: httpx.Client, model: str, **input_) -> dict:
    response = api.post(
        f"/v1/models/{model}/predictions", json={"input": input_}, headers={"Prefer": "wait"}
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["status"] == "succeeded", body
    return body


def test_demo_image_outputs_real_pngs(http, api):
    """The demo model returns num_outputs URLs out-N.png serving PNGs of the requested size."""
    body = run(
        api,
        "black-forest-labs/flux-schnell",
        prompt="a red fox",
        num_outputs=3,
        width=64,
        height=48,
    )
    assert [url.split("?")[0].rsplit("/", 1)[1] for url in body["output"]] == [
        "out-0.png",
        "out-1.png",
        "out-2.png",
    ]
    for url in body["output"]:
        response = http.get(url)
        assert response.headers["content-type"] == "image/png"
        image = Image.open(io.BytesIO(response.content))
        assert image.format == "PNG" and image.size == (64, 48)


def test_demo_image_bytes_are_deterministic(http, api):
    """The same input gives the same PNG bytes; a different seed or index gives different bytes."""
    first = [
        http.get(u).content for u in run(api, "a/b", prompt="p", seed=7, num_outputs=2)["output"]
    ]
    again = [
        http.get(u).content for u in run(api, "o/n", prompt="p", seed=7, num_outputs=2)["output"]
    ]
    other = http.get(run(api, "a/b", prompt="p", seed=8)["output"][0]).content
    assert first == again
    assert first[0] != first[1] and other != first[0]


def test_single_file_model_returns_one_url_string(http, api):
    """emulator/single-file outputs a single URL string to output.png."""
    output = run(api, "emulator/single-file", prompt="solo")["output"]
    assert isinstance(output, str) and "/output.png?" in output
    assert http.get(output).content.startswith(b"\x89PNG")


def test_text_model_returns_words(api):
    """emulator/text outputs a list of word strings forming a short reply to the prompt."""
    output = run(api, "emulator/text", prompt="hello there")["output"]
    assert isinstance(output, list) and all(isinstance(word, str) for word in output)
    assert "hello there" in "".join(output)
    assert output == run(api, "emulator/text", prompt="hello there")["output"]


def test_mixed_model_nests_files_and_text(http, api):
    """emulator/mixed outputs {image, caption, files[2]} with correct types per file."""
    output = run(api, "emulator/mixed", prompt="dog", seed=3)["output"]
    assert set(output) == {"image", "caption", "files"}
    assert output["caption"] == "A picture of dog"
    assert http.get(output["image"]).headers["content-type"] == "image/png"
    data, notes = (http.get(url) for url in output["files"])
    assert data.headers["content-type"] == "application/json"
    assert json.loads(data.content) == {"prompt": "dog", "seed": 3}
    assert notes.headers["content-type"].startswith("text/plain")


def test_large_file_streams_expected_bytes(http, api):
    """emulator/large-file serves size_bytes bytes whose sha256 matches large_file_chunks."""
    size = 3 * BLOCK_SIZE + 12345
    body = run(api, "emulator/large-file", size_bytes=size, num_outputs=2, seed=5)
    assert len(body["output"]) == 2
    for index, url in enumerate(body["output"]):
        assert f"/blob-{index}.bin?" in url
        digest, total = hashlib.sha256(), 0
        with http.stream("GET", url) as response:
            assert response.headers["content-length"] == str(size)
            assert response.headers["content-type"] == "application/octet-stream"
            for chunk in response.iter_bytes():
                digest.update(chunk)
                total += len(chunk)
        expected = hashlib.sha256(b"".join(large_file_chunks(5, index, size))).hexdigest()
        assert total == size and digest.hexdigest() == expected


def test_large_file_chunks_are_bounded_and_deterministic():
    """large_file_chunks yields <= 1 MiB chunks summing to size; seeds/indexes differ."""
    chunks = list(large_file_chunks(1, 0, 2 * BLOCK_SIZE + 10))
    assert [len(c) for c in chunks] == [BLOCK_SIZE, BLOCK_SIZE, 10]
    assert b"".join(large_file_chunks(1, 0, 100)) == chunks[0][:100]
    assert next(large_file_chunks(1, 1, 100)) != chunks[0][:100]
    assert next(large_file_chunks(2, 0, 100)) != chunks[0][:100]
    assert list(large_file_chunks(1, 0, 0)) == []


def test_large_file_size_is_not_limited_by_memory(http, api):
    """A 20 GB large-file prediction succeeds instantly and declares its full length."""
    url = run(api, "emulator/large-file", size_bytes=20 * 10**9)["output"][0]
    response = http.head(url)
    assert response.status_code == 200 and response.headers["content-length"] == str(20 * 10**9)
    ranged = http.get(url, headers={"Range": f"bytes={20 * 10**9 - 10}-"})
    assert ranged.status_code == 206 and len(ranged.content) == 10


def test_get_model_returns_latest_version_with_schema(api):
    """GET /v1/models/{owner}/{name} returns the model with latest_version and its openapi_schema."""
    for name in [*BUILTIN_MODELS, "black-forest-labs/flux-schnell"]:
        owner, model = name.split("/")
        body = api.get(f"/v1/models/{owner}/{model}").json()
        assert body["owner"] == owner and body["name"] == model
        latest = body["latest_version"]
        assert latest["id"] == version_id(name)
        assert {"id", "created_at", "cog_version", "openapi_schema"} <= set(latest)
        schemas = latest["openapi_schema"]["components"]["schemas"]
        assert {"Input", "Output"} <= set(schemas)


def test_get_version_matches_only_the_model_version(api):
    """GET /v1/models/{o}/{n}/versions/{id} answers for the model's own id and 404 otherwise."""
    ok = api.get(f"/v1/models/emulator/text/versions/{version_id('emulator/text')}")
    assert ok.status_code == 200 and ok.json()["id"] == version_id("emulator/text")
    assert api.get(f"/v1/models/emulator/text/versions/{'0' * 64}").status_code == 404


def test_run_count_counts_predictions(api):
    """A model's run_count is the number of predictions the emulator ran for it."""
    run(api, "acme/counted")
    run(api, "acme/counted")
    assert api.get("/v1/models/acme/counted").json()["run_count"] == 2
