"""Prefect's console logs kept off the terminal: for CLI commands and the webhook receiver's
archive process (the logs still reach the Prefect API)."""

from __future__ import annotations

import logging


def quiet_prefect_console(debug: bool) -> None:
    """Keep Prefect's console logs (and their tracebacks) off the terminal unless --debug."""
    if debug:
        return
    # Prefect sets its logging up (the handlers quieted here) once its SDK loads: load it first.
    from prefect import flow  # noqa: F401
    from prefect.logging.handlers import PrefectConsoleHandler

    for logger in [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]:
        for handler in getattr(logger, "handlers", []):
            if isinstance(handler, PrefectConsoleHandler):
                handler.setLevel(logging.CRITICAL + 1)
