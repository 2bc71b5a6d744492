"""The whole pipeline (flow, tasks, CLI) archiving to real S3 servers and other fsspec stores."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import uuid

import pytest

from archiver import errors
from archiver.manifest import Manifest
from archiver.progress import NullProgress
from tests.conftest import TOKEN

pytestmark = pytest.mark.s3

MODEL = "black-forest-labs/flux-schnell"
PART = 5 * 2**20  # smallest part size S3 (and ARCHIVER_PART_SIZE) allows


# -- helpers ------------------------------------------------------------------------------------


def _get(server, bucket: str, key: str) -> bytes:
    """An object's bytes, read with boto3 directly."""
    return server.client().get_object(Bucket=bucket, Key=key)["Body"].read()


def _secret_options(monkeypatch, server, **extra) -> None:
    """Credentials for `server` in ARCHIVER_STORAGE_OPTIONS (the process environment)."""
    options = {"key": server.key, "secret": server.secret, "region": server.region, **extra}
    monkeypatch.setenv("ARCHIVER_STORAGE_OPTIONS", json.dumps(options))


def _flow_state(run_flow, *args, **kwargs):
    """Run the flow in-process; return (flow run id, summary or raised exception)."""
    state = run_flow(*args, return_state=True, **kwargs)
    try:
        result = state.result()
    except Exception as exc:  # noqa: BLE001 - the test looks at what the run failed with
        result = exc
    return state.state_details.flow_run_id, result


def _check_archived(server, bucket: str, prefix: str, summary) -> Manifest:
    """Every file and manifest.json is in the bucket under `prefix`, sizes and sha256 match."""
    manifest_key = f"{prefix}/{summary.files[0].path.rsplit('/', 1)[0]}/manifest.json"
    assert summary.manifest_url == f"s3://{bucket}/{manifest_key}"
    manifest = Manifest.from_json(_get(server, bucket, manifest_key))
    assert manifest.files and [f.sha256 for f in manifest.files] == [
        f.sha256 for f in summary.files
    ]
    for item in manifest.files:
        assert not item.path.startswith(("/", "s3:")) and item.path.startswith(manifest.directory)
        data = _get(server, bucket, f"{prefix}/{item.path}")
        assert len(data) == item.size and hashlib.sha256(data).hexdigest() == item.sha256
    keys = set(server.keys(bucket))
    assert {f"{prefix}/{f.path}" for f in manifest.files} | {manifest_key} <= keys
    assert server.multipart_uploads(bucket) == []
    return manifest


def _records(server, bucket: str, prefix: str) -> list[dict]:
    """The cache records stored under `prefix` in the bucket."""
    return [
        json.loads(_get(server, bucket, key))
        for key in server.keys(bucket)
        if key.startswith(f"{prefix}/") and key.endswith(".json")
    ]


async def _read_flow_run(api_url: str, flow_run_id):
    """A flow run, read back from the Prefect API at `api_url`."""
    from prefect.client.orchestration import PrefectClient

    async with PrefectClient(api_url) as client:
        return await client.read_flow_run(flow_run_id)


async def _flow_runs_with_dest(api_url: str, dest: str) -> list:
    """Every flow run the Prefect API at `api_url` knows with `dest` as its parameter."""
    from prefect.client.orchestration import PrefectClient

    async with PrefectClient(api_url) as client:
        runs = await client.read_flow_runs(limit=200)
    return [run for run in runs if run.parameters.get("dest") == dest]


async def _flow_run_logs(api_url: str, flow_run_id) -> list[str]:
    """The log messages the Prefect API at `api_url` holds for one flow run."""
    from prefect.client.orchestration import PrefectClient
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    async with PrefectClient(api_url) as client:
        logs = await client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))
        )
    return [log.message for log in logs]


async def _task_runs(api_url: str, flow_run_id) -> list:
    """The task runs of one flow run."""
    from prefect.client.orchestration import PrefectClient
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    async with PrefectClient(api_url) as client:
        return await client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )


class _AfterDownload(NullProgress):
    """A progress sink that runs `action` once, when the download step has staged everything."""

    def __init__(self, action) -> None:
        self.action = action
        self.fired = False

    def prediction_done(self, prediction_id: str, status: str) -> None:
        if status == "downloaded" and not self.fired:
            self.fired = True
            self.action()


@contextlib.contextmanager
def _progress(sink):
    """Install a progress sink for flow runs started inside the block."""
    from archiver import progress

    token = progress._current.set(sink)
    try:
        yield sink
    finally:
        progress._current.reset(token)


# -- 1. full run on SeaweedFS, cache on object storage ------------------------------------------


@pytest.mark.parametrize("cache", ["in-dest", "other-bucket"])
def test_seaweedfs_full_run_and_cache_on_object_storage(
    cache, run_flow, emulator, seaweedfs_s3, seaweedfs_bucket, monkeypatch
):
    """A flow run lands every file and manifest.json in S3; the cache in S3 makes a rerun free."""
    bucket, prefix = seaweedfs_bucket, "archive/runs"
    _secret_options(monkeypatch, seaweedfs_s3)
    if cache == "in-dest":
        monkeypatch.delenv("ARCHIVER_CACHE_URL")
        cache_bucket, cache_prefix = bucket, f"{prefix}/.archiver/cache"
    else:
        cache_bucket, cache_prefix = seaweedfs_s3.make_bucket(), "cache"
        monkeypatch.setenv("ARCHIVER_CACHE_URL", f"s3://{cache_bucket}/{cache_prefix}")
    options = {"endpoint_url": seaweedfs_s3.endpoint_url}
    dest = f"s3://{bucket}/{prefix}"
    input = {"prompt": "a lighthouse", "num_outputs": 2, "seed": 5}

    first = run_flow(MODEL, input, dest=dest, storage_options=options)
    manifest = _check_archived(seaweedfs_s3, bucket, prefix, first)
    assert [f.name for f in manifest.files] == ["out-0.png", "out-1.png"]
    assert manifest.output == [{"file": f.path} for f in manifest.files]
    [record] = _records(seaweedfs_s3, cache_bucket, cache_prefix)
    assert record["state"] == "archived" and record["prediction_id"] == first.prediction_id
    assert record["archives"] == {dest: manifest.path}
    if cache == "other-bucket":
        assert not any(k.startswith(f"{prefix}/.archiver/") for k in seaweedfs_s3.keys(bucket))

    second = run_flow(MODEL, input, dest=dest, storage_options=options)
    assert second.cached and second.predictions_created == 0
    assert second.prediction_id == first.prediction_id
    assert emulator.stats().creates_accepted == 1


# -- 2. CLI: storage options or the AWS environment; the secret stays out of everything ---------


def _assert_secret_kept(secret: str, *texts: str) -> None:
    """`secret` appears in none of `texts`."""
    for text in texts:
        assert secret not in text


@pytest.mark.parametrize("credentials", ["storage-options", "aws-env"])
def test_cli_to_s3_keeps_the_secret_out(
    credentials, cli, emulator, seaweedfs_s3, seaweedfs_bucket, prefect_harness
):
    """`python -m flows run --dest s3://...` works with --storage-option or AWS env vars alone,
    and the secret reaches no output, manifest, cache record or flow run parameter."""
    server, bucket = seaweedfs_s3, seaweedfs_bucket
    prefix = f"cli-{credentials}"
    dest = f"s3://{bucket}/{prefix}"
    args = ["run", MODEL, "-i", "prompt=from the cli", "-i", "seed=11", "--dest", dest, "--json"]
    env = {"ARCHIVER_CACHE_URL": ""}  # the default: the cache in <dest>/.archiver/cache
    if credentials == "storage-options":
        args += [
            "--storage-option",
            f"endpoint_url={server.endpoint_url}",
            "--storage-option",
            f"key={server.key}",
            "--storage-option",
            f"secret={server.secret}",
            "--storage-option",
            f"region={server.region}",
        ]
    else:
        env.update(
            AWS_ACCESS_KEY_ID=server.key,
            AWS_SECRET_ACCESS_KEY=server.secret,
            AWS_ENDPOINT_URL_S3=server.endpoint_url,
            AWS_DEFAULT_REGION=server.region,
        )
    done = cli(*args, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout)
    assert summary["manifest_url"].startswith(f"{dest}/") and not summary["cached"]
    manifest_key = summary["manifest_url"].removeprefix(f"s3://{bucket}/")
    manifest = Manifest.from_json(_get(server, bucket, manifest_key))
    assert manifest.files
    for item in manifest.files:
        data = _get(server, bucket, f"{prefix}/{item.path}")
        assert hashlib.sha256(data).hexdigest() == item.sha256
    records = _records(server, bucket, f"{prefix}/.archiver/cache")
    assert [r["state"] for r in records] == ["archived"]
    assert emulator.stats().creates_accepted == 1

    [run] = asyncio.run(_flow_runs_with_dest(prefect_harness, dest))
    assert run.state.is_completed()
    assert "storage_options" not in run.parameters or not run.parameters["storage_options"]
    logs = asyncio.run(_flow_run_logs(prefect_harness, run.id))
    assert any("archived" in message for message in logs)
    _assert_secret_kept(
        server.secret,
        done.stdout,
        done.stderr,
        _get(server, bucket, manifest_key).decode(),
        json.dumps(records),
        json.dumps(run.parameters),
        json.dumps(run.model_dump(mode="json")),
        *logs,
    )
    _assert_secret_kept(TOKEN, done.stdout, done.stderr, json.dumps(run.parameters))


# -- 3. the store goes down after the download, and comes back -----------------------------------


@pytest.fixture
def s3_dest(seaweedfs_s3, seaweedfs_bucket, archive_env, monkeypatch) -> str:
    """An s3:// destination on SeaweedFS with the cache in it (the default), credentials in env."""
    monkeypatch.delenv("ARCHIVER_CACHE_URL")
    _secret_options(monkeypatch, seaweedfs_s3, endpoint_url=seaweedfs_s3.endpoint_url)
    return f"s3://{seaweedfs_bucket}/archive"


def test_store_down_keeps_staging_and_rerun_archives_it(
    run_flow, emulator, seaweedfs_s3, s3_dest, archive_env, prefect_harness, monkeypatch
):
    """With the store down after the download the run fails with a one-line StorageUnavailable and
    keeps the staged files; once it is back a rerun archives them: no new prediction or download."""
    monkeypatch.setenv("ARCHIVER_TASK_RETRIES", "1")
    staging = archive_env.parent / "staging"
    input = {"prompt": "outage", "num_outputs": 2}
    try:
        with _progress(_AfterDownload(seaweedfs_s3.stop)):
            flow_run_id, failure = _flow_state(run_flow, MODEL, input, dest=s3_dest)
    finally:
        stopped = not seaweedfs_s3.running
        seaweedfs_s3.start()
    assert stopped
    assert isinstance(failure, errors.StorageUnavailable), repr(failure)
    assert "\n" not in str(failure) and seaweedfs_s3.secret not in str(failure)
    [archive_run] = [
        run
        for run in asyncio.run(_task_runs(prefect_harness, flow_run_id))
        if run.name.startswith("archive")
    ]
    assert archive_run.state.is_failed() and archive_run.run_count == 2  # 1 retry, then gave up
    [prediction_id] = emulator.stats().created_ids
    staged = sorted(p.name for p in (staging / prediction_id).iterdir())
    # logs.txt too: the archive step stages it before it puts anything in the store
    assert [name for name in staged if name != "logs.txt"] == [
        "out-0.png",
        "out-1.png",
        "staged.json",
    ]
    downloads = len(emulator.stats().downloads)
    assert downloads == 2

    # A store that was just restarted may answer 500 for a moment: the usual retries cover it.
    monkeypatch.setenv("ARCHIVER_TASK_RETRIES", "3")
    monkeypatch.setenv("ARCHIVER_TASK_RETRY_DELAY", "0.5")
    summary = run_flow(MODEL, input, dest=s3_dest)
    assert summary.prediction_id == prediction_id and summary.predictions_created == 0
    stats = emulator.stats()
    assert stats.creates_accepted == 1 and len(stats.downloads) == downloads
    bucket, prefix = s3_dest.removeprefix("s3://").split("/", 1)
    _check_archived(seaweedfs_s3, bucket, prefix, summary)
    assert not (staging / prediction_id).exists()


def test_archive_task_retries_through_a_store_restart(
    run_flow, emulator, seaweedfs_s3, s3_dest, prefect_harness, monkeypatch
):
    """The archive task's Prefect retries outlast a store restart: the same flow run succeeds."""
    from archiver import pipeline

    monkeypatch.setenv("ARCHIVER_TASK_RETRIES", "3")
    monkeypatch.setenv("ARCHIVER_TASK_RETRY_DELAY", "1")
    real = pipeline.archive_staged
    attempts: list[str] = []
    loops: list[asyncio.AbstractEventLoop] = []

    def stop_store() -> None:
        loops.append(asyncio.get_running_loop())
        seaweedfs_s3.stop()

    def archive_staged(*args, **kwargs):
        try:
            result = real(*args, **kwargs)
        except Exception as exc:
            attempts.append(type(exc).__name__)
            if len(attempts) == 1:
                # Back while the task waits to retry. Started on the flow's (main) thread: the
                # server process is tied to the thread that starts it (PR_SET_PDEATHSIG).
                loops[0].call_soon_threadsafe(seaweedfs_s3.start)
            raise
        attempts.append("ok")
        return result

    monkeypatch.setattr(pipeline, "archive_staged", archive_staged)
    try:
        with _progress(_AfterDownload(stop_store)):
            flow_run_id, summary = _flow_state(run_flow, MODEL, {"prompt": "restart"}, dest=s3_dest)
    finally:
        seaweedfs_s3.start()
    assert not isinstance(summary, BaseException), repr(summary)
    assert attempts[0] == "StorageUnavailable" and attempts[-1] == "ok"
    assert set(attempts[:-1]) == {"StorageUnavailable"}
    [archive_run] = [
        run
        for run in asyncio.run(_task_runs(prefect_harness, flow_run_id))
        if run.name.startswith("archive")
    ]
    assert archive_run.state.is_completed() and archive_run.run_count == len(attempts) >= 2
    assert emulator.stats().creates_accepted == 1 and len(emulator.stats().downloads) == 1
    bucket, prefix = s3_dest.removeprefix("s3://").split("/", 1)
    _check_archived(seaweedfs_s3, bucket, prefix, summary)


# -- 4. a failure mid-upload leaves nothing behind ---------------------------------------------


def test_failure_mid_upload_leaves_no_object_upload_or_manifest(
    run_flow, emulator, seaweedfs_s3, seaweedfs_bucket, s3_dest, fail_source_after, monkeypatch
):
    """A source failing after 2 of 3 multipart parts in a full run leaves no object at the final
    key, no unfinished multipart upload, and no manifest."""
    monkeypatch.setenv("ARCHIVER_PART_SIZE", str(PART))
    fired = fail_source_after(2 * PART)
    _, failure = _flow_state(
        run_flow, "emulator/large-file", {"size_bytes": 3 * PART - 1000}, dest=s3_dest
    )
    assert fired and fired[0].fired
    assert isinstance(failure, errors.StorageError), repr(failure)
    assert "injected failure" in str(failure) and "\n" not in str(failure)
    assert [d["bytes_sent"] for d in emulator.stats().downloads] == [3 * PART - 1000]
    keys = seaweedfs_s3.keys(seaweedfs_bucket)
    assert keys and all(key.startswith("archive/.archiver/cache/") for key in keys), keys
    assert seaweedfs_s3.multipart_uploads(seaweedfs_bucket) == []


# -- 5. any fsspec protocol through the same code path -----------------------------------------


def test_memory_destination_full_run(run_flow, emulator, monkeypatch):
    """A memory:// destination gets every file, the manifest and the cache; a rerun is cached."""
    import fsspec

    monkeypatch.delenv("ARCHIVER_CACHE_URL")
    root = f"archive-{uuid.uuid4().hex[:8]}"
    fs = fsspec.filesystem("memory")
    try:
        summary = run_flow(
            MODEL, {"prompt": "in memory", "num_outputs": 2}, dest=f"memory://{root}"
        )
        assert summary.manifest_url.startswith(f"memory://{root}/")
        manifest = Manifest.from_json(fs.cat_file(summary.manifest_url))
        assert len(manifest.files) == 2
        for item in manifest.files:
            data = fs.cat_file(f"memory://{root}/{item.path}")
            assert len(data) == item.size and hashlib.sha256(data).hexdigest() == item.sha256
        [record] = fs.glob(f"/{root}/.archiver/cache/*/*.json")
        assert json.loads(fs.cat_file(record))["state"] == "archived"
        assert not [p for p in fs.find(f"/{root}") if ".tmp-" in p]
        again = run_flow(MODEL, {"prompt": "in memory", "num_outputs": 2}, dest=f"memory://{root}")
        assert again.cached and emulator.stats().creates_accepted == 1
    finally:
        fs.rm(f"/{root}", recursive=True)


# -- 6. credentials from a Prefect AwsCredentials block (prefect-aws, the `aws` extra) ---------


def test_aws_credentials_block_supplies_s3_credentials(
    run_flow, emulator, seaweedfs_s3, seaweedfs_bucket, prefect_harness, monkeypatch
):
    """ARCHIVER_AWS_CREDENTIALS_BLOCK names an AwsCredentials block whose key, secret, region and
    endpoint reach the store in process, and never the flow run's parameters."""
    import prefect_aws  # in the dev extra: missing means a broken install, not a skip

    server = seaweedfs_s3
    name = f"archive-s3-{uuid.uuid4().hex[:8]}"
    prefect_aws.AwsCredentials(
        aws_access_key_id=server.key,
        aws_secret_access_key=server.secret,
        region_name=server.region,
        aws_client_parameters={"endpoint_url": server.endpoint_url},
    ).save(name)  # sync context: the sync variant
    monkeypatch.setenv("ARCHIVER_AWS_CREDENTIALS_BLOCK", name)
    monkeypatch.delenv("ARCHIVER_CACHE_URL")
    dest = f"s3://{seaweedfs_bucket}/from-block"

    flow_run_id, summary = _flow_state(run_flow, MODEL, {"prompt": "block"}, dest=dest)
    assert not isinstance(summary, BaseException), repr(summary)
    _check_archived(server, seaweedfs_bucket, "from-block", summary)
    records = _records(server, seaweedfs_bucket, "from-block/.archiver/cache")
    assert [r["state"] for r in records] == ["archived"]
    run = asyncio.run(_read_flow_run(prefect_harness, flow_run_id))
    assert run.parameters["dest"] == dest and not run.parameters.get("storage_options")
    manifest_key = summary.manifest_url.removeprefix(f"s3://{seaweedfs_bucket}/")
    manifest = _get(server, seaweedfs_bucket, manifest_key)
    _assert_secret_kept(
        server.secret, json.dumps(run.parameters), manifest.decode(), json.dumps(records)
    )

    from flows.settings import flow_settings

    monkeypatch.setenv("ARCHIVER_STORAGE_OPTIONS", '{"region": "eu-west-3"}')
    settings = asyncio.run(flow_settings())
    assert settings.storage_options == {  # explicit storage options win over the block
        "key": server.key,
        "secret": server.secret,
        "region": "eu-west-3",
        "endpoint_url": server.endpoint_url,
    }
    monkeypatch.setenv("ARCHIVER_AWS_CREDENTIALS_BLOCK", f"{name}-missing")
    with pytest.raises(errors.ConfigurationError, match="AwsCredentials block"):
        run_flow(MODEL, {"prompt": "block"}, dest=dest)
