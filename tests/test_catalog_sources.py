"""Every archiving path feeds the catalog: what batch, sweep, archive-by-id and the webhook
receiver write is found by the next `find`, locally; on S3 the archiver's journal marker lets
a query find it without listing the bucket."""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.archives import flows_cli
from tests.test_webhooks_receiver import (
    _create_with_webhook,
    _manifests,
    _wait_until,
    receiver,
    receiver_env,  # noqa: F401 - the fixture, used by name
)

MODEL = "black-forest-labs/flux-schnell"


def _found(archive_env, *words: str) -> list[str]:
    """Prediction ids `python -m flows find WORDS --json` gives for the archive."""
    result = flows_cli("find", *words, "--json", "--dest", str(archive_env))
    assert result.returncode == 0, result.stderr
    return [r["prediction_id"] for r in json.loads(result.stdout)["results"]]


def test_the_catalog_names_manifests_as_the_archiver_does():
    """The catalog's own MANIFEST_NAME (kept to avoid importing pydantic models) is the archiver's."""
    from archiver.catalog.records import MANIFEST_NAME
    from archiver.manifest import MANIFEST_NAME as ARCHIVED

    assert MANIFEST_NAME == ARCHIVED


def test_a_batch_is_found(prefect_harness, archive_env, emulator, tmp_path):
    """Each record of an archive-batch run is found by its prompt."""
    from flows.batch import archive_batch

    batch = tmp_path / "prompts.jsonl"
    batch.write_text('{"prompt": "batch lighthouse"}\n{"prompt": "batch harbour"}\n')
    state = asyncio.run(
        archive_batch(file=str(batch), model=MODEL, dest=str(archive_env), return_state=True)
    )
    ids = [item.prediction_id for item in state.result().items]
    assert sorted(_found(archive_env, "batch")) == sorted(ids)
    assert _found(archive_env, "lighthouse") == [ids[0]]


def test_a_sweep_and_an_archive_by_id_are_found(prefect_harness, archive_env, emulator):
    """Predictions made elsewhere, archived by archive-recent (sweep) and archive-existing
    (`archive ID`), are found by their prompts."""
    from flows.archive_existing import archive_existing
    from flows.archive_recent import archive_recent

    swept = emulator.add_prediction(input={"prompt": "swept fox"}, age_seconds=60)
    asyncio.run(archive_recent(since="10m", dest=str(archive_env)))
    assert _found(archive_env, "fox") == [swept["id"]]
    by_id = emulator.add_prediction(input={"prompt": "picked owl"}, age_seconds=1800)
    asyncio.run(archive_existing(prediction_ids=[by_id["id"]], dest=str(archive_env)))
    assert _found(archive_env, "owl") == [by_id["id"]]
    assert sorted(_found(archive_env)) == sorted([swept["id"], by_id["id"]])


@pytest.mark.slow  # a receiver process
def test_what_the_webhook_receiver_archives_is_found(
    receiver_env,  # noqa: F811 - the fixture imported above
    archive_env,
    emulator,
):
    """A prediction archived by `python -m flows webhooks` on a signed delivery is found."""
    with receiver(receiver_env, archive_env) as rx:
        created = _create_with_webhook(emulator, rx.url)
        _wait_until(lambda: _manifests(archive_env), "the manifest")
    assert _found(archive_env, "elsewhere") == [created["id"]]


def test_on_s3_the_journal_finds_a_new_archive_without_a_listing(
    prefect_harness, archive_env, emulator, moto_s3, moto_bucket, aws_env, tmp_path
):
    """Archiving to S3 writes a journal marker; a query within the list interval reads only the
    journal and finds the new prediction."""
    from archiver.catalog import Catalog, Filters, find, sync
    from archiver.catalog.journal import JOURNAL
    from archiver.storage import open_destination
    from flows.archive_existing import archive_existing

    aws_env.setenv("ARCHIVER_STORAGE_OPTIONS", json.dumps(moto_s3.storage_options()))
    url = f"s3://{moto_bucket}/archive"
    dest = open_destination(url, moto_s3.storage_options())
    with Catalog(tmp_path / "c.sqlite3") as store:
        sync(dest, store, list_interval=3600)  # the full listing: nothing yet
        made = emulator.add_prediction(input={"prompt": "journaled heron"}, age_seconds=60)
        asyncio.run(archive_existing(prediction_ids=[made["id"]], dest=url))
        assert len(dest.fs.find(dest.path(JOURNAL))) == 1
        sync(dest, store, list_interval=3600)  # within the interval: the journal only
        _, results = find(store, Filters.parse(["heron"]), limit=5, manifest_url=str)
    assert [r["prediction_id"] for r in results] == [made["id"]]
