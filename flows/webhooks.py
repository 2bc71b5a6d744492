"""The webhook receiver, wired: each archive is a flow run when a Prefect server is configured.

`python -m flows webhooks` runs `receive`. Without `PREFECT_API_URL` the archive job runs the
domain's archive-by-id in this process; with it, each group of archives the receiver starts
(at most ARCHIVER_WEBHOOK_CONCURRENCY predictions) is one `archive-webhooks` flow run, visible
with its artifacts in the Prefect UI, in this process.
"""

from __future__ import annotations

from collections.abc import Callable

from archiver.errors import ArchiverError
from archiver.existing import ArchiveReport
from archiver.progress import NullProgress
from archiver.retry import RetryPolicies
from archiver.runtime import Runtime
from archiver.webhooks import Receiver, WebhookInbox, WebhookVerifier
from archiver.webhooks.receiver import ArchiveJob
from archiver.webhooks.serve import (
    bind,
    existing_job,
    job_outcome,
    resolve_secret,
    serve,
    url_host,
)
from flows.settings import flow_settings


def prefect_configured() -> bool:
    """True when a Prefect server is configured (`PREFECT_API_URL`)."""
    from prefect.settings import get_current_settings

    return bool(get_current_settings().api.url)


def flow_job(dest: str | None) -> ArchiveJob:
    """The archive job as one `archive-webhooks` flow run per group of predictions (storage
    options via the environment): its summary and gallery artifacts show what it archived.

    A prediction whose archive failed is that id's error (the receiver retries it); a removed or
    skipped prediction is its outcome. A run that crashed fails the whole group's attempt.
    """
    from flows.archive_existing import archive_webhooks

    async def job(prediction_ids: list[str]) -> dict[str, str | BaseException]:
        state = await archive_webhooks(prediction_ids=prediction_ids, dest=dest, return_state=True)
        report = await state.aresult(raise_on_failure=False)
        if isinstance(report, BaseException):
            raise report
        if not isinstance(report, ArchiveReport):
            raise ArchiverError(f"archive-webhooks ended {state.type.value}: {state.message}")
        return {r.prediction_id: job_outcome(r) for r in report.predictions}

    return job


def flow_group(concurrency: int) -> int:
    """The fewest free slots a flow run is started for: half the cap (a run costs the Prefect
    server several writes, whatever its size)."""
    return max(1, concurrency // 2)


async def receive(
    *,
    host: str,
    port: int,
    path: str,
    dest: str | None,
    storage_options: dict[str, str],
    announce: Callable[[str], None],
    report: Callable[[str], None],
) -> None:
    """Serve the receiver until interrupted; `announce` gets the URL once it accepts."""
    settings = await flow_settings()
    runtime = Runtime.build(
        settings, dest=dest, storage_options=storage_options, progress=NullProgress()
    )
    try:
        secret = await resolve_secret(settings, runtime)
        flows = prefect_configured()
        job = flow_job(dest) if flows else existing_job(runtime)
        receiver = Receiver(
            WebhookVerifier(secret),
            WebhookInbox(runtime.cache.store),
            job,
            max_body=settings.webhook_max_body,
            concurrency=settings.webhook_concurrency,
            policy=RetryPolicies.from_settings(settings).webhook_job,
            group=flow_group(settings.webhook_concurrency) if flows else 1,
            report=report,
        )
        sock = bind(host, port)
        bound_port = sock.getsockname()[1]
        url = f"http://{url_host(host)}:{bound_port}{path}"
        await serve(receiver, path, sock, on_ready=lambda: announce(url))
    finally:
        await runtime.aclose()
