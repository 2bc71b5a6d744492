"""`make bench` runs: the batch benchmark's contenders, tiny, end to end (a real emulator and a
real `prefect server`, each contender in its own process), write their report; so does the
webhook receiver's soak, a few seconds of it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from subprocess import CompletedProcess

import pytest

from tests.conftest import ROOT
from tests.prefect_server import seed_home

pytestmark = [pytest.mark.server, pytest.mark.slow]


def run_bench(tmp_path: Path, prefect_template: Path, *args: str) -> CompletedProcess[str]:
    """`python -m benchmarks ARGS --out tmp_path` with none of this session's Prefect or
    archiver settings, its own `prefect server` starting from a copy of the session's migrated
    database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "ARCHIVER_"))}
    database = tmp_path / "prefect-server-home"
    env.update(seed_home(database, prefect_template))
    env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = f"sqlite+aiosqlite:///{database}/prefect.db"
    return subprocess.run(
        [sys.executable, "-m", "benchmarks", *args, "--out", str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def test_the_batch_benchmark_runs_every_main_contender_and_reports(tmp_path, prefect_template):
    """raw, pipeline, domain and serve all archive K=3 predictions and the report names them
    (a broken import in a contender, as once happened, fails here rather than in `make bench`);
    raw and pipeline run in rounds whose order alternates, each round's ratio reported; every
    run records the CPU the emulator and the Prefect server spent meanwhile."""
    result = run_bench(
        tmp_path,
        prefect_template,
        *("--k", "3", "--size", "4096", "--model-seconds", "0.2", "--repeat", "2"),
        *("--skip", "naive,tts,overhead,rss,scale,raw_safe"),
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


def test_the_webhooks_soak_runs_small_and_reports_its_figures(tmp_path, prefect_template):
    """A 3-second soak (20 deliveries + 2 redelivered, 4 senders) against the real receiver
    with its own Prefect server: every prediction archived, one manifest each, every answer
    2xx, and webhooks.json holds each figure docs/webhooks.md quotes."""
    result = run_bench(
        tmp_path,
        prefect_template,
        *("webhooks", "--n", "20", "--seconds", "3", "--duplicates", "0.1", "--senders", "4"),
        *("--concurrency", "4", "--deadline", "60"),
    )
    # 1: a target missed (an ack over 500 ms on a loaded machine), figures still written.
    assert result.returncode in (0, 1), result.stderr[-3000:]
    figures = json.loads((tmp_path / "webhooks.json").read_text())
    assert figures["deliveries"] == 22 and figures["statuses"] == {"202": 20, "200": 2}
    assert figures["all_2xx"] is True
    assert figures["archived"] == 20 and figures["manifests"] == 20
    assert figures["exactly_one_manifest_each"] is True
    assert figures["last_archived_after_last_delivery_s"] is not None
    assert 0 < figures["ack_p50_ms"] <= figures["ack_p99_ms"] <= figures["ack_max_ms"]
    assert 0 < figures["receiver_rss_start_mb"] <= figures["receiver_rss_peak_mb"]
    assert figures["receiver_cpu_s"] > 0 and figures["prefect_server_cpu_s"] >= 0
    assert 0 < figures["flow_runs"] <= 20 and 1 <= figures["largest_flow_run"] <= 4
    assert figures["artifacts"] > 0 and isinstance(figures["acks_over_500ms"], int)
    assert ("targets met" in result.stderr) == (result.returncode == 0)
