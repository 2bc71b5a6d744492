"""The archive-recent and archive-existing deployments as prefect.yaml declares them."""

from __future__ import annotations

from archiver.sweep import parse_duration
from deployments import load_specs


def _specs():
    return {spec.name: spec for spec in load_specs()}


def test_archive_recent_sweeps_every_10_minutes_over_an_overlapping_window():
    """An interval schedule of 600 s whose `since` window is wider, one run at a time."""
    spec = _specs()["archive-recent"]
    assert spec.load_flow().name == "archive-recent"
    [schedule] = spec.schedules
    assert schedule["interval"] == 600
    assert parse_duration(spec.parameters["since"]).total_seconds() > schedule["interval"]
    assert spec.concurrency_limit == {"limit": 1, "collision_strategy": "CANCEL_NEW"}
    deployment = spec.to_runner_deployment()
    [item] = deployment.schedules
    assert item.schedule.interval.total_seconds() == 600


def test_archive_existing_takes_typed_prediction_ids():
    """`prediction_ids` is a required list of id strings in the UI's form schema."""
    spec = _specs()["archive-existing"]
    schema = spec.load_flow().parameters.model_dump()
    assert "prediction_ids" in schema["required"]
    ids = schema["properties"]["prediction_ids"]
    assert ids["type"] == "array" and ids["minItems"] == 1
    item = ids["items"]
    item = schema.get("definitions", {}).get(item.get("$ref", "").split("/")[-1], item)
    assert item["type"] == "string" and "pattern" in item
    assert spec.enforce_parameter_schema and spec.schedules == []
