"""The real replicate 1.0.7 client, unchanged, against the emulator (REPLICATE_BASE_URL)."""

from __future__ import annotations

import httpx
import pytest
import replicate
from replicate.exceptions import ModelError, ReplicateError

from emulator import Emulator, version_id
from tests.conftest import AUTH, TEST_MODELS


@pytest.fixture
def client(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> replicate.Client:
    for key, value in emulator.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("REPLICATE_API_TOKEN", "emulator-token")
    monkeypatch.setenv("REPLICATE_POLL_INTERVAL", "0.02")
    return replicate.Client()


def test_models_predictions_create_with_wait(http, client, emulator):
    """client.models.predictions.create(model=..., wait=True) returns a finished prediction."""
    pred = client.models.predictions.create(
        model="black-forest-labs/flux-schnell", input={"prompt": "a bear"}, wait=True
    )
    assert pred.status == "succeeded"
    assert pred.model == "black-forest-labs/flux-schnell"
    assert pred.output[0].startswith(f"{emulator.base_url}/delivery/{pred.id}/0/out-0.png?")
    assert http.get(pred.output[0]).content.startswith(b"\x89PNG")


def test_token_from_environment_is_sent(client, emulator):
    """The client authenticates with REPLICATE_API_TOKEN as a Bearer token."""
    client.models.predictions.create(model="a/b", input={})
    assert emulator.stats().creates_accepted == 1


def test_predictions_get_and_wait(client):
    """client.predictions.get and Prediction.wait() follow a prediction to success."""
    pred = client.models.predictions.create(model="a/b", input={"prompt": "x"})
    assert pred.status == "starting"
    pred.wait()
    assert pred.status == "succeeded"
    again = client.predictions.get(pred.id)
    assert again.id == pred.id and again.status == "succeeded" and again.output


def test_predictions_cancel():
    """client.predictions.cancel cancels a running prediction."""
    with Emulator(models=TEST_MODELS, processing_seconds=5) as slow:
        other = replicate.Client(api_token="t", base_url=slow.base_url)
        pred = other.models.predictions.create(model="a/b", input={})
        canceled = other.predictions.cancel(pred.id)
        assert canceled.status == "canceled"


def test_predictions_create_with_version(client):
    """client.predictions.create(version=id) works for a built-in model's version id."""
    pred = client.predictions.create(
        version=version_id("emulator/text"), input={"prompt": "hi"}, wait=True
    )
    assert pred.status == "succeeded" and pred.model == "emulator/text"
    assert "hi" in "".join(pred.output)


def test_deployments_predictions_create(client):
    """client.deployments.predictions.create sets the deployment and runs the image model."""
    pred = client.deployments.predictions.create("acme/app", input={"prompt": "p"}, wait=True)
    assert pred.status == "succeeded" and len(pred.output) == 1


def test_run_returns_plain_url_strings_over_http(http, client):
    """client.run only wraps https URLs in FileOutput, so over http it returns URL strings."""
    output = client.run("black-forest-labs/flux-schnell", input={"prompt": "x", "num_outputs": 2})
    assert isinstance(output, list) and len(output) == 2
    assert all(type(url) is str and url.startswith("http://") for url in output)
    assert all(http.get(url).content.startswith(b"\x89PNG") for url in output)


def test_run_single_file_and_mixed_outputs(http, client):
    """client.run passes single-URL and nested-object outputs through unchanged."""
    single = client.run("emulator/single-file", input={"prompt": "x"})
    assert isinstance(single, str) and http.get(single).status_code == 200
    mixed = client.run("emulator/mixed", input={"prompt": "x"})
    assert set(mixed) == {"image", "caption", "files"} and len(mixed["files"]) == 2


def test_run_with_version_fetches_the_version(client):
    """client.run("owner/name:id") fetches the version; the text model streams as an iterator."""
    ref = f"emulator/text:{version_id('emulator/text')}"
    output = client.run(ref, input={"prompt": "hello"})
    assert "hello" in "".join(output)


def test_run_raises_model_error_on_failure(client, emulator):
    """A failed prediction makes client.run raise ModelError carrying the error text."""
    emulator.set_faults(fail_predictions=1)
    with pytest.raises(ModelError, match="CUDA out of memory"):
        client.run("a/b", input={})


def test_models_get_parses(client):
    """client.models.get parses the model object including latest_version."""
    model = client.models.get("black-forest-labs/flux-schnell")
    assert model.owner == "black-forest-labs" and model.latest_version is not None
    assert model.latest_version.id == version_id("black-forest-labs/flux-schnell")


def test_predictions_list_and_paginate(client, emulator):
    """client.predictions.list follows absolute next URLs page by page."""
    emulator.set_faults(page_size=2)
    ids = [client.models.predictions.create(model="a/b", input={}).id for _ in range(3)]
    first = client.predictions.list()
    assert [p.id for p in first.results] == ids[:0:-1] and first.next
    second = client.predictions.list(first.next)
    assert [p.id for p in second.results] == ids[:1] and second.next is None


def test_client_retries_503_reads(client, emulator):
    """The client's transport retries GET on 503, so fail_reads=2 is invisible but counted."""
    pred = client.models.predictions.create(model="a/b", input={})
    emulator.reset_stats()
    emulator.set_faults(fail_reads=2)
    assert client.predictions.get(pred.id).id == pred.id
    assert emulator.stats().reads == 3


def test_client_does_not_retry_throttled_creates(client, emulator):
    """A 429 on create surfaces as ReplicateError(status=429): POSTs are not retried."""
    emulator.set_faults(throttle_creates=1)
    with pytest.raises(ReplicateError) as info:
        client.models.predictions.create(model="a/b", input={})
    assert info.value.status == 429 and "throttled" in info.value.detail
    assert emulator.stats().create_attempts == 1


def test_client_sees_lost_create_response_as_transport_error(client, emulator):
    """drop_create_responses surfaces as an httpx transport error, though the prediction exists."""
    emulator.set_faults(drop_create_responses=1)
    with pytest.raises(httpx.TransportError):
        client.models.predictions.create(model="a/b", input={})
    assert emulator.stats().creates_accepted == 1


def test_client_errors_carry_problem_details(client):
    """Problem bodies (404, 422) become ReplicateError with title, detail and status."""
    with pytest.raises(ReplicateError) as missing:
        client.predictions.get("doesnotexist")
    assert missing.value.status == 404
    with pytest.raises(ReplicateError) as invalid:
        client.predictions.create(version="0" * 64, input={})
    assert invalid.value.status == 422 and invalid.value.title == "Invalid version or not permitted"


def test_aborted_status_breaks_the_client_model_so_use_raw_http():
    """replicate 1.0.7's Prediction model rejects status "aborted"; raw httpx sees it fine."""
    with Emulator(models=TEST_MODELS, starting_seconds=2) as emu:
        raw = httpx.post(
            f"{emu.base_url}/v1/models/a/b/predictions",
            json={"input": {}},
            headers={**AUTH, "Cancel-After": "0.1s", "Prefer": "wait=5"},
        )
        assert raw.json()["status"] == "aborted"
        client = replicate.Client(api_token="t", base_url=emu.base_url)
        with pytest.raises(Exception, match="status"):
            client.predictions.get(raw.json()["id"])
