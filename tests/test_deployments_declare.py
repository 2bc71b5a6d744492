"""prefect.yaml as the one declaration: what `python -m deployments serve` builds from it, without
a server (the end-to-end deployment tests are in test_deployments.py)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from archiver.batchfile import load_batch
from archiver.errors import ConfigurationError
from deployments.declare import (
    PROJECT_DIR,
    create_token_secret,
    load_specs,
    token_block_names,
)
from tests.prefect_server import free_port


def test_prefect_yaml_declares_on_demand_and_nightly():
    """prefect.yaml declares on-demand and nightly on the archiver pool, naming the token block."""
    specs = {s.name: s for s in load_specs()}
    assert {"on-demand", "nightly"} <= set(specs)
    assert specs["on-demand"].load_flow().name == "archive-prediction"
    assert specs["nightly"].load_flow().name == "archive-batch"
    for spec in specs.values():
        assert spec.work_pool == "archiver" and spec.enforce_parameter_schema
        # Only the block's name travels with a deployment.
        assert spec.env == {"ARCHIVER_TOKEN_SECRET_BLOCK": "replicate-api-token"}
    assert token_block_names() == ["replicate-api-token"]


def test_served_deployments_match_the_yaml():
    """`serve` builds the same deployments as prefect.yaml: flows, schedule, limits, parameters."""
    specs = {s.name: s for s in load_specs()}
    on_demand = specs["on-demand"].to_runner_deployment()
    assert (on_demand.flow_name, on_demand.name) == ("archive-prediction", "on-demand")
    assert on_demand.enforce_parameter_schema and not on_demand.schedules
    assert on_demand.entrypoint == "flows.archive_prediction.archive_prediction"

    nightly = specs["nightly"].to_runner_deployment()
    [schedule] = nightly.schedules
    assert schedule.schedule.cron == "0 2 * * *" and schedule.active
    assert nightly.parameters["file"] == "deployments/nightly-prompts.jsonl"
    assert nightly.concurrency_limit == 1
    assert nightly.concurrency_options.collision_strategy.value == "CANCEL_NEW"


def test_the_nightly_sample_prompts_file_is_a_valid_batch():
    """The nightly deployment's sample prompts file parses as a batch without an error."""
    spec = next(s for s in load_specs() if s.name == "nightly")
    items = load_batch(
        str(PROJECT_DIR / spec.parameters["file"]), default_model=spec.parameters["model"]
    )
    assert len(items) >= 2 and all(item.error is None for item in items)


def test_secret_command_needs_a_token(monkeypatch):
    """Creating the Secret block without a token in the environment is a ConfigurationError."""
    monkeypatch.delenv("REPLICATE_API_TOKEN", raising=False)
    monkeypatch.delenv("ARCHIVER_API_TOKEN", raising=False)
    with pytest.raises(ConfigurationError, match="REPLICATE_API_TOKEN"):
        create_token_secret()


def test_the_nightly_sample_is_found_from_any_working_directory(tmp_path, monkeypatch):
    """A deployment run starts in an empty temporary directory: the nightly's relative sample
    path is read from the installed project; other paths and URLs are left alone."""
    from flows.batch import _project_file

    monkeypatch.chdir(tmp_path)
    spec = next(s for s in load_specs() if s.name == "nightly")
    resolved = _project_file(spec.parameters["file"])
    assert resolved != spec.parameters["file"] and load_batch(resolved, default_model="o/m")
    (tmp_path / "mine.jsonl").write_text('{"prompt": "x"}\n')
    for given in ("mine.jsonl", "s3://bucket/p.jsonl", "missing.jsonl", str(tmp_path)):
        assert _project_file(given) == given


def test_every_entrypoint_is_a_module_path_a_worker_imports_from_anywhere():
    """No deployment names a file: a worker started outside the checkout (no pull step) must
    import every flow from the installed package; a `flows/x.py:f` path fails there."""
    for spec in load_specs():
        assert ":" not in spec.entrypoint and "/" not in spec.entrypoint, spec.name
        assert spec.load_flow().name, spec.name


def _secret_command(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "deployments", "secret"],
        cwd=PROJECT_DIR,
        env={k: v for k, v in {**os.environ, **env}.items() if v is not None},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_secret_command_refuses_without_a_prefect_api(tmp_path):
    """No PREFECT_API_URL: exit 1 with one line naming it (no throwaway server gets the
    token); an unreachable one: exit 1 with one line naming the URL."""
    env = {"REPLICATE_API_TOKEN": "r8_x", "PREFECT_HOME": str(tmp_path), "PREFECT_API_URL": None}
    dead = f"http://127.0.0.1:{free_port()}/api"
    for extra, needle in (({}, "PREFECT_API_URL is not set"), ({"PREFECT_API_URL": dead}, dead)):
        result = _secret_command({**env, **extra})
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 1 and len(lines) == 1 and needle in lines[0], result.stderr
