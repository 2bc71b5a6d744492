"""The documented automation (docs/automations/deadline-alerts.yaml), created with `prefect
automation create --from-file` on a real open-source Prefect server, notifies for a lost
prediction and a low margin, and not for a prediction archived in good time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from http.server import BaseHTTPRequestHandler

import pytest
import yaml

from tests.conftest import ROOT
from tests.loopback import serving
from tests.prefect_server import PREFECT, PrefectServer
from tests.waiting import wait_until

pytestmark = [pytest.mark.prefect, pytest.mark.server]

AUTOMATION = ROOT / "docs" / "automations" / "deadline-alerts.yaml"


@pytest.fixture(scope="module")
def triggers_server(tmp_path_factory: pytest.TempPathFactory, prefect_template):
    """A Prefect server of this module's own, with the triggers service that automations need
    (the session's server leaves it off with the other loop services it has no use for)."""
    workdir = tmp_path_factory.mktemp("prefect-triggers")
    server = PrefectServer(workdir, template=prefect_template, services=False)
    server.process.env["PREFECT_SERVER_SERVICES_TRIGGERS_ENABLED"] = "true"
    try:
        yield server.start()
    finally:
        server.stop()


class _Notifications(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.received.append(json.loads(body))  # type: ignore[attr-defined]
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def notifications():
    """A webhook on loopback that records every notification posted to it."""
    with serving(_Notifications) as server:
        server.received = []  # type: ignore[attr-defined]
        yield server


def _notification_block(api_url: str, url: str) -> str:
    """A custom-webhook notification block on the server; its id."""
    from prefect.blocks.notifications import CustomWebhookNotificationBlock
    from prefect.settings import PREFECT_API_URL, temporary_settings

    block = CustomWebhookNotificationBlock(
        name="archiver-test", url=url, json_data={"subject": "{{subject}}", "body": "{{body}}"}
    )
    with temporary_settings({PREFECT_API_URL: api_url}):
        return str(block.save("archiver-deadline-test", overwrite=True))


def test_documented_automation_notifies_on_loss_and_low_margin(
    triggers_server, notifications, archive_env, emulator, tmp_path
):
    """`archive` of three predictions: removed (lost), 50 min old (10 min margin: low) and
    fresh (ok): the automation sends exactly the first two notifications."""
    definition = yaml.safe_load(AUTOMATION.read_text())
    port = notifications.server_address[1]
    block_id = _notification_block(triggers_server.api_url, f"http://127.0.0.1:{port}/notify")
    definition["actions"][0]["block_document_id"] = block_id
    path = tmp_path / "deadline-alerts.yaml"
    path.write_text(yaml.safe_dump(definition))
    created = triggers_server.run(PREFECT, "automation", "create", "--from-file", str(path))
    assert "Created automation 'archiver-deadline-alerts'" in created.stdout

    gone = emulator.add_prediction(age_seconds=emulator.faults.retention_seconds + 1)
    late = emulator.add_prediction(age_seconds=3000)
    fresh = emulator.add_prediction(age_seconds=30)
    env = {**os.environ, "PREFECT_API_URL": triggers_server.api_url}
    result = subprocess.run(
        [sys.executable, "-m", "flows", "archive", gone["id"], late["id"], fresh["id"]]
        + ["--dest", str(archive_env)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1 and gone["id"] in result.stderr, result.stderr

    def subjects() -> str:
        return " ".join(n["subject"] for n in notifications.received)

    wait_until(
        lambda: gone["id"] in subjects() and late["id"] in subjects(),
        timeout=60,
        what="the automation's notifications",
        interval=0.2,
    )
    by_event = {n["subject"].split()[1]: n for n in notifications.received}
    assert set(by_event) == {"archiver.prediction.lost", "archiver.prediction.archived"}
    assert gone["id"] in by_event["archiver.prediction.lost"]["subject"]
    assert "removed" in by_event["archiver.prediction.lost"]["body"]
    assert late["id"] in by_event["archiver.prediction.archived"]["subject"]
    assert fresh["id"] not in subjects()
