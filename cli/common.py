"""What every command of `python -m flows` shares: the one-line failure. Cheap to import (no
Prefect): `--help` loads it."""

from __future__ import annotations

import sys
from typing import NoReturn

import typer


def fail(exc: BaseException, debug: bool) -> NoReturn:
    """One line on stderr (a traceback too with --debug), and a non-zero exit."""
    if debug:
        import traceback

        traceback.print_exception(exc, file=sys.stderr)
    import asyncio

    from archiver.errors import ArchiverError, redact
    from cli.checks import disk_full

    if isinstance(exc, KeyboardInterrupt | asyncio.CancelledError):
        typer.echo("error: interrupted; what was running on Replicate was canceled", err=True)
        raise typer.Exit(130)
    full = disk_full(exc)
    if full is not None:
        typer.echo(f"error: no space left on device writing {full}", err=True)
        raise typer.Exit(1)
    message = str(exc) if isinstance(exc, ArchiverError) else f"{type(exc).__name__}: {exc}"
    typer.echo(
        f"error: {redact(message.splitlines()[0] if message else type(exc).__name__)}", err=True
    )
    raise typer.Exit(1)


# Help texts of the options the commands that archive share.
DEST_HELP = "Archive destination: path or fsspec URL [default: ./archive]"
OPTION_HELP = "fsspec storage option K=V (repeatable)"
ON_DATA_REMOVED_HELP = "fail | rerun, when Replicate already deleted the outputs"
JSON_HELP = "Print one JSON summary on stdout"
DEBUG_HELP = "Tracebacks and Prefect logs on errors"
