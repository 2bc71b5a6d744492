"""Shared fixtures: the emulator on a random loopback port, and one Prefect test harness per session."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")


@pytest.fixture
def emulator():
    """A fresh emulator with fast model times, served over real HTTP on 127.0.0.1."""
    from archiver.emulator import Emulator

    with Emulator(processing_seconds=0.05) as emu:
        yield emu


# Fixtures that start real S3 servers (moto, SeaweedFS) live in their own plugin module.
pytest_plugins = ["tests.s3_fixtures"]
