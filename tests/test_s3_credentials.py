"""Credentials for S3 from storage options, the AWS environment or an AwsCredentials block:
each reaches the store, and the secret reaches no output, manifest, record or flow run."""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid

import pytest

from archiver import errors
from archiver.manifest import Manifest
from tests.conftest import TOKEN
from tests.s3_runs import (
    MODEL,
    assert_secret_kept,
    cache_records,
    check_archived,
    flow_run_logs,
    flow_runs_with_dest,
    flow_state,
    get_object,
    read_flow_run,
)

pytestmark = pytest.mark.s3


# -- CLI: storage options or the AWS environment; the secret stays out of everything ---------


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
    manifest = Manifest.from_json(get_object(server, bucket, manifest_key))
    assert manifest.files
    for item in manifest.files:
        data = get_object(server, bucket, f"{prefix}/{item.path}")
        assert hashlib.sha256(data).hexdigest() == item.sha256
    records = cache_records(server, bucket, f"{prefix}/.archiver/cache")
    assert [r["state"] for r in records] == ["archived"]
    assert emulator.stats().creates_accepted == 1

    [run] = asyncio.run(flow_runs_with_dest(prefect_harness, dest))
    assert run.state.is_completed()
    # The non-secret options are the run's parameter (shown in the UI); key and secret are not.
    public = {"endpoint_url": server.endpoint_url, "region": server.region}
    assert run.parameters.get("storage_options") == (
        public if credentials == "storage-options" else None
    )
    logs = asyncio.run(flow_run_logs(prefect_harness, run.id))
    assert any("archived" in message for message in logs)
    assert_secret_kept(
        server.secret,
        done.stdout,
        done.stderr,
        get_object(server, bucket, manifest_key).decode(),
        json.dumps(records),
        json.dumps(run.parameters),
        json.dumps(run.model_dump(mode="json")),
        *logs,
    )
    assert_secret_kept(TOKEN, done.stdout, done.stderr, json.dumps(run.parameters))


# -- credentials from a Prefect AwsCredentials block (prefect-aws, the `aws` extra) ---------


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

    flow_run_id, summary = flow_state(run_flow, MODEL, {"prompt": "block"}, dest=dest)
    assert not isinstance(summary, BaseException), repr(summary)
    check_archived(server, seaweedfs_bucket, "from-block", summary)
    records = cache_records(server, seaweedfs_bucket, "from-block/.archiver/cache")
    assert [r["state"] for r in records] == ["archived"]
    run = asyncio.run(read_flow_run(prefect_harness, flow_run_id))
    assert run.parameters["dest"] == dest and not run.parameters.get("storage_options")
    manifest_key = summary.manifest_url.removeprefix(f"s3://{seaweedfs_bucket}/")
    manifest = get_object(server, seaweedfs_bucket, manifest_key)
    assert_secret_kept(
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
