"""`python -m flows archive | sweep | webhooks`: keep what the account pays for, whoever made it.

`archive` and `sweep` run a flow (`archive-existing`, `archive-recent`) on the same Prefect API
as `run` (a configured one, else the local server); `webhooks` serves the receiver, whose
archives are flow runs when a Prefect API is configured or the local server is up, else run in
this process. Cheap to import: Prefect loads inside the commands.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from typing import Any

import typer

from cli import runs
from cli.common import DebugOption, DestOption, StorageOption, fail

REPORT_HELP = "Print one JSON report on stdout"
FlowCall = Callable[[dict[str, str] | None], Awaitable[Any]]


def _run_report(
    call: Callable[[], FlowCall],
    *,
    storage_option: list[str],
    dest: str | None,
    debug: bool,
    as_json: bool,
) -> None:
    """`call()` checks the command's own input and gives the flow call (given the non-secret
    storage options); run it (`runs.run_flow`), print its report, exit 1 if a paid result was
    lost (every error: one line, exit 1; Ctrl-C: 130)."""
    with runs.boundary(debug):
        flow_call = call()
        storage = runs.storage(storage_option)

        async def start(options: dict[str, str] | None) -> Any:
            return await runs.result_of(flow_call(options))

        report = runs.run_flow(start, dest=dest, storage=storage, debug=debug, progress=not as_json)
    _print_report(report, as_json)
    if not report.ok:
        raise typer.Exit(1)


def _print_report(report: Any, as_json: bool) -> None:
    """--json: one document; else one line per prediction. Losses also go to stderr, loudly."""
    for result in report.lost:
        typer.echo(
            f"error: {result.prediction_id} {result.outcome}: {result.error or 'no detail'}",
            err=True,
        )
    if as_json:
        typer.echo(runs.as_json(report))
        return
    for result in report.predictions:
        where = f" -> {result.summary.manifest_url}" if result.summary else ""
        typer.echo(f"{result.prediction_id}  {result.outcome:<8} {result.model or ''}{where}")
    typer.echo(report.headline())


def archive(
    prediction_ids: list[str] = typer.Argument(..., help="Ids of predictions on this account"),
    dest: DestOption = None,
    storage_option: StorageOption = [],  # noqa: B006 - typer copies the default
    as_json: bool = typer.Option(False, "--json", help=REPORT_HELP),
    debug: DebugOption = False,
) -> None:
    """Archive existing predictions by id (made by anyone on the account); never creates one."""

    def call() -> FlowCall:
        async def flow_call(options: dict[str, str] | None) -> Any:
            from flows.archive_existing import archive_existing

            return await archive_existing(
                prediction_ids=prediction_ids, dest=dest, storage_options=options, return_state=True
            )

        return flow_call

    _run_report(call, storage_option=storage_option, dest=dest, debug=debug, as_json=as_json)


def sweep(
    since: str = typer.Option("1h", "--since", help="Window to list: 90s, 55m, 2h..."),
    source: str = typer.Option("api", "--source", help="api | web | all"),
    dest: DestOption = None,
    storage_option: StorageOption = [],  # noqa: B006 - typer copies the default
    concurrency: int = typer.Option(8, "--concurrency", help="Predictions archived at once"),
    as_json: bool = typer.Option(False, "--json", help=REPORT_HELP),
    debug: DebugOption = False,
) -> None:
    """Archive the account's succeeded predictions created within --since (exit 1 on a loss)."""

    def call() -> FlowCall:
        from archiver.errors import ConfigurationError
        from archiver.sweep import SOURCES, parse_duration

        parse_duration(since)
        if source not in SOURCES:
            raise ConfigurationError(f"invalid --source {source!r}: expected api, web or all")
        if not 1 <= concurrency <= 100:
            raise ConfigurationError(f"--concurrency must be from 1 to 100, got {concurrency}")

        async def flow_call(options: dict[str, str] | None) -> Any:
            from flows.archive_recent import archive_recent

            return await archive_recent(
                since=since,
                source=source,
                concurrency=concurrency,
                dest=dest,
                storage_options=options,
                return_state=True,
            )

        return flow_call

    _run_report(call, storage_option=storage_option, dest=dest, debug=debug, as_json=as_json)


def webhooks(
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on"),
    port: int = typer.Option(8787, "--port", help="Port (0: a free one)"),
    path: str = typer.Option("/webhooks/replicate", "--path", help="URL path deliveries go to"),
    dest: DestOption = None,
    storage_option: StorageOption = [],  # noqa: B006 - typer copies the default
    debug: DebugOption = False,
) -> None:
    """Receive Replicate webhooks and archive every succeeded prediction they announce."""
    import asyncio

    from archiver.errors import ConfigurationError, redact

    def announce(url: str) -> None:
        typer.echo(f"listening on {url}")
        sys.stdout.flush()

    def report(line: str) -> None:
        typer.echo(redact(line), err=True)

    try:
        if not path.startswith("/"):
            raise ConfigurationError(f"invalid --path {path!r}: must start with /")
        if not 0 <= port <= 65535:
            raise ConfigurationError(f"--port must be from 0 to 65535, got {port}")
        storage = runs.storage(storage_option)
        runs.preflight(dest)
        from flows.console import quiet_prefect_console
        from flows.webhooks import receive

        with _prefect_if_available():
            quiet_prefect_console(debug)
            asyncio.run(
                receive(
                    host=host,
                    port=port,
                    path=path,
                    dest=dest,
                    storage_options=storage.public,
                    announce=announce,
                    report=report,
                )
            )
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    except Exception as exc:  # noqa: BLE001 - the CLI's one boundary
        fail(exc, debug)


def _prefect_if_available() -> Any:
    """The configured Prefect API (checked), or the local server if it is up; else nothing:
    a long-running receiver never starts a server of its own."""
    import contextlib

    from archiver.settings import Settings
    from cli import local_server
    from cli.prefect_api import configured_api_url, prefect_api

    settings = Settings()
    if configured_api_url():
        return prefect_api(settings)
    if settings.local_server:
        state = local_server.status()
        if state is not None and local_server.healthy(state.api_url):
            return prefect_api(settings)
    return contextlib.nullcontext()
