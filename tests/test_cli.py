"""`python -m flows run`: exit codes, one-line errors, --json, interrupts, and token hygiene."""

import json
import os
import signal
import subprocess
import sys

from tests.conftest import ROOT, TOKEN
from tests.waiting import wait_until

MODEL = "black-forest-labs/flux-schnell"


def test_run_prints_a_json_summary_and_exits_0(cli, archive_env):
    """--json prints one JSON document on stdout with every archived file."""
    result = cli(
        "run",
        MODEL,
        "-i",
        "prompt=json please",
        "-i",
        "num_outputs=2",
        "--dest",
        str(archive_env),
        "--json",
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert len(summary["files"]) == 2 and summary["cached"] is False
    assert all(len(f["sha256"]) == 64 and f["size"] > 0 for f in summary["files"])


def test_failure_is_one_line_on_stderr_without_traceback(cli, archive_env, emulator):
    """A failed prediction exits 1 with a single 'error:' line naming the model's error."""
    emulator.set_faults(final_status="failed", error_text="GPU on fire")
    result = cli("run", MODEL, "-i", "prompt=x", "--dest", str(archive_env))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "GPU on fire" in result.stderr and "Traceback" not in result.stderr


def test_bad_arguments_are_one_line_errors(cli):
    """An invalid model reference exits non-zero before anything is created."""
    result = cli("run", "not a model", "-i", "prompt=x")
    assert result.returncode == 1 and "invalid model reference" in result.stderr
    assert "Traceback" not in result.stderr


def test_token_never_reaches_output_archive_or_prefect_home(
    cli, archive_env, emulator, tmp_path, prefect_server
):
    """After a run (with a re-fetch) the token is in no output, archived file or Prefect file."""
    emulator.set_faults(first_urls_expired=True)
    home = tmp_path / "prefect-home"
    result = cli(
        "run",
        MODEL,
        "-i",
        "prompt=secret safe",
        "--dest",
        str(archive_env),
        "--json",
        "--debug",
        env={"PREFECT_HOME": str(home)},
    )
    assert result.returncode == 0, result.stderr
    assert TOKEN not in result.stdout and TOKEN not in result.stderr
    # Where Prefect keeps flow runs, parameters, logs and artifacts: the API's SQLite database.
    prefect_db = prefect_server.home
    assert (prefect_db / "prefect.db").is_file()
    scanned = {}
    for root in (archive_env, tmp_path / "cache", prefect_db, home):
        scanned[root] = [path for path in root.rglob("*") if path.is_file()]
        for path in scanned[root]:
            assert TOKEN.encode() not in path.read_bytes(), path
    assert all(scanned[root] for root in (archive_env, tmp_path / "cache", prefect_db)), scanned
    # Not vacuous: the run's own parameters are in the files scanned, where a token would be.
    assert any(b"secret safe" in path.read_bytes() for path in scanned[prefect_db])


def test_interrupt_cancels_the_running_prediction(archive_env, emulator, prefect_harness):
    """Ctrl-C while the model runs cancels the prediction on Replicate and exits non-zero."""
    emulator.set_faults(processing_seconds=60)
    env = {**os.environ, "PREFECT_API_URL": prefect_harness}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "flows",
            "run",
            MODEL,
            "-i",
            "prompt=interrupt me",
            "--dest",
            str(archive_env),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # Ctrl-C as soon as Replicate has the prediction: the model runs (for 60 s) from then on.
        created = wait_until(
            lambda: emulator.stats().created_ids, 60, "the run to create its prediction"
        )
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode != 0
    assert emulator.stats().cancels == created, stderr


def test_a_misspelt_model_is_one_line_naming_it_and_nothing_is_paid(cli, archive_env, emulator):
    """A model that does not exist (a typo) answers 404, as on Replicate: exit 1, one error
    line naming the model, no prediction."""
    result = cli(
        "run", "black-forest-labs/flux-schnel", "-i", "prompt=x", "--dest", str(archive_env)
    )
    assert result.returncode == 1, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "black-forest-labs/flux-schnel" in errors[0], result.stderr
    assert emulator.stats().creates_accepted == 0
