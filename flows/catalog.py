"""Flows: search the archive (find-in-archive) and check it (verify-archive), for the Prefect UI.

Both bring the archive's catalog up to date first (see archiver/catalog); the worker's
ARCHIVER_DEST, storage settings and ARCHIVER_CATALOG_DIR apply as for the archive flows. Neither
needs the Replicate token: they only read the archive.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from prefect import flow
from prefect.states import Failed
from pydantic import Field

from archiver import catalog
from archiver.catalog.verify import VerifyReport, verify
from archiver.settings import Settings
from archiver.storage import Destination, StorageOptions, open_destination
from flows.settings import checked_storage_options, with_storage_credentials
from tasks.catalog import publish_find, publish_verify

Model = Annotated[str | None, Field(pattern=r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")]
When = Annotated[str | None, Field(examples=["7d", "2026-12-01"])]


def _archive(settings: Settings, dest: str | None, options: dict[str, str] | None) -> Destination:
    merged = StorageOptions.parse({**settings.storage_options, **(options or {})})
    return open_destination(dest or settings.dest, merged)


def _synced(destination: Destination, settings: Settings) -> catalog.Catalog:
    store = catalog.Catalog(catalog.catalog_file(destination, settings.catalog_dir))
    catalog.sync(destination, store, list_interval=settings.catalog_list_interval)
    return store


@flow(name="find-in-archive")
async def find_in_archive(
    query: str = "",
    model: Model = None,
    since: When = None,
    until: When = None,
    prediction_id: str | None = None,
    limit: Annotated[int, Field(ge=1, le=1000)] = 50,
    dest: str | None = None,
    storage_options: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Search archived predictions by the words of their input; a table and a gallery of the
    matches are left as artifacts.

    Args:
        query: Words the input's text must all contain (prefixes count); empty: filters only.
        model: Only this model, OWNER/NAME.
        since: Created within (7d, 12h) or since a date (2026-12-01).
        until: Created before this date or datetime (a date includes its day).
        prediction_id: Only this prediction.
        limit: Most matches listed (newest first).
        dest: Archive root (local path or fsspec URL); empty: the worker's ARCHIVER_DEST.
        storage_options: Non-secret fsspec options; credentials stay in the worker's environment.
    """
    await checked_storage_options(storage_options)
    settings = await with_storage_credentials()
    filters = catalog.Filters.parse(
        query.split(), model=model, since=since, until=until, prediction_id=prediction_id
    )
    destination = _archive(settings, dest, storage_options)

    def search() -> dict[str, Any]:
        with _synced(destination, settings) as store:
            total, results = catalog.find(
                store,
                filters,
                limit=limit,
                manifest_url=lambda p: destination.url_for(destination.path(p)),
            )
        for result in results:
            result.pop("prompt")
        return {"dest": destination.url, "total": total, "results": results}

    document = await asyncio.to_thread(search)
    await publish_find(document, destination, query)
    return document


@flow(name="verify-archive")
async def verify_archive(
    model: Model = None,
    since: When = None,
    prediction_id: str | None = None,
    concurrency: Annotated[int, Field(ge=1, le=256)] = 4,
    dest: str | None = None,
    storage_options: dict[str, str] | None = None,
) -> VerifyReport:
    """Re-read every archived file and compare size and sha256 with its manifest; the run fails
    when any file is corrupt or missing or a manifest is unreadable, and its markdown artifact
    lists every problem.

    Args:
        model: Only this model, OWNER/NAME.
        since: Only predictions created within (7d) or since a date (2026-12-01).
        prediction_id: Only this prediction.
        concurrency: Files checked at once.
        dest: Archive root (local path or fsspec URL); empty: the worker's ARCHIVER_DEST.
        storage_options: Non-secret fsspec options; credentials stay in the worker's environment.
    """
    await checked_storage_options(storage_options)
    settings = await with_storage_credentials()
    filters = catalog.Filters.parse(model=model, since=since, prediction_id=prediction_id)
    destination = _archive(settings, dest, storage_options)

    def check() -> VerifyReport:
        with _synced(destination, settings) as store:
            selected = catalog.manifest_paths(store, filters)
        return verify(destination, selected, workers=concurrency)

    report = await asyncio.to_thread(check)
    await publish_verify(report)
    if not report.clean:
        return Failed(message=report.headline(), data=report)  # type: ignore[return-value]
    return report
