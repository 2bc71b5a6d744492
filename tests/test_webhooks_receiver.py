"""The webhook receiver (`python -m flows webhooks`) over real HTTP, fed by the emulator's real
signed deliveries: archives what succeeded; forged, stale, malformed, oversized and replayed
deliveries archive nothing; a receiver killed mid-archive is caught up by the next sweep."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from standardwebhooks import Webhook

from tests.conftest import ROOT
from tests.waiting import wait_until

pytestmark = pytest.mark.slow  # receiver processes, killed and restarted

MODEL_PATH = "/v1/models/emulator/image/predictions"
AUTH = {"Authorization": "Bearer other-client-token"}


class ReceiverProcess:
    """`python -m flows webhooks --port 0` in a subprocess; `url` once it listens."""

    def __init__(self, env: dict[str, str], dest: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "flows", "webhooks", "--port", "0", "--dest", str(dest)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.stderr: list[str] = []
        self._url: list[str] = []
        self._ready = threading.Event()
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()
        if not self._ready.wait(60) or not self._url:
            self.kill()
            raise AssertionError(f"receiver did not start: {''.join(self.stderr)}")
        self.url = self._url[0]

    def _read_stdout(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith("listening on "):
                self._url.append(line.split("listening on ", 1)[1].strip())
                self._ready.set()
        self._ready.set()

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.stderr.append(line)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(30)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def receiver_env(archive_env, emulator) -> dict[str, str]:
    """The pipeline environment, without a Prefect server: archives run in the receiver."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    return {**env, "PYTHONPATH": str(ROOT), "ARCHIVER_DOWNLOAD_ATTEMPTS": "2"}


@contextmanager
def receiver(env: dict[str, str], dest: Path) -> Iterator[ReceiverProcess]:
    process = ReceiverProcess(env, dest)
    try:
        yield process
    finally:
        process.stop()


def _wait_until(condition, what: str) -> None:
    wait_until(condition, 60.0, what)


def _manifests(dest: Path) -> list[Path]:
    return [p for p in dest.rglob("manifest.json") if ".archiver" not in p.parts]


def _create_with_webhook(emulator, url: str) -> dict:
    """Another client on the account creates a prediction that notifies the receiver."""
    body = {
        "input": {"prompt": "elsewhere"},
        "webhook": url,
        "webhook_events_filter": ["completed"],
    }
    with httpx.Client(base_url=emulator.base_url, headers=AUTH) as api:
        return api.post(MODEL_PATH, json=body).json()


def _signed(secret: str, body: bytes, *, msg_id: str, at: float | None = None) -> dict:
    moment = datetime.fromtimestamp(time.time() if at is None else at, UTC)
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(moment.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, moment, body.decode()),
    }


def test_receiver_archives_from_the_emulators_signed_delivery(receiver_env, archive_env, emulator):
    """A `completed` delivery of a succeeded prediction is answered 2xx and archived."""
    with receiver(receiver_env, archive_env) as rx:
        created = _create_with_webhook(emulator, rx.url)
        _wait_until(lambda: _manifests(archive_env), "the manifest")
        _wait_until(lambda: any(w["status"] for w in emulator.stats().webhooks), "the answer")
    manifest = json.loads(_manifests(archive_env)[0].read_text())
    assert manifest["prediction_id"] == created["id"]
    assert manifest["cache_key"] == f"prediction:{created['id']}"
    assert [w["status"] for w in emulator.stats().webhooks] == [202]
    assert emulator.stats().creates_accepted == 1  # only the other client's own create


def test_forged_stale_malformed_and_oversized_deliveries_archive_nothing(
    receiver_env, archive_env, emulator
):
    """Bad signature 401, stale timestamp 400, malformed body 400, oversized body 413."""
    made = emulator.add_prediction(age_seconds=5)
    body = json.dumps(made).encode()
    secret = emulator.webhook_secret
    forged_secret = "whsec_" + "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB"
    receiver_env = {**receiver_env, "ARCHIVER_WEBHOOK_MAX_BODY": "65536"}
    with receiver(receiver_env, archive_env) as rx, httpx.Client(timeout=30) as http:
        forged = http.post(rx.url, content=body, headers=_signed(forged_secret, body, msg_id="m1"))
        stale = http.post(
            rx.url, content=body, headers=_signed(secret, body, msg_id="m2", at=time.time() - 600)
        )
        garbage = b'{"not": "a prediction"}'
        malformed = http.post(
            rx.url, content=garbage, headers=_signed(secret, garbage, msg_id="m3")
        )
        big = b'{"id": "x", "status": "succeeded", "pad": "' + b"a" * 70000 + b'"}'
        oversized = http.post(rx.url, content=big, headers=_signed(secret, big, msg_id="m4"))
        unsigned = http.post(rx.url, content=body, headers={"content-type": "application/json"})
        # The real one after all of them: the refused ids were not recorded as seen.
        accepted = http.post(rx.url, content=body, headers=_signed(secret, body, msg_id="m1"))
        _wait_until(lambda: _manifests(archive_env), "the manifest")
    assert (forged.status_code, stale.status_code, malformed.status_code) == (401, 400, 400)
    assert (oversized.status_code, unsigned.status_code) == (413, 400)
    assert accepted.status_code == 202
    assert len(_manifests(archive_env)) == 1


def test_replayed_delivery_does_nothing_also_after_a_restart(receiver_env, archive_env, emulator):
    """The same webhook-id again is answered 200 and downloads nothing, before and after restart."""
    made = emulator.add_prediction(age_seconds=5)
    body = json.dumps(made).encode()
    secret = emulator.webhook_secret
    with receiver(receiver_env, archive_env) as rx, httpx.Client(timeout=30) as http:
        first = http.post(rx.url, content=body, headers=_signed(secret, body, msg_id="msg_1"))
        _wait_until(lambda: _manifests(archive_env), "the manifest")
        _wait_until(lambda: "archived" in "".join(rx.stderr), "the job to finish")
        downloads = len(emulator.stats().downloads)
        again = http.post(rx.url, content=body, headers=_signed(secret, body, msg_id="msg_1"))
    with receiver(receiver_env, archive_env) as rx, httpx.Client(timeout=30) as http:
        after_restart = http.post(
            rx.url, content=body, headers=_signed(secret, body, msg_id="msg_1")
        )
    assert first.status_code == 202
    assert again.status_code == 200 and again.json()["duplicate"] is True
    assert after_restart.status_code == 200 and after_restart.json()["duplicate"] is True
    assert len(emulator.stats().downloads) == downloads


def test_events_other_than_a_success_archive_nothing(receiver_env, archive_env, emulator):
    """A failed prediction's `completed` delivery is answered 200 and archives nothing."""
    made = emulator.add_prediction(status="failed", age_seconds=5)
    body = json.dumps(made).encode()
    with receiver(receiver_env, archive_env) as rx, httpx.Client(timeout=30) as http:
        answer = http.post(
            rx.url, content=body, headers=_signed(emulator.webhook_secret, body, msg_id="f1")
        )
    assert answer.status_code == 200 and answer.json()["accepted"] is False
    assert _manifests(archive_env) == [] and emulator.stats().downloads == []


def test_receiver_killed_mid_archive_is_caught_up_by_the_next_sweep(
    receiver_env, archive_env, emulator
):
    """Delivery accepted, receiver killed before the archive: the next sweep archives it."""
    import asyncio
    from datetime import timedelta

    from archiver.runtime import Runtime
    from archiver.settings import Settings
    from archiver.sweep import sweep

    emulator.set_faults(fail_downloads=10_000)  # the receiver's archive cannot finish
    with receiver(receiver_env, archive_env) as rx:
        created = _create_with_webhook(emulator, rx.url)
        _wait_until(lambda: [w["status"] for w in emulator.stats().webhooks] == [202], "2xx")
        _wait_until(lambda: emulator.stats().downloads, "the archive to start")
        rx.kill()
    assert _manifests(archive_env) == []
    emulator.set_faults(fail_downloads=0)

    async def next_sweep():
        runtime = Runtime.build(Settings(), dest=str(archive_env))
        try:
            return await sweep(runtime, since=timedelta(minutes=15))
        finally:
            await runtime.aclose()

    report = asyncio.run(next_sweep())
    assert [(p.prediction_id, p.outcome) for p in report.predictions] == [
        (created["id"], "archived")
    ]
    assert len(_manifests(archive_env)) == 1


def test_restarted_receiver_resumes_the_job_a_killed_one_accepted(
    receiver_env, archive_env, emulator
):
    """Delivery accepted, receiver killed mid-archive: the next receiver finishes the archive."""
    emulator.set_faults(fail_downloads=10_000)
    with receiver(receiver_env, archive_env) as rx:
        created = _create_with_webhook(emulator, rx.url)
        _wait_until(lambda: [w["status"] for w in emulator.stats().webhooks] == [202], "2xx")
        _wait_until(lambda: emulator.stats().downloads, "the archive to start")
        rx.kill()
    assert _manifests(archive_env) == []
    emulator.set_faults(fail_downloads=0)
    with receiver(receiver_env, archive_env) as rx:
        _wait_until(lambda: _manifests(archive_env), "the resumed archive")
        _wait_until(lambda: "archived" in "".join(rx.stderr), "the job to be marked done")
    manifest = json.loads(_manifests(archive_env)[0].read_text())
    assert manifest["prediction_id"] == created["id"]
    assert len(emulator.stats().webhooks) == 1  # no redelivery was needed
