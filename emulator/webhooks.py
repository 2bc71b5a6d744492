"""Webhook deliveries, signed the Standard Webhooks way, as Replicate sends them.

A prediction created with ``webhook`` (and optionally ``webhook_events_filter``) gets a POST of
its JSON for each event it asked for: ``start`` (on create), ``output`` (when its outputs are
published) and ``completed`` (when it reaches a final status); ``logs`` events are not sent.
Every delivery carries ``webhook-id``, ``webhook-timestamp`` and ``webhook-signature:
v1,<base64 HMAC-SHA256 of "id.timestamp.body">`` made with the account's ``whsec_`` secret
(``GET /v1/webhooks/default/secret``). A ``completed`` delivery that fails (no 2xx answer) is
retried with the same ``webhook-id`` after ``webhook_retry_seconds``, then twice as long each
time (7 attempts: about a minute at the default 1 s), measured on the emulator's clock.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
from standardwebhooks import Webhook

from emulator.clock import Clock
from emulator.faults import FaultBox
from emulator.state import Prediction
from emulator.stats import StatsRecorder

EVENTS = frozenset({"start", "output", "logs", "completed"})
ATTEMPTS = 7
TIMEOUT_SECONDS = 10.0


def new_secret() -> str:
    """A fresh ``whsec_`` signing secret (base64 of 24 random bytes)."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def parse_events(value: Any) -> frozenset[str]:
    """The ``webhook_events_filter`` of a create body (absent: every event); ValueError if bad."""
    if value is None:
        return EVENTS
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError("Invalid type. Expected: array of strings")
    unknown = set(value) - EVENTS
    if unknown:
        raise ValueError(f"unknown event(s): {', '.join(sorted(unknown))}")
    return frozenset(value)


class WebhookSender:
    """Sends the deliveries of one emulator from its event loop."""

    def __init__(
        self,
        secret: str,
        clock: Clock,
        faults: FaultBox,
        stats: StatsRecorder,
        render: Callable[[Prediction], dict[str, Any]],
    ) -> None:
        self.secret = secret
        self.clock = clock
        self.faults = faults
        self.stats = stats
        self.render = render
        self._signer = Webhook(secret)
        self._tasks: set[asyncio.Task[None]] = set()

    def notify(self, pred: Prediction, event: str) -> None:
        """Queue the delivery of ``event`` for ``pred`` if it asked for one (call on the loop)."""
        if pred.webhook is None or event not in pred.webhook_events:
            return
        body = json.dumps(self.render(pred))
        message_id = "msg_" + secrets.token_hex(12)
        attempts = ATTEMPTS if event == "completed" else 1
        task = asyncio.get_running_loop().create_task(
            self._deliver(pred.webhook, pred.id, event, message_id, body, attempts)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(
        self, url: str, pred_id: str, event: str, message_id: str, body: str, attempts: int
    ) -> None:
        delay = self.faults.get().webhook_retry_seconds
        for attempt in range(1, attempts + 1):
            timestamp = datetime.fromtimestamp(self.clock.now(), UTC)
            headers = {
                "content-type": "application/json",
                "webhook-id": message_id,
                "webhook-timestamp": str(int(timestamp.timestamp())),
                "webhook-signature": self._signer.sign(message_id, timestamp, body),
            }
            status: int | None = None
            try:
                async with httpx.AsyncClient(timeout=TIMEOUT_SECONDS) as client:
                    response = await client.post(url, content=body.encode(), headers=headers)
                status = response.status_code
            except httpx.HTTPError:
                status = None
            self.stats.webhook(
                {
                    "id": message_id,
                    "prediction_id": pred_id,
                    "event": event,
                    "url": url,
                    "attempt": attempt,
                    "status": status,
                }
            )
            if status is not None and 200 <= status < 300:
                return
            if attempt < attempts:
                await self.clock.sleep(delay)
                delay *= 2

    def cancel_all(self) -> None:
        """Drop pending deliveries (the server is stopping)."""
        for task in list(self._tasks):
            task.cancel()

    @property
    def pending(self) -> int:
        """Deliveries still being sent or waiting to be retried."""
        return len(self._tasks)
