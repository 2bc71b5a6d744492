"""`run` creates its prediction while Prefect loads: once, and its flow run takes it as its own."""

from __future__ import annotations

import asyncio
import json

import pytest

from archiver import generate as gen
from archiver.errors import InvalidRequest
from archiver.prediction import ModelRef, PredictionRequest
from archiver.runtime import Runtime
from archiver.settings import Settings
from tests.prefect_server import run_logs

MODEL = "black-forest-labs/flux-schnell"


def request(prompt: str, model: str = MODEL) -> PredictionRequest:
    return PredictionRequest(ModelRef.parse(model), {"prompt": prompt})


@pytest.fixture
def runtime(archive_env):
    """A second opener of the same archive, cache and locks: as the CLI's thread and its flow
    run each build their own."""

    async def build_and(call):
        rt = Runtime.build(Settings(), dest=str(archive_env))
        try:
            return await call(rt)
        finally:
            await rt.aclose()

    yield lambda call: asyncio.run(build_and(call))
    assert not gen._ahead, "a test left a create ahead behind"


def ahead(rt: Runtime, req: PredictionRequest):
    return gen.create_ahead(req, api=rt.api, cache=rt.cache, lock=rt.lock)


def generate(rt: Runtime, req: PredictionRequest):
    return gen.generate(req, api=rt.api, cache=rt.cache, lock=rt.lock, dest=rt.dest)


def test_a_run_takes_the_prediction_created_ahead_as_its_own(runtime, emulator):
    """Created ahead, then the run's generate: one prediction, which the run counts as its own
    create (so cancelling the run cancels it)."""
    req = request("ahead")
    made = runtime(lambda rt: ahead(rt, req))
    ready = runtime(lambda rt: generate(rt, req))
    assert ready.prediction.id == made.id
    assert ready.created and ready.ahead
    assert emulator.stats().creates_accepted == 1


def test_a_request_the_cache_knows_is_never_created_ahead(runtime, emulator):
    """A request already recorded: nothing is created ahead; the run decides (a cache hit)."""
    req = request("known")
    runtime(lambda rt: generate(rt, req))
    assert runtime(lambda rt: ahead(rt, req)) is None
    assert emulator.stats().creates_accepted == 1


def test_a_failed_create_is_the_runs_error_and_is_not_tried_again(runtime, emulator):
    """A create that fails ahead (an unknown model: 404) is the run's own error; the run does
    not send a second create."""
    req = request("typo", model="acme/does-not-exist")
    with pytest.raises(InvalidRequest):
        runtime(lambda rt: ahead(rt, req))
    attempts = emulator.stats().create_attempts
    with pytest.raises(InvalidRequest):
        runtime(lambda rt: generate(rt, req))
    assert emulator.stats().create_attempts == attempts
    assert not gen._ahead


def test_a_run_of_another_request_refuses_to_create(runtime, emulator):
    """While a create ahead is announced, a run whose request has another key creates nothing:
    a key that came out different never means paying twice."""
    req = request("announced")
    gen.expect_ahead(req)
    try:
        with pytest.raises(RuntimeError, match="another request"):
            runtime(lambda rt: generate(rt, request("other")))
    finally:
        gen.forget_ahead(req)
    assert emulator.stats().create_attempts == 0


@pytest.mark.parametrize("emulator", [{"processing_seconds": 60}], indirect=True)
def test_a_prediction_no_run_took_is_cancelled(runtime, emulator, monkeypatch):
    """A command that ends before its run took the prediction made ahead cancels it."""
    monkeypatch.setenv("ARCHIVER_WAIT_SECONDS", "1")
    req = request("unclaimed")
    made = runtime(lambda rt: ahead(rt, req))
    assert gen.unclaimed(req)
    assert runtime(lambda rt: gen.cancel_unclaimed(req, api=rt.api)) == made.id
    assert emulator.stats().cancels == [made.id]
    assert not gen.unclaimed(req)


def flow_run_messages(api_url: str, flow_run_url: str) -> list[str]:
    return [entry["message"] for entry in run_logs(api_url, flow_run_url.rsplit("/", 1)[-1])]


@pytest.mark.prefect
def test_the_cli_run_creates_ahead_and_its_flow_run_says_so(
    cli, emulator, tmp_path, prefect_harness
):
    """`python -m flows run`: one prediction, created while the flow run started (its log says
    so), archived as ever."""
    result = cli("run", MODEL, "-i", "prompt=cli ahead", "--dest", str(tmp_path / "a"), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert emulator.stats().creates_accepted == 1
    messages = flow_run_messages(prefect_harness, summary["flow_run_url"])
    wanted = f"created prediction {summary['prediction_id']} (while the flow run started)"
    assert any(m.startswith(wanted) for m in messages), messages


@pytest.mark.prefect
def test_refresh_is_created_by_the_run_itself(cli, emulator, tmp_path, prefect_harness):
    """`--refresh` pays again, once, through the flow run's own create (nothing ahead)."""
    args = ("run", MODEL, "-i", "prompt=refresh", "--dest", str(tmp_path / "a"), "--json")
    assert cli(*args).returncode == 0
    result = cli(*args, "--refresh")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert emulator.stats().creates_accepted == 2
    messages = flow_run_messages(prefect_harness, summary["flow_run_url"])
    assert any(m.startswith(f"created prediction {summary['prediction_id']}: ") for m in messages)
