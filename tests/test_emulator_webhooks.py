"""Emulator webhooks: signed Standard Webhooks deliveries, the events filter, retries, the secret."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from standardwebhooks import Webhook

from emulator import Emulator
from emulator.clock import ManualClock
from tests.waiting import wait_until

AUTH = {"Authorization": "Bearer test-token"}
MODEL_PATH = "/v1/models/emulator/image/predictions"


class Inbox:
    """A tiny HTTP receiver recording every POST; answers `status` (a list pops per request)."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.statuses = list(statuses or [])
        self.lock = threading.Lock()

    def wait_for(self, count: int) -> list[tuple[dict[str, str], bytes]]:
        def arrived() -> list[tuple[dict[str, str], bytes]] | None:
            with self.lock:
                return list(self.received) if len(self.received) >= count else None

        return wait_until(arrived, what=f"{count} deliveries")


@contextmanager
def inbox_server(inbox: Inbox) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            with inbox.lock:
                inbox.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                status = inbox.statuses.pop(0) if inbox.statuses else 200
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    finally:
        server.shutdown()
        server.server_close()


def test_completed_delivery_is_signed_with_the_account_secret():
    """A `completed` delivery carries the prediction and a v1 signature the secret verifies."""
    inbox = Inbox()
    with inbox_server(inbox) as url, Emulator(processing_seconds=0.01) as emu:
        with httpx.Client(base_url=emu.base_url, headers=AUTH) as api:
            secret = api.get("/v1/webhooks/default/secret").json()["key"]
            created = api.post(
                MODEL_PATH,
                json={"input": {}, "webhook": url, "webhook_events_filter": ["completed"]},
            ).json()
        headers, body = inbox.wait_for(1)[0]
    assert secret.startswith("whsec_") and secret == emu.webhook_secret
    payload = Webhook(secret).verify(body, headers)
    assert payload["id"] == created["id"] and payload["status"] == "succeeded"
    assert headers["webhook-id"].startswith("msg_")
    assert headers["webhook-signature"].startswith("v1,")
    with pytest.raises(Exception, match="signature"):
        Webhook("whsec_" + "A" * 32).verify(body, headers)


def test_events_filter_selects_what_is_sent():
    """Without a filter start, output and completed are sent; with one, only what it names."""
    inbox = Inbox()
    with inbox_server(inbox) as url, Emulator(processing_seconds=0.01) as emu:
        with httpx.Client(base_url=emu.base_url, headers=AUTH) as api:
            api.post(MODEL_PATH, json={"input": {}, "webhook": url})
            events = [e["event"] for e in _deliveries(emu, 3)]
            assert sorted(events) == ["completed", "output", "start"]
            bad = api.post(
                MODEL_PATH, json={"input": {}, "webhook": url, "webhook_events_filter": ["nope"]}
            )
    assert bad.status_code == 422


def _deliveries(emu: Emulator, count: int) -> list[dict]:
    wait_until(lambda: len(emu.stats().webhooks) >= count, what=f"{count} webhook attempts")
    return emu.stats().webhooks


def test_failed_completed_delivery_is_retried_with_the_same_id():
    """A receiver answering 500 gets the `completed` delivery again, same webhook-id, later."""
    clock = ManualClock()
    inbox = Inbox(statuses=[500, 503])
    with inbox_server(inbox) as url, Emulator(processing_seconds=0, clock=clock) as emu:
        with httpx.Client(base_url=emu.base_url, headers=AUTH) as api:
            api.post(
                MODEL_PATH,
                json={"input": {}, "webhook": url, "webhook_events_filter": ["completed"]},
            )
        inbox.wait_for(1)
        wait_until(lambda: clock.sleepers >= 1, what="the retry to wait for the clock")
        assert len(inbox.received) == 1
        clock.advance(emu.faults.webhook_retry_seconds)
        inbox.wait_for(2)
        wait_until(lambda: clock.sleepers >= 1, what="the next retry to wait for the clock")
        clock.advance(2 * emu.faults.webhook_retry_seconds)
        received = inbox.wait_for(3)
        wait_until(lambda: emu.pending_webhooks == 0, what="no webhook pending")
    ids = {headers["webhook-id"] for headers, _ in received}
    assert len(ids) == 1 and [e["status"] for e in emu.stats().webhooks] == [500, 503, 200]
    assert [e["attempt"] for e in emu.stats().webhooks] == [1, 2, 3]


def test_predictions_without_webhook_send_nothing(emulator, api):
    """A create without `webhook` leads to no delivery at all."""
    api.post(MODEL_PATH, json={"input": {}}, headers={"Prefer": "wait"})
    assert emulator.stats().webhooks == [] and emulator.pending_webhooks == 0


def test_delivery_body_is_the_prediction_json():
    """The body is the same JSON a GET of the prediction returns."""
    inbox = Inbox()
    with inbox_server(inbox) as url, Emulator(processing_seconds=0.01) as emu:
        with httpx.Client(base_url=emu.base_url, headers=AUTH) as api:
            api.post(
                MODEL_PATH,
                json={"input": {}, "webhook": url, "webhook_events_filter": ["completed"]},
            )
            _, body = inbox.wait_for(1)[0]
            payload = json.loads(body)
            fetched = api.get(f"/v1/predictions/{payload['id']}").json()
    assert payload["source"] == "api" and set(payload) == set(fetched)
