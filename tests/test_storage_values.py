"""Storage options reach a flow run as values: the non-secret ones as its parameter, secrets as
this process's own options, never a flow parameter nor the process environment."""

from __future__ import annotations

import asyncio
import json
import os

import pytest

from archiver.storage.options import split_secret

MODEL = "black-forest-labs/flux-schnell"


@pytest.fixture
def process_options(monkeypatch):
    """This process's own storage options, empty for the test and restored after it."""
    import flows.settings

    monkeypatch.setattr(flows.settings, "_process_options", {})
    return flows.settings


def test_secrets_are_split_by_name_and_by_content():
    """key, secret, token, connection_string and an object holding a secret are secret;
    endpoint, region and timeouts are not."""
    public, secret = split_secret(
        {
            "endpoint_url": "http://s3.local:9000",
            "region": "eu-west-3",
            "client_kwargs.region_name": "eu-west-3",
            "connect_timeout": "5",
            "key": "AKIA1234",
            "secret": "s3cr3t",
            "token": "t0k3n",
            "connection_string": "AccountKey=abc",
            "client_kwargs": '{"aws_secret_access_key": "nested-secret"}',
        }
    )
    assert public == {
        "endpoint_url": "http://s3.local:9000",
        "region": "eu-west-3",
        "client_kwargs.region_name": "eu-west-3",
        "connect_timeout": "5",
    }
    assert set(secret) == {"key", "secret", "token", "connection_string", "client_kwargs"}


def test_cli_options_leave_the_environment_alone(process_options, monkeypatch):
    """`--storage-option`s: secrets reach the flow's settings (over ARCHIVER_STORAGE_OPTIONS),
    not os.environ; the non-secret ones are the flow's parameter."""
    from cli import runs

    monkeypatch.setenv("ARCHIVER_STORAGE_OPTIONS", '{"key": "from-env", "profile": "p"}')
    before = dict(os.environ)
    storage = runs.storage(["key=from-cli", "secret=s3cr3t", "endpoint_url=http://s3.local"])
    assert dict(os.environ) == before
    assert storage.public == {"endpoint_url": "http://s3.local"}
    settings = asyncio.run(process_options.with_storage_credentials())
    assert settings.storage_options == {"key": "from-cli", "secret": "s3cr3t", "profile": "p"}


@pytest.mark.s3
def test_batch_to_s3_with_storage_options_keeps_the_secret_out(
    cli, emulator, moto_s3, moto_bucket, prefect_harness
):
    """`batch s3://.../in.jsonl --dest s3://... --storage-option ...`: the file is read and the
    item archived with the options; the run's parameter holds the non-secret ones only."""
    import fsspec

    options = moto_s3.storage_options()
    with fsspec.open(
        f"s3://{moto_bucket}/in.jsonl",
        "w",
        key=options["key"],
        secret=options["secret"],
        client_kwargs={"endpoint_url": options["endpoint_url"], "region_name": options["region"]},
    ) as file:
        file.write(json.dumps({"prompt": "from s3", "seed": 3}) + "\n")
    dest = f"s3://{moto_bucket}/archive"
    pairs = [
        item for name, value in options.items() for item in ("--storage-option", f"{name}={value}")
    ]
    done = cli(
        "batch", f"s3://{moto_bucket}/in.jsonl", "--model", MODEL, "--dest", dest, "--json", *pairs
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert [item["outcome"] for item in json.loads(done.stdout)["items"]] == ["archived"]
    assert moto_s3.secret not in done.stdout + done.stderr
    [run] = asyncio.run(_flow_runs_with_dest(prefect_harness, dest))
    assert run.parameters["storage_options"] == {
        "endpoint_url": options["endpoint_url"],
        "region": options["region"],
    }
    assert moto_s3.secret not in json.dumps(run.parameters)


async def _flow_runs_with_dest(api_url: str, dest: str) -> list:
    """Every flow run the Prefect API at `api_url` knows with `dest` as its parameter."""
    from prefect.client.orchestration import PrefectClient

    async with PrefectClient(api_url) as client:
        runs = await client.read_flow_runs(limit=200)
    return [run for run in runs if run.parameters.get("dest") == dest]
