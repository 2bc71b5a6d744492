"""`python -m deployments`: serve the deployments, store the token's Secret block, list them."""

from __future__ import annotations

import typer

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="The archiver's Prefect deployments (declared in prefect.yaml).",
)


@app.command()
def serve(
    name: list[str] = typer.Option(
        [], "--name", "-n", help="Serve only this deployment (repeatable)"
    ),
    limit: int = typer.Option(None, "--limit", min=1, help="Most flow runs at once"),
    replace: bool = typer.Option(
        False, "--replace", help="Delete same-named work-pool deployments on the server first"
    ),
) -> None:
    """Serve the deployments from this process: schedules and UI runs, no work pool or worker."""
    from archiver.errors import ConfigurationError
    from deployments.declare import serve as serve_all

    try:
        serve_all(name or None, limit=limit, replace=replace)
    except ConfigurationError as exc:  # a declared parameter refused (credentials in a URL)
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


@app.command()
def secret(
    name: str = typer.Option(
        None, "--name", help="Block name [default: the deployments' ARCHIVER_TOKEN_SECRET_BLOCK]"
    ),
) -> None:
    """Store REPLICATE_API_TOKEN from the environment in a Prefect Secret block."""
    from archiver.errors import ConfigurationError
    from deployments.declare import create_token_secret

    try:
        names = create_token_secret(name)
    except ConfigurationError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"stored the token in Secret block(s): {', '.join(names)}")


@app.command("list")
def list_() -> None:
    """Print the declared deployments: flow entrypoint, pool, schedules, parameters."""
    from deployments.declare import load_specs

    for spec in load_specs():
        schedules = (
            ", ".join(s.get("cron") or f"every {s.get('interval')}s" for s in spec.schedules)
            or "on demand"
        )
        typer.echo(
            f"{spec.name}: {spec.entrypoint} pool={spec.work_pool} ({schedules}) "
            f"parameters={spec.parameters}"
        )


if __name__ == "__main__":
    app()
