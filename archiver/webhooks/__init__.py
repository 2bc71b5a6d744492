"""Receive Replicate's webhook deliveries and archive each succeeded prediction they announce.

`verify` checks a delivery (Standard Webhooks signature through the `standardwebhooks` library,
timestamp, size, shape), `inbox` records and queues accepted deliveries durably next to the
cache, `receiver` is the Starlette app that answers them, and `dispatch` archives the queue, a
fixed number at a time.
"""

from .dispatch import Dispatcher
from .inbox import InboxRecord, WebhookInbox
from .receiver import Receiver, build_app
from .verify import Rejected, WebhookVerifier

__all__ = [
    "Dispatcher",
    "InboxRecord",
    "Receiver",
    "Rejected",
    "WebhookInbox",
    "WebhookVerifier",
    "build_app",
]
