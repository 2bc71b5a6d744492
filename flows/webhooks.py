"""The webhook receiver, wired: each archive is a flow run when a Prefect server is configured.

`python -m flows webhooks` runs `receive`: it answers deliveries, and its child process
(`archive_queue`) archives the queue. Without `PREFECT_API_URL` the archive job runs the domain's
archive-by-id there; with it, each group of archives (at most ARCHIVER_WEBHOOK_CONCURRENCY
predictions) is one `archive-webhooks` flow run, visible with its artifacts in the Prefect UI.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from typing import Any

from archiver.errors import ArchiverError
from archiver.existing import ArchiveReport
from archiver.retry import RetryPolicies
from archiver.webhooks import Dispatcher, Receiver, WebhookInbox, WebhookVerifier
from archiver.webhooks.dispatch import ArchiveJob
from archiver.webhooks.serve import (
    answering,
    bind,
    existing_job,
    job_outcome,
    resolve_secret,
    until_signal,
    url_host,
)
from flows.console import quiet_prefect_console
from flows.runtime import flow_runtime
from flows.settings import process_storage_options

STOP_SECONDS = 30  # for the archive process to stop, once told, before it is killed


def prefect_configured() -> bool:
    """True when a Prefect server is configured (`PREFECT_API_URL`)."""
    from prefect.settings import get_current_settings

    return bool(get_current_settings().api.url)


def flow_job(dest: str | None) -> ArchiveJob:
    """The archive job as one `archive-webhooks` flow run per group of predictions (storage
    options from this process's settings): its summary and gallery artifacts show what it
    archived.

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
    """Serve the receiver until interrupted; `announce` gets the URL once it accepts.

    This process answers; a child process of its own (`python -m flows.webhooks DEST`) archives
    the queue, woken through a pipe after each delivery queued. The two never wait for each
    other: an answer is verify and one durable append, whatever the archives cost. The child
    stops when this process closes the pipe (or dies); if the child dies, so does the receiver
    (exit 1), its queue kept for the next one. The child gets this process's storage options
    (`storage_options`, and those of `use_storage_options`) in its own environment."""
    async with flow_runtime(dest, storage_options) as runtime:
        secret = await resolve_secret(runtime.settings, runtime)
        options = {**process_storage_options(), **storage_options}
        with ArchiveWorker(dest, options) as worker:
            receiver = Receiver(
                WebhookVerifier(secret),
                WebhookInbox(runtime.cache.store),
                max_body=runtime.settings.webhook_max_body,
                wake=worker.wake,
                report=report,
            )
            sock = bind(host, port)
            url = f"http://{url_host(host)}:{sock.getsockname()[1]}{path}"
            async with answering(receiver, None, path, sock):
                announce(url)
                caught = await until_signal(asyncio.to_thread(worker.process.wait))
            if caught is not None:
                signal.raise_signal(caught)  # SIGINT: KeyboardInterrupt, exit 130
            raise ArchiverError(
                f"the receiver's archive process exited ({worker.process.returncode}); "
                "its queue is kept for the next receiver"
            )


class ArchiveWorker:
    """The child process that archives the queue, and the pipe that wakes it."""

    def __init__(self, dest: str | None, storage_options: dict[str, Any]) -> None:
        from prefect.settings import get_current_settings

        read, self._write = os.pipe()
        os.set_blocking(self._write, False)
        env = dict(os.environ)
        if storage_options:  # over the inherited ones, as flow_settings merges them
            inherited = json.loads(env.get("ARCHIVER_STORAGE_OPTIONS") or "{}")
            env["ARCHIVER_STORAGE_OPTIONS"] = json.dumps({**inherited, **storage_options})
        api_url = get_current_settings().api.url  # also the CLI's local server, if it runs
        if api_url:
            env["PREFECT_API_URL"] = str(api_url)
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "flows.webhooks", str(read), dest or ""],
                env=env,
                pass_fds=(read,),
                stdout=subprocess.DEVNULL,
            )
        finally:
            os.close(read)

    def wake(self) -> None:
        """One byte down the pipe (from any thread); a full pipe has wake-ups enough."""
        with contextlib.suppress(BlockingIOError, BrokenPipeError):
            os.write(self._write, b"\0")

    def __enter__(self) -> ArchiveWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self._write)  # the child finishes its step and stops; its queue stays
        try:
            self.process.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


async def archive_queue(wake_fd: int, dest: str | None) -> None:
    """The child: archive the inbox's queue until the pipe closes (or SIGINT/SIGTERM)."""
    from archiver.errors import redact

    quiet_prefect_console(False)

    def report(line: str) -> None:
        print(redact(line), file=sys.stderr, flush=True)

    async with flow_runtime(dest) as runtime:
        settings, flows = runtime.settings, prefect_configured()
        dispatcher = Dispatcher(
            WebhookInbox(runtime.cache.store),
            flow_job(dest) if flows else existing_job(runtime),
            concurrency=settings.webhook_concurrency,
            policy=RetryPolicies.from_settings(settings).webhook_job,
            group=flow_group(settings.webhook_concurrency) if flows else 1,
            report=report,
        )
        loop = asyncio.get_running_loop()
        closed = loop.create_future()

        def readable() -> None:
            with contextlib.suppress(BlockingIOError):
                if os.read(wake_fd, 4096):
                    dispatcher.wake()
                elif not closed.done():
                    closed.set_result(None)  # the answering process is gone

        os.set_blocking(wake_fd, False)
        loop.add_reader(wake_fd, readable)
        await dispatcher.start()
        await until_signal(closed)
        await dispatcher.stop()


if __name__ == "__main__":  # the archive process of `receive`
    asyncio.run(archive_queue(int(sys.argv[1]), sys.argv[2] or None))
