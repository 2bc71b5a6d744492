"""A real `prefect server start` for tests, on a free loopback port with a private
PREFECT_HOME, started from a copy of a migrated database (`database_template`, `seed_home`); and
the process helpers the test servers share (`Process`, `clean_env`, `free_port`, `wait_for`).

The deployment stack on top of it (work pool, Secret block, `prefect deploy --all`, workers)
is `tests/prefect_stack.py`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cli.database_template import DONE
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PREFECT = str(BIN / "prefect")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(
    predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.25
) -> Any:
    """`tests.waiting.wait_until`, failing with TimeoutError (callers add server logs to it)."""
    try:
        return wait_until(predicate, timeout, what, interval)
    except AssertionError as exc:
        raise TimeoutError(str(exc)) from None


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """This process's environment without Prefect, Replicate or archiver settings, plus ours."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PREFECT_", "REPLICATE_", "ARCHIVER_"))
    }
    home.mkdir(parents=True, exist_ok=True)
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# -- processes --------------------------------------------------------------------------------


class Process:
    """A subprocess in its own session, logged to a file, stopped by its own process group."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path, log: Path) -> None:
        self.args, self.env, self.cwd, self.log = args, env, cwd, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                self.args,
                env=self.env,
                cwd=self.cwd,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 15) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)  # the process group we started
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)


class PrefectServer:
    """`prefect server start` (API + UI) on a free loopback port: SQLite unless `database_url`,
    from a copy of `template` (see `database_template`) when given."""

    def __init__(
        self,
        workdir: Path,
        database_url: str | None = None,
        template: Path | None = None,
        services: bool = True,
    ) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.database_url = database_url
        extra = {
            # What `make server` sets: the UI must call this API, not the default port.
            "PREFECT_SERVER_API_HOST": "127.0.0.1",
            "PREFECT_SERVER_API_PORT": str(self.port),
            "PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT": "false",
            # Quick schedules for the schedule test.
            "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "2",
        }
        if database_url:
            extra["PREFECT_API_DATABASE_CONNECTION_URL"] = database_url
        self.home = home = workdir / "server-home"  # its PREFECT_HOME, and SQLite database's
        if template is not None and not database_url:
            extra.update(seed_home(home, template))
        if not services:
            extra.update(NO_LOOP_SERVICES)
        self.process = Process(
            [PREFECT, "server", "start"],
            clean_env(home, **extra),
            workdir,
            workdir / "server.log",
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.url}/api"

    def _healthy(self) -> bool:
        if not self.process.alive:
            raise RuntimeError(f"prefect server exited:\n{tail(self.process.log)}")
        try:
            with urllib.request.urlopen(f"{self.api_url}/health", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def start(self, timeout: float = 120) -> PrefectServer:
        self.process.start()
        wait_for(self._healthy, timeout, "prefect server /api/health", interval=0.3)
        return self

    def stop(self) -> None:
        self.process.stop()

    def env(self, home: Path, **extra: str) -> dict[str, str]:
        """Environment for a client process (CLI, worker) of this server."""
        return clean_env(home, PREFECT_API_URL=self.api_url, **extra)

    def run(
        self, *args: str, env: dict[str, str] | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """A command from the project root against this server; raises with its output."""
        full_env = {**self.env(self.workdir / "cli-home"), **(env or {})}
        result = subprocess.run(
            list(args),
            env=full_env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"{' '.join(args)} exited {result.returncode}:\n"
                f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
            )
        return result

    def client(self) -> Any:
        """A synchronous Prefect client of this server (use as a context manager)."""
        from prefect.client.orchestration import SyncPrefectClient

        return SyncPrefectClient(self.api_url)


# The server's loop services that a server without deployments, work pools or automations
# never needs (`services=False`): each wakes every few seconds, and an idle server used 1.2 s of
# CPU per 40 s with them, 0.7 s without. The task-run recorder and the event persister stay.
NO_LOOP_SERVICES = {
    f"PREFECT_SERVER_SERVICES_{name}_ENABLED": "false"
    for name in (
        "SCHEDULER",
        "LATE_RUNS",
        "FOREMAN",
        "CANCELLATION_CLEANUP",
        "PAUSE_EXPIRATIONS",
        "REPOSSESSOR",
        "TRIGGERS",
        "DB_VACUUM",
        "CLEANUP_RECONCILER",
    )
}


def database_template() -> Path:
    """The migrated database a fresh PREFECT_HOME's server starts from: the product's own
    (`cli.database_template`, in the user's cache, which `make install` builds; built here
    under its lock if missing). About 5 s per server instead of 14: ~200 migrations once."""
    from cli import database_template as template

    return template.build()


def seed_home(home: Path, template: Path) -> dict[str, str]:
    """Put a copy of the template where a server of PREFECT_HOME `home` keeps its SQLite
    database (Prefect's default); returns the settings that let that server skip what the
    template has done. For tests whose subject is not a server's first start."""
    home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template, home / "prefect.db")
    return dict(DONE)


def run_logs(api_url: str, flow_run_id: str) -> list[dict]:
    """The log entries of a flow run, read from the API at `api_url`."""
    body = {"logs": {"flow_run_id": {"any_": [flow_run_id]}}}
    request = urllib.request.Request(
        f"{api_url}/logs/filter",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())
