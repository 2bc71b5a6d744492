"""`python -m flows batch`: archive every record of a batch file (one flow run).

Cheap to import: Prefect, httpx and the flows load inside the command.
"""

from __future__ import annotations

from typing import Any

import typer

from cli import runs
from cli.common import DataRemovedOption, DebugOption, DestOption


def batch(
    file: str = typer.Argument(
        ...,
        help='Batch file (local path or fsspec URL): JSONL, CSV or a JSON list; a record is an input, or {"model": ..., "input": {...}}',
    ),
    model: str = typer.Option(
        None, "--model", help="owner/name[:version] for records that name no model"
    ),
    concurrency: int = typer.Option(
        8,
        "--concurrency",
        min=1,
        max=1000,
        help="Items in flight at once (created, not yet archived)",
    ),
    dest: DestOption = None,
    storage_option: list[str] = typer.Option(
        [],
        "--storage-option",
        help="fsspec storage option K=V (repeatable; also used to read FILE)",
    ),
    refresh: bool = typer.Option(
        False, "--refresh", help="Pay for new predictions even for inputs archived before"
    ),
    on_data_removed: DataRemovedOption = "fail",
    deadline: str = typer.Option(
        None, "--deadline", help="Cancel each prediction on Replicate after SECONDS (1-86400)"
    ),
    webhook: str = typer.Option(
        None, "--webhook", help="Receiver URL for each `completed` event (`flows webhooks`)"
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON summary on stdout"),
    debug: DebugOption = False,
) -> None:
    """Archive every record of a batch file; exits 1 if any item failed (rerun to retry them)."""
    from archiver.batchfile import load_batch
    from archiver.prediction import ModelRef
    from archiver.settings import Settings
    from cli import checks

    with runs.boundary(debug):
        checks.on_data_removed(on_data_removed)
        seconds = checks.deadline(deadline)
        checks.webhook(webhook)
        if model is not None:
            ModelRef.parse(model)
        storage = runs.storage(storage_option)
        # Read it here too: file errors come before Prefect starts, and the bar knows its total.
        read_options = {**Settings().storage_options, **storage.options}
        items = load_batch(file, default_model=model, storage_options=read_options)
        if not items:
            typer.echo(f"warning: {file} holds no records; nothing to archive", err=True)
            return

        async def start(options: dict[str, str] | None) -> Any:
            from flows.batch import archive_batch

            return await runs.result_of(
                archive_batch(
                    file=file,
                    model=model,
                    dest=dest,
                    concurrency=concurrency,
                    refresh=refresh,
                    on_data_removed=on_data_removed,
                    deadline=seconds,
                    webhook=webhook,
                    storage_options=options,
                    return_state=True,
                )
            )

        summary = runs.run_flow(
            start,
            dest=dest,
            storage=storage,
            debug=debug,
            progress=not as_json,
            predictions=len(items),
        )
    if as_json:
        typer.echo(runs.as_json(summary))
    else:
        from cli.console import print_batch_summary

        print_batch_summary(summary)
    if summary.failed:
        raise typer.Exit(1)
