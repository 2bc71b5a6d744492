"""The store fails during a run: down after the download, restarted while the archive task
retries, or failing mid-upload. Nothing is lost, nothing partial is left at a final key."""

from __future__ import annotations

import asyncio

import pytest

from archiver import errors
from tests.s3_runs import (
    MODEL,
    PART,
    AfterDownload,
    check_archived,
    flow_state,
    progress_sink,
    task_runs,
)

pytestmark = pytest.mark.s3


# -- the store goes down after the download, and comes back -----------------------------------


def test_store_down_keeps_staging_and_rerun_archives_it(
    run_flow, emulator, seaweedfs_s3, s3_dest, archive_env, prefect_harness, monkeypatch
):
    """With the store down after the download the run fails with a one-line StorageUnavailable and
    keeps the staged files; once it is back a rerun archives them: no new prediction or download."""
    monkeypatch.setenv("ARCHIVER_TASK_RETRIES", "1")
    staging = archive_env.parent / "staging"
    input = {"prompt": "outage", "num_outputs": 2}
    try:
        with progress_sink(AfterDownload(seaweedfs_s3.stop)):
            flow_run_id, failure = flow_state(run_flow, MODEL, input, dest=s3_dest)
    finally:
        stopped = not seaweedfs_s3.running
        seaweedfs_s3.start()
    assert stopped
    assert isinstance(failure, errors.StorageUnavailable), repr(failure)
    assert "\n" not in str(failure) and seaweedfs_s3.secret not in str(failure)
    [archive_run] = [
        run
        for run in asyncio.run(task_runs(prefect_harness, flow_run_id))
        if run.name.startswith("archive")
    ]
    assert archive_run.state.is_failed() and archive_run.run_count == 2  # 1 retry, then gave up
    [prediction_id] = emulator.stats().created_ids
    staged = sorted(p.name for p in (staging / prediction_id).iterdir())
    # logs.txt too: the archive step stages it before it puts anything in the store
    assert [name for name in staged if name != "logs.txt"] == [
        "out-0.png",
        "out-1.png",
        "staged.json",
    ]
    downloads = len(emulator.stats().downloads)
    assert downloads == 2

    # A store that was just restarted may answer 500 for a moment: the usual retries cover it.
    monkeypatch.setenv("ARCHIVER_TASK_RETRIES", "3")
    monkeypatch.setenv("ARCHIVER_TASK_RETRY_DELAY", "0.5")
    summary = run_flow(MODEL, input, dest=s3_dest)
    assert summary.prediction_id == prediction_id and summary.predictions_created == 0
    stats = emulator.stats()
    assert stats.creates_accepted == 1 and len(stats.downloads) == downloads
    bucket, prefix = s3_dest.removeprefix("s3://").split("/", 1)
    check_archived(seaweedfs_s3, bucket, prefix, summary)
    assert not (staging / prediction_id).exists()


def test_archive_task_retries_through_a_store_restart(
    run_flow, emulator, seaweedfs_s3, s3_dest, prefect_harness, monkeypatch
):
    """The archive task's Prefect retries outlast a store restart: the same flow run succeeds."""
    from archiver import pipeline

    monkeypatch.setenv("ARCHIVER_TASK_RETRIES", "3")
    monkeypatch.setenv("ARCHIVER_TASK_RETRY_DELAY", "1")
    real = pipeline.archive_staged
    attempts: list[str] = []
    loops: list[asyncio.AbstractEventLoop] = []

    def stop_store() -> None:
        loops.append(asyncio.get_running_loop())
        seaweedfs_s3.stop()

    def archive_staged(*args, **kwargs):
        try:
            result = real(*args, **kwargs)
        except Exception as exc:
            attempts.append(type(exc).__name__)
            if len(attempts) == 1:
                # Back while the task waits to retry. Started on the flow's (main) thread: the
                # server process is tied to the thread that starts it (PR_SET_PDEATHSIG).
                loops[0].call_soon_threadsafe(seaweedfs_s3.start)
            raise
        attempts.append("ok")
        return result

    monkeypatch.setattr(pipeline, "archive_staged", archive_staged)
    try:
        with progress_sink(AfterDownload(stop_store)):
            flow_run_id, summary = flow_state(run_flow, MODEL, {"prompt": "restart"}, dest=s3_dest)
    finally:
        seaweedfs_s3.start()
    assert not isinstance(summary, BaseException), repr(summary)
    assert attempts[0] == "StorageUnavailable" and attempts[-1] == "ok"
    assert set(attempts[:-1]) == {"StorageUnavailable"}
    [archive_run] = [
        run
        for run in asyncio.run(task_runs(prefect_harness, flow_run_id))
        if run.name.startswith("archive")
    ]
    assert archive_run.state.is_completed() and archive_run.run_count == len(attempts) >= 2
    assert emulator.stats().creates_accepted == 1 and len(emulator.stats().downloads) == 1
    bucket, prefix = s3_dest.removeprefix("s3://").split("/", 1)
    check_archived(seaweedfs_s3, bucket, prefix, summary)


# -- a failure mid-upload leaves nothing behind ---------------------------------------------


def test_failure_mid_upload_leaves_no_object_upload_or_manifest(
    run_flow, emulator, seaweedfs_s3, seaweedfs_bucket, s3_dest, fail_source_after, monkeypatch
):
    """A source failing after 2 of 3 multipart parts in a full run leaves no object at the final
    key, no unfinished multipart upload, and no manifest."""
    monkeypatch.setenv("ARCHIVER_PART_SIZE", str(PART))
    fired = fail_source_after(2 * PART)
    _, failure = flow_state(
        run_flow, "emulator/large-file", {"size_bytes": 3 * PART - 1000}, dest=s3_dest
    )
    assert fired and fired[0].fired
    assert isinstance(failure, errors.StorageError), repr(failure)
    assert "injected failure" in str(failure) and "\n" not in str(failure)
    assert [d["bytes_sent"] for d in emulator.stats().downloads] == [3 * PART - 1000]
    keys = seaweedfs_s3.keys(seaweedfs_bucket)
    assert keys and all(key.startswith("archive/.archiver/cache/") for key in keys), keys
    assert seaweedfs_s3.multipart_uploads(seaweedfs_bucket) == []
