"""Batch runs over real HTTP: per-item models, failures that stay local, resume, artifacts, CLI."""

import asyncio
import contextlib
import json

import fsspec

MODEL = "black-forest-labs/flux-schnell"


def _run_batch(file, **kwargs):
    """The archive-batch flow in this process; returns (final state, BatchSummary)."""
    from flows.batch import archive_batch

    state = asyncio.run(archive_batch(file=str(file), return_state=True, **kwargs))
    return state, state.result(raise_on_failure=False)  # sync context: the sync variant


def test_every_format_archives_each_record_with_its_own_model(
    prefect_harness, archive_env, emulator, tmp_path
):
    """JSONL, CSV and JSON-list files archive every record; {"model", "input"} picks the model."""
    jsonl = tmp_path / "mixed.jsonl"
    jsonl.write_text(
        json.dumps({"prompt": "default model", "seed": 1})
        + "\n"
        + json.dumps({"model": "emulator/mixed", "input": {"prompt": "own model"}})
        + "\n"
    )
    csv = tmp_path / "prompts.csv"
    csv.write_text("prompt,seed,num_outputs\ncsv one,1,2\ncsv two,2,1\n")
    listed = tmp_path / "list.json"
    listed.write_text(json.dumps([{"prompt": "listed"}]))
    state, first = _run_batch(jsonl, model=MODEL, dest=str(archive_env))
    assert state.is_completed()
    assert [(i.model, i.outcome) for i in first.items] == [
        (MODEL, "archived"),
        ("emulator/mixed", "archived"),
    ]
    assert len(first.items[1].files) == 3
    assert all(f.path.startswith("emulator/mixed/") for f in first.items[1].files)
    _, second = _run_batch(csv, model=MODEL, dest=str(archive_env))
    assert [len(i.files) for i in second.items] == [2, 1]
    _, third = _run_batch(listed, model=MODEL, dest=str(archive_env))
    assert third.counts == {"archived": 1, "cached": 0, "failed": 0}
    for summary in (first, second, third):
        for item in summary.items:
            for f in item.files:
                assert (archive_env / f.path).stat().st_size == f.size
    assert emulator.stats().creates_accepted == 5


def test_a_failing_item_does_not_stop_the_others_and_fails_the_run(
    prefect_harness, archive_env, emulator, tmp_path
):
    """An input the model rejects and a record without a model fail alone; the run ends Failed."""
    batch = tmp_path / "some-bad.jsonl"
    batch.write_text(
        json.dumps({"prompt": "good one"})
        + "\n"
        + json.dumps({"model": "emulator/large-file", "input": {"size_bytes": -1}})
        + "\n"
        + json.dumps({"prompt": "good two"})
        + "\n"
    )
    state, summary = _run_batch(batch, model=MODEL, dest=str(archive_env), concurrency=2)
    assert state.is_failed() and "1 failed" in state.message
    assert [i.outcome for i in summary.items] == ["archived", "failed", "archived"]
    assert "422" in summary.items[1].error and "\n" not in summary.items[1].error
    assert summary.items[1].line == 2


def test_rerun_skips_what_is_archived_and_retries_what_failed(
    prefect_harness, archive_env, emulator, tmp_path
):
    """The same file again pays nothing for archived items and one prediction per failed item."""
    batch = tmp_path / "resume.jsonl"
    batch.write_text("".join(json.dumps({"prompt": f"resume {i}"}) + "\n" for i in range(4)))
    emulator.set_faults(fail_predictions=1)  # the next prediction fails on the model's side
    state, first = _run_batch(batch, model=MODEL, dest=str(archive_env), concurrency=4)
    assert state.is_failed() and first.counts == {"archived": 3, "cached": 0, "failed": 1}
    assert "CUDA out of memory" in first.failed[0].error
    creates_before = emulator.stats().creates_accepted
    state, second = _run_batch(batch, model=MODEL, dest=str(archive_env), concurrency=4)
    assert state.is_completed()
    assert second.counts == {"archived": 1, "cached": 3, "failed": 0}
    assert second.predictions_created == 1
    assert emulator.stats().creates_accepted == creates_before + 1
    state, third = _run_batch(batch, model=MODEL, dest=str(archive_env))
    assert third.counts["cached"] == 4 and third.predictions_created == 0
    assert emulator.stats().creates_accepted == creates_before + 1


def test_progress_table_and_link_artifacts_are_published(
    prefect_harness, archive_env, emulator, tmp_path
):
    """After a batch run its flow run holds a 100% progress artifact, a table of the archived
    files with their URLs, a summary with their locations and a gallery of thumbnails."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    fs = fsspec.filesystem("memory")
    fs.pipe(
        "/batch-artifacts/prompts.jsonl",
        b'{"prompt": "artifact a", "num_outputs": 2}\n{"prompt": "artifact b"}\n',
    )
    state, summary = _run_batch(
        "memory://batch-artifacts/prompts.jsonl", model=MODEL, dest=str(archive_env)
    )
    assert summary.counts["archived"] == 2
    flow_run_id = state.state_details.flow_run_id

    async def read():
        async with get_client() as client:
            return await client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])
                )
            )

    artifacts = {a.type: a for a in asyncio.run(read())}
    assert set(artifacts) >= {"progress", "table", "markdown"}
    assert float(artifacts["progress"].data) == 100.0
    table = artifacts["table"].data
    rows = json.loads(table) if isinstance(table, str) else table
    urls = {row["url"] for row in rows}
    assert urls == {f.url for item in summary.items for f in item.files} and len(urls) == 3
    by_key = {a.key: a.data for a in asyncio.run(read())}
    markdown = by_key["archive-batch-summary"]  # every file's full location
    assert all(f"`{f.url}`" in markdown for item in summary.items for f in item.files)
    gallery = by_key["archive-batch-gallery"]  # thumbnails of the staged images, as data: URIs
    assert gallery.count('<img src="data:image/jpeg;base64,') == 3


def test_cli_batch_exits_1_when_an_item_fails_and_lists_every_item(cli, archive_env, tmp_path):
    """`python -m flows batch` archives the good rows, reports the bad one, and exits 1."""
    batch = tmp_path / "prompts.csv"
    batch.write_text("prompt,seed\ncli one,1\ncli two,2\n")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "no model given anywhere"}) + "\n")
    ok = cli("batch", str(batch), "--model", MODEL, "--dest", str(archive_env), "--json")
    assert ok.returncode == 0, ok.stderr
    summary = json.loads(ok.stdout)
    assert summary["counts"] == {"archived": 2, "cached": 0, "failed": 0}
    assert [item["outcome"] for item in summary["items"]] == ["archived", "archived"]
    failed = cli("batch", str(bad), "--dest", str(archive_env))
    assert failed.returncode == 1
    assert "failed" in failed.stdout and "no model" in failed.stdout
    assert "Traceback" not in failed.stderr
    missing = cli("batch", str(tmp_path / "absent.jsonl"), "--model", MODEL)
    assert missing.returncode == 1 and missing.stderr.strip().startswith("error: batch file")


def test_progress_follower_cancelled_mid_creation_leaves_the_artifact_to_its_final_update(
    monkeypatch,
):
    """The progress artifact may still be being created when the batch ends: stopping the
    follower that waits for it does not cancel the creation, and the final update lands, by
    the caller's hand or, when the batch raised, by the follower's."""
    import tasks.artifacts as artifacts
    from archiver.batch import BatchProgress

    updates: list[tuple[str, float]] = []

    async def update(artifact_id, progress, description):
        updates.append((artifact_id, progress))

    class Watched(BatchProgress):
        """Tells when the follower has read a snapshot: it then waits for the artifact's id."""

        def __init__(self, total: int) -> None:
            super().__init__(total)
            self.read = asyncio.Event()

        def snapshot(self) -> dict[str, int]:
            self.read.set()
            return super().snapshot()

    monkeypatch.setattr(artifacts, "aupdate_progress_artifact", update)
    monkeypatch.setattr(artifacts, "PROGRESS_EVERY", 0)

    async def main() -> None:
        created: asyncio.Future = asyncio.get_running_loop().create_future()
        progress = Watched(1)
        async with artifacts.progress_artifact(created, progress):
            await asyncio.wait_for(progress.read.wait(), 10)  # the follower awaits the id now
            progress.prediction_done("p1", "archived")
        assert not created.cancelled() and updates == []
        created.set_result("artifact-1")  # the creation ends after its follower stopped
        await artifacts.final_progress(created, progress)
        failing: asyncio.Future = asyncio.get_running_loop().create_future()
        with contextlib.suppress(RuntimeError):
            async with artifacts.progress_artifact(failing, BatchProgress(2)):
                asyncio.get_running_loop().call_soon(failing.set_result, "artifact-2")
                raise RuntimeError("the batch broke")  # while the artifact is still created

    asyncio.run(main())
    assert updates == [("artifact-1", 100.0), ("artifact-2", 0.0)]
