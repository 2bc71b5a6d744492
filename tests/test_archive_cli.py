"""`python -m flows archive | sweep | webhooks` and `run --webhook`, as subprocesses against the
emulator and the session's Prefect server."""

from __future__ import annotations

import json

import httpx

from tests.test_webhooks_receiver import ReceiverProcess, _manifests, _signed, _wait_until
from tests.waiting import wait_until

MODEL = "black-forest-labs/flux-schnell"


def test_archive_unknown_id_fails_with_one_line_and_archives_the_others(cli, emulator, archive_env):
    """An unknown id: exit 1 and one stderr line naming it; the known id is still archived."""
    good = emulator.add_prediction(age_seconds=30)
    result = cli("archive", "doesnotexist", good["id"], "--dest", str(archive_env), "--json")
    assert result.returncode == 1, result.stderr
    errors = [x for x in result.stderr.splitlines() if x.strip() and not x.startswith("flow run: ")]
    assert len(errors) == 1 and "doesnotexist" in errors[0], result.stderr
    report = json.loads(result.stdout)
    outcomes = {p["prediction_id"]: p["outcome"] for p in report["predictions"]}
    assert outcomes == {"doesnotexist": "failed", good["id"]: "archived"}
    assert len(_manifests(archive_env)) == 1 and emulator.stats().creates_accepted == 0


def test_archive_again_is_cached_and_downloads_nothing(cli, emulator, archive_env):
    """An id already archived is reported cached: exit 0, no file fetched."""
    made = emulator.add_prediction(age_seconds=30)
    first = cli("archive", made["id"], "--dest", str(archive_env), "--json")
    downloads = len(emulator.stats().downloads)
    second = cli("archive", made["id"], "--dest", str(archive_env), "--json")
    assert first.returncode == 0 and second.returncode == 0, second.stderr
    assert json.loads(second.stdout)["predictions"][0]["outcome"] == "cached"
    assert len(emulator.stats().downloads) == downloads


def test_sweep_json_reports_every_outcome_and_fails_on_a_removed_one(cli, emulator, archive_env):
    """--json lists each prediction's outcome; a removed one is said on stderr and exits 1."""
    ok = emulator.add_prediction(age_seconds=60)
    skipped = emulator.add_prediction(status="canceled", age_seconds=60)
    gone = emulator.add_prediction(age_seconds=emulator.faults.retention_seconds + 1)
    result = cli("sweep", "--since", "2h", "--dest", str(archive_env), "--json")
    assert result.returncode == 1
    outcomes = {p["prediction_id"]: p["outcome"] for p in json.loads(result.stdout)["predictions"]}
    assert outcomes == {ok["id"]: "archived", skipped["id"]: "skipped", gone["id"]: "removed"}
    assert gone["id"] in result.stderr and "removed" in result.stderr
    rerun = cli("sweep", "--since", "55m", "--dest", str(archive_env), "--json")
    assert rerun.returncode == 0, rerun.stderr
    assert {p["outcome"] for p in json.loads(rerun.stdout)["predictions"]} == {"cached", "skipped"}


def test_sweep_refuses_a_bad_duration_in_one_line(cli):
    """--since 5 (no unit) is a one-line error naming the value, exit 1."""
    result = cli("sweep", "--since", "5")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: invalid duration '5': expected a number with a unit, like 90s, 55m or 2h"
    ]


def test_run_webhook_puts_the_webhook_on_the_create(cli, emulator, archive_env):
    """`run --webhook URL`: the create carries the URL with only the `completed` event."""
    url = "http://127.0.0.1:9/webhooks/replicate"  # nobody listens: the attempts are recorded
    result = cli("run", MODEL, "-i", "prompt=hooked", "--webhook", url, "--json")
    assert result.returncode == 0, result.stderr
    _wait_until(lambda: emulator.stats().webhooks, "a delivery attempt")
    attempts = emulator.stats().webhooks
    assert {(a["url"], a["event"]) for a in attempts} == {(url, "completed")}
    assert attempts[0]["prediction_id"] == json.loads(result.stdout)["prediction_id"]


def test_receiver_archives_as_a_prefect_flow_run(prefect_harness, archive_env, emulator):
    """With a Prefect server configured, webhook archives are archive-webhooks flow runs."""
    import os

    from tests.conftest import ROOT

    made = emulator.add_prediction(age_seconds=5)
    body = json.dumps(made).encode()
    env = {**os.environ, "PREFECT_API_URL": prefect_harness, "PYTHONPATH": str(ROOT)}
    rx = ReceiverProcess(env, archive_env)

    def completed_runs() -> list[dict]:
        runs = httpx.post(
            f"{prefect_harness}/flow_runs/filter",
            json={"flows": {"name": {"any_": ["archive-webhooks"]}}, "limit": 50},
        ).json()
        return [
            r
            for r in runs
            if r["parameters"].get("prediction_ids") == [made["id"]]
            and r["state_type"] == "COMPLETED"
        ]

    try:
        answer = httpx.post(
            rx.url, content=body, headers=_signed(emulator.webhook_secret, body, msg_id="p1")
        )
        wait_until(completed_runs, 120, "a completed archive-webhooks flow run")
    finally:
        rx.stop()
    assert answer.status_code == 202 and len(completed_runs()) == 1
    assert len(_manifests(archive_env)) == 1
