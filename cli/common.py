"""What every command of `python -m flows` shares: the one-line failure. Cheap to import (no
Prefect): `--help` loads it."""

from __future__ import annotations

import sys
from typing import Annotated, NoReturn

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


# The options the commands that archive share (typer reads them from the annotations).
DestOption = Annotated[
    str | None,
    typer.Option("--dest", help="Archive destination: path or fsspec URL [default: ./archive]"),
]
StorageOption = Annotated[
    list[str], typer.Option("--storage-option", help="fsspec storage option K=V (repeatable)")
]
DataRemovedOption = Annotated[
    str,
    typer.Option(
        "--on-data-removed", help="fail | rerun, when Replicate already deleted the outputs"
    ),
]
DebugOption = Annotated[bool, typer.Option("--debug", help="Tracebacks and Prefect logs on errors")]
