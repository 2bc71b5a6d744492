"""The emulator CLI (typer command, ``python -m emulator``) and import hygiene."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import typer
from typer.testing import CliRunner

from emulator import Faults
from emulator.cli import emulator_command
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[1]


def throwaway_app() -> typer.Typer:
    app = typer.Typer()
    app.command("emulator")(emulator_command)

    @app.command("noop")
    def noop() -> None:
        """Second command so typer keeps 'emulator' as a sub-command."""

    return app


def test_help_lists_one_flag_per_fault_field():
    """Mounted on a typer app, the command has --host, --port and a kebab-case flag per fault."""
    result = CliRunner().invoke(
        throwaway_app(), ["emulator", "--help"], env={"COLUMNS": "300", "TERMINAL_WIDTH": "300"}
    )
    assert result.exit_code == 0, result.output
    for field in dataclasses.fields(Faults):
        assert f"--{field.name.replace('_', '-')}" in result.output, field.name
    assert "--host" in result.output and "--port" in result.output


def test_invalid_fault_flag_value_is_a_usage_error():
    """A fault value Faults rejects (final status) exits with a usage error, before serving."""
    result = CliRunner().invoke(throwaway_app(), ["emulator", "--final-status", "exploded"])
    assert result.exit_code == 2


def start_cli(*args: str) -> tuple[subprocess.Popen[str], dict[str, str]]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "emulator", "--port", "0", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    exports = {}
    assert proc.stdout is not None
    for _ in range(3):
        line = proc.stdout.readline().strip()
        assert line.startswith("export "), line
        key, _, value = line.removeprefix("export ").partition("=")
        exports[key] = value
    return proc, exports


def wait_until_serving(base_url: str) -> None:
    def serving() -> bool:
        try:
            httpx.get(f"{base_url}/_emulator/faults", timeout=1)
        except httpx.TransportError:
            return False
        return True

    wait_until(serving, what="the CLI emulator to serve")


def test_module_runs_prints_exports_and_stops_on_ctrl_c():
    """python -m emulator prints eval-able exports, serves with the flags (--model names exist,
    others are 404), exits on SIGINT."""
    proc, exports = start_cli(
        "--processing-seconds",
        "0.05",
        "--fail-reads",
        "2",
        "--first-urls-expired",
        "--final-status",
        "failed",
        "--model",
        "a/b",
    )
    try:
        assert set(exports) == {
            "REPLICATE_BASE_URL",
            "REPLICATE_DELIVERY_HOSTS",
            "REPLICATE_API_TOKEN",
        }
        assert exports["REPLICATE_BASE_URL"].startswith("http://127.0.0.1:")
        assert exports["REPLICATE_DELIVERY_HOSTS"] == "127.0.0.1"
        assert exports["REPLICATE_API_TOKEN"] == "emulator-token"
        base = exports["REPLICATE_BASE_URL"]
        wait_until_serving(base)
        faults = httpx.get(f"{base}/_emulator/faults").json()
        assert faults["processing_seconds"] == 0.05 and faults["fail_reads"] == 2
        assert faults["first_urls_expired"] is True and faults["final_status"] == "failed"
        body = httpx.post(
            f"{base}/v1/models/a/b/predictions",
            json={"input": {}},
            headers={"Authorization": "Bearer emulator-token", "Prefer": "wait"},
        )
        assert body.json()["status"] == "failed"
        unknown = httpx.post(
            f"{base}/v1/models/c/d/predictions",
            json={"input": {}},
            headers={"Authorization": "Bearer emulator-token"},
        )
        assert unknown.status_code == 404  # only --model names (and the built-ins) exist
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=15)
    assert proc.returncode == 0


def test_emulator_does_not_import_prefect_or_typer():
    """Importing and running the emulator package pulls in neither prefect nor typer."""
    code = (
        "import sys\n"
        "from emulator import Emulator\n"
        "with Emulator(processing_seconds=0.01):\n"
        "    pass\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('prefect', 'typer'))\n"
        "print(bad)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=True,
    )
    assert out.stdout.strip() == "[]"
