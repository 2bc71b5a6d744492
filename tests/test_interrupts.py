"""Ctrl-C, a silent Prefect API, and a SIGKILLed CLI: bounded, one line, nothing left behind."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, TOKEN
from tests.prefect_server import seed_home, wait_for

pytestmark = pytest.mark.server  # Prefect servers (local or temporary) in subprocesses

MODEL = "black-forest-labs/flux-schnell"


def start_cli(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    """`python -m flows ...` in a session of its own, as a terminal runs a foreground job."""
    return subprocess.Popen(
        [sys.executable, "-m", "flows", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def wait_created(
    emulator, proc: subprocess.Popen[str], count: int = 1, timeout: float = 120
) -> list[str]:
    """The ids once `count` predictions exist; fails at once (with its stderr) if the CLI exits."""

    def created() -> list[str] | None:
        ids = emulator.stats().created_ids
        if len(ids) >= count:
            return list(ids)
        if proc.poll() is not None:
            raise AssertionError(f"the CLI exited {proc.returncode}: {proc.communicate()[1]}")
        return None

    return wait_for(created, timeout, f"{count} prediction(s) created", interval=0.1)


def stderr_lines(proc: subprocess.Popen[str]) -> tuple[list[str], threading.Thread]:
    """The CLI's stderr lines as they come (read on a thread), and that thread."""
    lines: list[str] = []
    assert proc.stderr is not None
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
    reader.start()
    return lines, reader


def ctrl_c_watched(
    proc: subprocess.Popen[str], lines: list[str], reader: threading.Thread
) -> tuple[str, float]:
    """`ctrl_c` for a CLI whose stderr `stderr_lines` reads."""
    sent = time.monotonic()
    os.killpg(proc.pid, signal.SIGINT)
    try:
        proc.wait(30)
    finally:
        with_kill(proc)
    reader.join(10)
    return "".join(lines), time.monotonic() - sent


def ctrl_c(proc: subprocess.Popen[str]) -> tuple[str, float]:
    """SIGINT to the whole process group (what a terminal's Ctrl-C does); stderr, seconds."""
    sent = time.monotonic()
    os.killpg(proc.pid, signal.SIGINT)
    try:
        _, stderr = proc.communicate(timeout=30)
    finally:
        with_kill(proc)
    return stderr, time.monotonic() - sent


def with_kill(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def interrupt_env(prefect_harness: str) -> dict[str, str]:
    return {**os.environ, "PREFECT_API_URL": prefect_harness}


def test_ctrl_c_on_run_cancels_and_exits_130_with_one_line(
    archive_env, emulator, prefect_harness, prefect_server
):
    """Ctrl-C to the process group: the prediction is canceled, exit 130 within 10 s, one error
    line after the run's URL; the flow run ends Cancelled in Prefect, not Crashed."""
    emulator.set_faults(processing_seconds=120)
    # A short `Prefer: wait`: the create made while Prefect loads answers at once, and the flow
    # run's generate waits for the prediction (the create-ahead case is the next test).
    env = {**interrupt_env(prefect_harness), "ARCHIVER_WAIT_SECONDS": "1"}
    proc = start_cli("run", MODEL, "-i", "prompt=ctrl c", "--dest", str(archive_env), env=env)
    lines, reader = stderr_lines(proc)
    try:
        created = wait_created(emulator, proc)
        wait_for(lambda: any(line.startswith("flow run: ") for line in lines), 120, "the run")
        stderr, took = ctrl_c_watched(proc, lines, reader)
    finally:
        with_kill(proc)
    assert proc.returncode == 130, stderr
    assert took < 10, f"took {took:.1f}s: {stderr}"
    announced, error = stderr.strip().splitlines()
    assert error.startswith("error: interrupted"), stderr
    assert emulator.stats().cancels == created
    url = announced.removeprefix("flow run: ")
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/runs/flow-run/[0-9a-f-]{36}", url), stderr
    with prefect_server.client() as client:
        run = client.read_flow_run(url.rsplit("/", 1)[-1])
    assert run.state.type.value == "CANCELLED", run.state


@pytest.fixture
def new_user_env(emulator, tmp_path, prefect_template):
    """No Prefect API configured, a PREFECT_HOME of its own (seeded with the migrated database:
    the subject is not the server's first start); its local server is stopped after."""
    from cli import local_server

    home = tmp_path / "prefect-home"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "ARCHIVER_"))}
    env.update(seed_home(home, prefect_template))
    env.update(
        emulator.env(),
        REPLICATE_API_TOKEN=TOKEN,
        PREFECT_HOME=str(home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        ARCHIVER_POLL_INTERVAL="0.05",
        ARCHIVER_SERVER_START_TIMEOUT="600",  # a shared, busy test machine
        ARCHIVER_CACHE_URL=str(tmp_path / "cache"),
        ARCHIVER_STAGING_DIR=str(tmp_path / "staging"),
    )
    yield env
    local_server.stop(home)


def test_ctrl_c_while_the_prediction_is_created_ahead_cancels_it(
    archive_env, emulator, prefect_harness
):
    """Ctrl-C while the create made as Prefect loads still waits for the model (`Prefer:
    wait`): that prediction is cancelled, exit 130 within 10 s, one error line, nothing kept."""
    emulator.set_faults(processing_seconds=120)
    env = {**interrupt_env(prefect_harness), "ARCHIVER_WAIT_SECONDS": "60"}
    proc = start_cli("run", MODEL, "-i", "prompt=ahead", "--dest", str(archive_env), env=env)
    try:
        created = wait_created(emulator, proc)
        stderr, took = ctrl_c(proc)
    finally:
        with_kill(proc)
    assert proc.returncode == 130, stderr
    assert took < 10, f"took {took:.1f}s: {stderr}"
    lines = [line for line in stderr.strip().splitlines() if not line.startswith("flow run: ")]
    assert len(lines) == 1 and lines[0].startswith("error: interrupted"), stderr
    assert set(emulator.stats().cancels) == set(created)
    assert not list(archive_env.rglob("manifest.json"))


def test_ctrl_c_on_batch_cancels_every_prediction_and_exits_130(
    new_user_env, archive_env, emulator, tmp_path
):
    """A new user's batch (no API configured): Ctrl-C cancels every prediction, exit 130 in 10 s."""
    emulator.set_faults(processing_seconds=120)
    batch = tmp_path / "batch.jsonl"
    batch.write_text("".join(f'{{"prompt": "item {i}"}}\n' for i in range(3)))
    proc = start_cli(
        "batch",
        str(batch),
        "--model",
        MODEL,
        "--dest",
        str(archive_env),
        env=new_user_env,
    )
    try:
        created = wait_created(emulator, proc, 3, timeout=600)
        stderr, took = ctrl_c(proc)
    finally:
        with_kill(proc)
    assert proc.returncode == 130, stderr
    assert took < 10, f"took {took:.1f}s: {stderr}"
    # The notes of the local server's first start come before the interrupt.
    notes = ("started a local Prefect server", "waiting for the local Prefect server", "flow run: ")
    lines = [line for line in stderr.strip().splitlines() if not line.startswith(notes)]
    assert len(lines) == 1 and lines[0].startswith("error: interrupted"), stderr
    assert sorted(emulator.stats().cancels) == sorted(created)


@pytest.fixture
def silent_api():
    """A TCP server that accepts connections and never answers; yields its /api URL."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}/api"
    stop.set()
    thread.join(5)
    for conn in held:
        conn.close()
    server.close()


def test_a_silent_prefect_api_fails_in_one_line_before_any_prediction(
    archive_env, emulator, silent_api
):
    """PREFECT_API_URL that never answers: one line naming the URL, exit 1, nothing created."""
    env = {**os.environ, "PREFECT_API_URL": silent_api, "ARCHIVER_API_TIMEOUT": "3"}
    result = subprocess.run(
        [sys.executable, "-m", "flows", "run", MODEL, "-i", "prompt=x", "--dest", str(archive_env)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and silent_api in lines[0], result.stderr
    assert emulator.stats().create_attempts == 0


def descendants(pid: int) -> set[int]:
    """Every live process below `pid` (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state == "Z"


def test_a_sigkilled_cli_leaves_no_temporary_server(emulator, tmp_path, prefect_template):
    """Local server off: SIGKILL the CLI mid-run and the temporary Prefect server dies with it."""
    emulator.set_faults(processing_seconds=120)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API", "ARCHIVER_"))}
    env.update(seed_home(tmp_path / "home", prefect_template))
    env.update(
        emulator.env(),
        REPLICATE_API_TOKEN=TOKEN,
        PREFECT_HOME=str(tmp_path / "home"),
        ARCHIVER_LOCAL_SERVER="false",
        ARCHIVER_CACHE_URL=str(tmp_path / "cache"),
        ARCHIVER_STAGING_DIR=str(tmp_path / "staging"),
    )
    proc = start_cli(
        "run", MODEL, "-i", "prompt=killed", "--dest", str(tmp_path / "archive"), env=env
    )
    below: set[int] = set()
    try:
        wait_created(emulator, proc, timeout=180)
        below = descendants(proc.pid)
        assert below, "the CLI started no server process"
        proc.kill()  # SIGKILL to the CLI alone
        proc.wait(10)
        wait_for(lambda: all(gone(pid) for pid in below), 30, "the temporary server to exit")
    finally:
        with_kill(proc)
        for pid in below:  # pragma: no cover - only when the test fails
            if not gone(pid):
                os.kill(pid, signal.SIGKILL)
