"""What every command of `python -m flows` shares: the one-line failure and the way storage
options travel. Cheap to import (no Prefect): `--help` loads it."""

from __future__ import annotations

import json
import os
import sys
from typing import Any, NoReturn

import typer


def fail(exc: BaseException, debug: bool) -> NoReturn:
    """One line on stderr (a traceback too with --debug), and a non-zero exit."""
    if debug:
        import traceback

        traceback.print_exception(exc, file=sys.stderr)
    import asyncio

    from archiver.errors import one_line
    from cli.checks import disk_full

    if isinstance(exc, KeyboardInterrupt | asyncio.CancelledError):
        typer.echo("error: interrupted; what was running on Replicate was canceled", err=True)
        raise typer.Exit(130)
    full = disk_full(exc)
    if full is not None:
        typer.echo(f"error: no space left on device writing {full}", err=True)
        raise typer.Exit(1)
    typer.echo(f"error: {one_line(exc)}", err=True)
    raise typer.Exit(1)


def export_storage_options(storage_options: dict[str, Any]) -> None:
    # Storage options may hold secrets: they travel through this process's settings,
    # never through flow parameters (which Prefect stores).
    if storage_options:
        merged = {
            **json.loads(os.environ.get("ARCHIVER_STORAGE_OPTIONS") or "{}"),
            **storage_options,
        }
        os.environ["ARCHIVER_STORAGE_OPTIONS"] = json.dumps(merged)
