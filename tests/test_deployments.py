"""Deployments end to end on a real `prefect server start` (SQLite) with two process workers.

The stack (tests/prefect_stack.py) runs docs/deployments.md's commands, not the Makefile:
`prefect work-pool create`, `python -m deployments secret`, `prefect --no-prompt deploy --all`,
and plain `prefect worker start --pool archiver` from directories outside the project, without
ARCHIVER_PROJECT_DIR. Runs are created the way the UI creates them: parameters through the API.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import uuid
from datetime import timedelta

import pytest

from tests.prefect_server import wait_for
from tests.prefect_stack import TOKEN, manifests, prefect_stack, redis_unavailable

pytestmark = [pytest.mark.server, pytest.mark.timeout(300)]

ON_DEMAND = "archive-prediction/on-demand"
NIGHTLY = "archive-batch/nightly"
FIND = "find-in-archive/find-in-archive"
VERIFY = "verify-archive/verify-archive"
MODEL = "black-forest-labs/flux-schnell"
ENTRYPOINTS = {
    ON_DEMAND: "flows.archive_prediction.archive_prediction",
    NIGHTLY: "flows.batch.archive_batch",
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory, prefect_template):
    with prefect_stack(
        tmp_path_factory.mktemp("prefect-stack"), template=prefect_template, workers=2
    ) as stack:
        yield stack


def _key(value: dict) -> str:
    return json.dumps(value, sort_keys=True)


def assert_archived(stack, inputs: list[dict]) -> None:
    """Each input has a manifest in the shared archive and every file it lists is intact."""
    by_input = {_key(m["input"]): m for m in manifests(stack.archive)}
    for value in inputs:
        manifest = by_input.get(_key(value))
        assert manifest is not None, f"no manifest for {value} in {stack.archive}"
        assert manifest["files"], manifest
        for entry in manifest["files"]:
            data = (stack.archive / entry["path"]).read_bytes()
            assert len(data) == entry["size"]
            assert hashlib.sha256(data).hexdigest() == entry["sha256"]


def assert_thumbnails(markdown: str, count: int) -> None:
    """`markdown` embeds `count` JPEG thumbnails (data: URIs), each <= 256 px and <= 40 KB."""
    from PIL import Image

    uris = re.findall(r'src="data:image/jpeg;base64,([A-Za-z0-9+/=]+)"', markdown)
    assert len(uris) == count, markdown[:2000]
    for uri in uris:
        raw = base64.b64decode(uri)
        image = Image.open(io.BytesIO(raw))
        assert image.format == "JPEG" and max(image.size) <= 256 and len(raw) <= 40_000


def assert_completed(stack, runs) -> None:
    bad = [
        (r.name, r.state.type.value, r.state.message)
        for r in runs
        if r.state.type.value != "COMPLETED"
    ]
    assert not bad, f"{bad}\n{stack.logs()}"


def test_deployments_declare_typed_parameters_and_keep_the_token_out(stack):
    """Deployed flows carry typed, enforced parameter schemas, the nightly cron, and no token."""
    with stack.client() as client:
        on_demand = client.read_deployment(stack.deployment_ids[ON_DEMAND])
        nightly = client.read_deployment(stack.deployment_ids[NIGHTLY])

    props = on_demand.parameter_openapi_schema["properties"]
    assert {"model", "input", "dest", "refresh", "on_data_removed", "deadline"} <= set(props)
    assert on_demand.parameter_openapi_schema["required"] == ["model"]
    assert props["model"]["pattern"].startswith("^")
    assert props["on_data_removed"]["enum"] == ["fail", "rerun"]
    assert props["input"]["type"] == "object" and props["input"]["default"] == {}
    deadline = next(s for s in props["deadline"]["anyOf"] if s.get("type") == "number")
    assert (deadline["minimum"], deadline["maximum"]) == (1, 86400)

    [schedule] = nightly.schedules
    assert schedule.active and schedule.schedule.cron == "0 2 * * *"
    assert nightly.parameters["file"] and nightly.global_concurrency_limit.limit == 1
    assert nightly.concurrency_options.collision_strategy.value == "CANCEL_NEW"

    for deployment in (on_demand, nightly):
        assert deployment.enforce_parameter_schema
        assert deployment.work_pool_name == "archiver"
        # The job variables name the Secret block; the token itself is nowhere.
        assert deployment.job_variables == {
            "env": {"ARCHIVER_TOKEN_SECRET_BLOCK": "replicate-api-token"}
        }
        # Module-path entrypoints from the installed package; no pull step, no checkout path.
        assert not deployment.pull_steps, deployment.pull_steps
        assert TOKEN not in deployment.model_dump_json()
    assert on_demand.entrypoint == ENTRYPOINTS[ON_DEMAND]
    assert nightly.entrypoint == ENTRYPOINTS[NIGHTLY]


@pytest.mark.parametrize(
    ("name", "parameters", "field"),
    [
        (ON_DEMAND, {"model": "not a model"}, "model"),
        (ON_DEMAND, {"model": "owner/name:not-hex!"}, "model"),
        (ON_DEMAND, {"model": MODEL, "input": "a string"}, "input"),
        (ON_DEMAND, {"model": MODEL, "on_data_removed": "ignore"}, "on_data_removed"),
        (ON_DEMAND, {"model": MODEL, "deadline": 0}, "deadline"),
        (ON_DEMAND, {"input": {"prompt": "no model"}}, "model"),
        (NIGHTLY, {"concurrency": "many"}, "concurrency"),
        (NIGHTLY, {"on_data_removed": "retry"}, "on_data_removed"),
    ],
)
def test_bad_parameters_are_rejected_before_a_run_exists(stack, name, parameters, field):
    """A run with a bad parameter is refused (409 naming the field) and no flow run is made."""
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
    from prefect.exceptions import PrefectHTTPStatusError

    only = DeploymentFilter(id=DeploymentFilterId(any_=[stack.deployment_ids[name]]))

    def manual_runs() -> int:  # the scheduler may add cron runs meanwhile: not ours to count
        with stack.client() as client:
            runs = client.read_flow_runs(deployment_filter=only)
        return sum(1 for run in runs if not run.auto_scheduled)

    before = manual_runs()
    with pytest.raises(PrefectHTTPStatusError) as error:
        stack.run_deployment(name, parameters)
    assert error.value.response.status_code == 409
    detail = error.value.response.json()["detail"]
    assert "Validation failed" in detail and field in detail, detail
    assert manual_runs() == before


def test_runs_spread_over_both_workers_and_archive_every_file(stack):
    """Two runs go to both workers, archive every file and show each file in their artifacts."""
    stack.wait_idle()
    tag = uuid.uuid4().hex[:8]
    inputs = [{"prompt": f"spread {tag} {i}", "seed": i, "num_outputs": 1 + i} for i in range(2)]
    created = [
        stack.run_deployment(ON_DEMAND, {"model": MODEL, "input": value}) for value in inputs
    ]
    runs = stack.wait_for_runs([r.id for r in created])
    assert_completed(stack, runs)
    # Each worker stamps the runs it submits with its name (a flow run label).
    used = {r.labels.get("prefect.worker.name") for r in runs}
    assert used == {w.name for w in stack.workers}, used
    assert_archived(stack, inputs)
    # The token reached the runs through the Secret block only.
    assert all(TOKEN not in r.model_dump_json() for r in runs)
    # Each run shows where its files went: full paths, sizes, sha256, under stable keys.
    for run in runs:
        artifacts = stack.artifacts(run.id)
        summary = artifacts["archive-prediction-on-demand-summary"].data
        gallery = artifacts["archive-prediction-on-demand-gallery"].data
        paths = re.findall(rf"`({re.escape(str(stack.archive))}/[^`]+)`", summary)
        files = [p for p in paths if not p.endswith("manifest.json")]
        assert len(files) == run.parameters["input"]["num_outputs"], summary
        for path in files:
            data = open(path, "rb").read()
            assert f"{len(data):,} B" in summary and hashlib.sha256(data).hexdigest() in summary
        assert_thumbnails(gallery, len(files))


def test_same_input_on_two_workers_at_once_pays_for_one_prediction(stack):
    """Two overlapping runs of one input on two workers create a single prediction (Redis lock)."""
    if stack.lock_url is None:
        pytest.skip(f"needs Redis for ARCHIVER_LOCK_URL: {redis_unavailable()}")
    stack.wait_idle()
    value = {"prompt": f"same input {uuid.uuid4().hex[:8]}"}
    before = stack.emulator.stats().creates_accepted
    stack.emulator.set_faults(processing_seconds=8)  # both runs are in flight together
    try:
        created = [
            stack.run_deployment(ON_DEMAND, {"model": MODEL, "input": value}) for _ in range(2)
        ]
        runs = stack.wait_for_runs([r.id for r in created], timeout=120)
    finally:
        stack.emulator.set_faults(processing_seconds=0.2)
    assert_completed(stack, runs)
    assert {r.labels.get("prefect.worker.name") for r in runs} == {"worker-1", "worker-2"}
    first, second = runs
    assert max(first.start_time, second.start_time) < min(first.end_time, second.end_time), (
        "the two runs did not overlap"
    )
    assert stack.emulator.stats().creates_accepted - before == 1
    assert_archived(stack, [value])


def test_a_schedule_fires_and_the_batch_archives_its_prompts_file(stack, tmp_path):
    """The nightly batch deployment gets a 3-second interval schedule (as one would add in the
    UI) whose parameters point at a test prompts file; the scheduler fires it, a worker runs it."""
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterDeploymentId,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.schedules import IntervalSchedule

    stack.wait_idle()
    tag = uuid.uuid4().hex[:8]
    inputs = [{"prompt": f"scheduled {tag} {i}"} for i in range(3)]
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps(v) + "\n" for v in inputs))
    nightly = stack.deployment_ids[NIGHTLY]
    with stack.client() as client:
        [schedule] = client.create_deployment_schedules(
            nightly,
            [(IntervalSchedule(interval=timedelta(seconds=3)), True)],
            max_scheduled_runs=1,
            parameters={"file": str(prompts)},
        )
    completed = FlowRunFilter(
        deployment_id=FlowRunFilterDeploymentId(any_=[nightly]),
        state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.COMPLETED])),
    )

    def fired():
        with stack.client() as client:
            runs = client.read_flow_runs(flow_run_filter=completed)
        return [r for r in runs if r.auto_scheduled and r.parameters.get("file") == str(prompts)]

    try:
        runs = wait_for(fired, 90, "a scheduled batch run to complete", interval=0.5)
    except TimeoutError as exc:
        raise AssertionError(f"{exc}\n{stack.logs()}") from None
    finally:
        with stack.client() as client:
            client.delete_deployment_schedule(nightly, schedule.id)
    assert runs[0].parameters["model"] == MODEL  # the deployment's default, kept
    assert_archived(stack, inputs)
    stack.wait_idle()


def test_the_nightly_batch_runs_its_installed_sample_and_publishes_a_gallery(stack):
    """The nightly deployment with its own parameters (the sample prompts file, a relative path
    that a worker's temporary directory lacks) completes; its gallery artifact, read through the
    API, embeds a thumbnail of every image and its summary names every archived file."""
    stack.wait_idle()
    created = stack.run_deployment(NIGHTLY, {})
    [run] = stack.wait_for_runs([created.id], timeout=120)
    assert_completed(stack, [run])
    artifacts = stack.artifacts(run.id)
    assert set(artifacts) >= {
        "archive-batch-nightly-files",
        "archive-batch-nightly-summary",
        "archive-batch-nightly-gallery",
    }
    table = artifacts["archive-batch-nightly-files"].data
    rows = json.loads(table) if isinstance(table, str) else table
    archived = [row for row in rows if row["outcome"] == "archived"]
    summary = artifacts["archive-batch-nightly-summary"].data
    assert all(f"`{row['url']}`" in summary for row in rows if row["file"])
    if archived:  # a rerun of the module finds the sample cached: nothing staged to show
        assert_thumbnails(artifacts["archive-batch-nightly-gallery"].data, len(archived))


def test_a_misconfigured_worker_fails_the_run_with_one_actionable_line(stack):
    """A run whose worker names a Secret block that does not exist ends Failed, and its state
    message is one line naming the block and the command that creates it."""
    stack.wait_idle()
    created = stack.run_deployment(
        ON_DEMAND,
        {"model": MODEL, "input": {"prompt": f"misconfigured {uuid.uuid4().hex[:8]}"}},
        job_variables={"env": {"ARCHIVER_TOKEN_SECRET_BLOCK": "no-such-block"}},
    )
    [run] = stack.wait_for_runs([created.id])
    assert run.state.type.value == "FAILED", (run.state.type, run.state.message)
    message = run.state.message
    assert "\n" not in message.strip() and "Traceback" not in message, message
    assert "'no-such-block'" in message and "python -m deployments secret" in message, message


def test_find_and_verify_deployments_search_and_check_the_shared_archive(stack):
    """find-in-archive (run from the UI's form) leaves a table and a gallery of its matches;
    verify-archive completes on an intact archive and fails, listing the file, once one of them
    is corrupt (the last test of the module: it leaves that file corrupt)."""
    from tests.archives import prediction, write_local

    word = f"catalogue{uuid.uuid4().hex[:8]}"
    write_local(stack.archive, prediction("catalogp1", f"{word} lighthouse", images=True))
    stack.wait_idle()
    [found] = stack.wait_for_runs([stack.run_deployment(FIND, {"query": word}).id])
    assert_completed(stack, [found])
    artifacts = stack.artifacts(found.id)
    table = artifacts["find-in-archive-find-in-archive-results"].data
    [row] = json.loads(table) if isinstance(table, str) else table
    assert row["prediction"] == "catalogp1"
    assert_thumbnails(artifacts["find-in-archive-find-in-archive-gallery"].data, 2)

    [clean] = stack.wait_for_runs([stack.run_deployment(VERIFY, {}).id])
    assert_completed(stack, [clean])
    path = "black-forest-labs/flux-schnell/2026/12/01/catalogp1/out-1.png"
    (stack.archive / path).write_bytes(b"not the archived bytes")
    [broken] = stack.wait_for_runs([stack.run_deployment(VERIFY, {}).id])
    assert broken.state.type.value == "FAILED" and "1 corrupt" in broken.state.message
    markdown = stack.artifacts(broken.id)["verify-archive-verify-archive-problems"].data
    assert f"`{path}`" in markdown and "| corrupt | catalogp1 |" in markdown
