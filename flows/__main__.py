"""`python -m flows`: run the pipeline ad hoc, start the emulator, or try the demo."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

import typer

from archiver.errors import ArchiverError, redact
from flows import interrupts

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
    full = _disk_full(exc)
    if full is not None:
        typer.echo(f"error: no space left on device writing {full}", err=True)
        raise typer.Exit(1)
    message = str(exc) if isinstance(exc, ArchiverError) else f"{type(exc).__name__}: {exc}"
    typer.echo(
        f"error: {redact(message.splitlines()[0] if message else type(exc).__name__)}", err=True
    )
    raise typer.Exit(1)


_DEST: list[str] = []  # the destination of the running command, for the disk-full message


def _disk_full(exc: BaseException) -> str | None:
    """The path (or destination) an ENOSPC in `exc`'s chain was writing, else None."""
    import errno

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno == errno.ENOSPC:
            return str(current.filename or (_DEST[-1] if _DEST else "the archive"))
        if "No space left on device" in str(current) and _DEST:
            return _DEST[-1]
        current = current.__cause__ or current.__context__
    return None


def _local_dest_check(dest: str | None) -> None:
    """A local destination must exist or be creatable: checked before anything starts."""
    from archiver.errors import ConfigurationError
    from archiver.settings import Settings

    target = dest or Settings().dest
    _DEST.append(target)
    if "://" in target and not target.startswith("file://"):
        return
    path = Path(target.removeprefix("file://")).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigurationError(f"cannot create --dest {target}: {exc.strerror or exc}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigurationError(f"cannot write to --dest {target}: permission denied")


def _token_check() -> None:
    """A missing token is reported here, not as a 401 after Prefect started."""
    from archiver.errors import ConfigurationError
    from archiver.settings import Settings

    settings = Settings()
    if settings.api_token is None and not settings.token_secret_block:
        raise ConfigurationError(
            "REPLICATE_API_TOKEN is not set: export your Replicate API token "
            "(https://replicate.com/account/api-tokens)"
        )


def _parse_deadline(text: str | None) -> float | None:
    """--deadline SECONDS: a number from 1 to 86400, or a one-line error naming the value."""
    import math

    from archiver.errors import ConfigurationError

    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 1 <= value <= 86400:
        raise ConfigurationError(f"--deadline must be seconds from 1 to 86400, got {text!r}")
    return value


def _check_on_data_removed(value: str) -> None:
    from archiver.errors import ConfigurationError

    if value not in ("fail", "rerun"):
        raise ConfigurationError(f"--on-data-removed must be fail or rerun, got {value!r}")


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
    from flows.console import RichProgress, quiet_prefect_console
    from flows.prefect_api import prefect_api

    with prefect_api():
        from flows.archive_prediction import archive_prediction

        quiet_prefect_console(debug)
        with RichProgress(enabled=show_progress) as progress:
            use_progress(progress)
            return interrupts.run(archive_prediction(**flow_kwargs))


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
    deadline: str = typer.Option(
        None, "--deadline", help="Cancel the prediction on Replicate after SECONDS (1-86400)"
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON summary on stdout"),
    debug: bool = typer.Option(False, "--debug", help="Tracebacks and Prefect logs on errors"),
) -> None:
    """Generate one prediction, download every output at once, and archive it."""
    from archiver.errors import ConfigurationError
    from archiver.inputs import load_input_json, parse_options, parse_pairs
    from archiver.prediction import ModelRef

    interrupts.install()
    try:
        # Every check that needs no network comes before Prefect or Replicate is touched.
        if bool(model) == bool(deployment):
            raise ConfigurationError("give exactly one of MODEL or --deployment OWNER/NAME")
        ModelRef.parse(model or deployment, deployment=bool(deployment))
        _check_on_data_removed(on_data_removed)
        seconds = _parse_deadline(deadline)
        flow_input = {**load_input_json(input_json), **parse_pairs(inputs)}
        options = parse_options(storage_option)
        _token_check()
        _local_dest_check(dest)
        summary = _run_flow(
            {
                "model": model or deployment,
                "input": flow_input,
                "dest": dest,
                "deployment": bool(deployment),
                "refresh": refresh,
                "on_data_removed": on_data_removed,
                "deadline": seconds,
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
    deadline: str = typer.Option(
        None, "--deadline", help="Cancel each prediction on Replicate after SECONDS (1-86400)"
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON summary on stdout"),
    debug: bool = typer.Option(False, "--debug", help="Tracebacks and Prefect logs on errors"),
) -> None:
    """Archive every record of a batch file; exits 1 if any item failed (rerun to retry them)."""
    from archiver.batchfile import load_batch
    from archiver.inputs import parse_options
    from archiver.prediction import ModelRef
    from archiver.settings import Settings

    interrupts.install()
    try:
        _check_on_data_removed(on_data_removed)
        seconds = _parse_deadline(deadline)
        if model is not None:
            ModelRef.parse(model)
        _export_storage_options(parse_options(storage_option))
        # Read it here too: file errors come before Prefect starts, and the bar knows its total.
        items = load_batch(file, default_model=model, storage_options=Settings().storage_options)
        if not items:
            typer.echo(f"warning: {file} holds no records; nothing to archive", err=True)
            return
        _token_check()
        _local_dest_check(dest)
        from archiver.progress import use_progress
        from flows.console import RichProgress, quiet_prefect_console
        from flows.prefect_api import prefect_api

        with prefect_api():
            from flows.batch import archive_batch

            quiet_prefect_console(debug)
            with RichProgress(enabled=not as_json, predictions=len(items)) as progress:
                use_progress(progress)
                state = interrupts.run(
                    archive_batch(
                        file=file,
                        model=model,
                        dest=dest,
                        concurrency=concurrency,
                        refresh=refresh,
                        on_data_removed=on_data_removed,
                        deadline=seconds,
                        return_state=True,
                    )
                )
            summary = state.result(raise_on_failure=False)
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


@app.command()
def demo(
    dest: str = typer.Option("./archive", "--dest", help="Where to archive the demo outputs"),
    processing_seconds: float = typer.Option(1.0, help="Simulated model time"),
) -> None:
    """The main job end to end, offline, on the built-in emulator."""
    from flows.demo import run_demo

    run_demo(dest, processing_seconds)


server_app = typer.Typer(
    no_args_is_help=True,
    help="The local Prefect server (API + UI) that ad-hoc runs reuse.",
)
app.add_typer(server_app, name="server")


@server_app.command("start")
def server_start() -> None:
    """Start it in the background (if it is not up) and print where it is."""
    from archiver.settings import Settings
    from flows import local_server

    settings = Settings()
    try:
        state = local_server.ensure(
            port=settings.local_server_port, timeout=settings.server_start_timeout
        )
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - the CLI's one boundary
        _fail(exc, debug=False)
    _print_state(state)


@server_app.command("stop")
def server_stop() -> None:
    """Stop it (only the local server of this PREFECT_HOME)."""
    from flows import local_server

    state = local_server.stop()
    typer.echo(f"stopped the local Prefect server (pid {state.pid})" if state else "not running")


@server_app.command("status")
def server_status() -> None:
    """Port, pid, UI URL and database of the local server; exit 1 if it is not running."""
    from flows import local_server

    state = local_server.status()
    if state is None:
        typer.echo(f"not running (PREFECT_HOME {local_server.prefect_home()})")
        raise typer.Exit(1)
    _print_state(state)
    if not local_server.healthy(state.api_url):
        typer.echo("api:      not answering yet (starting?)")


def _print_state(state: Any) -> None:
    typer.echo(
        f"port:     {state.port}\npid:      {state.pid}\nui:       {state.url}\n"
        f"api:      {state.api_url}\ndatabase: {state.database}\nlog:      {state.log}"
    )


if __name__ == "__main__":
    app()
