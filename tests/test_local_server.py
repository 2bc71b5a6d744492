"""The local Prefect server ad-hoc runs reuse: started once, shared, replaced when dead, stopped.

Real processes: `python -m flows ...` subprocesses with their own PREFECT_HOME and no
PREFECT_API_URL, a real `prefect server start` in the background, the emulator over HTTP.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from cli import local_server
from cli.database_template import DONE
from tests.conftest import ROOT, TOKEN
from tests.prefect_server import run_logs, seed_home, wait_for

MODEL = "black-forest-labs/flux-schnell"
pytestmark = pytest.mark.server


def cli_env(home: Path, emulator, tmp_path: Path, **extra: str) -> dict[str, str]:
    """A new user's environment: no Prefect API configured, a PREFECT_HOME of its own (whose
    server skips what the template did, if `home` was seeded with it)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "ARCHIVER_"))}
    env.update(
        emulator.env(),
        REPLICATE_API_TOKEN=TOKEN,
        PREFECT_HOME=str(home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
        ARCHIVER_POLL_INTERVAL="0.05",
        ARCHIVER_SERVER_START_TIMEOUT="600",  # a shared, busy test machine
        ARCHIVER_STAGING_DIR=str(tmp_path / "staging"),
        ARCHIVER_CACHE_URL=str(tmp_path / "cache"),
    )
    if (home / "prefect.db").exists():
        env.update(DONE)
    env.update(extra)
    return env


def flows(*args: str, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "flows", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def run_args(tmp_path: Path, prompt: str) -> list[str]:
    return ["run", MODEL, "-i", f"prompt={prompt}", "--dest", str(tmp_path / "archive"), "--json"]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return local_server.is_server_process(pid)


def live_group_members(pgid: int) -> list[int]:
    """Processes of process group `pgid` that are not zombies (from /proc)."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                members.append(int(entry.name))
    return members


def stopped_after(path: Path) -> None:
    """Stop the local server of PREFECT_HOME `path` (and check it gone)."""
    state = local_server.read_state(path)
    local_server.stop(path)
    if state is not None and alive(state.pid):  # pragma: no cover - stop failed
        os.killpg(state.pid, signal.SIGKILL)


@pytest.fixture
def new_home(tmp_path):
    """An empty PREFECT_HOME, as a new user has: its server's first start migrates a new
    database. Its local server is stopped (and checked gone) afterwards."""
    path = tmp_path / "prefect-home"
    path.mkdir()
    yield path
    stopped_after(path)


@pytest.fixture
def home(tmp_path, prefect_template):
    """A PREFECT_HOME holding a copy of the session's migrated database (for the tests whose
    subject is not a first start); its local server is stopped afterwards."""
    path = tmp_path / "prefect-home"
    seed_home(path, prefect_template)
    yield path
    stopped_after(path)


def flow_runs(api_url: str) -> list[dict]:
    request = urllib.request.Request(
        f"{api_url}/flow_runs/filter",
        data=b"{}",
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def test_run_starts_the_local_server_and_is_visible_in_its_api(new_home, emulator, tmp_path):
    """With no API configured, a run starts the local server (one stderr line) and shows in it,
    with its logs to the last line."""
    home = new_home
    env = cli_env(home, emulator, tmp_path)
    result = flows(*run_args(tmp_path, "visible"), env=env)
    assert result.returncode == 0, result.stderr
    [hint] = re.findall(r"\(stop: (.+)\)$", result.stderr, re.MULTILINE)
    state = local_server.status(home)
    assert state is not None and local_server.healthy(state.api_url)
    runs = flow_runs(state.api_url)
    assert [r["state_type"] for r in runs] == ["COMPLETED"]
    # The CLI ends without the interpreter's teardown (cli/main.py), after the exit
    # handlers: the run's last log lines still reached the API.
    messages = [entry["message"] for entry in run_logs(state.api_url, runs[0]["id"])]
    assert any(m.startswith("archived ") for m in messages), messages
    assert any("Finished in state Completed" in m for m in messages), messages
    status = flows("server", "status", env=env, timeout=60)
    assert status.returncode == 0
    for value in (str(state.port), str(state.pid), state.url, str(home / "prefect.db")):
        assert value in status.stdout
    # The printed stop hint works pasted into a shell elsewhere, with no venv on PATH.
    pasted = subprocess.run(
        ["/bin/sh", "-c", hint],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert pasted.returncode == 0, pasted.stderr
    wait_for(lambda: not alive(state.pid), 30, "the server to stop")
    assert local_server.status(home) is None


def test_a_killed_server_is_replaced_and_stop_leaves_nothing(home, emulator, tmp_path):
    """SIGKILL the server between runs: the next run starts a new one; `stop` ends it for good."""
    env = cli_env(home, emulator, tmp_path)
    first = flows(*run_args(tmp_path, "one"), env=env)
    assert first.returncode == 0, first.stderr
    old = local_server.status(home)
    assert old is not None
    os.killpg(old.pid, signal.SIGKILL)
    wait_for(lambda: not alive(old.pid), 30, "the killed server to go")
    second = flows(*run_args(tmp_path, "two"), env=env)
    assert second.returncode == 0, second.stderr
    new = local_server.status(home)
    assert new is not None and new.pid != old.pid
    assert len(flow_runs(new.api_url)) >= 1
    stopped = flows("server", "stop", env=env, timeout=60)
    assert stopped.returncode == 0 and str(new.pid) in stopped.stdout
    assert not alive(new.pid)
    assert not live_group_members(new.pid)  # nothing of its process group is left
    assert flows("server", "status", env=env, timeout=60).returncode == 1


def test_two_simultaneous_first_runs_start_one_server(home, emulator, tmp_path):
    """Two runs started at once with no server up: exactly one server starts, both succeed."""
    env = cli_env(home, emulator, tmp_path)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "flows", *run_args(tmp_path, f"race {i}")],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outputs = []
    try:
        for proc in procs:
            outputs.append(proc.communicate(timeout=600))
    finally:
        for proc in procs:
            proc.kill()
    assert [p.returncode for p in procs] == [0, 0], outputs
    started = sum("started a local Prefect server" in err for _, err in outputs)
    assert started == 1, outputs
    state = local_server.status(home)
    assert state is not None
    assert len(flow_runs(state.api_url)) == 2


def test_a_stale_state_file_is_replaced(home, tmp_path):
    """A state file naming a dead pid is not a running server; `server start` replaces it."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    directory = local_server.state_dir(home)
    directory.mkdir(parents=True)
    (directory / "state.json").write_text(
        json.dumps({"pid": dead.pid, "port": 1, "log": "x", "database": "y"})
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env.update(DONE, PREFECT_HOME=str(home))
    assert flows("server", "status", env=env, timeout=60).returncode == 1
    started = flows("server", "start", env=env)
    assert started.returncode == 0, started.stderr
    state = local_server.status(home)
    assert state is not None and state.pid != dead.pid and local_server.healthy(state.api_url)


def test_homes_get_different_default_ports():
    """PREFECT_HOMEs start from default ports of their own: stable per home, spread over the
    range (two homes that still share one get different ports through the port lock, below)."""
    homes = [Path(f"home-{i}") for i in range(100)]
    ports = [local_server.default_port(home) for home in homes]
    assert ports == [local_server.default_port(home) for home in homes]
    assert all(
        local_server.PORT_BASE <= p < local_server.PORT_BASE + local_server.PORT_SPAN for p in ports
    )
    assert len(set(ports)) >= 90


def test_a_server_that_cannot_start_is_one_line_and_nothing_is_paid(home, emulator, tmp_path):
    """The configured port is taken: one line naming it and what to do, exit 1, no prediction."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        env = cli_env(home, emulator, tmp_path, ARCHIVER_LOCAL_SERVER_PORT=str(port))
        result = flows(*run_args(tmp_path, "no server"), env=env, timeout=120)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1, result.stderr
    assert str(port) in lines[0] and "ARCHIVER_LOCAL_SERVER_PORT" in lines[0]
    assert emulator.stats().create_attempts == 0


def test_two_homes_with_the_same_default_port_start_on_different_ports(
    tmp_path, monkeypatch, prefect_template
):
    """Two PREFECT_HOMEs whose default ports coincide start at the same moment: each gets a
    server of its own on its own port (the free-port check and the bind never race)."""
    import threading

    homes = [tmp_path / "a", tmp_path / "b"]
    for home in homes:
        for key, value in seed_home(home, prefect_template).items():
            monkeypatch.setenv(key, value)  # the servers' environment is this process's
    same = local_server.default_port(homes[0])
    monkeypatch.setattr(local_server, "default_port", lambda home=None: same)
    results: dict[int, object] = {}

    def start(index: int) -> None:
        try:
            results[index] = local_server.ensure(home=homes[index], timeout=600, echo=print)
        except Exception as exc:  # reported below
            results[index] = exc

    threads = [threading.Thread(target=start, args=(i,)) for i in range(2)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=900)
        states = [results[0], results[1]]
        assert all(isinstance(s, local_server.ServerState) for s in states), states
        assert states[0].port != states[1].port
        for home, state in zip(homes, states, strict=True):
            assert local_server.status(home) == state
            with urllib.request.urlopen(f"{state.api_url}/health", timeout=10) as answer:
                assert answer.status == 200
    finally:
        for home in homes:
            local_server.stop(home)
    assert all(local_server.status(home) is None for home in homes)
