"""The find-in-archive and verify-archive deployments as prefect.yaml declares them."""

from __future__ import annotations

from deployments import load_specs


def _specs():
    return {spec.name: spec for spec in load_specs()}


def test_verify_archive_runs_weekly_one_at_a_time():
    spec = _specs()["verify-archive"]
    assert spec.load_flow().name == "verify-archive"
    [schedule] = spec.schedules
    assert schedule["cron"] == "0 3 * * 0" and schedule["timezone"] == "UTC"
    assert spec.concurrency_limit == {"limit": 1, "collision_strategy": "CANCEL_NEW"}
    [item] = spec.to_runner_deployment().schedules
    assert item.schedule.cron == "0 3 * * 0"


def test_find_in_archive_takes_a_query_and_the_filters():
    spec = _specs()["find-in-archive"]
    schema = spec.load_flow().parameters.model_dump()
    assert {"query", "model", "since", "until", "prediction_id", "limit", "dest"} <= set(
        schema["properties"]
    )
    assert not schema.get("required") and spec.schedules == [] and spec.enforce_parameter_schema
