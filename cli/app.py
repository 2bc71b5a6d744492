"""`python -m flows`: run the pipeline ad hoc, start the emulator, or try the demo."""

from __future__ import annotations

from typing import Any

import typer

from cli import account as account
from cli import catalog as catalog
from cli import runs
from cli.common import export_storage_options as _export_storage_options
from cli.common import fail as _fail

# Heavy imports (Prefect, httpx, the emulator) happen inside commands: `--help`, `settings` and
# `emulator` stay cheap.

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Archive Replicate predictions before their URLs die.",
)


def _run_flow(
    flow_kwargs: dict[str, Any],
    *,
    storage_options: dict[str, Any],
    debug: bool,
    show_progress: bool,
) -> Any:
    _export_storage_options(storage_options)
    from archiver.progress import use_progress
    from cli.console import RichProgress, quiet_prefect_console
    from cli.prefect_api import prefect_api

    with prefect_api():
        from flows.archive_prediction import archive_prediction

        quiet_prefect_console(debug)
        with RichProgress(enabled=show_progress) as progress:
            use_progress(progress)
            return runs.run(archive_prediction(**flow_kwargs))


def _upload_inputs(
    model: Any, flow_input: dict[str, Any], **kwargs: Any
) -> tuple[dict[str, Any], dict[str, str]]:
    """Upload the `@file` inputs over 256 KB (Files API) before the flow run exists: its
    parameters hold their URLs. Nothing to upload: nothing imported or opened."""
    from archiver.uploads import has_uploads

    if not has_uploads(flow_input):
        return flow_input, {}
    import asyncio

    from archiver.runtime import Runtime
    from archiver.settings import Settings
    from archiver.uploads import resolve_uploads

    async def upload() -> tuple[dict[str, Any], dict[str, str]]:
        runtime = Runtime.build(
            Settings(), dest=kwargs["dest"], storage_options=kwargs["storage_options"]
        )
        try:
            return await resolve_uploads(runtime, model, flow_input, refresh=kwargs["refresh"])
        finally:
            await runtime.aclose()

    return asyncio.run(upload())


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
    webhook: str = typer.Option(
        None, "--webhook", help="Receiver URL for the `completed` event (`flows webhooks`)"
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON summary on stdout"),
    debug: bool = typer.Option(False, "--debug", help="Tracebacks and Prefect logs on errors"),
) -> None:
    """Generate one prediction, download every output at once, and archive it."""
    from archiver.errors import ConfigurationError
    from archiver.inputs import load_input_json, parse_options, parse_pairs
    from archiver.prediction import ModelRef
    from cli import checks, interrupts

    interrupts.install()
    try:
        # Every check that needs no network comes before Prefect or Replicate is touched.
        if bool(model) == bool(deployment):
            raise ConfigurationError("give exactly one of MODEL or --deployment OWNER/NAME")
        ModelRef.parse(model or deployment, deployment=bool(deployment))
        checks.on_data_removed(on_data_removed)
        seconds = checks.deadline(deadline)
        checks.webhook(webhook)
        flow_input = {**load_input_json(input_json), **parse_pairs(inputs)}
        options = parse_options(storage_option)
        _export_storage_options(options)
        checks.token()
        checks.local_dest(dest)
        checks.hosts(dest)
        flow_input, digests = _upload_inputs(
            ModelRef.parse(model or deployment, deployment=bool(deployment)),
            flow_input,
            dest=dest,
            storage_options=options,
            refresh=refresh,
        )
        summary = _run_flow(
            {
                "model": model or deployment,
                "input": flow_input,
                "file_digests": digests or None,
                "dest": dest,
                "deployment": bool(deployment),
                "refresh": refresh,
                "on_data_removed": on_data_removed,
                "deadline": seconds,
                "webhook": webhook,
            },
            storage_options=options,
            debug=debug,
            show_progress=not as_json,
        )
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - the CLI's one boundary
        _fail(exc, debug)
    if as_json:
        typer.echo(runs.as_json(summary))
    else:
        from cli.console import print_summary

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
    webhook: str = typer.Option(
        None, "--webhook", help="Receiver URL for each `completed` event (`flows webhooks`)"
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON summary on stdout"),
    debug: bool = typer.Option(False, "--debug", help="Tracebacks and Prefect logs on errors"),
) -> None:
    """Archive every record of a batch file; exits 1 if any item failed (rerun to retry them)."""
    from archiver.batchfile import load_batch
    from archiver.inputs import parse_options
    from archiver.prediction import ModelRef
    from archiver.settings import Settings
    from cli import checks, interrupts

    interrupts.install()
    try:
        checks.on_data_removed(on_data_removed)
        seconds = checks.deadline(deadline)
        checks.webhook(webhook)
        if model is not None:
            ModelRef.parse(model)
        _export_storage_options(parse_options(storage_option))
        # Read it here too: file errors come before Prefect starts, and the bar knows its total.
        items = load_batch(file, default_model=model, storage_options=Settings().storage_options)
        if not items:
            typer.echo(f"warning: {file} holds no records; nothing to archive", err=True)
            return
        checks.token()
        checks.local_dest(dest)
        checks.hosts(dest)
        from archiver.progress import use_progress
        from cli.console import RichProgress, quiet_prefect_console
        from cli.prefect_api import prefect_api

        with prefect_api():
            from flows.batch import archive_batch

            quiet_prefect_console(debug)
            with RichProgress(enabled=not as_json, predictions=len(items)) as progress:
                use_progress(progress)
                state = runs.run(
                    archive_batch(
                        file=file,
                        model=model,
                        dest=dest,
                        concurrency=concurrency,
                        refresh=refresh,
                        on_data_removed=on_data_removed,
                        deadline=seconds,
                        webhook=webhook,
                        return_state=True,
                    )
                )
            summary = state.result(raise_on_failure=False)
        if isinstance(summary, BaseException):
            raise summary
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - the CLI's one boundary
        _fail(exc, debug)
    if as_json:
        typer.echo(runs.as_json(summary))
    else:
        from cli.console import print_batch_summary

        print_batch_summary(summary)
    if summary.failed:
        raise typer.Exit(1)


@app.command()
def settings() -> None:
    """Print every setting as a markdown table (names, defaults, meaning)."""
    from archiver.settings import settings_table

    typer.echo(settings_table())


@app.command(
    "emulator",
    help="Serve the Replicate emulator (offline API + delivery); --help for its options.",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    add_help_option=False,
)
def emulator(ctx: typer.Context) -> None:
    """Hand every argument to the emulator's own command (imported only when used)."""
    from emulator.cli import emulator_command

    command = typer.main.get_command(_single(emulator_command))
    command.main(args=ctx.args, prog_name="python -m flows emulator")


def _single(function: Any) -> typer.Typer:
    single = typer.Typer(add_completion=False)
    single.command()(function)
    return single


@app.command()
def demo(
    dest: str = typer.Option("./archive", "--dest", help="Where to archive the demo outputs"),
    processing_seconds: float = typer.Option(1.0, help="Simulated model time"),
) -> None:
    """The main job end to end, offline, on the built-in emulator."""
    from cli.demo import run_demo

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
    from cli import local_server

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
    from cli import local_server

    state = local_server.stop()
    typer.echo(f"stopped the local Prefect server (pid {state.pid})" if state else "not running")


@server_app.command("status")
def server_status() -> None:
    """Port, pid, UI URL and database of the local server; exit 1 if it is not running."""
    from cli import local_server

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


# Archive what the account pays for, made by any client: by id, by sweep, by webhook.
app.command("archive")(account.archive)
app.command("sweep")(account.sweep)
app.command("webhooks")(account.webhooks)

# The archive after the fact: search it, check it, account for it (catalog derived from manifests).
app.command("find")(catalog.find)
app.command("verify")(catalog.verify)
app.command("usage")(catalog.usage)
app.add_typer(catalog.catalog_app, name="catalog")

if __name__ == "__main__":
    app()
