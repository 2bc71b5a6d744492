"""The emulator's Files API (upload, list, get, delete, signed download) with the real replicate
client, every body checked against Replicate's OpenAPI schema; predictions log per prediction."""

from __future__ import annotations

import hashlib
import io

import httpx
import pytest
import replicate

from emulator import Emulator
from emulator.clock import ManualClock
from emulator.openapi import response_schema, validate
from tests.conftest import AUTH

FILE = "schemas_file_response"
NOT_FOUND = response_schema("/files/{file_id}", "get", "404", "application/problem+json")


@pytest.fixture
def client(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> replicate.Client:
    for key, value in emulator.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("REPLICATE_API_TOKEN", "emulator-token")
    return replicate.Client()


def test_upload_list_get_download_delete_with_the_replicate_client(client, api, emulator):
    """The real client uploads (multipart content, filename, type, metadata), lists, gets and
    deletes; the signed download serves the exact bytes; every answer validates."""
    data = bytes(range(256)) * 1200  # 300 KiB
    uploaded = client.files.create(
        io.BytesIO(data), filename="photo.jpg", metadata={"customer_reference_id": 123}
    )
    assert uploaded.size == len(data) and uploaded.content_type == "image/jpeg"
    assert uploaded.checksums["sha256"] == hashlib.sha256(data).hexdigest()
    assert uploaded.metadata == {"customer_reference_id": 123}
    assert uploaded.urls["get"] == f"{emulator.base_url}/v1/files/{uploaded.id}"
    assert [f.id for f in client.files.list()] == [uploaded.id]
    assert client.files.get(uploaded.id).size == len(data)
    validate(api.get(f"/v1/files/{uploaded.id}").json(), FILE)
    validate(api.get("/v1/files").json(), response_schema("/files", "get", "200"))
    download = httpx.get(uploaded.urls["download"])  # the signature is the credential
    assert download.status_code == 200 and download.content == data
    assert emulator.stats().uploads == 1 and emulator.stats().file_downloads == 1
    assert client.files.delete(uploaded.id)
    gone = api.get(f"/v1/files/{uploaded.id}")
    assert gone.status_code == 404
    validate(gone.json(), NOT_FOUND)
    assert httpx.get(uploaded.urls["download"]).status_code == 404
    assert api.delete(f"/v1/files/{uploaded.id}").status_code == 404


def test_upload_answers_validate_against_the_create_schema(api):
    """A raw multipart POST gets 201 with a file object; no content is a 422; no token a 401."""
    created = api.post(
        "/v1/files",
        files={"content": ("notes.txt", b"hello", "text/plain")},
        data={"metadata": '{"a": 1}'},
    )
    assert created.status_code == 201
    validate(created.json(), response_schema("/files", "post", "201"))
    assert created.json()["metadata"] == {"a": 1}
    assert api.post("/v1/files", files={"other": ("x", b"x")}).status_code == 422
    assert httpx.post(f"{api.base_url}/v1/files", files={"content": b"x"}).status_code == 401


def test_download_urls_are_signed_and_expire():
    """A tampered signature or a URL past its expiry is refused; a fresh GET signs anew; files
    are deleted after retention like everything else of an API prediction."""
    clock = ManualClock()
    with Emulator(clock=clock, url_ttl_seconds=60, retention_seconds=3600) as emulator:
        uploaded = emulator.upload_file(b"payload", "a.bin")
        url = uploaded["urls"]["download"]
        assert httpx.get(url).content == b"payload"
        assert httpx.get(url.replace("expiry=", "expiry=1")).status_code == 404
        clock.advance(61)
        assert httpx.get(url).status_code == 404
        with httpx.Client(base_url=emulator.base_url, headers=AUTH) as api:
            fresh = api.get(f"/v1/files/{uploaded['id']}").json()["urls"]["download"]
            assert httpx.get(fresh).content == b"payload"
            clock.advance(3600)
            assert api.get(f"/v1/files/{uploaded['id']}").status_code == 404


def test_each_prediction_logs_its_own_lines(api, emulator):
    """A prediction's logs start with what its model printed about it, then its progress."""
    first = api.post(
        "/v1/models/a/b/predictions", json={"input": {"seed": 1}}, headers={"Prefer": "wait"}
    ).json()
    second = api.post(
        "/v1/models/a/b/predictions", json={"input": {"seed": 2}}, headers={"Prefer": "wait"}
    ).json()
    assert first["logs"].startswith(f'Prediction {first["id"]}: input {{"seed": 1}}\n')
    assert "100%" in first["logs"] and first["logs"] != second["logs"]


def test_a_prediction_made_elsewhere_may_name_an_uploaded_file(api, emulator):
    """Seeding a prediction whose input is a Files API URL: its input keeps the URL."""
    uploaded = emulator.upload_file(b"\x89PNG input", "in.png", "image/png")
    seeded = emulator.add_prediction(input={"image": uploaded["urls"]["get"], "prompt": "x"})
    fetched = api.get(f"/v1/predictions/{seeded['id']}").json()
    assert fetched["input"]["image"] == uploaded["urls"]["get"]
    assert fetched["logs"]
