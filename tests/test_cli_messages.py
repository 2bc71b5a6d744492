"""Bad input is one line naming the problem and the value, exit 1, before anything starts.

These runs point PREFECT_API_URL at a port where nothing listens: a check that ran only after
Prefect (or Replicate) was contacted would report that instead of the bad value.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import ROOT
from tests.prefect_server import free_port

MODEL = "black-forest-labs/flux-schnell"


@pytest.fixture
def flows(archive_env, emulator):
    """`python -m flows ...` with the emulator's environment and a Prefect API that is down."""
    dead_api = f"http://127.0.0.1:{free_port()}/api"

    def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        full_env = {**os.environ, "PREFECT_API_URL": dead_api, **(env or {})}
        return subprocess.run(
            [sys.executable, "-m", "flows", *args],
            cwd=ROOT,
            env={k: v for k, v in full_env.items() if v is not None},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    return run


def one_line(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    """The one error line (beside the `flow run: URL` line of a run that started)."""
    lines = [x for x in result.stderr.strip().splitlines() if not x.startswith("flow run: ")]
    assert result.returncode == 1, result.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("value", ["-5", "abc", "1e9"])
def test_bad_deadline_is_one_line_naming_the_value(flows, value):
    """--deadline outside 1..86400 (or not a number): one line with the value, exit 1."""
    one_line(flows("run", MODEL, "-i", "prompt=x", "--deadline", value), "--deadline", value)


def test_batch_bad_deadline_is_one_line(flows, tmp_path):
    """batch --deadline is checked the same way."""
    batch = tmp_path / "b.jsonl"
    batch.write_text('{"prompt": "x"}\n')
    one_line(flows("batch", str(batch), "--model", MODEL, "--deadline", "-5"), "-5")


def test_dest_that_cannot_be_created_is_reported_before_anything_starts(flows, tmp_path, emulator):
    """A --dest under a regular file: one line naming it, nothing created on Replicate."""
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    dest = str(blocker / "archive")
    one_line(flows("run", MODEL, "-i", "prompt=x", "--dest", dest), dest)
    assert emulator.stats().create_attempts == 0


def test_missing_token_is_reported_locally(flows, archive_env, emulator):
    """No REPLICATE_API_TOKEN: one local line naming the variable, not a 401 from the API."""
    env = {k: v for k, v in os.environ.items() if k != "REPLICATE_API_TOKEN"}
    result = subprocess.run(
        [sys.executable, "-m", "flows", "run", MODEL, "-i", "prompt=x", "--dest", str(archive_env)],
        cwd=ROOT,
        env={**env, "PREFECT_API_URL": f"http://127.0.0.1:{free_port()}/api"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    one_line(result, "REPLICATE_API_TOKEN")
    assert emulator.stats().create_attempts == 0


def test_bad_model_reference_is_rejected_before_prefect(flows):
    """An invalid model reference: one line naming it, before any Prefect API is contacted."""
    one_line(flows("run", "not a model", "-i", "prompt=x"), "'not a model'")


def test_empty_batch_file_warns_and_creates_nothing(flows, tmp_path, emulator, archive_env):
    """An empty batch file: a warning naming it, exit 0, no Prefect and no prediction."""
    batch = tmp_path / "empty.jsonl"
    batch.write_text("")
    result = flows("batch", str(batch), "--model", MODEL, "--dest", str(archive_env))
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip().startswith("warning:") and str(batch) in result.stderr
    assert emulator.stats().create_attempts == 0


@pytest.fixture
def tiny_disk(tmp_path):
    """A 1 MiB tmpfs (needs mount rights; skipped otherwise)."""
    if not shutil.which("mount") or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    path = tmp_path / "full-disk"
    path.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(path)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        path.rmdir()
        pytest.skip(f"cannot mount a tmpfs: {mounted.stderr.decode().strip()}")
    yield path
    subprocess.run(["umount", str(path)], check=False)
    path.rmdir()


def test_disk_full_names_the_path(cli, tiny_disk, tmp_path, emulator):
    """Archiving 2 MiB to a 1 MiB disk: one line saying the disk is full, naming the path, and
    the download is not retried (a full disk is the disk's fault, not the stream's)."""
    dest = str(tiny_disk / "archive")
    result = cli(
        "run",
        "emulator/large-file",
        "-i",
        f"size_bytes={2 * 2**20}",
        "--dest",
        dest,
        env={"ARCHIVER_STAGING_DIR": str(tiny_disk / "staging"), "ARCHIVER_TASK_RETRIES": "0"},
    )
    line = one_line(result, "no space left", dest)
    assert "Errno" not in line
    assert len(emulator.stats().downloads) == 1, emulator.stats().downloads
