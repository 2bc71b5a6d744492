"""`python -m flows server start | stop | status | prepare`: the local Prefect server ad-hoc runs
reuse, and the migrated database a new PREFECT_HOME's server starts from.

Cheap to import: `cli.local_server` loads inside the commands.
"""

from __future__ import annotations

from typing import Any

import typer

from cli.common import fail

server_app = typer.Typer(
    no_args_is_help=True,
    help="The local Prefect server (API + UI) that ad-hoc runs reuse.",
)


@server_app.command("start")
def server_start() -> None:
    """Start it in the background (if it is not up) and print where it is."""
    from archiver.settings import Settings
    from cli import local_server

    settings = Settings()
    try:
        state = local_server.ensure(
            port=settings.local_server_port,
            timeout=settings.server_start_timeout,
            template=settings.server_template,
        )
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - the CLI's one boundary
        fail(exc, debug=False)
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


@server_app.command("prepare")
def server_prepare() -> None:
    """Migrate Prefect's database once for this Prefect version (make install runs this): a
    new PREFECT_HOME's first server start then copies it, about 5 s instead of 14."""
    from archiver.settings import Settings
    from cli import database_template

    settings = Settings()
    try:
        template = database_template.build(timeout=settings.server_start_timeout)
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - the CLI's one boundary
        fail(exc, debug=False)
    typer.echo(f"template: {template}")


def _print_state(state: Any) -> None:
    typer.echo(
        f"port:     {state.port}\npid:      {state.pid}\nui:       {state.url}\n"
        f"api:      {state.api_url}\ndatabase: {state.database}\nlog:      {state.log}"
    )
