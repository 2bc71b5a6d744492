"""Prediction lifecycle of the emulator: statuses, waiting, cancelation, deadlines, retention."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

import httpx
import pytest

from emulator import Emulator, version_id
from emulator.clock import ManualClock
from tests.conftest import AUTH, TEST_MODELS
from tests.waiting import wait_until


@contextmanager
def served(**faults) -> Iterator[tuple[Emulator, httpx.Client]]:
    """An emulator with the given faults (and clock) plus an authenticated client for it."""
    with (
        Emulator(models=TEST_MODELS, **faults) as emu,
        httpx.Client(base_url=emu.base_url, headers=AUTH) as client,
    ):
        yield emu, client


TERMINAL = {"succeeded", "failed", "canceled", "aborted"}


def create(
    api: httpx.Client, model: str = "acme/demo", headers: dict | None = None, **input_
) -> dict:
    response = api.post(f"/v1/models/{model}/predictions", json={"input": input_}, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


def poll(api: httpx.Client, pred_id: str, timeout: float = 5) -> dict:
    """The prediction once it is in a terminal state."""

    def finished() -> dict | None:
        body = api.get(f"/v1/predictions/{pred_id}").json()
        return body if body["status"] in TERMINAL else None

    return wait_until(finished, timeout, f"prediction {pred_id} to finish")


def test_create_returns_starting_then_get_shows_success(api):
    """Without Prefer a create answers 201 at once (starting); polling reaches succeeded with output."""
    body = create(api, prompt="a cat")
    assert body["status"] == "starting" and body["output"] is None
    assert "started_at" not in body and body["data_removed"] is False
    done = poll(api, body["id"])
    assert done["status"] == "succeeded"
    assert len(done["output"]) == 1 and "/out-0.png?" in done["output"][0]
    assert done["error"] is None and done["source"] == "api"
    assert {"predict_time", "total_time"} <= set(done["metrics"])
    for key in ("created_at", "started_at", "completed_at"):
        assert done[key].endswith("Z")
        datetime.fromisoformat(done[key])


def test_prediction_fields_follow_the_real_api(api, emulator):
    """Ids are 26-char lowercase base32, model is owner/name, version is sha256 of it, urls absolute."""
    body = create(api, "acme/thing")
    assert re.fullmatch(r"[a-z2-7]{26}", body["id"])
    assert body["model"] == "acme/thing" and body["version"] == version_id("acme/thing")
    assert body["urls"]["get"] == f"{emulator.base_url}/v1/predictions/{body['id']}"
    assert body["urls"]["cancel"] == f"{emulator.base_url}/v1/predictions/{body['id']}/cancel"
    assert body["urls"]["web"].startswith("http")


def test_prefer_wait_blocks_until_terminal(api):
    """Prefer: wait returns the prediction already succeeded, with output."""
    body = create(api, headers={"Prefer": "wait"}, prompt="x")
    assert body["status"] == "succeeded" and body["output"]


def test_prefer_wait_n_returns_current_state_after_n_seconds():
    """Prefer: wait=1 on a prediction that cannot finish returns after 1 s, still processing."""
    clock = ManualClock()  # never advanced: the prediction stays processing
    with (
        Emulator(models=TEST_MODELS, clock=clock, processing_seconds=3) as emu,
        httpx.Client(headers=AUTH, timeout=10) as client,
    ):
        started = time.monotonic()
        response = client.post(
            f"{emu.base_url}/v1/models/a/b/predictions",
            json={"input": {}},
            headers={"Prefer": "wait=1"},
        )
        waited = time.monotonic() - started
        assert response.status_code == 201
        assert response.json()["status"] == "processing"
        assert waited >= 0.95, "answered before the requested wait was over"


def test_statuses_progress_starting_processing_succeeded():
    """With starting/processing times the prediction is seen starting, then processing, then done."""
    clock = ManualClock()
    with served(clock=clock, starting_seconds=3, processing_seconds=4) as (_emu, client):
        body = create(client)

        def status() -> str:
            return client.get(f"/v1/predictions/{body['id']}").json()["status"]

        seen = [body["status"]]
        wait_until(lambda: clock.sleepers, what="the start to wait for the clock")
        seen.append(status())
        clock.advance(3)
        seen.append(wait_until(lambda: (now := status()) != "starting" and now, what="a start"))
        for _ in range(4):  # the four progress steps of one second each
            wait_until(lambda: clock.sleepers, what="a progress step")
            seen.append(status())
            clock.advance(1)
        seen.append(wait_until(lambda: (now := status()) in TERMINAL and now, what="the end"))
        assert seen == ["starting", "starting", *["processing"] * 5, "succeeded"]


def test_logs_grow_while_processing():
    """Logs gain lines as the prediction progresses (tqdm-style progress lines)."""
    clock = ManualClock()
    with served(clock=clock, processing_seconds=10) as (_emu, client):
        body = create(client)

        def logs() -> str:
            return client.get(f"/v1/predictions/{body['id']}").json()["logs"]

        wait_until(lambda: clock.sleepers, what="the first progress step to wait for the clock")
        clock.advance(2.5)  # one of four progress steps
        early = wait_until(lambda: "25%|" in (text := logs()) and text, what="a progress line")
        assert "100%|" not in early

        def finished() -> dict | None:
            body_now = client.get(f"/v1/predictions/{body['id']}").json()
            if body_now["status"] in TERMINAL:
                return body_now
            if clock.sleepers:
                clock.advance(2.5)  # the next progress step; nothing moves without it
            return None

        late = wait_until(finished, what="the prediction to finish")["logs"]
        assert early and len(late) > len(early) and late.startswith(early)
        assert "100%|" in late


def test_cancel_running_prediction():
    """Canceling a running prediction makes it canceled, with no output, even past its run time."""
    clock = ManualClock()
    with served(clock=clock, processing_seconds=5) as (emu, client):
        body = create(client)
        wait_until(lambda: clock.sleepers, what="the prediction to be processing")
        canceled = client.post(f"/v1/predictions/{body['id']}/cancel")
        assert canceled.status_code == 200
        assert canceled.json()["status"] == "canceled"
        wait_until(lambda: not clock.sleepers, what="the canceled run to stop waiting")
        clock.advance(10)  # twice the run time: a run still going would have finished by now
        again = client.get(f"/v1/predictions/{body['id']}").json()
        assert again["status"] == "canceled" and again["output"] is None
        assert "completed_at" in again
        assert emu.stats().cancels == [body["id"]]


def test_cancel_terminal_prediction_is_unchanged(api):
    """Canceling a prediction that already succeeded returns it unchanged."""
    body = create(api, headers={"Prefer": "wait"})
    canceled = api.post(f"/v1/predictions/{body['id']}/cancel").json()
    assert canceled["status"] == "succeeded" and canceled["output"]


def test_cancel_after_before_start_aborts():
    """A Cancel-After deadline that passes while starting ends the prediction aborted, deadline set."""
    with served(starting_seconds=2, processing_seconds=0.05) as (_emu, client):
        body = create(client, headers={"Cancel-After": "0.2s", "Prefer": "wait=5"})
        assert body["status"] == "aborted" and body["output"] is None
        assert "started_at" not in body
        created = datetime.fromisoformat(body["created_at"])
        deadline = datetime.fromisoformat(body["deadline"])
        assert abs((deadline - created).total_seconds() - 0.2) < 0.01


def test_cancel_after_while_processing_cancels():
    """A Cancel-After deadline that passes while processing ends the prediction canceled."""
    with served(processing_seconds=3) as (_emu, client):
        body = create(client, headers={"Cancel-After": "0.3", "Prefer": "wait=5"})
        assert body["status"] == "canceled" and "started_at" in body and "deadline" in body


def test_cancel_after_is_harmless_when_prediction_finishes_first(api):
    """A deadline later than the run time leaves the prediction succeeded."""
    body = create(api, headers={"Cancel-After": "1m", "Prefer": "wait"})
    assert body["status"] == "succeeded" and body["deadline"].endswith("Z")


def test_invalid_cancel_after_is_422(api):
    """A malformed Cancel-After header is rejected with a problem body."""
    response = api.post(
        "/v1/models/a/b/predictions", json={"input": {}}, headers={"Cancel-After": "soon"}
    )
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")


def test_final_status_failed_sets_error_and_logs(emulator, api):
    """final_status=failed ends predictions failed with error_text in error and logs."""
    emulator.set_faults(final_status="failed", error_text="boom: out of memory")
    body = create(api, headers={"Prefer": "wait"})
    assert body["status"] == "failed" and body["output"] is None
    assert body["error"] == "boom: out of memory" and "boom: out of memory" in body["logs"]


def test_fail_predictions_counter_fails_only_the_next_n(emulator, api):
    """fail_predictions=2 fails exactly the next two predictions, then they succeed again."""
    emulator.set_faults(fail_predictions=2)
    statuses = [create(api, headers={"Prefer": "wait"})["status"] for _ in range(3)]
    assert statuses == ["failed", "failed", "succeeded"]
    assert emulator.faults.fail_predictions == 0


@pytest.mark.parametrize("final", ["canceled", "aborted"])
def test_final_status_canceled_and_aborted(emulator, api, final):
    """final_status canceled/aborted ends every prediction that way (aborted never starts)."""
    emulator.set_faults(final_status=final)
    body = create(api, headers={"Prefer": "wait"})
    assert body["status"] == final and body["output"] is None
    assert ("started_at" in body) is (final == "canceled")


def test_retention_removes_data(http):
    """After retention_seconds the prediction shows data_removed, output null, and URLs answer 404."""
    clock = ManualClock()
    with served(clock=clock, processing_seconds=0, retention_seconds=300) as (_emu, client):
        body = create(client, headers={"Prefer": "wait"})
        url = body["output"][0]
        clock.advance(299)
        assert http.get(url).status_code == 200
        clock.advance(2)
        later = client.get(f"/v1/predictions/{body['id']}").json()
        assert later["data_removed"] is True and later["output"] is None
        assert later["status"] == "succeeded"
        assert http.get(url).status_code == 404


def test_deployment_predictions_run_the_demo_model(api):
    """Deployment predictions run the demo image model and carry the deployment field."""
    response = api.post(
        "/v1/deployments/acme/my-app/predictions",
        json={"input": {"prompt": "x"}},
        headers={"Prefer": "wait"},
    )
    body = response.json()
    assert response.status_code == 201
    assert body["deployment"] == "acme/my-app" and body["model"] == "emulator/image"
    assert body["status"] == "succeeded" and "/out-0.png?" in body["output"][0]


def test_version_forms_accepted_and_rejected(api):
    """owner/name:id works for the model's own (or a registered) version, else 422; a bare id
    only when known; an unknown model is 404, as on Replicate."""
    own = version_id("someone/model")
    ok = api.post("/v1/predictions", json={"version": f"someone/model:{own}", "input": {}})
    assert ok.status_code == 201 and ok.json()["model"] == "someone/model"
    assert ok.json()["version"] == own
    registered = api.post("/v1/predictions", json={"version": "acme/other:abc123", "input": {}})
    assert registered.status_code == 201 and registered.json()["version"] == "abc123"
    other = api.post("/v1/predictions", json={"version": f"someone/model:{'f' * 64}", "input": {}})
    assert other.status_code == 422
    assert other.json()["title"] == "Invalid version or not permitted"
    builtin = api.post(
        "/v1/predictions", json={"version": version_id("emulator/text"), "input": {}}
    )
    assert builtin.status_code == 201 and builtin.json()["model"] == "emulator/text"
    unknown = api.post("/v1/predictions", json={"version": version_id("someone/else"), "input": {}})
    assert unknown.status_code == 422
    assert unknown.json()["title"] == "Invalid version or not permitted"
    api.get("/v1/models/someone/else")
    seen = api.post("/v1/predictions", json={"version": version_id("someone/else"), "input": {}})
    assert seen.status_code == 201 and seen.json()["model"] == "someone/else"
    for path in ("/v1/models/never/seen", f"/v1/models/never/seen/versions/{'f' * 64}"):
        assert api.get(path).status_code == 404
    absent = api.post("/v1/models/never/seen/predictions", json={"input": {}})
    assert absent.status_code == 404 and "never/seen" in absent.json()["detail"]
    absent = api.post("/v1/predictions", json={"version": "never/seen:" + "1" * 64, "input": {}})
    assert absent.status_code == 404


@pytest.mark.parametrize(
    "body",
    [{}, {"input": None}, {"input": "text"}, {"input": [1]}, [], "x"],
)
def test_invalid_bodies_are_422(api, body):
    """A create body without an input object is rejected with 422 problem+json."""
    response = api.post("/v1/models/a/b/predictions", json=body)
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")


def test_invalid_input_values_are_422(api):
    """Inputs outside the model's schema (type, range, required) are rejected with 422."""
    for model, input_ in [
        ("a/b", {"num_outputs": 9}),
        ("a/b", {"width": 8}),
        ("a/b", {"seed": "one"}),
        ("emulator/large-file", {}),
    ]:
        response = api.post(f"/v1/models/{model}/predictions", json={"input": input_})
        assert response.status_code == 422, (model, input_)
        assert response.json()["detail"].startswith("- input.")


def test_unknown_prediction_is_404(api):
    """GET and cancel of an unknown id answer 404 problem+json."""
    for response in (api.get("/v1/predictions/nope"), api.post("/v1/predictions/nope/cancel")):
        assert response.status_code == 404
        assert response.headers["content-type"].startswith("application/problem+json")
