"""A `prefect server start` process, as the local server (`cli.local_server`) and the temporary
one (`cli.temporary_server`) run it: its environment and arguments, waiting until its API answers
(one note while it takes long, one-line errors), and stopping its whole process group.

Stdlib only (no Prefect import).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

from archiver.errors import ConfigurationError

HOST = "127.0.0.1"
NOTE_AFTER = 3.0  # seconds of waiting before the one-line note
# Where Prefect reads a database URL from; none set: SQLite at $PREFECT_HOME/prefect.db.
DATABASE_URL_SETTINGS = (
    "PREFECT_SERVER_DATABASE_CONNECTION_URL",
    "PREFECT_API_DATABASE_CONNECTION_URL",
)

Echo = Callable[[str], None]


def die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """`preexec_fn` for a server child: the kernel SIGKILLs it when its parent dies, however the
    parent dies (SIGKILL, a timeout's kill), so no server outlives the command that started it."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class ServerExited(ConfigurationError):
    """The server process died before its API answered (e.g. its port was taken)."""


def print_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def is_server_process(pid: int) -> bool:
    """True when `pid` is alive and is a Prefect server (not a recycled pid)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return True  # no /proc: trust the live pid
    if Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z":
        return False  # a zombie: dead, not yet reaped
    text = b" ".join(cmdline)
    return b"prefect" in text and (b"server" in text or b"uvicorn" in text)


def healthy(api_url: str, timeout: float = 2.0) -> bool:
    """True when `GET {api_url}/health` answers 200 within `timeout`."""
    try:
        with urllib.request.urlopen(f"{api_url}/health", timeout=timeout) as response:
            return bool(response.status == 200)
    except (OSError, ValueError):
        return False


def server_env(port: int, ui: bool) -> dict[str, str]:
    """The server's environment: no Replicate token or archiver settings, its own host/port."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("REPLICATE_", "ARCHIVER_")) and k != "PREFECT_API_URL"
    }
    env.update(
        PREFECT_SERVER_API_HOST=HOST,
        PREFECT_SERVER_API_PORT=str(port),
        PREFECT_SERVER_UI_ENABLED="true" if ui else "false",
        PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT="false",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
    )
    return env


def server_args(port: int) -> list[str]:
    return [sys.executable, "-m", "prefect", "server", "start", "--host", HOST, "--port", str(port)]


def wait_healthy(
    api_url: str,
    alive: Callable[[], bool],
    timeout: float,
    *,
    what: str,
    log: Path | None,
    echo: Echo = print_stderr,
) -> None:
    """Until the API answers; one note after a few seconds; a one-line error if it never does."""
    started = time.monotonic()
    noted = False
    while True:
        answered = healthy(api_url)
        # Alive is checked after the answer: an answer while ours is dead came from another
        # server on that port (another PREFECT_HOME won the race for it), not from ours.
        if not alive():
            where = f"; see {log}" if log else ""
            raise ServerExited(f"{what} exited before its API answered{where}")
        if answered:
            return
        waited = time.monotonic() - started
        if waited > timeout:
            where = f"; see {log}" if log else ""
            raise ConfigurationError(
                f"{what} did not answer at {api_url} within {timeout:g} s (machine busy?){where}; "
                "retry, or raise ARCHIVER_SERVER_START_TIMEOUT"
            )
        if not noted and waited > NOTE_AFTER:
            echo(f"waiting for {what} at {api_url} (up to {timeout:g} s)...")
            noted = True
        time.sleep(0.2)


def kill_group(pid: int, timeout: float) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, sig)  # the server leads its own session and process group
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not _group_alive(pid):
                return
            time.sleep(0.1)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover
        return True
    # Only zombies left (children of a parent that has not reaped them yet)?
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


@contextlib.contextmanager
def flock(path: Path, timeout: float) -> Iterator[None]:
    """An exclusive flock on `path`, waited for at most `timeout` seconds (one line if not)."""
    with open(path, "a+") as handle:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise ConfigurationError(
                        f"another process held the lock {path} for {timeout:g} s; try again"
                    ) from None
                time.sleep(0.1)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
