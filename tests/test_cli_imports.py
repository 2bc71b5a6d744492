"""Cheap commands stay cheap: `--help`, `settings` and `emulator --help` never import Prefect;
the `replicate-archiver` console script is the same command line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT


@pytest.mark.parametrize("args", [["--help"], ["settings"], ["emulator", "--help"]])
def test_cheap_commands_do_not_import_prefect(args):
    """The command succeeds and no `prefect` module is imported on the way."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "flows", *args],
        cwd=ROOT,
        env=os.environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    imported = [line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()]
    assert not [name for name in imported if name.split(".")[0] == "prefect"]
    if args == ["--help"]:
        assert not [name for name in imported if name.split(".")[0] in ("httpx", "emulator")]


def test_console_script_is_the_same_command_line():
    """`replicate-archiver --help` (installed beside this interpreter) lists the CLI's commands."""
    script = Path(sys.executable).parent / "replicate-archiver"
    result = subprocess.run(
        [str(script), "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    for command in ("run", "batch", "archive", "sweep", "webhooks", "demo"):
        assert command in result.stdout
