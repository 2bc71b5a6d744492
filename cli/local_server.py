"""The local Prefect server ad-hoc runs reuse: `python -m flows server start|stop|status`.

One `prefect server start` (API + UI on 127.0.0.1) per PREFECT_HOME, in a session of its own so a
terminal's Ctrl-C never reaches it. Its state lives in `$PREFECT_HOME/archiver-server/`: `state.json`
(pid, port, URL, log, database), `server.log`, and `lock`, which serialises starts so two runs
started at once start exactly one server. A dead pid or a stale state file is replaced.

The default port is derived from PREFECT_HOME (the first free one from there), so several
checkouts or homes on one machine never collide; `ARCHIVER_LOCAL_SERVER_PORT` pins it.

Stdlib only (no Prefect import): `server status` and the CLI's cheap paths stay cheap. How a
server process is started, awaited and stopped is `cli.server_process`, shared with
`cli.temporary_server`.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import shlex
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from archiver.errors import ConfigurationError
from cli import database_template
from cli.server_process import (
    DATABASE_URL_SETTINGS,
    HOST,
    Echo,
    ServerExited,
    flock,
    healthy,
    is_server_process,
    kill_group,
    print_stderr,
    server_args,
    server_env,
    wait_healthy,
)

PORT_BASE = 4300
PORT_SPAN = 600  # default ports: PORT_BASE .. PORT_BASE + PORT_SPAN - 1
STOP_TIMEOUT = 15.0
START_ATTEMPTS = 3  # ports tried when another server takes ours between check and bind


def prefect_home() -> Path:
    """PREFECT_HOME as Prefect resolves it by default (the environment, else ~/.prefect)."""
    return Path(os.environ.get("PREFECT_HOME") or "~/.prefect").expanduser().resolve()


def state_dir(home: Path | None = None) -> Path:
    return (home or prefect_home()) / "archiver-server"


def default_port(home: Path | None = None) -> int:
    """A port derived from PREFECT_HOME, so different homes start from different ports."""
    digest = hashlib.sha256(str(home or prefect_home()).encode()).digest()
    return PORT_BASE + int.from_bytes(digest[:4], "big") % PORT_SPAN


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def pick_port(preferred: int | None, home: Path, avoid: set[int] | None = None) -> int:
    """`preferred` if given (it must be free), else the first free port from the home's own."""
    if preferred is not None:
        if not port_free(preferred):
            raise ConfigurationError(
                f"cannot start the local Prefect server: port {preferred} "
                "(ARCHIVER_LOCAL_SERVER_PORT) is in use; choose another"
            )
        return preferred
    start = default_port(home)
    for offset in range(PORT_SPAN):
        port = PORT_BASE + (start - PORT_BASE + offset) % PORT_SPAN
        if port not in (avoid or set()) and port_free(port):
            return port
    raise ConfigurationError(  # pragma: no cover - 600 busy ports
        f"cannot start the local Prefect server: no free port in {PORT_BASE}-"
        f"{PORT_BASE + PORT_SPAN - 1}; set ARCHIVER_LOCAL_SERVER_PORT"
    )


def database_path(home: Path) -> str:
    """Where the server keeps its data: Prefect's database URL if configured, else SQLite."""
    configured = (os.environ.get(key) for key in DATABASE_URL_SETTINGS)
    return next((url for url in configured if url), str(home / "prefect.db"))


@dataclass
class ServerState:
    """What `state.json` records about a running local server."""

    pid: int
    port: int
    log: str
    database: str

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.url}/api"


def read_state(home: Path) -> ServerState | None:
    try:
        data = json.loads((state_dir(home) / "state.json").read_text())
        return ServerState(**{k: data[k] for k in ("pid", "port", "log", "database")})
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_state(home: Path, state: ServerState) -> None:
    path = state_dir(home) / "state.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(state)))
    os.replace(tmp, path)


def _clear_state(home: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        (state_dir(home) / "state.json").unlink()


def status(home: Path | None = None) -> ServerState | None:
    """The running local server of this PREFECT_HOME, or None."""
    home = home or prefect_home()
    state = read_state(home)
    if state is None or not is_server_process(state.pid):
        return None
    return state


@contextlib.contextmanager
def _locked(home: Path, timeout: float) -> Iterator[None]:
    """The start/stop lock of this PREFECT_HOME (waits at most `timeout` seconds)."""
    directory = state_dir(home)
    directory.mkdir(parents=True, exist_ok=True)
    with flock(directory / "lock", timeout):
        yield


def port_lock_path() -> Path:
    """The machine's one lock for choosing a port: held from the free-port check until the
    server it was chosen for answers (or dies), so two PREFECT_HOMEs starting at the same moment
    never pick the same port. Per user, in the system's temp directory."""
    return Path(tempfile.gettempdir()) / f"replicate-archiver-ports-{os.getuid()}.lock"


def ensure(
    *,
    port: int | None = None,
    timeout: float = 120.0,
    home: Path | None = None,
    echo: Echo = print_stderr,
    template: bool = True,
) -> ServerState:
    """The local server of this PREFECT_HOME, started (in the background) if it is not up; on
    a home with no database, from a copy of the migrated template if `template` and one is
    built (`cli.database_template`)."""
    home = home or prefect_home()
    state = status(home)
    if state is not None and healthy(state.api_url):
        return state
    with _locked(home, timeout):
        state = status(home)  # someone else may have started it meanwhile
        tried: set[int] = set()
        while True:
            try:
                if state is not None:  # started by another process: just wait for it
                    _wait_local(state, timeout, echo)
                    return state
                with flock(port_lock_path(), timeout):
                    state, proc = _start(home, port, echo, avoid=tried, template=template)
                    try:
                        wait_healthy(
                            state.api_url,
                            lambda: proc.poll() is None,  # noqa: B023 - called in this iteration
                            timeout,
                            what="the local Prefect server",
                            log=Path(state.log),
                            echo=echo,
                        )
                    except BaseException:
                        # Whatever went wrong (timeout, Ctrl-C, a port lost to another
                        # server), nothing we started is left behind.
                        kill_group(proc.pid, STOP_TIMEOUT)
                        proc.wait()
                        raise
                return state
            except ServerExited:
                # Something else may have taken the port between our check and the server's
                # bind: try the next free one (a pinned port has no next one).
                if state is None:
                    raise
                tried.add(state.port)
                _clear_state(home)
                if port is not None or len(tried) >= START_ATTEMPTS:
                    raise
                state = None


def _wait_local(state: ServerState, timeout: float, echo: Echo) -> None:
    wait_healthy(
        state.api_url,
        functools.partial(is_server_process, state.pid),
        timeout,
        what="the local Prefect server",
        log=Path(state.log),
        echo=echo,
    )


def _start(
    home: Path,
    port: int | None,
    echo: Echo,
    avoid: set[int] | None = None,
    template: bool = True,
) -> tuple[ServerState, subprocess.Popen[bytes]]:
    _clear_state(home)
    chosen = pick_port(port, home, avoid or set())
    log = state_dir(home) / "server.log"
    home.mkdir(parents=True, exist_ok=True)
    seeded = database_template.seed(home) if template else {}
    with open(log, "ab") as out:
        proc = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
            server_args(chosen),
            env={**server_env(chosen, ui=True), "PREFECT_HOME": str(home), **seeded},
            cwd=home,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a terminal's Ctrl-C never reaches it
        )
    state = ServerState(pid=proc.pid, port=chosen, log=str(log), database=database_path(home))
    _write_state(home, state)
    echo(f"started a local Prefect server for ad-hoc runs: UI {state.url} (stop: {stop_command()})")
    return state, proc


def stop_command() -> str:
    """How to stop this PREFECT_HOME's server, as a line that works pasted into any shell: this
    interpreter by its path (a bare `python` may be another one, or none), and the PREFECT_HOME
    the server runs under when one is set."""
    command = f"{shlex.quote(sys.executable)} -m flows server stop"
    if os.environ.get("PREFECT_HOME"):
        return f"PREFECT_HOME={shlex.quote(str(prefect_home()))} {command}"
    return command


def stop(home: Path | None = None, timeout: float = STOP_TIMEOUT) -> ServerState | None:
    """Stop this PREFECT_HOME's local server (its whole process group); None if none ran."""
    home = home or prefect_home()
    with _locked(home, timeout + 10):
        state = status(home)
        _clear_state(home)
        if state is None:
            return None
        kill_group(state.pid, timeout)
        return state


__all__ = [
    "ServerState",
    "default_port",
    "ensure",
    "healthy",
    "prefect_home",
    "status",
    "stop",
]
