"""Credentials never in --dest: userinfo in a store URL is refused, masked, before anything."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from archiver.errors import ConfigurationError
from archiver.storage import open_destination
from archiver.storage.location import refuse_credentials
from tests.test_cli_messages import flows, one_line  # noqa: F401 - the dead-Prefect CLI fixture
from tests.waiting import wait_until

PASSWORD = "hunter2PW"
REFUSED = [
    (f"memory://u:{PASSWORD}@x/y", "memory://***@x/y"),
    (f"http://bob:{PASSWORD}@127.0.0.1:9/x", "http://***@127.0.0.1:9/x"),
    (f"s3://AKIAEXAMPLE:se/{PASSWORD}+r@bucket/p", "s3://***@bucket/p"),
    (f"simplecache::s3://AKIAEXAMPLE:{PASSWORD}@bucket/p", "simplecache::s3://***@bucket/p"),
    (f"memory://{PASSWORD}@x/y", "memory://***@x/y"),
]
MODEL = "black-forest-labs/flux-schnell"


@pytest.mark.parametrize(("url", "masked"), REFUSED)
def test_userinfo_is_refused_masked_with_where_credentials_go(url, masked):
    """One line naming the setting and the masked URL, saying where credentials go; opening
    the destination refuses it the same way."""
    for refuse, setting in (
        (lambda: refuse_credentials(url, setting="--dest"), "--dest "),
        (lambda: open_destination(url), "destination "),
    ):
        with pytest.raises(ConfigurationError) as caught:
            refuse()
        message = str(caught.value)
        assert message.startswith(setting + masked) and "\n" not in message
        assert PASSWORD not in message
        assert "AWS_ACCESS_KEY_ID" in message and "--storage-option" in message
        assert "ARCHIVER_AWS_CREDENTIALS_BLOCK" in message


@pytest.mark.parametrize(
    "url",
    [
        "s3://bucket/user@example.com/a",
        "http://host:8080/a@b",
        "/local/a:b@c",
        "memory://x/y",
        None,
    ],
)
def test_urls_without_userinfo_pass(url):
    """An @ in a path, a port, a local path with a colon: not credentials."""
    refuse_credentials(url)


def _no_password(result) -> None:
    assert PASSWORD not in result.stdout and PASSWORD not in result.stderr


@pytest.mark.parametrize(("url", "masked"), REFUSED[:3])
def test_run_refuses_dest_before_prefect_or_replicate(flows, emulator, archive_env, url, masked):  # noqa: F811
    """`run --dest URL`: exit 1, one line, no password anywhere, nothing asked of Replicate
    (no Basic auth sent to the emulator either) and the (dead) Prefect API never needed."""
    result = flows("run", MODEL, "-i", "prompt=x", "--dest", url)
    one_line(result, "--dest", masked, "AWS_ACCESS_KEY_ID")
    _no_password(result)
    stats = emulator.stats()
    assert stats.create_attempts == 0 and stats.reads == 0 and stats.downloads == []
    assert not archive_env.exists() or PASSWORD not in _all_text(archive_env)


def test_every_command_and_setting_refuses(flows, emulator, tmp_path):  # noqa: F811
    """batch, archive, sweep, webhooks --dest; ARCHIVER_DEST, ARCHIVER_CACHE_URL; a batch file
    URL: each one line naming its setting, never the password, nothing created."""
    url, masked = REFUSED[0]
    batch = tmp_path / "b.jsonl"
    batch.write_text('{"prompt": "x"}\n')
    cases = [
        (("batch", str(batch), "--model", MODEL, "--dest", url), {}, "--dest"),
        (("archive", "p1", "--dest", url), {}, "--dest"),
        (("sweep", "--dest", url), {}, "--dest"),
        (("webhooks", "--dest", url), {}, "--dest"),
        (("run", MODEL, "-i", "prompt=x"), {"ARCHIVER_DEST": url}, "ARCHIVER_DEST"),
        (("run", MODEL, "-i", "prompt=x"), {"ARCHIVER_CACHE_URL": url}, "ARCHIVER_CACHE_URL"),
        (("batch", url + ".jsonl", "--model", MODEL), {}, "batch file"),
    ]
    for args, env, setting in cases:
        result = flows(*args, env=env)
        one_line(result, setting, masked)
        _no_password(result)
    assert emulator.stats().create_attempts == 0 and emulator.stats().list_calls == 0


def _all_text(root) -> str:
    return "".join(p.read_text(errors="replace") for p in root.rglob("*") if p.is_file())


def test_flow_run_refuses_and_keeps_no_password(prefect_harness, archive_env, emulator):
    """A flow run given a dest with userinfo (as a UI or API run would be) fails before any
    prediction; its stored parameters, logs and events hold the URL masked, never the password."""
    from flows.archive_prediction import archive_prediction
    from flows.batch import archive_batch

    url, masked = REFUSED[2]
    with pytest.raises(ConfigurationError, match=r"dest s3://\*\*\*@bucket/p"):
        asyncio.run(archive_prediction(model=MODEL, input={"prompt": "x"}, dest=url))
    with pytest.raises(ConfigurationError, match=r"file s3://\*\*\*@bucket/p"):
        asyncio.run(archive_batch(file=url, model=MODEL))
    assert emulator.stats().create_attempts == 0

    def read(path: str, body: dict) -> str:
        response = httpx.post(f"{prefect_harness}/{path}", json=body, timeout=30)
        response.raise_for_status()
        return response.text

    runs = json.loads(read("flow_runs/filter", {"limit": 200, "sort": "START_TIME_DESC"}))
    refused = [r for r in runs if masked in json.dumps(r["parameters"])]
    assert len(refused) == 2
    ids = {r["id"] for r in refused}

    def failed_events() -> str:
        resources = [f"prefect.flow-run.{i}" for i in ids]
        text = read("events/filter", {"filter": {"resource": {"id": resources}}, "limit": 50})
        return text if all(f'{r}"' in text and "Failed" in text for r in resources) else ""

    events = wait_until(failed_events, timeout=30, what="the refused runs' events")

    def refusal_logs() -> str:
        text = read("logs/filter", {"logs": {"flow_run_id": {"any_": list(ids)}}})
        return text if masked in text else ""

    logs = wait_until(refusal_logs, timeout=30, what="the refused runs' logs")
    for text in (json.dumps(runs), logs, events):
        assert PASSWORD not in text
    assert not archive_env.exists() or PASSWORD not in _all_text(archive_env)


def test_declared_deployment_parameters_are_refused(tmp_path):
    """A prefect.yaml deployment (or schedule) parameter with userinfo is refused when read."""
    from deployments.declare import load_specs

    url, masked = REFUSED[2]
    declared = tmp_path / "prefect.yaml"
    declared.write_text(
        "deployments:\n  - name: nightly\n    entrypoint: flows.batch.archive_batch\n"
        f"    parameters: {{file: x.jsonl}}\n    schedules:\n"
        f"      - cron: '0 2 * * *'\n        parameters: {{dest: '{url}'}}\n"
    )
    with pytest.raises(ConfigurationError, match="deployment nightly parameter dest") as caught:
        load_specs(declared)
    assert masked in str(caught.value) and PASSWORD not in str(caught.value)
