"""Emulator: predictions made elsewhere, `source`, list filters, retention on a manual clock."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import httpx
import pytest

from emulator import Emulator
from emulator.clock import ManualClock

AUTH = {"Authorization": "Bearer test-token"}


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat().replace("+00:00", "Z")


def pred_time(pred: dict) -> float:
    return datetime.fromisoformat(pred["created_at"].replace("Z", "+00:00")).timestamp()


def _all_ids(api: httpx.Client, url: str) -> list[str]:
    ids: list[str] = []
    next_url: str | None = url
    while next_url:
        page = api.get(next_url).json()
        ids += [item["id"] for item in page["results"]]
        next_url = page["next"]
    return ids


def test_predictions_made_elsewhere_are_listed_and_not_counted_as_creates(emulator, api):
    """Added predictions (any status, any source, in the past) are listed, newest first."""
    old = emulator.add_prediction(status="failed", age_seconds=600, error="boom")
    web = emulator.add_prediction(source="web", age_seconds=300, input={"prompt": "w"})
    new = emulator.add_prediction(age_seconds=10)
    assert old["status"] == "failed" and old["error"] == "boom" and old["output"] is None
    assert web["source"] == "web" and web["status"] == "succeeded" and web["output"]
    ids = _all_ids(api, "/v1/predictions")
    assert ids == [new["id"], web["id"], old["id"]]
    assert emulator.stats().creates_accepted == 0
    assert api.get(web["output"][0].replace(emulator.base_url, "")).status_code == 200


def test_list_filters_by_creation_time_and_source(emulator, api):
    """created_after / created_before bound the window; source=web lists website ones only."""
    now = emulator.clock.now()
    a = emulator.add_prediction(age_seconds=7200)
    b = emulator.add_prediction(age_seconds=1800, source="web")
    c = emulator.add_prediction(age_seconds=60)
    window = f"/v1/predictions?created_after={_iso(now - 3600)}&created_before={_iso(now - 30)}"
    assert set(_all_ids(api, window)) == {b["id"], c["id"]}
    assert _all_ids(api, "/v1/predictions?source=web") == [b["id"]]
    assert a["id"] in _all_ids(api, "/v1/predictions")
    assert api.get("/v1/predictions?source=api").status_code == 400
    assert api.get("/v1/predictions?created_after=yesterday").status_code == 400


def test_pages_keep_the_filters():
    """With small pages, `next` carries the filters: every matching prediction, once."""
    # A manual clock: on the real one, a busy machine that took a second between two of the
    # adds below made their creation times (1 s apart) swap order.
    with (
        Emulator(page_size=2, clock=ManualClock()) as emu,
        httpx.Client(base_url=emu.base_url, headers=AUTH) as api,
    ):
        made = [emu.add_prediction(age_seconds=100 + i) for i in range(5)]
        emu.add_prediction(age_seconds=10_000)
        after = _iso(emu.clock.now() - 1000)
        ids = _all_ids(api, f"/v1/predictions?created_after={after}")
    assert ids == [p["id"] for p in made]


def test_retention_removes_api_data_but_keeps_web_data():
    """Past the retention, API predictions show data_removed and null output; web ones keep it."""
    clock = ManualClock()
    with Emulator(clock=clock, retention_seconds=3600) as emu:
        with httpx.Client(base_url=emu.base_url, headers=AUTH) as api:
            api_pred = emu.add_prediction(age_seconds=3000)
            web_pred = emu.add_prediction(age_seconds=3000, source="web")
            url = api_pred["output"][0]
            assert httpx.get(url).status_code == 200
            clock.advance(601)
            later = api.get(f"/v1/predictions/{api_pred['id']}").json()
            kept = api.get(f"/v1/predictions/{web_pred['id']}").json()
            assert httpx.get(url).status_code == 404
    assert later["data_removed"] is True and later["output"] is None
    assert kept["data_removed"] is False and kept["output"]


def test_old_api_predictions_arrive_already_removed(emulator):
    """A prediction made elsewhere longer ago than the retention has no outputs any more."""
    gone = emulator.add_prediction(age_seconds=emulator.faults.retention_seconds + 1)
    assert gone["data_removed"] is True and gone["output"] is None


def test_manual_clock_drives_processing_and_url_expiry():
    """With a manual clock a prediction finishes only when time advances; URLs expire with it."""
    clock = ManualClock()
    with Emulator(clock=clock, processing_seconds=10, url_ttl_seconds=60) as emu:
        with httpx.Client(base_url=emu.base_url, headers=AUTH) as api:
            pred = api.post("/v1/models/emulator/image/predictions", json={"input": {}}).json()
            assert api.get(f"/v1/predictions/{pred['id']}").json()["status"] != "succeeded"
            give_up = time.monotonic() + 10
            while (body := api.get(f"/v1/predictions/{pred['id']}").json())["status"] != (
                "succeeded"
            ):
                assert time.monotonic() < give_up, body["status"]
                if clock.sleepers:
                    clock.advance(2.5)  # one progress step; nothing moves without it
            assert clock.now() - pred_time(pred) >= 9.999  # four 2.5 s steps (ISO rounding)
            url = body["output"][0]
            assert httpx.get(url).status_code == 200
            clock.advance(61)
            assert httpx.get(url).status_code == 403


@pytest.mark.parametrize(
    "fields",
    [{"status": "processing"}, {"source": "cli"}, {"age_seconds": -1}, {"colour": "red"}],
)
def test_add_prediction_rejects_bad_fields(emulator, fields):
    """Unknown fields, statuses or sources and negative ages are refused (422)."""
    with pytest.raises(ValueError, match="422"):
        emulator.add_prediction(**fields)


def test_a_create_does_not_revisit_every_prediction_held(monkeypatch):
    """Retention on create is incremental: with many predictions held, one more create
    applies it to the few now old enough, not to all (each create cost O(held) before, and the
    emulator became the bottleneck of its own benchmark)."""
    from emulator import state

    calls = []
    original = state.Prediction.expire

    def counting(self, retention_seconds, now):
        calls.append(self.id)
        return original(self, retention_seconds, now)

    monkeypatch.setattr(state.Prediction, "expire", counting)
    with Emulator() as emu:
        for _ in range(120):
            emu.add_prediction(age_seconds=10)
        calls.clear()
        emu.add_prediction(age_seconds=10)
    assert len(calls) <= 3, len(calls)
