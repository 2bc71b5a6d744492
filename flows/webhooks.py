"""The webhook receiver, wired: each archive is a flow run when a Prefect server is configured.

`python -m flows webhooks` runs `receive`. Without `PREFECT_API_URL` the archive job runs the
domain's archive-by-id in this process; with it, each archive is an `archive-existing` flow run
(visible in the Prefect UI) in this process.
"""

from __future__ import annotations

from collections.abc import Callable

from archiver.errors import ArchiverError
from archiver.progress import NullProgress
from archiver.runtime import Runtime
from archiver.webhooks import Receiver, WebhookInbox, WebhookVerifier, build_app
from archiver.webhooks.receiver import ArchiveJob
from archiver.webhooks.serve import bind, existing_job, resolve_secret, serve, url_host
from flows.settings import flow_settings


def prefect_configured() -> bool:
    """True when a Prefect server is configured (`PREFECT_API_URL`)."""
    from prefect.settings import get_current_settings

    return bool(get_current_settings().api.url)


def flow_job(dest: str | None) -> ArchiveJob:
    """The archive job as an `archive-existing` flow run (storage options via the environment).

    A failed archive raises (the delivery stays accepted, retried later); a removed or skipped
    prediction is its outcome.
    """
    from flows.archive_existing import archive_existing

    async def job(prediction_id: str) -> str:
        state = await archive_existing(prediction_ids=[prediction_id], dest=dest, return_state=True)
        report = await state.aresult(raise_on_failure=False)
        if isinstance(report, BaseException):
            raise report
        (result,) = report.predictions
        if result.outcome == "failed":
            raise ArchiverError(result.error or f"archiving {prediction_id} failed")
        return str(result.outcome)

    return job


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
        job = flow_job(dest) if prefect_configured() else existing_job(runtime)
        receiver = Receiver(
            WebhookVerifier(secret),
            WebhookInbox(runtime.cache.store),
            job,
            max_body=settings.webhook_max_body,
            report=report,
        )
        sock = bind(host, port)
        bound_port = sock.getsockname()[1]
        url = f"http://{url_host(host)}:{bound_port}{path}"
        await serve(build_app(receiver, path), sock, on_ready=lambda: announce(url))
    finally:
        await runtime.aclose()
