"""Flow runs that archive predictions made elsewhere (archive-existing, archive-recent) publish
a summary of every outcome and file location and a gallery of thumbnails from staged bytes."""

from __future__ import annotations

import asyncio

from tests.test_run_artifacts import _artifacts

MODEL = "someone/else"


def test_archive_existing_run_shows_outcomes_locations_and_thumbnails(
    prefect_harness, archive_env, emulator
):
    """By id: the summary names each prediction's outcome and every file's absolute path and
    sha256; the gallery has a thumbnail per image; a removed one is listed with its error."""
    from flows.archive_existing import archive_existing

    kept = emulator.add_prediction(model=MODEL, input={"prompt": "x", "num_outputs": 2})
    gone = emulator.add_prediction(model=MODEL, input={"prompt": "y"}, status="failed")
    state = asyncio.run(
        archive_existing(
            prediction_ids=[kept["id"], gone["id"]], dest=str(archive_env), return_state=True
        )
    )
    report = state.result()
    artifacts = _artifacts(state.state_details.flow_run_id)
    summary = artifacts["archive-existing-summary"]
    [archived] = [p for p in report.predictions if p.outcome == "archived"]
    assert archived.summary is not None and len(archived.summary.files) == 2
    for f in archived.summary.files:
        assert f.url.startswith(str(archive_env)) and f.url in summary
        assert f.sha256 in summary
    assert f"`{gone['id']}`" in summary and "skipped" in summary
    assert artifacts["archive-existing-gallery"].count('src="data:image/jpeg;base64,') == 2


def test_archive_recent_run_publishes_the_same_artifacts(prefect_harness, archive_env, emulator):
    """A sweep's flow run lists the predictions of its window with their files and thumbnails."""
    from flows.archive_recent import archive_recent

    made = emulator.add_prediction(model=MODEL, input={"prompt": "z"}, age_seconds=60)
    state = asyncio.run(archive_recent(since="10m", dest=str(archive_env), return_state=True))
    assert [p.outcome for p in state.result().predictions] == ["archived"]
    artifacts = _artifacts(state.state_details.flow_run_id)
    assert f"`{made['id']}`" in artifacts["archive-recent-summary"]
    assert artifacts["archive-recent-gallery"].count('src="data:image/jpeg;base64,') == 1
