"""The temporary Prefect server of one CLI process, used when the local server is off.

The same API as `cli.local_server` (no UI, no services) on a free port, as a child in a session
of its own (a terminal's Ctrl-C reaches the CLI first, which stops it after cleaning up) that the
kernel kills when the CLI dies (Linux parent-death signal): a SIGKILLed CLI leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
from pathlib import Path

from cli.server_process import (
    HOST,
    Echo,
    die_with_parent,
    kill_group,
    print_stderr,
    server_args,
    server_env,
    wait_healthy,
)


def _names_a_database(key: str) -> bool:
    return key.startswith("PREFECT_") and "DATABASE_" in key


class TemporaryServer:
    """A Prefect API (no UI) for one CLI process, on a free port; it dies with the process."""

    def __init__(
        self, timeout: float = 120.0, echo: Echo = print_stderr, home: Path | None = None
    ) -> None:
        """`home`: a PREFECT_HOME of its own, its database Prefect's default SQLite file there
        (a configured database URL ignored); by default the environment's."""
        self.timeout = timeout
        self.echo = echo
        self.home = home
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def api_url(self) -> str:
        return f"http://{HOST}:{self.port}/api"

    def __enter__(self) -> TemporaryServer:
        with socket.socket() as sock:
            sock.bind((HOST, 0))
            self.port = int(sock.getsockname()[1])
        self.proc = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
            server_args(self.port) + ["--no-services"],
            env=self.environment(),
            cwd=self.home,  # with a home of its own, no prefect.toml or .env of the caller's
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C reaches us first; we stop it after cleaning up
            preexec_fn=die_with_parent,  # noqa: PLW1509 - a SIGKILLed CLI takes it along
        )
        proc = self.proc
        try:
            wait_healthy(
                self.api_url,
                lambda: proc.poll() is None,
                self.timeout,
                what="Prefect's temporary server",
                log=None,
                echo=self.echo,
            )
        except BaseException:
            self.close()
            raise
        return self

    def environment(self) -> dict[str, str]:
        """The server's environment (with a `home`: nothing of the caller's database settings)."""
        env = server_env(self.port, ui=False)
        if self.home is not None:  # nothing may point it at another database
            env = {k: v for k, v in env.items() if not _names_a_database(k)}
            env["PREFECT_HOME"] = str(self.home)
            env["PREFECT_PROFILES_PATH"] = str(self.home / "profiles.toml")
        return env

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            kill_group(self.proc.pid, 5)
            with contextlib.suppress(subprocess.TimeoutExpired, OSError):
                self.proc.wait(5)

    def __exit__(self, *exc: object) -> None:
        self.close()
