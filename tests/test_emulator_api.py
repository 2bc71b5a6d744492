"""API surface of the emulator: auth, listing/pagination, create/read faults and stats."""

from __future__ import annotations

import httpx
import pytest

from emulator import Emulator
from tests.conftest import AUTH, TEST_MODELS
from tests.waiting import wait_until


def create(api: httpx.Client, **input_) -> httpx.Response:
    return api.post("/v1/models/acme/demo/predictions", json={"input": input_})


@pytest.mark.parametrize("header", [None, "", "Bearer", "Basic abc", "token-only"])
def test_missing_or_invalid_auth_is_401(emulator, header):
    """/v1 requests without a usable Bearer token get the real API's 401 problem body."""
    headers = {"Authorization": header} if header is not None else {}
    for method, path in [
        ("GET", "/v1/predictions"),
        ("POST", "/v1/predictions"),
        ("GET", "/v1/predictions/x"),
        ("POST", "/v1/predictions/x/cancel"),
        ("GET", "/v1/models/a/b"),
        ("POST", "/v1/models/a/b/predictions"),
        ("POST", "/v1/deployments/a/b/predictions"),
    ]:
        response = httpx.request(method, emulator.base_url + path, headers=headers, json={})
        assert response.status_code == 401, (method, path)
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json() == {
            "title": "Unauthenticated",
            "status": 401,
            "detail": "You did not pass a valid authentication token",
        }
    assert emulator.stats().create_attempts == 0


def test_any_non_empty_token_is_accepted(emulator):
    """Any non-empty Bearer token authenticates."""
    for token in ("x", "r8_" + "a" * 37, "emulator-token"):
        response = httpx.get(
            f"{emulator.base_url}/v1/predictions", headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status_code == 200


def test_list_is_most_recent_first_with_cursor_pages(emulator, api):
    """With page_size=2, five predictions list newest first over three pages linked by URLs."""
    emulator.set_faults(page_size=2)
    ids = [create(api).json()["id"] for _ in range(5)]
    page = api.get("/v1/predictions").json()
    assert page["previous"] is None
    seen, pages = [], 0
    while True:
        pages += 1
        seen += [p["id"] for p in page["results"]]
        if page["next"] is None:
            break
        assert page["next"].startswith(f"{emulator.base_url}/v1/predictions?cursor=")
        page = api.get(page["next"]).json()
        assert page["previous"] is not None
    assert seen == ids[::-1] and pages == 3
    back = api.get(page["previous"]).json()
    assert [p["id"] for p in back["results"]] == ids[::-1][2:4]
    assert emulator.stats().list_calls == 4


def test_list_pages_are_stable_while_new_predictions_arrive(emulator, api):
    """Cursors point at positions, so creating predictions does not shift the next page."""
    emulator.set_faults(page_size=2)
    ids = [create(api).json()["id"] for _ in range(4)]
    first = api.get("/v1/predictions").json()
    create(api)
    second = api.get(first["next"]).json()
    assert [p["id"] for p in second["results"]] == ids[1::-1]


def test_invalid_cursor_is_400(api):
    """A garbage cursor is rejected with a problem body."""
    response = api.get("/v1/predictions", params={"cursor": "not-a-cursor!"})
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/problem+json")


def test_empty_list(api):
    """With no predictions the list is empty and has no links."""
    assert api.get("/v1/predictions").json() == {"next": None, "previous": None, "results": []}


def test_throttle_creates_answers_429_with_retry_after(emulator, api):
    """throttle_creates=2 throttles the next two creates with Retry-After; nothing is created."""
    emulator.set_faults(throttle_creates=2, retry_after_seconds=3)
    for _ in range(2):
        response = create(api)
        assert response.status_code == 429
        assert response.headers["retry-after"] == "3"
        assert response.json()["detail"] == "Request was throttled. Your rate limit resets in ~3s."
        assert response.json()["status"] == 429
    assert create(api).status_code == 201
    stats = emulator.stats()
    assert stats.create_attempts == 3 and stats.creates_accepted == 1 and stats.predictions == 1


def test_drop_create_responses_creates_but_loses_the_response(emulator, api):
    """drop_create_responses: the prediction exists and runs, but the client gets no response."""
    emulator.set_faults(drop_create_responses=1)
    with pytest.raises(httpx.RemoteProtocolError):
        create(api)
    stats = emulator.stats()
    assert stats.creates_accepted == 1 and len(stats.created_ids) == 1

    def finished() -> dict | None:
        body = api.get(f"/v1/predictions/{stats.created_ids[0]}").json()
        return body if body["status"] in {"succeeded", "failed", "canceled", "aborted"} else None

    assert wait_until(finished, what="the dropped create's prediction")["status"] == "succeeded"
    assert create(api).status_code == 201


def test_fail_reads_answers_503_n_times(emulator, api):
    """fail_reads=2 makes the next two prediction GETs 503 problem+json, all counted as reads."""
    pred_id = create(api).json()["id"]
    emulator.set_faults(fail_reads=2)
    codes = [api.get(f"/v1/predictions/{pred_id}").status_code for _ in range(3)]
    assert codes == [503, 503, 200]
    stats = emulator.stats()
    assert stats.reads == 3 and stats.read_ids == [pred_id] * 3


def test_stats_record_every_kind_of_call(emulator, api):
    """Stats count create attempts, accepted ids in order, reads, cancels, lists and downloads."""
    first = api.post(
        "/v1/models/a/b/predictions", json={"input": {}}, headers={"Prefer": "wait"}
    ).json()
    second = create(api).json()
    api.get(f"/v1/predictions/{first['id']}")
    api.post(f"/v1/predictions/{second['id']}/cancel")
    api.get("/v1/predictions")
    httpx.get(first["output"][0])
    stats = emulator.stats()
    assert stats.create_attempts == 2 and stats.creates_accepted == 2
    assert stats.created_ids == [first["id"], second["id"]]
    assert stats.reads == 1 and stats.read_ids == [first["id"]]
    assert stats.cancels == [second["id"]] and stats.list_calls == 1
    assert len(stats.downloads) == 1 and stats.predictions == 2
    emulator.reset_stats()
    cleared = emulator.stats()
    assert cleared.create_attempts == 0 and cleared.downloads == [] and cleared.predictions == 2


def test_unknown_v1_route_is_problem_404(api):
    """Unknown /v1 routes answer 404 problem+json; wrong methods 405."""
    missing = api.get("/v1/nothing/here")
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("application/problem+json")
    assert api.delete("/v1/predictions").status_code == 405


def test_account_endpoint(api):
    """GET /v1/account returns a fixed user account (handy for credential checks)."""
    assert api.get("/v1/account").json()["username"] == "emulator"


def test_web_url_serves_a_page(api):
    """The urls.web link of a prediction answers with an HTML page."""
    body = create(api).json()
    page = httpx.get(body["urls"]["web"])
    assert page.status_code == 200 and body["id"] in page.text


def test_env_points_at_the_emulator(emulator):
    """env() gives REPLICATE_BASE_URL and REPLICATE_DELIVERY_HOSTS (no token)."""
    assert emulator.env() == {
        "REPLICATE_BASE_URL": emulator.base_url,
        "REPLICATE_DELIVERY_HOSTS": "127.0.0.1",
    }
    assert emulator.base_url == f"http://127.0.0.1:{emulator.port}" and emulator.port > 0
    assert emulator.host == "127.0.0.1" and emulator.delivery_host == "127.0.0.1"


def test_start_stop_without_context_manager():
    """start()/stop() serve and release the port; stop() is idempotent."""
    emu = Emulator(models=TEST_MODELS, processing_seconds=0.05).start()
    try:
        assert httpx.get(f"{emu.base_url}/_emulator/faults").status_code == 200
    finally:
        emu.stop()
        emu.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{emu.base_url}/_emulator/faults")


def test_two_emulators_run_side_by_side():
    """Each emulator gets its own port and state."""
    with (
        Emulator(models=TEST_MODELS, processing_seconds=0.05) as one,
        Emulator(models=TEST_MODELS, processing_seconds=0.05) as two,
    ):
        assert one.port != two.port
        httpx.post(f"{one.base_url}/v1/models/a/b/predictions", json={"input": {}}, headers=AUTH)
        assert one.stats().predictions == 1 and two.stats().predictions == 0
