"""Sweep and archive-by-id over real HTTP against the emulator: other clients' predictions kept."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from archiver.errors import ConfigurationError
from archiver.existing import ExistingArchiver
from archiver.manifest import Manifest
from archiver.runtime import Runtime
from archiver.settings import Settings
from archiver.sweep import parse_duration, sweep


def _sweep(archive_env, **kwargs):
    async def go():
        runtime = Runtime.build(Settings(), dest=str(archive_env))
        try:
            return await sweep(runtime, **{"since": timedelta(hours=1), **kwargs})
        finally:
            await runtime.aclose()

    return asyncio.run(go())


def _by_id(archive_env, *ids: str):
    async def go():
        runtime = Runtime.build(Settings(), dest=str(archive_env))
        try:
            return await ExistingArchiver(runtime).many(list(ids))
        finally:
            await runtime.aclose()

    return asyncio.run(go())


def _outcomes(report) -> dict[str, str]:
    return {p.prediction_id: p.outcome for p in report.predictions}


def test_sweep_archives_other_clients_predictions_and_creates_none(archive_env, emulator):
    """Succeeded predictions made elsewhere are archived with a manifest; nothing is created."""
    made = [emulator.add_prediction(age_seconds=60 * i, input={"seed": i}) for i in range(3)]
    report = _sweep(archive_env)
    assert _outcomes(report) == {p["id"]: "archived" for p in made} and report.ok
    for result in report.predictions:
        manifest = Manifest.model_validate_json(open(result.summary.manifest_url, "rb").read())
        assert manifest.prediction_id == result.prediction_id
        assert manifest.cache_key == f"prediction:{result.prediction_id}"
        assert manifest.files
        for item in manifest.files:
            assert (archive_env / item.path).stat().st_size == item.size
    assert emulator.stats().creates_accepted == 0 and emulator.stats().create_attempts == 0


def test_every_prediction_gets_an_outcome(archive_env, emulator):
    """removed, skipped, pending and archived each get their outcome; a removed one fails the sweep."""
    ok = emulator.add_prediction(age_seconds=120)
    gone = emulator.add_prediction(age_seconds=emulator.faults.retention_seconds - 30)
    failed = emulator.add_prediction(status="failed", age_seconds=60)
    canceled = emulator.add_prediction(status="canceled", age_seconds=60)
    emulator.set_faults(processing_seconds=3600)
    running = emulator.add_prediction(status="starting")
    emulator.set_faults(retention_seconds=emulator.faults.retention_seconds - 60)
    report = _sweep(archive_env, since=timedelta(hours=2))
    assert _outcomes(report) == {
        ok["id"]: "archived",
        gone["id"]: "removed",
        failed["id"]: "skipped",
        canceled["id"]: "skipped",
        running["id"]: "pending",
    }
    assert not report.ok and [p.prediction_id for p in report.lost] == [gone["id"]]
    removed = next(p for p in report.predictions if p.outcome == "removed")
    assert gone["id"] in removed.error and "removed" in removed.error


def test_second_sweep_downloads_nothing(archive_env, emulator):
    """A rerun reports every archived prediction as cached and fetches no file."""
    for i in range(2):
        emulator.add_prediction(age_seconds=30 * i)
    first = _sweep(archive_env)
    downloads = len(emulator.stats().downloads)
    second = _sweep(archive_env)
    assert set(_outcomes(first).values()) == {"archived"}
    assert set(_outcomes(second).values()) == {"cached"}
    assert len(emulator.stats().downloads) == downloads


def test_window_and_source_select_what_is_swept(archive_env, emulator):
    """Only predictions inside --since are listed; --source api skips web ones, web keeps only them."""
    recent = emulator.add_prediction(age_seconds=60)
    web = emulator.add_prediction(age_seconds=60, source="web")
    old = emulator.add_prediction(age_seconds=3 * 3600, source="web")
    assert set(_outcomes(_sweep(archive_env, since=timedelta(minutes=5)))) == {recent["id"]}
    web_only = _sweep(archive_env, since=timedelta(hours=4), source="web")
    assert set(_outcomes(web_only)) == {web["id"], old["id"]}
    everything = _sweep(archive_env, since=timedelta(hours=4), source="all")
    assert set(_outcomes(everything)) == {recent["id"], web["id"], old["id"]}


def test_sweep_waits_out_429s(archive_env, emulator, monkeypatch):
    """A throttled list page is asked again after Retry-After, and the sweep completes."""
    made = emulator.add_prediction(age_seconds=10)
    monkeypatch.setenv("ARCHIVER_MAX_RATE_LIMIT_WAIT", "0")
    emulator.set_faults(throttle_lists=2)
    report = _sweep(archive_env)
    assert _outcomes(report) == {made["id"]: "archived"}
    assert emulator.stats().list_calls == 3


def test_sweep_after_run_reports_its_predictions_cached(archive_env, emulator):
    """A prediction already archived by id is cached for the sweep (same manifest path)."""
    made = emulator.add_prediction(age_seconds=10)
    (first,) = _by_id(archive_env, made["id"])
    assert first.outcome == "archived"
    assert _outcomes(_sweep(archive_env)) == {made["id"]: "cached"}


def test_archive_by_id_unknown_and_removed_fail_others_archived(archive_env, emulator):
    """An unknown id and a removed one fail with one line each; the good one is archived."""
    good = emulator.add_prediction(age_seconds=10)
    gone = emulator.add_prediction(age_seconds=emulator.faults.retention_seconds + 5)
    results = {r.prediction_id: r for r in _by_id(archive_env, "nosuchid", gone["id"], good["id"])}
    assert results[good["id"]].outcome == "archived"
    assert results["nosuchid"].outcome == "failed" and "nosuchid" in results["nosuchid"].error
    assert results[gone["id"]].outcome == "removed"
    assert all("\n" not in (r.error or "") for r in results.values())


def test_archive_by_id_waits_for_a_running_prediction(archive_env, emulator):
    """A prediction still running is waited for, then archived."""
    emulator.set_faults(processing_seconds=0.3)
    running = emulator.add_prediction(status="starting")
    (result,) = _by_id(archive_env, running["id"])
    assert result.outcome == "archived" and result.status == "succeeded"


@pytest.mark.parametrize("text", ["", "5", "1x", "0s", "15d", "-1h"])
def test_bad_durations_are_refused(text):
    """A duration without a unit, zero, or over 14 days is a one-line error naming it."""
    with pytest.raises(ConfigurationError, match="invalid duration"):
        parse_duration(text)


def test_durations_parse():
    """90s, 55m, 2h and 1h30m are what they say."""
    assert parse_duration("90s") == timedelta(seconds=90)
    assert parse_duration("55m") == timedelta(minutes=55)
    assert parse_duration("2h") == timedelta(hours=2)
    assert parse_duration("1h30m") == timedelta(minutes=90)
