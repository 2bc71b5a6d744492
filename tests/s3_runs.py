"""Helpers of the pipeline-on-S3 tests: read back what a run stored (objects, cache records)
and what Prefect recorded of it (flow runs, task runs, logs), and act at a point of a run."""

from __future__ import annotations

import contextlib
import hashlib
import json

from archiver.manifest import Manifest
from archiver.progress import NullProgress

MODEL = "black-forest-labs/flux-schnell"
PART = 5 * 2**20  # smallest part size S3 (and ARCHIVER_PART_SIZE) allows


def get_object(server, bucket: str, key: str) -> bytes:
    """An object's bytes, read with boto3 directly."""
    return server.client().get_object(Bucket=bucket, Key=key)["Body"].read()


def secret_options(monkeypatch, server, **extra) -> None:
    """Credentials for `server` in ARCHIVER_STORAGE_OPTIONS (the process environment)."""
    options = {"key": server.key, "secret": server.secret, "region": server.region, **extra}
    monkeypatch.setenv("ARCHIVER_STORAGE_OPTIONS", json.dumps(options))


def flow_state(run_flow, *args, **kwargs):
    """Run the flow in-process; return (flow run id, summary or raised exception)."""
    state = run_flow(*args, return_state=True, **kwargs)
    try:
        result = state.result()
    except Exception as exc:  # noqa: BLE001 - the test looks at what the run failed with
        result = exc
    return state.state_details.flow_run_id, result


def check_archived(server, bucket: str, prefix: str, summary) -> Manifest:
    """Every file and manifest.json is in the bucket under `prefix`, sizes and sha256 match."""
    manifest_key = f"{prefix}/{summary.files[0].path.rsplit('/', 1)[0]}/manifest.json"
    assert summary.manifest_url == f"s3://{bucket}/{manifest_key}"
    manifest = Manifest.from_json(get_object(server, bucket, manifest_key))
    assert manifest.files and [f.sha256 for f in manifest.files] == [
        f.sha256 for f in summary.files
    ]
    for item in manifest.files:
        assert not item.path.startswith(("/", "s3:")) and item.path.startswith(manifest.directory)
        data = get_object(server, bucket, f"{prefix}/{item.path}")
        assert len(data) == item.size and hashlib.sha256(data).hexdigest() == item.sha256
    keys = set(server.keys(bucket))
    assert {f"{prefix}/{f.path}" for f in manifest.files} | {manifest_key} <= keys
    assert server.multipart_uploads(bucket) == []
    return manifest


def cache_records(server, bucket: str, prefix: str) -> list[dict]:
    """The cache records stored under `prefix` in the bucket."""
    return [
        json.loads(get_object(server, bucket, key))
        for key in server.keys(bucket)
        if key.startswith(f"{prefix}/") and key.endswith(".json")
    ]


async def read_flow_run(api_url: str, flow_run_id):
    """A flow run, read back from the Prefect API at `api_url`."""
    from prefect.client.orchestration import PrefectClient

    async with PrefectClient(api_url) as client:
        return await client.read_flow_run(flow_run_id)


async def flow_runs_with_dest(api_url: str, dest: str) -> list:
    """Every flow run the Prefect API at `api_url` knows with `dest` as its parameter."""
    from prefect.client.orchestration import PrefectClient

    async with PrefectClient(api_url) as client:
        runs = await client.read_flow_runs(limit=200)
    return [run for run in runs if run.parameters.get("dest") == dest]


async def flow_run_logs(api_url: str, flow_run_id) -> list[str]:
    """The log messages the Prefect API at `api_url` holds for one flow run."""
    from prefect.client.orchestration import PrefectClient
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    async with PrefectClient(api_url) as client:
        logs = await client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))
        )
    return [log.message for log in logs]


async def task_runs(api_url: str, flow_run_id) -> list:
    """The task runs of one flow run."""
    from prefect.client.orchestration import PrefectClient
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    async with PrefectClient(api_url) as client:
        return await client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )


class AfterDownload(NullProgress):
    """A progress sink that runs `action` once, when the download step has staged everything."""

    def __init__(self, action) -> None:
        self.action = action
        self.fired = False

    def prediction_done(self, prediction_id: str, status: str) -> None:
        if status == "downloaded" and not self.fired:
            self.fired = True
            self.action()


@contextlib.contextmanager
def progress_sink(sink):
    """Install a progress sink for flow runs started inside the block."""
    from archiver import progress

    token = progress._current.set(sink)
    try:
        yield sink
    finally:
        progress._current.reset(token)


def assert_secret_kept(secret: str, *texts: str) -> None:
    """`secret` appears in none of `texts`."""
    for text in texts:
        assert secret not in text
