"""The webhook receiver under a burst, over real HTTP against the emulator: acks never wait for
archives, at most ARCHIVER_WEBHOOK_CONCURRENCY archives run at once, every prediction is archived
once, a restart resumes the durable backlog oldest first at the cap, an unknown prediction is
retried a bounded number of times and then recorded failed, a permanent error at once; with Prefect, groups of archives are
`archive-webhooks` flow runs whose artifacts show what they archived, each archive an event."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from archiver.retry import RetryPolicies
from archiver.runtime import Runtime
from archiver.settings import Settings
from archiver.webhooks import Dispatcher, Receiver, WebhookInbox, WebhookVerifier
from archiver.webhooks.dispatch import ArchiveJob
from archiver.webhooks.serve import answering, bind, existing_job
from tests.test_webhooks_receiver import _manifests, _signed
from tests.waiting import wait_until

PATH = "/webhooks/replicate"
SENDERS = 8


class Watched:
    """Wraps the real archive job: counts archives in flight, records the order ids start in,
    and holds every archive at `gate` (when given) until the test opens it."""

    def __init__(self, job: ArchiveJob, gate: asyncio.Event | None = None) -> None:
        self.job, self.gate = job, gate
        self.in_flight = self.most = 0
        self.started: list[str] = []
        self._changed = asyncio.Event()

    async def reached(self, in_flight: int) -> None:
        """Wait until `in_flight` archives run."""
        async with asyncio.timeout(60):
            while self.in_flight != in_flight:
                self._changed.clear()
                await self._changed.wait()

    async def __call__(self, ids: list[str]):  # type: ignore[no-untyped-def]
        self.in_flight += len(ids)
        self.most = max(self.most, self.in_flight)
        self.started.extend(ids)
        self._changed.set()
        try:
            if self.gate is not None:
                await self.gate.wait()
            return await self.job(ids)
        finally:
            self.in_flight -= len(ids)


class Reports:
    """The receiver's report lines (written from its queue thread); `until` awaits a count."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._loop = asyncio.get_running_loop()
        self._changed = asyncio.Event()

    def __call__(self, line: str) -> None:
        self.lines.append(line)
        self._loop.call_soon_threadsafe(self._changed.set)

    async def until(self, predicate: Callable[[list[str]], bool], timeout: float = 120) -> None:
        async with asyncio.timeout(timeout):
            while not predicate(self.lines):
                self._changed.clear()
                await self._changed.wait()


@asynccontextmanager
async def serving(dispatcher: Dispatcher, secret: str) -> AsyncIterator[str]:
    """The real receiver on a free loopback port: answers in their thread, archives with
    `dispatcher` in this loop (`serve.answering`); its URL."""
    receiver = Receiver(
        WebhookVerifier(secret),
        dispatcher.inbox,
        max_body=Settings().webhook_max_body,
        wake=dispatcher.wake,
        report=dispatcher.report,
    )
    sock = bind("127.0.0.1", 0)
    try:
        async with answering(receiver, dispatcher, PATH, sock):
            yield f"http://127.0.0.1:{sock.getsockname()[1]}{PATH}"
    finally:
        sock.close()


def make_dispatcher(
    settings: Settings, store: Path, job: ArchiveJob, report: Reports
) -> Dispatcher:
    """The archive side as `python -m flows webhooks` builds it, over an inbox in `store`."""
    from archiver.storage import open_destination

    return Dispatcher(
        WebhookInbox(open_destination(str(store))),
        job,
        concurrency=settings.webhook_concurrency,
        policy=RetryPolicies.from_settings(settings).webhook_job,
        report=report,
    )


async def deliver(url: str, secret: str, deliveries: list[tuple[str, dict]]) -> list[int]:
    """POST each (webhook id, prediction) signed, from SENDERS concurrent senders; statuses."""
    statuses: dict[int, int] = {}
    queue = list(enumerate(deliveries))

    async def sender(http: httpx.AsyncClient) -> None:
        while queue:
            n, (msg_id, prediction) = queue.pop(0)
            body = json.dumps(prediction).encode()
            answer = await http.post(
                url, content=body, headers=_signed(secret, body, msg_id=msg_id)
            )
            statuses[n] = answer.status_code

    async with httpx.AsyncClient(timeout=30) as http:
        await asyncio.gather(*(sender(http) for _ in range(SENDERS)))
    return [statuses[n] for n in range(len(deliveries))]


def settled(count: int) -> Callable[[list[str]], bool]:
    return lambda lines: sum(": archived" in x or "recorded as failed" in x for x in lines) >= count


@pytest.fixture
def settings(archive_env, monkeypatch) -> Settings:
    monkeypatch.setenv("ARCHIVER_WEBHOOK_CONCURRENCY", "3")
    return Settings()


@pytest.mark.slow
def test_burst_acks_at_once_archives_each_once_never_more_than_the_cap(
    settings, archive_env, emulator, tmp_path
):
    """150 deliveries + 15 duplicates from 8 senders while every archive is held: all answered
    (202 / 200), 3 archives started; then each prediction is archived exactly once, 3 at most."""
    made = [emulator.add_prediction(age_seconds=5) for _ in range(150)]
    deliveries = [(f"msg_{p['id']}", p) for p in made]
    deliveries += deliveries[::10]  # redelivered: same webhook-id, same body

    async def scenario() -> None:
        runtime = Runtime.build(settings, dest=str(archive_env))
        gate, reports = asyncio.Event(), Reports()
        job = Watched(existing_job(runtime), gate)
        dispatcher = make_dispatcher(settings, tmp_path / "inbox", job, reports)
        try:
            async with serving(dispatcher, emulator.webhook_secret) as url:
                statuses = await deliver(url, emulator.webhook_secret, deliveries)
                # Every answer came back while no archive could finish.
                assert statuses == [202] * 150 + [200] * 15
                await job.reached(3)
                assert _manifests(archive_env) == []
                assert dispatcher.inbox.backlog() == 150
                gate.set()
                await reports.until(settled(150))
            assert job.most == 3 and dispatcher.max_in_flight == 3
            assert sorted(job.started) == sorted(p["id"] for p in made)  # each id once
            assert dispatcher.inbox.backlog() == 0
        finally:
            await runtime.aclose()

    asyncio.run(scenario())
    manifests = [json.loads(m.read_text())["prediction_id"] for m in _manifests(archive_env)]
    assert sorted(manifests) == sorted(p["id"] for p in made)


@pytest.mark.slow
def test_restart_resumes_the_backlog_oldest_first_at_the_cap(
    settings, archive_env, emulator, tmp_path
):
    """40 deliveries accepted by a receiver that archives nothing before it stops: the next one
    archives all 40 in the order they arrived, 3 at a time at most, each once."""
    made = [emulator.add_prediction(age_seconds=5) for _ in range(40)]

    async def scenario() -> Watched:
        runtime = Runtime.build(settings, dest=str(archive_env))
        try:
            first = Watched(existing_job(runtime), asyncio.Event())  # never opened
            dispatcher = make_dispatcher(settings, tmp_path / "inbox", first, Reports())
            async with serving(dispatcher, emulator.webhook_secret) as url:
                for prediction in made:  # one at a time: the arrival order is known
                    statuses = await deliver(
                        url, emulator.webhook_secret, [("m" + prediction["id"], prediction)]
                    )
                    assert statuses == [202]
                await first.reached(3)
            assert _manifests(archive_env) == []  # stopped with 3 running: they stay queued
            reports = Reports()
            second = Watched(existing_job(runtime))
            dispatcher = make_dispatcher(settings, tmp_path / "inbox", second, reports)
            async with serving(dispatcher, emulator.webhook_secret):
                await reports.until(settled(40))
            assert dispatcher.max_in_flight <= 3
            return second
        finally:
            await runtime.aclose()

    second = asyncio.run(scenario())
    assert second.started == [p["id"] for p in made]
    assert 2 <= second.most <= 3
    assert len(_manifests(archive_env)) == 40


def deliver_and_settle(
    settings: Settings, archive_env: Path, emulator, inbox: Path, pairs: list[tuple[str, dict]]
) -> Dispatcher:
    """Deliver (webhook id, prediction) pairs to a receiver archiving in process, accepted
    (202 each), and return its dispatcher once each one is archived or recorded failed."""

    async def scenario() -> Dispatcher:
        runtime = Runtime.build(settings, dest=str(archive_env))
        reports = Reports()
        dispatcher = make_dispatcher(settings, inbox, existing_job(runtime), reports)
        try:
            async with serving(dispatcher, emulator.webhook_secret) as url:
                statuses = await deliver(url, emulator.webhook_secret, pairs)
                assert statuses == [202] * len(pairs)
                await reports.until(settled(len(pairs)))
        finally:
            await runtime.aclose()
        return dispatcher

    return asyncio.run(scenario())


def recorded(dispatcher: Dispatcher, webhook_id: str) -> tuple[str, int, str]:
    """A delivery's inbox record: (state, attempts, outcome)."""
    record = dispatcher.inbox.get(webhook_id)
    assert record is not None
    return record.state, record.attempts, record.outcome or ""


@pytest.fixture
def three_attempts(archive_env, monkeypatch) -> None:
    """ARCHIVER_WEBHOOK_ATTEMPTS 3, no delay between them."""
    monkeypatch.setenv("ARCHIVER_WEBHOOK_ATTEMPTS", "3")
    monkeypatch.setenv("ARCHIVER_RETRY_DELAY", "0")


def test_unknown_prediction_is_retried_a_bounded_number_of_times_then_failed(
    three_attempts, archive_env, emulator, tmp_path
):
    """A signed delivery for an id the API answers 404 for: 3 attempts (ARCHIVER_WEBHOOK_ATTEMPTS),
    then the delivery is recorded failed and leaves the queue; a known one beside it is archived."""
    known = emulator.add_prediction(age_seconds=5)
    unknown = {**known, "id": "unknownprediction00000000"}
    pairs = [("m-unknown", unknown), ("m-known", known)]
    dispatcher = deliver_and_settle(Settings(), archive_env, emulator, tmp_path / "inbox", pairs)
    state, attempts, outcome = recorded(dispatcher, "m-unknown")
    assert (state, attempts) == ("failed", 3) and "not found" in outcome
    assert emulator.stats().read_ids.count(unknown["id"]) == 3
    assert recorded(dispatcher, "m-known")[0] == "done"
    assert dispatcher.inbox.backlog() == 0


def test_a_permanent_error_is_recorded_failed_at_the_first_attempt(
    three_attempts, archive_env, emulator, tmp_path, monkeypatch
):
    """A prediction whose output URL is refused (its host is not an allowed delivery host: a
    permanent HostNotAllowed) is recorded failed after 1 attempt of 3, read once; an unknown id
    delivered beside it is still tried all 3 times."""
    monkeypatch.setenv("REPLICATE_DELIVERY_HOSTS", "delivery.example.org")
    refused = emulator.add_prediction(age_seconds=5)
    pairs = [("m-refused", refused), ("m-unknown", {**refused, "id": "unknownprediction01"})]
    dispatcher = deliver_and_settle(Settings(), archive_env, emulator, tmp_path / "inbox", pairs)
    state, attempts, outcome = recorded(dispatcher, "m-refused")
    assert (state, attempts) == ("failed", 1) and "not in REPLICATE_DELIVERY_HOSTS" in outcome
    assert emulator.stats().read_ids.count(refused["id"]) == 1
    assert recorded(dispatcher, "m-unknown")[:2] == ("failed", 3)
    assert dispatcher.inbox.backlog() == 0 and _manifests(archive_env) == []


@pytest.mark.slow
def test_with_prefect_groups_are_flow_runs_whose_artifacts_show_each_archive(
    prefect_harness, settings, archive_env, emulator, tmp_path
):
    """40 deliveries, cap 4, the receiver's Prefect job: every prediction archived once, by
    `archive-webhooks` flow runs of at most 4 ids each, whose summaries name every id; each
    archive is one `archiver.prediction.archived` event with the manifest's margin."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        FlowFilter,
        FlowFilterName,
    )

    from flows.webhooks import flow_group, flow_job

    settings = settings.model_copy(update={"webhook_concurrency": 4})
    made = [emulator.add_prediction(age_seconds=5) for _ in range(40)]
    ids = [p["id"] for p in made]

    async def scenario() -> tuple[Watched, list, dict[str, str]]:
        reports, job = Reports(), Watched(flow_job(str(archive_env)))
        dispatcher = make_dispatcher(settings, tmp_path / "inbox", job, reports)
        dispatcher.group = flow_group(4)
        async with serving(dispatcher, emulator.webhook_secret) as url:
            statuses = await deliver(
                url, emulator.webhook_secret, [(f"m{i}", p) for i, p in enumerate(made)]
            )
            assert statuses == [202] * 40
            await reports.until(settled(40), timeout=300)
        async with get_client() as client:
            runs = await client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=["archive-webhooks"]))
            )
            summaries = {}
            for run in runs:
                for artifact in await client.read_artifacts(
                    artifact_filter=ArtifactFilter(
                        flow_run_id=ArtifactFilterFlowRunId(any_=[run.id])
                    ),
                ):
                    if artifact.key == "archive-webhooks-summary":
                        summaries[str(run.id)] = str(artifact.data)
        return job, runs, summaries

    job, runs, summaries = asyncio.run(scenario())
    assert job.most <= 4
    # The session's server also holds other tests' runs of the flow: this test's name its ids.
    runs = [run for run in runs if set(run.parameters["prediction_ids"]) & set(ids)]
    grouped = [i for run in runs for i in run.parameters["prediction_ids"]]
    assert sorted(grouped) == sorted(ids)  # every id in one run, none twice
    assert all(len(run.parameters["prediction_ids"]) <= 4 for run in runs)
    assert len(runs) < 40  # grouped: fewer runs than predictions
    for run in runs:
        assert all(f"`{i}`" in summaries[str(run.id)] for i in run.parameters["prediction_ids"])
    manifests = [json.loads(m.read_text()) for m in _manifests(archive_env)]
    assert len(manifests) == 40
    events = wait_until(
        lambda: (found := asyncio.run(_archived_events(ids))) and len(found) >= 40 and found,
        timeout=60,
        what="40 archiver.prediction.archived events",
        interval=0.2,
    )
    margins = {e.resource["prefect.resource.name"]: e.payload["margin_seconds"] for e in events}
    assert len(events) == 40  # one each
    assert margins == {m["prediction_id"]: m["retention"]["margin_seconds"] for m in manifests}


async def _archived_events(ids: list[str]) -> list:
    """The `archiver.prediction.archived` events of these predictions at the Prefect server."""
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

    event_filter = EventFilter(
        event=EventNameFilter(name=["archiver.prediction.archived"]),
        resource=EventResourceFilter(id=[f"replicate.prediction.{i}" for i in ids]),
    )
    async with get_client() as client:
        return list((await client.read_events(filter=event_filter, limit=50)).events)
