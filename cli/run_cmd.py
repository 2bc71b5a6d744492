"""`python -m flows run`: generate one prediction, download its outputs at once, archive them.

Cheap to import: Prefect, httpx and the flows load inside the command.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import typer

from cli import runs
from cli.common import DataRemovedOption, DebugOption, DestOption, StorageOption

if TYPE_CHECKING:
    from archiver.pipeline import OnDataRemoved


async def _upload_inputs(
    model: Any, flow_input: dict[str, Any], *, dest: str | None, options: Any, refresh: bool
) -> tuple[dict[str, Any], dict[str, str]]:
    """Upload the `@file` inputs over 256 KB (Files API) before the flow run exists: its
    parameters hold their URLs. Nothing to upload: nothing imported or opened."""
    from archiver.uploads import has_uploads

    if not has_uploads(flow_input):
        return flow_input, {}
    from archiver.runtime import Runtime
    from archiver.settings import Settings
    from archiver.uploads import resolve_uploads

    runtime = Runtime.build(Settings(), dest=dest, storage_options=options)
    try:
        return await resolve_uploads(runtime, model, flow_input, refresh=refresh)
    finally:
        await runtime.aclose()


def run(
    model: str = typer.Argument(None, help="owner/name or owner/name:version"),
    inputs: list[str] = typer.Option(
        [], "--input", "-i", help="KEY=VALUE (JSON or text); KEY=@path uploads a file"
    ),
    input_json: str = typer.Option(
        None, "--input-json", help="JSON object file with the input, or - for stdin"
    ),
    deployment: str = typer.Option(
        None, "--deployment", help="Run a Replicate deployment OWNER/NAME instead of MODEL"
    ),
    dest: DestOption = None,
    storage_option: StorageOption = [],  # noqa: B006 - typer copies the default
    refresh: bool = typer.Option(
        False, "--refresh", help="Pay for a new prediction even if archived before"
    ),
    on_data_removed: DataRemovedOption = "fail",
    deadline: str = typer.Option(
        None, "--deadline", help="Cancel the prediction on Replicate after SECONDS (1-86400)"
    ),
    webhook: str = typer.Option(
        None, "--webhook", help="Receiver URL for the `completed` event (`flows webhooks`)"
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON summary on stdout"),
    debug: DebugOption = False,
) -> None:
    """Generate one prediction, download every output at once, and archive it."""
    from archiver.errors import ConfigurationError
    from archiver.inputs import load_input_json, parse_pairs
    from archiver.prediction import ModelRef, PredictionRequest
    from archiver.settings import Settings
    from archiver.uploads import has_uploads
    from cli import checks, head_start

    with runs.boundary(debug):
        # Every check that needs no network comes before Prefect or Replicate is touched.
        if bool(model) == bool(deployment):
            raise ConfigurationError("give exactly one of MODEL or --deployment OWNER/NAME")
        ref = ModelRef.parse(model or deployment, deployment=bool(deployment))
        checks.on_data_removed(on_data_removed)
        seconds = checks.deadline(deadline)
        checks.webhook(webhook)
        flow_input = {**load_input_json(input_json), **parse_pairs(inputs)}
        storage = runs.storage(storage_option)
        ahead = None
        if not refresh and not has_uploads(flow_input) and head_start.possible(Settings()):
            request = PredictionRequest(ref, flow_input, seconds, webhook)
            ahead = head_start.HeadStart(request, dest, storage.options)  # as Prefect loads

        async def start(options: dict[str, str] | None) -> Any:
            from flows.archive_prediction import archive_prediction

            uploaded, digests = await _upload_inputs(
                ref, flow_input, dest=dest, options=storage.options, refresh=refresh
            )
            return await archive_prediction(
                model=model or deployment,
                input=uploaded,
                file_digests=digests or None,
                dest=dest,
                deployment=bool(deployment),
                refresh=refresh,
                on_data_removed=cast("OnDataRemoved", on_data_removed),
                deadline=seconds,
                webhook=webhook,
                storage_options=options,
            )

        summary = runs.run_flow(
            start, dest=dest, storage=storage, debug=debug, progress=not as_json, ahead=ahead
        )
    if as_json:
        typer.echo(runs.as_json(summary))
    else:
        from cli.console import print_summary

        print_summary([summary])
