"""Every CLI run names its flow run: the UI URL on stderr and in --json; the form's `input`."""

from __future__ import annotations

import json
import re

import pytest

pytestmark = pytest.mark.prefect

MODEL = "black-forest-labs/flux-schnell"
RUN_URL = re.compile(r"http://127\.0\.0\.1:\d+/runs/flow-run/([0-9a-f-]{36})")


def announced(stderr: str) -> str:
    """The one `flow run: URL` line's URL."""
    lines = [line for line in stderr.splitlines() if line.startswith("flow run: ")]
    assert len(lines) == 1, stderr
    url = lines[0].removeprefix("flow run: ")
    assert RUN_URL.fullmatch(url), stderr
    return url


def test_run_batch_archive_and_sweep_print_their_flow_run(
    cli, archive_env, emulator, tmp_path, prefect_server
):
    """run, batch, archive and sweep: stderr names the run's UI URL, --json carries the same,
    and it is the flow run that did the work."""
    batch = tmp_path / "batch.jsonl"
    batch.write_text('{"prompt": "linked 1"}\n')
    existing = emulator.add_prediction(age_seconds=30)
    commands = {
        "archive-prediction": ("run", MODEL, "-i", "prompt=linked"),
        "archive-batch": ("batch", str(batch), "--model", MODEL),
        "archive-existing": ("archive", existing["id"]),
        "archive-recent": ("sweep", "--since", "1h"),
    }
    for flow_name, args in commands.items():
        result = cli(*args, "--dest", str(archive_env), "--json")
        assert result.returncode == 0, result.stderr
        url = announced(result.stderr)
        assert json.loads(result.stdout)["flow_run_url"] == url
        with prefect_server.client() as client:
            run = client.read_flow_run(RUN_URL.fullmatch(url).group(1))
            assert client.read_flow(run.flow_id).name == flow_name


def test_the_run_form_offers_a_json_object_for_input():
    """`input` is a JSON object with default {} (no None to pick a type from), its description
    showing an example."""
    from prefect.utilities.callables import parameter_schema

    from flows.archive_prediction import archive_prediction

    schema = parameter_schema(archive_prediction.fn).model_dump()
    field = schema["properties"]["input"]
    assert field["type"] == "object" and field["default"] == {}, field
    assert "anyOf" not in field and '{"prompt": "a lighthouse"' in field["description"], field
