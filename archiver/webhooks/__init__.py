"""Receive Replicate's webhook deliveries and archive each succeeded prediction they announce.

`verify` checks a delivery (Standard Webhooks signature through the `standardwebhooks` library,
timestamp, size, shape), `inbox` records accepted deliveries durably next to the cache, and
`receiver` is the Starlette app that ties them to an archive job run in the background.
"""

from .inbox import InboxRecord, WebhookInbox
from .receiver import Receiver, build_app
from .verify import Rejected, WebhookVerifier

__all__ = ["InboxRecord", "Receiver", "Rejected", "WebhookInbox", "WebhookVerifier", "build_app"]
