"""The command line's entry point: `python -m flows`, `python -m cli` and `replicate-archiver`.

The process ends without the interpreter's teardown: once every exit handler has run
(Prefect's log and event drains, logging's final flush, any temporary server's cleanup), the
garbage collection and module teardown of Prefect's large heap only cost every command about
half a second more. Everything a command writes is durable (fsynced) before it returns anyway.
"""

from __future__ import annotations

import atexit
import os
import sys

_exit_code = 1  # until the command ends: an exception that escapes exits 1, as Python does


def _exit_now() -> None:
    """Registered before anything else, so it runs after every other exit handler."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed or broken pipe: nothing more to say
            pass
    os._exit(_exit_code)


def main() -> None:
    global _exit_code
    atexit.register(_exit_now)
    from cli.app import app

    try:
        app()
    except SystemExit as exc:
        code = exc.code
        _exit_code = code if isinstance(code, int) else (0 if code is None else 1)
        raise
    except KeyboardInterrupt:
        _exit_code = 130
        raise
    _exit_code = 0
