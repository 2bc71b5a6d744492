"""The benchmark's servers, each in its own process so they do not share the contenders' GIL:
the Replicate emulator, and a real `prefect server` (SQLite, UI off) started once for all runs.

    python -m benchmarks.servers emulator PROCESSING_SECONDS   # prints its base URL, serves
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from cli.server_process import die_with_parent

PYTHON = sys.executable


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def emulator(processing_seconds: float) -> Iterator[tuple[str, int]]:
    """An emulator process; yields its base URL and process id."""
    proc = subprocess.Popen(
        [PYTHON, "-m", "benchmarks.servers", "emulator", str(processing_seconds)],
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=die_with_parent,  # noqa: PLW1509 - a killed bench takes its servers along
    )
    try:
        line = proc.stdout.readline().strip() if proc.stdout else ""
        if not line.startswith("http"):
            raise RuntimeError(f"the emulator did not start: {line!r}")
        yield line, proc.pid
    finally:
        _stop(proc)


@contextlib.contextmanager
def prefect_server(home: Path, timeout: float = 120) -> Iterator[tuple[str, float, int]]:
    """`prefect server start` on a free port with its own PREFECT_HOME; yields (API URL,
    seconds it took to answer /api/health, process id)."""
    port = _free_port()
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
    }
    env.pop("PREFECT_API_URL", None)
    log = open(home.parent / "prefect-server.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [PYTHON, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=die_with_parent,  # noqa: PLW1509 - a killed bench takes its servers along
    )
    url = f"http://127.0.0.1:{port}/api"
    started = time.monotonic()
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"prefect server exited; see {log.name}")
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() - started > timeout:
                raise RuntimeError(f"prefect server did not answer within {timeout:g}s")
            time.sleep(0.25)
        yield url, time.monotonic() - started, proc.pid
    finally:
        _stop(proc)
        log.close()


def run_env(base_url: str, api_url: str, work: Path, token: str) -> dict[str, str]:
    """The environment of a run against the emulator at `base_url` and the Prefect API at
    `api_url` (a client PREFECT_HOME under `work`; no storage options of the caller's)."""
    env = {
        **os.environ,
        "REPLICATE_BASE_URL": base_url,
        "REPLICATE_DELIVERY_HOSTS": base_url.split("//")[1].split(":")[0],
        "REPLICATE_API_TOKEN": token,
        "PREFECT_API_URL": api_url,
        "PREFECT_HOME": str(work / "prefect-client"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
    }
    env.pop("ARCHIVER_STORAGE_OPTIONS", None)
    return env


def tree_cpu_seconds(roots: dict[str, int]) -> dict[str, float]:
    """User + system CPU seconds each root process and its live descendants (a server that
    runs its work in child processes, as `prefect server start` may) have used so far, by
    root name; one pass over /proc (Linux)."""
    tick = os.sysconf("SC_CLK_TCK")
    children: dict[int, list[int]] = {}
    cpu: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rpartition(")")[2].split()
                pid = int(entry.name)
                children.setdefault(int(fields[1]), []).append(pid)
                cpu[pid] = (int(fields[11]) + int(fields[12])) / tick
            except (OSError, ValueError, IndexError):
                continue
    totals = {}
    for name, root in roots.items():
        total, frontier = 0.0, [root]
        while frontier:
            pid = frontier.pop()
            total += cpu.get(pid, 0.0)
            frontier.extend(children.get(pid, ()))
        totals[name] = total
    return totals


def _serve_emulator(processing_seconds: float) -> None:
    from emulator import Emulator

    with Emulator(processing_seconds=processing_seconds) as emu:
        print(emu.base_url, flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    if sys.argv[1:2] == ["emulator"]:
        import signal

        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        _serve_emulator(float(sys.argv[2]))
