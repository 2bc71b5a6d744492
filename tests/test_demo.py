"""`python -m flows demo` (what `make demo` runs) succeeds, and again into the same dest."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.prefect


def demo(dest, api: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flows", "demo", "--dest", str(dest)],
        cwd=ROOT,
        env={**os.environ, "PREFECT_API_URL": api},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_the_demo_recovers_expired_urls_then_a_rerun_pays_nothing(prefect_harness, tmp_path):
    """The first demo pays one prediction and recovers its expired URLs by a re-fetch; a second
    demo into the same archive exits 0 too, every run from the cache, nothing paid."""
    dest = tmp_path / "archive"
    first = demo(dest, prefect_harness)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "predictions paid for: 1 (second run cached: True)" in " ".join(first.stderr.split())
    again = demo(dest, prefect_harness)
    assert again.returncode == 0, again.stderr[-2000:]
    said = " ".join(again.stderr.split())
    assert "already archived by an earlier demo" in said
    assert "predictions paid for: 0" in said
    assert len(list(dest.rglob("manifest.json"))) == 1
