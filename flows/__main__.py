"""`python -m flows`: run the pipeline ad hoc, start the emulator, or try the demo."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from typing import Any, NoReturn

import typer

from archiver.errors import ArchiverError, redact

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Archive Replicate predictions before their URLs die.",
)


def _fail(exc: BaseException, debug: bool) -> NoReturn:
    """One line on stderr (a traceback too with --debug), and a non-zero exit."""
    if debug:
        import traceback

        traceback.print_exception(exc, file=sys.stderr)
    if isinstance(exc, KeyboardInterrupt | asyncio.CancelledError):
        typer.echo("error: interrupted; the running prediction was canceled", err=True)
        raise typer.Exit(130)
    message = str(exc) if isinstance(exc, ArchiverError) else f"{type(exc).__name__}: {exc}"
    typer.echo(
        f"error: {redact(message.splitlines()[0] if message else type(exc).__name__)}", err=True
    )
    raise typer.Exit(1)


def _quiet_prefect_console(debug: bool) -> None:
    """Keep Prefect's console logs (and their tracebacks) off the terminal unless --debug."""
    if debug:
        return
    from prefect.logging.handlers import PrefectConsoleHandler

    for logger in [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]:
        for handler in getattr(logger, "handlers", []):
            if isinstance(handler, PrefectConsoleHandler):
                handler.setLevel(logging.CRITICAL + 1)


def _export_storage_options(storage_options: dict[str, Any]) -> None:
    # Storage options may hold secrets: they travel through this process's settings,
    # never through flow parameters (which Prefect stores).
    if storage_options:
        merged = {
            **json.loads(os.environ.get("ARCHIVER_STORAGE_OPTIONS") or "{}"),
            **storage_options,
        }
        os.environ["ARCHIVER_STORAGE_OPTIONS"] = json.dumps(merged)


def _run_flow(
    flow_kwargs: dict[str, Any],
    *,
    storage_options: dict[str, Any],
    debug: bool,
    show_progress: bool,
) -> Any:
    _export_storage_options(storage_options)
    from archiver.progress import use_progress
    from flows.archive_prediction import archive_prediction
    from flows.console import RichProgress

    _quiet_prefect_console(debug)
    with RichProgress(enabled=show_progress) as progress:
        use_progress(progress)
        return asyncio.run(archive_prediction(**flow_kwargs))


@app.command()
def run(
    model: str = typer.Argument(None, help="owner/name or owner/name:version"),
    inputs: list[str] = typer.Option(
        [], "--input", "-i", help="KEY=VALUE (JSON or text); KEY=@path uploads a file"
    ),
    input_json: str = typer.Option(
        None, "--input-json", help="JSON object file with the input, or - for stdin"
    ),
    deployment: str = typer.Option(
        None, "--deployment", help="Run a Replicate deployment OWNER/NAME instead of MODEL"
    ),
    dest: str = typer.Option(
        None, "--dest", help="Archive destination: path or fsspec URL [default: ./archive]"
    ),
    storage_option: list[str] = typer.Option(
        [], "--storage-option", help="fsspec storage option K=V (repeatable)"
    ),
    refresh: bool = typer.Option(
        False, "--refresh", help="Pay for a new prediction even if archived before"
    ),
    on_data_removed: str = typer.Option(
        "fail", "--on-data-removed", help="fail | rerun, when Replicate already deleted the outputs"
    ),
    deadline: float = typer.Option(
        None, "--deadline", min=1, help="Cancel the prediction on Replicate after SECONDS"
    ),
    webhook: str = typer.Option(
        None, "--webhook", help="Receiver URL for the `completed` event (`flows webhooks`)"
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON summary on stdout"),
    debug: bool = typer.Option(False, "--debug", help="Tracebacks and Prefect logs on errors"),
) -> None:
    """Generate one prediction, download every output at once, and archive it."""
    from archiver.errors import ConfigurationError
    from archiver.inputs import load_input_json, parse_options, parse_pairs

    try:
        if bool(model) == bool(deployment):
            raise ConfigurationError("give exactly one of MODEL or --deployment OWNER/NAME")
        if on_data_removed not in ("fail", "rerun"):
            raise ConfigurationError("--on-data-removed must be fail or rerun")
        flow_input = {**load_input_json(input_json), **parse_pairs(inputs)}
        options = parse_options(storage_option)
        summary = _run_flow(
            {
                "model": model or deployment,
                "input": flow_input,
                "dest": dest,
                "deployment": bool(deployment),
                "refresh": refresh,
                "on_data_removed": on_data_removed,
                "deadline": deadline,
                "webhook": webhook,
            },
            storage_options=options,
            debug=debug,
            show_progress=not as_json,
        )
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - the CLI's one boundary
        _fail(exc, debug)
    if as_json:
        typer.echo(summary.model_dump_json(indent=2))
    else:
        from flows.console import print_summary

        print_summary([summary])


@app.command()
def batch(
    file: str = typer.Argument(
        ...,
        help='Batch file (local path or fsspec URL): JSONL, CSV or a JSON list; a record is an input, or {"model": ..., "input": {...}}',
    ),
    model: str = typer.Option(
        None, "--model", help="owner/name[:version] for records that name no model"
    ),
    concurrency: int = typer.Option(
        8,
        "--concurrency",
        min=1,
        max=1000,
        help="Items in flight at once (created, not yet archived)",
    ),
    dest: str = typer.Option(
        None, "--dest", help="Archive destination: path or fsspec URL [default: ./archive]"
    ),
    storage_option: list[str] = typer.Option(
        [],
        "--storage-option",
        help="fsspec storage option K=V (repeatable; also used to read FILE)",
    ),
    refresh: bool = typer.Option(
        False, "--refresh", help="Pay for new predictions even for inputs archived before"
    ),
    on_data_removed: str = typer.Option(
        "fail", "--on-data-removed", help="fail | rerun, when Replicate already deleted the outputs"
    ),
    deadline: float = typer.Option(
        None, "--deadline", min=1, help="Cancel each prediction on Replicate after SECONDS"
    ),
    webhook: str = typer.Option(
        None, "--webhook", help="Receiver URL for each `completed` event (`flows webhooks`)"
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON summary on stdout"),
    debug: bool = typer.Option(False, "--debug", help="Tracebacks and Prefect logs on errors"),
) -> None:
    """Archive every record of a batch file; exits 1 if any item failed (rerun to retry them)."""
    from archiver.batchfile import load_batch
    from archiver.errors import ConfigurationError
    from archiver.inputs import parse_options
    from archiver.settings import Settings

    try:
        if on_data_removed not in ("fail", "rerun"):
            raise ConfigurationError("--on-data-removed must be fail or rerun")
        _export_storage_options(parse_options(storage_option))
        # Read it here too: file errors come before Prefect starts, and the bar knows its total.
        items = load_batch(file, default_model=model, storage_options=Settings().storage_options)
        from archiver.progress import use_progress
        from flows.batch import archive_batch
        from flows.console import RichProgress

        _quiet_prefect_console(debug)
        with RichProgress(enabled=not as_json, predictions=len(items)) as progress:
            use_progress(progress)

            async def run_batch() -> Any:
                state = await archive_batch(
                    file=file,
                    model=model,
                    dest=dest,
                    concurrency=concurrency,
                    refresh=refresh,
                    on_data_removed=on_data_removed,
                    deadline=deadline,
                    webhook=webhook,
                    return_state=True,
                )
                return await state.aresult(raise_on_failure=False)

            summary = asyncio.run(run_batch())
        if isinstance(summary, BaseException):
            raise summary
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - the CLI's one boundary
        _fail(exc, debug)
    if as_json:
        typer.echo(summary.model_dump_json(indent=2))
    else:
        from flows.console import print_batch_summary

        print_batch_summary(summary)
    if summary.failed:
        raise typer.Exit(1)


@app.command()
def settings() -> None:
    """Print every setting as a markdown table (names, defaults, meaning)."""
    from archiver.settings import settings_table

    typer.echo(settings_table())


def _mount_emulator() -> None:
    try:
        from emulator.cli import emulator_command
    except ImportError:  # pragma: no cover - emulator is part of the package
        return
    app.command("emulator", help="Serve the Replicate emulator (offline API + delivery).")(
        emulator_command
    )


_mount_emulator()

from flows.demo import demo  # noqa: E402 - after the emulator command, for --help order

app.command("demo", help="The main job end to end, offline, on the built-in emulator.")(demo)

# -- archive what the account pays for: by id, by sweep, by webhook (issue 11) -------------------


def _flow_report(flow_call: Any, *, storage_option: list[str], debug: bool, progress: bool) -> Any:
    """Run an archive flow in process; its report (a failed run still carries one)."""
    from archiver.inputs import parse_options
    from archiver.progress import use_progress
    from flows.console import RichProgress

    _export_storage_options(parse_options(storage_option))
    _quiet_prefect_console(debug)

    async def go() -> Any:
        state = await flow_call()
        return await state.aresult(raise_on_failure=False)

    with RichProgress(enabled=progress) as sink:
        use_progress(sink)
        report = asyncio.run(go())
    if isinstance(report, BaseException):
        raise report
    return report


def _print_report(report: Any, as_json: bool) -> None:
    """--json: one document; else one line per prediction. Losses also go to stderr, loudly."""
    for result in report.lost:
        typer.echo(
            f"error: {result.prediction_id} {result.outcome}: {result.error or 'no detail'}",
            err=True,
        )
    if as_json:
        typer.echo(report.model_dump_json(indent=2))
        return
    for result in report.predictions:
        where = f" -> {result.summary.manifest_url}" if result.summary else ""
        typer.echo(f"{result.prediction_id}  {result.outcome:<8} {result.model or ''}{where}")
    typer.echo(report.headline())


@app.command("archive")
def archive_command(
    prediction_ids: list[str] = typer.Argument(..., help="Ids of predictions on this account"),
    dest: str = typer.Option(
        None, "--dest", help="Archive destination: path or fsspec URL [default: ./archive]"
    ),
    storage_option: list[str] = typer.Option(
        [], "--storage-option", help="fsspec storage option K=V (repeatable)"
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON report on stdout"),
    debug: bool = typer.Option(False, "--debug", help="Tracebacks and Prefect logs on errors"),
) -> None:
    """Archive existing predictions by id (made by anyone on the account); never creates one."""
    try:
        from flows.archive_existing import archive_existing

        report = _flow_report(
            lambda: archive_existing(prediction_ids=prediction_ids, dest=dest, return_state=True),
            storage_option=storage_option,
            debug=debug,
            progress=not as_json,
        )
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - the CLI's one boundary
        _fail(exc, debug)
    _print_report(report, as_json)
    if not report.ok:
        raise typer.Exit(1)


@app.command("sweep")
def sweep_command(
    since: str = typer.Option("1h", "--since", help="Window to list: 90s, 55m, 2h..."),
    source: str = typer.Option("api", "--source", help="api | web | all"),
    dest: str = typer.Option(
        None, "--dest", help="Archive destination: path or fsspec URL [default: ./archive]"
    ),
    storage_option: list[str] = typer.Option(
        [], "--storage-option", help="fsspec storage option K=V (repeatable)"
    ),
    concurrency: int = typer.Option(8, "--concurrency", min=1, max=100, help="Archived at once"),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON report on stdout"),
    debug: bool = typer.Option(False, "--debug", help="Tracebacks and Prefect logs on errors"),
) -> None:
    """Archive the account's succeeded predictions created within --since (exit 1 on a loss)."""
    from archiver.errors import ConfigurationError
    from archiver.sweep import SOURCES, parse_duration

    try:
        parse_duration(since)
        if source not in SOURCES:
            raise ConfigurationError(f"invalid --source {source!r}: expected api, web or all")
        from flows.archive_recent import archive_recent

        report = _flow_report(
            lambda: archive_recent(
                since=since, source=source, concurrency=concurrency, dest=dest, return_state=True
            ),
            storage_option=storage_option,
            debug=debug,
            progress=not as_json,
        )
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - the CLI's one boundary
        _fail(exc, debug)
    _print_report(report, as_json)
    if not report.ok:
        raise typer.Exit(1)


@app.command("webhooks")
def webhooks_command(
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on"),
    port: int = typer.Option(8787, "--port", min=0, max=65535, help="Port (0: a free one)"),
    path: str = typer.Option("/webhooks/replicate", "--path", help="URL path deliveries go to"),
    dest: str = typer.Option(
        None, "--dest", help="Archive destination: path or fsspec URL [default: ./archive]"
    ),
    storage_option: list[str] = typer.Option(
        [], "--storage-option", help="fsspec storage option K=V (repeatable)"
    ),
    debug: bool = typer.Option(False, "--debug", help="Tracebacks and Prefect logs on errors"),
) -> None:
    """Receive Replicate webhooks and archive every succeeded prediction they announce."""
    from archiver.errors import ConfigurationError
    from archiver.inputs import parse_options
    from flows.webhooks import receive

    def announce(url: str) -> None:
        typer.echo(f"listening on {url}")
        sys.stdout.flush()

    def report(line: str) -> None:
        typer.echo(redact(line), err=True)

    try:
        if not path.startswith("/"):
            raise ConfigurationError(f"invalid --path {path!r}: must start with /")
        options = parse_options(storage_option)
        _export_storage_options(options)
        _quiet_prefect_console(debug)
        asyncio.run(
            receive(
                host=host,
                port=port,
                path=path,
                dest=dest,
                storage_options={},
                announce=announce,
                report=report,
            )
        )
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    except Exception as exc:  # noqa: BLE001 - the CLI's one boundary
        _fail(exc, debug)


if __name__ == "__main__":
    app()
