"""`make bench` runs: the batch benchmark's contenders, tiny, end to end (a real emulator and a
real `prefect server`, each contender in its own process), write their report."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from tests.conftest import ROOT
from tests.prefect_server import seed_home

pytestmark = [pytest.mark.server, pytest.mark.slow]


def test_the_batch_benchmark_runs_every_main_contender_and_reports(tmp_path, prefect_template):
    """raw, pipeline, domain and serve all archive K=3 predictions and the report names them
    (a broken import in a contender, as once happened, fails here rather than in `make bench`);
    raw and pipeline run in rounds whose order alternates, each round's ratio reported; every
    run records the CPU the emulator and the Prefect server spent meanwhile."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "ARCHIVER_"))}
    # The bench's own `prefect server` starts from a copy of the session's migrated database.
    database = tmp_path / "prefect-server-home"
    env.update(seed_home(database, prefect_template))
    env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = f"sqlite+aiosqlite:///{database}/prefect.db"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--k",
            "3",
            "--size",
            "4096",
            "--model-seconds",
            "0.2",
            "--skip",
            "naive,tts,overhead,rss,scale,raw_safe",
            "--repeat",
            "2",
            "--out",
            str(tmp_path),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads((tmp_path / "latest.json").read_text())
    runs = figures["runs"]
    assert set(runs) == {"serve", "raw", "pipeline", "domain"}
    for name in ("raw", "pipeline", "domain"):
        assert runs[name]["bytes"] == 3 * 2 * 4096, name
        assert len(runs[name]["safety"]) == 3, name
    assert runs["pipeline"]["counts"] == {"archived": 3, "cached": 0, "failed": 0}
    for name in ("raw", "pipeline", "domain"):
        # Recorded for every run; in clock ticks (10 ms), so a tiny run's share may read 0.
        assert isinstance(runs[name]["emulator_cpu"], float), name
        assert runs[name]["emulator_cpu"] >= 0, name
        assert runs[name]["server_cpu"] >= 0, name
    assert sum(runs[name]["emulator_cpu"] for name in ("serve", "raw", "pipeline", "domain")) > 0
    assert runs["pipeline"]["server_cpu"] > 0  # the flow run, its tasks and logs, recorded
    timed = re.findall(r"\] +(raw|pipeline|domain) 3: ", result.stderr)
    assert timed == ["raw", "pipeline", "domain", "pipeline", "raw", "domain"], result.stderr
    walls = {name: runs[name]["walls"] for name in ("raw", "pipeline")}
    assert len(figures["paired_ratios"]) == 2
    for ratio in figures["paired_ratios"]:
        assert min(walls["pipeline"]) / max(walls["raw"]) <= ratio
        assert ratio <= max(walls["pipeline"]) / min(walls["raw"])
    report = (tmp_path / "latest.md").read_text()
    assert "What Prefect adds" in report and "Prefect server CPU s" in report
    assert "pipeline wall <= 1.15x raw at K=3 (median of 2 back-to-back rounds)" in report
