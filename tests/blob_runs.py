"""Identical runs started together against an object store (gs://, az://): archived once.

Each run is a process of its own (as a retry racing the first attempt would be) calling
`archiver.pipeline.process`. Both build their runtime (imports, the store checks), say `ready`,
and wait for one `go` on stdin, so their cache look-ups start within milliseconds of each other.
The emulator answers the first create with a 429 and `Retry-After`: whoever sent it waits that
long with its intent recorded but no prediction created. Without the request's lock the other
run would find nothing to resume in that window and pay for a second prediction.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from archiver.pipeline import RunSummary

ROOT = Path(__file__).resolve().parent.parent
MODEL = "black-forest-labs/flux-schnell"
DEADLINE = 120.0
RETRY_AFTER = 1  # seconds the throttled run waits: far longer than the runs' start skew

RUN_SCRIPT = """
import asyncio, json, sys
from archiver.pipeline import process
from archiver.prediction import ModelRef, PredictionRequest
from archiver.runtime import Runtime
from archiver.settings import Settings

async def main():
    runtime = Runtime.build(Settings(), dest=sys.argv[1])
    try:
        request = PredictionRequest(ModelRef.parse(sys.argv[2]), json.loads(sys.argv[3]))
        print("ready", flush=True)
        sys.stdin.readline()
        print((await process(runtime, request)).model_dump_json())
    finally:
        await runtime.aclose()

asyncio.run(main())
"""


def run_together(dest: str, input: dict, runs: int = 2) -> list[RunSummary]:
    """Start `runs` processes archiving `input` to `dest`, release them at once: summaries."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = [sys.executable, "-c", RUN_SCRIPT, dest, MODEL, json.dumps(input)]
    procs = [
        subprocess.Popen(
            args,
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(runs)
    ]
    try:
        for proc in procs:  # blocks until that run is built (or has died: no "ready")
            assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        return [_summary(proc) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()


def _summary(proc: subprocess.Popen[str]) -> RunSummary:
    """The run's summary, once it has ended well (else its stderr's tail)."""
    out, err = proc.communicate(timeout=DEADLINE)
    assert proc.returncode == 0, err[-2000:]
    return RunSummary.model_validate_json(out)


def assert_identical_runs_archive_once(
    emulator, dest: str, names: Callable[[], dict[str, int]], read: Callable[[str], bytes]
) -> list[RunSummary]:
    """Two runs of one input to `dest` (`<scheme>://<root>/<prefix>`, its objects listed by
    `names()` and read by `read(name)`, names relative to the root), started together: one
    prediction created, one manifest, one cache record (archived) in the store; the summaries."""
    root, prefix = dest.split("://", 1)[1].split("/", 1)
    emulator.set_faults(throttle_creates=1, retry_after_seconds=RETRY_AFTER)
    summaries = run_together(dest, {"prompt": "twice at once", "num_outputs": 2, "seed": 7})
    stats = emulator.stats()
    assert stats.creates_accepted == 1 and stats.create_attempts == 2, stats  # one 429
    assert len({s.prediction_id for s in summaries}) == 1
    assert sum(s.predictions_created for s in summaries) == 1
    assert sorted(s.cached for s in summaries) == [False, True]
    objects = names()
    [manifest] = [n for n in objects if n.endswith("/manifest.json")]
    assert summaries[0].manifest_url == f"{dest.split('://')[0]}://{root}/{manifest}"
    [record] = [n for n in objects if n.startswith(f"{prefix}/.archiver/cache/")]
    assert json.loads(read(record))["state"] == "archived"
    assert not [n for n in objects if ".tmp-" in n]
    return summaries
