"""The Faults dataclass, runtime changes via set_faults, and the /_emulator control endpoints."""

from __future__ import annotations

import dataclasses

import httpx
import pytest

from emulator import COUNTERS, Emulator, Faults
from tests.conftest import AUTH


def test_defaults_match_the_documented_values():
    """Faults() has the documented defaults."""
    faults = Faults()
    assert faults.processing_seconds == 0.5 and faults.starting_seconds == 0.0
    assert faults.url_ttl_seconds == 3600 and faults.retention_seconds == 3600
    assert faults.final_status == "succeeded" and faults.error_text == "CUDA out of memory"
    assert faults.retry_after_seconds == 1 and faults.page_size == 100
    assert faults.output_host is None and not faults.first_urls_expired
    assert not faults.hostile_filenames
    assert all(getattr(faults, name) == 0 for name in COUNTERS)


@pytest.mark.parametrize(
    "changes",
    [
        {"processing_seconds": -1},
        {"retention_seconds": 0},
        {"drop_downloads": -1},
        {"fail_reads": 1.5},
        {"page_size": 0},
        {"final_status": "exploded"},
        {"first_urls_expired": "yes"},
        {"output_host": "http://x/"},
        {"fail_reads": True},
    ],
)
def test_invalid_values_are_rejected(changes):
    """Out-of-range fault values raise ValueError, wrongly typed ones TypeError."""
    with pytest.raises((TypeError, ValueError)):
        Faults().replace(**changes)


def test_unknown_field_is_rejected():
    """Unknown fault names raise TypeError, in the constructor and in set_faults."""
    with pytest.raises(TypeError):
        Emulator(no_such_fault=1)
    with pytest.raises(TypeError):
        Faults().replace(no_such_fault=1)


def test_constructor_kwargs_override_faults_object():
    """Emulator(faults=..., **overrides) applies overrides on top of the given Faults."""
    emu = Emulator(faults=Faults(page_size=7, fail_reads=2), fail_reads=5)
    assert emu.faults.page_size == 7 and emu.faults.fail_reads == 5
    assert emu.stats().create_attempts == 0  # stats work before start


def test_faults_are_frozen_snapshots(emulator):
    """emulator.faults is an immutable snapshot; set_faults returns the new one."""
    before = emulator.faults
    with pytest.raises(dataclasses.FrozenInstanceError):
        before.fail_reads = 3  # type: ignore[misc]
    after = emulator.set_faults(fail_reads=3)
    assert before.fail_reads == 0 and after.fail_reads == 3 == emulator.faults.fail_reads


def test_set_faults_rearms_counters(emulator):
    """Giving a counter to set_faults resets it to that value, even after it was used up."""
    emulator.set_faults(fail_downloads=1)
    assert emulator.set_faults(fail_downloads=4).fail_downloads == 4


def test_control_get_and_patch_faults(emulator):
    """GET /_emulator/faults shows faults; PATCH changes only the given fields (no auth needed)."""
    url = f"{emulator.base_url}/_emulator/faults"
    assert httpx.get(url).json() == dataclasses.asdict(Faults(processing_seconds=0.05))
    patched = httpx.patch(url, json={"fail_reads": 2, "final_status": "failed"})
    assert patched.status_code == 200
    assert patched.json()["fail_reads"] == 2 and patched.json()["processing_seconds"] == 0.05
    assert emulator.faults.final_status == "failed"


@pytest.mark.parametrize("body", [{"fail_reads": -1}, {"bogus": 1}, [1, 2], {"page_size": "2"}])
def test_control_patch_rejects_bad_changes(emulator, body):
    """Invalid PATCH bodies answer 422 and change nothing."""
    before = emulator.faults
    response = httpx.patch(f"{emulator.base_url}/_emulator/faults", json=body)
    assert response.status_code == 422 and "detail" in response.json()
    assert emulator.faults == before


def test_control_stats_and_reset(emulator):
    """GET /_emulator/stats mirrors Stats; POST /_emulator/reset zeroes stats and counters."""
    httpx.post(f"{emulator.base_url}/v1/models/a/b/predictions", json={"input": {}}, headers=AUTH)
    stats = httpx.get(f"{emulator.base_url}/_emulator/stats").json()
    assert stats == dataclasses.asdict(emulator.stats())
    assert stats["create_attempts"] == 1 and stats["predictions"] == 1
    emulator.set_faults(fail_reads=3, drop_downloads=2, final_status="failed")
    reset = httpx.post(f"{emulator.base_url}/_emulator/reset").json()
    assert reset["stats"]["create_attempts"] == 0 and reset["stats"]["predictions"] == 1
    assert all(reset["faults"][name] == 0 for name in COUNTERS)
    assert emulator.faults.final_status == "failed"  # non-counter faults are kept
    emulator.set_faults(fail_reads=1)
    emulator.reset()
    assert emulator.faults.fail_reads == 0


def test_runtime_change_applies_to_running_emulator(emulator):
    """A fault set at runtime takes effect on the next request."""
    api = httpx.Client(base_url=emulator.base_url, headers=AUTH)
    pred = api.post("/v1/models/a/b/predictions", json={"input": {}}).json()
    assert api.get(f"/v1/predictions/{pred['id']}").status_code == 200
    httpx.patch(f"{emulator.base_url}/_emulator/faults", json={"fail_reads": 1})
    assert api.get(f"/v1/predictions/{pred['id']}").status_code == 503
    assert api.get(f"/v1/predictions/{pred['id']}").status_code == 200
    api.close()


def test_data_uri_outputs_inline_the_real_file_bytes(emulator, api, http):
    """With data_uri_outputs (PATCH) file outputs are data:<type>;base64 URIs of the same bytes
    the delivery URLs serve; text outputs are unchanged."""
    import base64

    pred = api.post(
        "/v1/models/a/b/predictions",
        json={"input": {"num_outputs": 2}},
        headers={"Prefer": "wait=10"},
    ).json()
    assert pred["status"] == "succeeded"
    urls = api.get(f"/v1/predictions/{pred['id']}").json()["output"]
    httpx.patch(f"{emulator.base_url}/_emulator/faults", json={"data_uri_outputs": True})
    inline = api.get(f"/v1/predictions/{pred['id']}").json()["output"]
    assert len(inline) == len(urls) == 2
    for uri, url in zip(inline, urls, strict=True):
        head, _, payload = uri.partition(",")
        assert head == "data:image/png;base64"
        assert base64.b64decode(payload) == http.get(url).content
