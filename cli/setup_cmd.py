"""`python -m flows settings | emulator`: the settings table, and the offline Replicate emulator.

Cheap to import: the emulator loads inside its command.
"""

from __future__ import annotations

from typing import Any

import typer


def settings() -> None:
    """Print every setting as a markdown table (names, defaults, meaning)."""
    from archiver.settings import settings_table

    typer.echo(settings_table())


def emulator(ctx: typer.Context) -> None:
    """Hand every argument to the emulator's own command (imported only when used)."""
    from emulator.cli import emulator_command

    command = typer.main.get_command(_single(emulator_command))
    command.main(args=ctx.args, prog_name="python -m flows emulator")


def _single(function: Any) -> typer.Typer:
    single = typer.Typer(add_completion=False)
    single.command()(function)
    return single
