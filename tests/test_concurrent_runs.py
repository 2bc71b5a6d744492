"""Concurrent runs of the same input archive it once, byte-exact, and a corrupt staging heals.

Runs are separate processes (as a UI double-click, a retry racing the first attempt, or a sweep
racing a webhook would be): a small script calling `archiver.pipeline.process` without Prefect,
and once through the `python -m flows run` CLI. Delivery is slowed down by the emulator so that
the runs overlap inside the download.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from archiver.errors import StorageError
from archiver.pipeline import Steps, process
from archiver.prediction import ModelRef, PredictionRequest
from archiver.runtime import Runtime
from archiver.settings import Settings
from emulator.files import large_file_chunks
from tests.waiting import wait_until

pytestmark = pytest.mark.slow  # several processes per test

ROOT = Path(__file__).resolve().parent.parent
MODEL = "emulator/large-file"
SIZE = 2 * 2**20
RATE = 1_000_000  # bytes per second per download: one 2 MiB file takes about 2 s
SLOW_RATE = 250_000  # about 8 s: later runs start (a Python process each) well inside it
DEADLINE = 120.0

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
        print((await process(runtime, request)).model_dump_json())
    finally:
        await runtime.aclose()

asyncio.run(main())
"""


def _input(seed: int, outputs: int = 2) -> dict:
    return {"size_bytes": SIZE, "num_outputs": outputs, "seed": seed}


def _expected_sha256(seed: int, index: int) -> str:
    digest = hashlib.sha256()
    for chunk in large_file_chunks(seed, index, SIZE):
        digest.update(chunk)
    return digest.hexdigest()


def _start_script(archive: Path, input: dict) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-c", RUN_SCRIPT, str(archive), MODEL, json.dumps(input)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(procs: list[subprocess.Popen[str]]) -> list[dict]:
    summaries = []
    for proc in procs:
        out, err = proc.communicate(timeout=DEADLINE)
        assert proc.returncode == 0, err[-2000:]
        summaries.append(json.loads(out))
    return summaries


def _download_began(staging: Path) -> bool:
    """Some bytes of some output have reached staging."""
    return staging.is_dir() and any(
        p.is_file() and p.stat().st_size > 0 and p.name != "staged.json" for p in staging.rglob("*")
    )


def _assert_archived_once(archive: Path, summaries: list[dict], emulator, seed: int, n: int):
    """One prediction paid for and downloaded once; every file byte-exact; nothing stray."""
    stats = emulator.stats()
    assert stats.creates_accepted == 1
    assert len({s["prediction_id"] for s in summaries}) == 1
    assert len(stats.downloads) == n, stats.downloads  # each output fetched once
    assert sum(s["predictions_created"] for s in summaries) == 1
    [manifest_path] = list(archive.rglob("manifest.json"))
    manifest = json.loads(manifest_path.read_text())
    directory = manifest_path.parent
    names = sorted(p.name for p in directory.iterdir())
    assert names == sorted(["manifest.json", "logs.txt", *(f"blob-{i}.bin" for i in range(n))])
    assert sorted(str(p.relative_to(archive)) for p in archive.rglob("*") if p.is_file()) == [
        str(p.relative_to(archive)) for p in sorted(directory.iterdir())
    ]
    for index, item in enumerate(sorted(manifest["files"], key=lambda f: f["name"])):
        path = archive / item["path"]
        expected = _expected_sha256(seed, index)
        assert item["sha256"] == expected
        assert hashlib.sha256(path.read_bytes()).hexdigest() == expected
        assert os.stat(path).st_nlink == 1  # no link into staging left behind


@pytest.mark.parametrize("runs", [2, 5])
def test_identical_runs_started_together_archive_once(archive_env, emulator, tmp_path, runs):
    """N processes started at the same moment: all succeed, 1 create, 1 download, exact bytes."""
    emulator.set_faults(processing_seconds=2, delivery_bytes_per_second=RATE)
    seed = 100 + runs
    procs = [_start_script(archive_env, _input(seed)) for _ in range(runs)]
    summaries = _finish(procs)
    _assert_archived_once(archive_env, summaries, emulator, seed, 2)
    assert sum(not s["cached"] for s in summaries) == 1


@pytest.mark.parametrize("runs", [2, 5])
def test_identical_runs_staggered_into_the_download_archive_once(
    archive_env, emulator, tmp_path, runs
):
    """Runs started while the first one is downloading wait for it, then report it cached."""
    emulator.set_faults(delivery_bytes_per_second=SLOW_RATE)
    seed = 200 + runs
    first = _start_script(archive_env, _input(seed))
    wait_until(lambda: _download_began(tmp_path / "staging"), DEADLINE, "the first download")
    others = [_start_script(archive_env, _input(seed)) for _ in range(runs - 1)]
    summaries = _finish([first, *others])
    _assert_archived_once(archive_env, summaries, emulator, seed, 2)
    assert not summaries[0]["cached"] and all(s["cached"] for s in summaries[1:])


def test_identical_cli_runs_staggered_into_the_download_archive_once(
    prefect_harness, archive_env, emulator, tmp_path
):
    """Two `python -m flows run` processes of one input, the second mid-download: one archive."""
    emulator.set_faults(delivery_bytes_per_second=SLOW_RATE)
    seed = 300
    env = {**os.environ, "PREFECT_API_URL": prefect_harness, "PYTHONPATH": str(ROOT)}
    args = [
        sys.executable,
        "-m",
        "flows",
        "run",
        MODEL,
        "-i",
        f"size_bytes={SIZE}",
        "-i",
        "num_outputs=2",
        "-i",
        f"seed={seed}",
        "--dest",
        str(archive_env),
        "--json",
    ]

    def start() -> subprocess.Popen[str]:
        return subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    first = start()
    wait_until(lambda: _download_began(tmp_path / "staging"), DEADLINE, "the first download")
    second = start()
    summaries = _finish([first, second])
    _assert_archived_once(archive_env, summaries, emulator, seed, 2)


def test_corrupted_staged_file_is_detected_and_downloaded_again(archive_env, emulator, tmp_path):
    """A staged file whose bytes changed after download is not archived: it is fetched again."""
    request = PredictionRequest(ModelRef.parse(MODEL), _input(400, outputs=1))

    async def failing_archive(runtime, ready, staged):
        raise StorageError("store refused (test)")

    async def run(steps: Steps):
        runtime = Runtime.build(Settings(), dest=str(archive_env))
        try:
            return await process(runtime, request, steps=steps)
        finally:
            await runtime.aclose()

    with pytest.raises(StorageError):
        asyncio.run(run(Steps(archive=failing_archive)))
    [staged] = [p for p in (tmp_path / "staging").rglob("blob-0.bin")]
    os.chmod(staged, stat.S_IRUSR | stat.S_IWUSR)
    with staged.open("r+b") as handle:  # same size, 4 KiB of zeros in the middle
        handle.seek(SIZE // 2)
        handle.write(bytes(4096))
    summary = asyncio.run(run(Steps()))
    expected = _expected_sha256(400, 0)
    [item] = summary.files
    assert item.sha256 == expected
    archived = archive_env / item.path
    assert hashlib.sha256(archived.read_bytes()).hexdigest() == expected
    assert len(emulator.stats().downloads) == 2 and emulator.stats().creates_accepted == 1


def test_staged_files_are_read_only(archive_env, emulator, tmp_path):
    """Every staged file is read-only once whole, so a hard link to it cannot change."""
    request = PredictionRequest(ModelRef.parse(MODEL), _input(500, outputs=1))

    modes: list[int] = []

    async def archive(runtime, ready, staged):
        modes.extend(os.stat(staged.path_of(item)).st_mode for item in staged.files)
        raise StorageError("stop here (test)")

    async def run():
        runtime = Runtime.build(Settings(), dest=str(archive_env))

        try:
            with pytest.raises(StorageError):
                await process(runtime, request, steps=Steps(archive=archive))
        finally:
            await runtime.aclose()

    asyncio.run(run())
    assert modes and all(not mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH) for mode in modes)


def test_stray_temp_files_are_removed_before_the_manifest(archive_env, emulator):
    """Temp files an interrupted writer left in a prediction's directory are gone once archived."""
    from archiver.archive import prediction_directory
    from archiver.pipeline import archive_step

    request = PredictionRequest(ModelRef.parse(MODEL), _input(600, outputs=1))
    planted: list[Path] = []

    async def archive(runtime, ready, staged):
        directory = prediction_directory(runtime.settings.path_template, staged.prediction)
        stray = Path(runtime.dest.path(directory)) / ".blob-0.bin.tmp-0123456789ab"
        stray.parent.mkdir(parents=True, exist_ok=True)
        stray.write_bytes(b"half a file")
        planted.append(stray)
        return await archive_step(runtime, ready, staged)

    async def run():
        runtime = Runtime.build(Settings(), dest=str(archive_env))
        try:
            return await process(runtime, request, steps=Steps(archive=archive))
        finally:
            await runtime.aclose()

    summary = asyncio.run(run())
    assert planted and not planted[0].exists()
    directory = (archive_env / summary.files[0].path).parent
    assert sorted(p.name for p in directory.iterdir()) == [
        "blob-0.bin",
        "logs.txt",
        "manifest.json",
    ]
