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
from cli import head_start
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
    left = runtime(lambda rt: gen.cancel_unclaimed(req, api=rt.api))
    assert (left.id, left.status) == (made.id, "canceled")
    assert emulator.stats().cancels == [made.id]
    assert not gen.unclaimed(req)


@pytest.mark.parametrize(
    ("environment", "possible"),
    [
        ({}, True),
        ({"ARCHIVER_TOKEN_SECRET_BLOCK": "replicate-token"}, True),  # the token is set too
        ({"ARCHIVER_TOKEN_SECRET_BLOCK": "replicate-token", "REPLICATE_API_TOKEN": ""}, False),
        ({"ARCHIVER_AWS_CREDENTIALS_BLOCK": "aws"}, False),
    ],
)
def test_nothing_is_created_ahead_where_prefect_blocks_hold_credentials(
    archive_env, monkeypatch, environment, possible
):
    """A token or storage credentials read from Prefect blocks (by the flow run only): the
    create waits for the flow run, which has them."""
    for key, value in environment.items():
        if value:
            monkeypatch.setenv(key, value)
        else:
            monkeypatch.delenv(key)
    assert head_start.possible(Settings()) is possible


@pytest.mark.parametrize("emulator", [{"processing_seconds": 3}], indirect=True)
def test_a_record_moved_on_meanwhile_cancels_ours_and_the_run_goes_on(
    runtime, emulator, monkeypatch
):
    """Another process recorded another prediction for the request after ours was created:
    ours is cancelled (no one would take it), and the run resumes the recorded one."""
    monkeypatch.setenv("ARCHIVER_WAIT_SECONDS", "1")
    req = request("moved on")
    ours = runtime(lambda rt: ahead(rt, req))

    async def record_another(rt: Runtime):
        other = await rt.api.create(req)
        record = rt.cache.get(req.cache_key)
        rt.cache.put(record.model_copy(update={"prediction_id": other.id}))
        return other

    other = runtime(record_another)
    ready = runtime(lambda rt: generate(rt, req))
    assert ready.prediction.id == other.id and not ready.created and not ready.ahead
    assert emulator.stats().cancels == [ours.id]


def test_a_step_that_fails_after_taking_it_leaves_it_to_the_retry(runtime, emulator, monkeypatch):
    """The step fails (a store outage) after the create ahead settled: its retry takes the same
    prediction as its own create; nothing is created again."""
    req = request("retried")
    made = runtime(lambda rt: ahead(rt, req))
    real = gen._look_up
    calls = []

    def flaky(*args):
        calls.append(args)
        if len(calls) == 1:
            raise OSError("the cache store is down")
        return real(*args)

    monkeypatch.setattr(gen, "_look_up", flaky)
    with pytest.raises(OSError, match="down"):
        runtime(lambda rt: generate(rt, req))
    assert gen.unclaimed(req)
    ready = runtime(lambda rt: generate(rt, req))
    assert ready.prediction.id == made.id and ready.created and ready.ahead
    assert emulator.stats().creates_accepted == 1


@pytest.mark.parametrize("emulator", [{"processing_seconds": 60}], indirect=True)
def test_a_command_ending_before_its_run_took_the_prediction_cancels_it(
    archive_env, emulator, monkeypatch
):
    """`HeadStart.close` with nothing taken: a prediction still running is cancelled."""
    monkeypatch.setenv("ARCHIVER_WAIT_SECONDS", "1")
    started = head_start.HeadStart(request("left running"), str(archive_env), {})
    started.begin()
    started.close()
    [created] = emulator.stats().created_ids
    assert emulator.stats().cancels == [created]
    assert not gen._ahead


def test_a_prediction_that_already_succeeded_is_named_and_archived_by_the_next_run(
    archive_env, emulator, capsys, runtime
):
    """`HeadStart.close` with nothing taken and the prediction already succeeded: one note
    names it; the next run of the request archives it without paying again."""
    req = request("left succeeded")
    started = head_start.HeadStart(req, str(archive_env), {})
    started.begin()
    started.close()
    [created] = emulator.stats().created_ids
    assert emulator.stats().cancels == []
    note = capsys.readouterr().err.strip()
    assert note.startswith(f"note: prediction {created} succeeded") and "\n" not in note
    ready = runtime(lambda rt: generate(rt, req))
    assert ready.prediction.id == created and not ready.created
    assert emulator.stats().creates_accepted == 1


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/hook",
        "https://example.com/a\tb",
        "https://example.com/a b",
        "https://example.com/" + "x" * 2030,
        "https://example.com/" + "x" * 2029,
        "ftp://example.com/hook",
    ],
)
def test_the_cli_refuses_every_webhook_the_flow_would(url):
    """`--webhook` is checked as the flow's parameter schema checks it, before anything is paid
    (a prediction created ahead must never meet a flow that refuses its parameters)."""
    from pydantic import TypeAdapter, ValidationError

    from archiver.errors import ConfigurationError
    from cli import checks
    from flows.archive_prediction import WebhookParam

    try:
        TypeAdapter(WebhookParam).validate_python(url)
        flow_accepts = True
    except ValidationError:
        flow_accepts = False
    try:
        checks.webhook(url)
        cli_accepts = True
    except ConfigurationError:
        cli_accepts = False
    assert cli_accepts == flow_accepts


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


@pytest.mark.prefect
def test_two_runs_of_one_input_at_once_pay_once_and_one_says_so(cli, emulator, tmp_path):
    """Two identical `run`s started together (each creating ahead): one prediction, and exactly
    one of the two summaries counts it as new, also when the other run archived it first."""
    import re
    from concurrent.futures import ThreadPoolExecutor

    args = ("run", MODEL, "-i", "prompt=twins", "--dest", str(tmp_path / "a"))
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: cli(*args), range(2)))
    assert [r.returncode for r in results] == [0, 0], [r.stderr for r in results]
    assert emulator.stats().creates_accepted == 1
    text = [" ".join(r.stdout.split()) for r in results]
    paid = [int(re.search(r"(\d+) new prediction", t).group(1)) for t in text]
    assert sorted(paid) == [0, 1], text


@pytest.mark.parametrize(
    ("cached", "created", "says"),
    [
        (False, 1, "1 new prediction(s), 0 re-fetch(es)"),
        (True, 0, "from cache, 0 new predictions"),
        (True, 1, "1 new prediction(s), archived meanwhile by another run"),
    ],
)
def test_the_summary_line_counts_what_this_command_paid(capsys, cached, created, says):
    """A run that paid for the prediction says so, also when a twin run archived it first."""
    from archiver.pipeline import RunSummary
    from cli.console import print_summary

    summary = RunSummary(
        model=MODEL,
        cache_key="k",
        prediction_id="p1",
        cached=cached,
        predictions_created=created,
        refetches=0,
        manifest_url="/a/manifest.json",
        files=[],
    )
    print_summary([summary])
    assert says in " ".join(capsys.readouterr().out.split())
