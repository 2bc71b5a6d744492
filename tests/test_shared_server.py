"""`make demo` and later CLI runs of a user with no PREFECT_HOME set share one local server.

Its own file, so that it runs beside `test_local_server.py` rather than after it."""

from __future__ import annotations

import subprocess

import pytest

from cli import local_server
from tests.conftest import ROOT
from tests.prefect_server import seed_home
from tests.test_local_server import cli_env, flow_runs, flows, run_args, stopped_after

pytestmark = pytest.mark.server


def test_make_demo_and_later_runs_share_the_users_local_server(
    emulator, tmp_path, prefect_template
):
    """`make demo`, then `python -m flows run`, for a user with no PREFECT_HOME set: one local
    server (in ~/.prefect) serves both; the run starts none of its own."""
    user = tmp_path / "user"
    prefect_home = user / ".prefect"
    env = cli_env(prefect_home, emulator, tmp_path, **seed_home(prefect_home, prefect_template))
    del env["PREFECT_HOME"]
    env["HOME"] = str(user)
    try:
        demo = subprocess.run(
            ["make", "-s", "demo", f"DEMO_DEST={tmp_path / 'demo-archive'}"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert demo.returncode == 0, demo.stderr[-2000:]
        served = local_server.status(prefect_home)
        assert served is not None, demo.stderr[-2000:]
        later = flows(*run_args(tmp_path, "after the demo"), env=env)
        assert later.returncode == 0, later.stderr
        assert "started a local Prefect server" not in later.stderr
        assert local_server.status(prefect_home) == served
        assert len(flow_runs(served.api_url)) == 3  # the demo's two runs and this one
    finally:
        stopped_after(prefect_home)
