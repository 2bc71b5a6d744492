"""Check one webhook delivery: headers, timestamp, Standard Webhooks signature, body shape.

The signature is checked by the maintained `standardwebhooks` library (no HMAC of our own).
Each refusal carries the HTTP status the receiver answers: 400 for missing headers, a timestamp
more than the tolerance away from now or a malformed body, 401 for a signature that does not
match the account's secret.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from ..errors import ConfigurationError

TOLERANCE_SECONDS = 300.0
HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")


class Rejected(Exception):
    """A delivery we refuse, with the HTTP status to answer."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class Delivery:
    """A verified delivery: its id and the prediction it carries."""

    webhook_id: str
    prediction: dict[str, Any]


@dataclass
class WebhookVerifier:
    """Verifies deliveries signed with `secret` (the account's `whsec_...` key)."""

    secret: str
    tolerance: float = TOLERANCE_SECONDS
    clock: Callable[[], float] = time.time
    _webhook: Webhook = field(init=False, repr=False)

    def __post_init__(self) -> None:
        try:
            self._webhook = Webhook(self.secret)
        except Exception as exc:  # noqa: BLE001 - any decoding failure means a bad secret
            raise ConfigurationError(
                "the webhook secret is not a valid whsec_ key (REPLICATE_WEBHOOK_SECRET)"
            ) from exc

    def verify(self, headers: Mapping[str, str], body: bytes) -> Delivery:
        """The verified delivery, or `Rejected` with the status to answer."""
        lowered = {k.lower(): v for k, v in headers.items()}
        missing = [name for name in HEADERS if not lowered.get(name)]
        if missing:
            raise Rejected(400, f"missing header(s): {', '.join(missing)}")
        try:
            sent_at = float(lowered["webhook-timestamp"])
        except ValueError as exc:
            raise Rejected(400, "webhook-timestamp is not a number") from exc
        if abs(self.clock() - sent_at) > self.tolerance:
            raise Rejected(400, f"webhook-timestamp is more than {self.tolerance:g}s off")
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise Rejected(400, "body is not UTF-8") from exc
        try:
            self._webhook.verify(body, {name: lowered[name] for name in HEADERS}, json_parse=False)
        except WebhookVerificationError as exc:
            raise Rejected(401, "invalid signature") from exc
        except (ValueError, TypeError) as exc:  # a malformed signature header
            raise Rejected(401, "invalid signature") from exc
        try:
            payload = json.loads(body)
        except ValueError as exc:
            raise Rejected(400, "body is not JSON") from exc
        if (
            not isinstance(payload, dict)
            or not isinstance(payload.get("id"), str)
            or not payload["id"]
            or not isinstance(payload.get("status"), str)
        ):
            raise Rejected(400, "body is not a prediction (no id or status)")
        return Delivery(webhook_id=lowered["webhook-id"], prediction=payload)
