"""Command line: run the emulator in the foreground until Ctrl-C.

Mount it on a typer app with ``app.command("emulator")(emulator_command)``, or run
``python -m emulator``.  The first lines printed are shell ``export``s, so
``eval "$(python -m emulator | head -3)"`` style set-ups work.
"""

from __future__ import annotations

import socket
import sys
from typing import Optional

import typer
import uvicorn

from emulator.app import Backend, build_app
from emulator.faults import FaultBox, Faults
from emulator.models import ModelRegistry
from emulator.server import public_host, url_host

_D = Faults()


def _free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def emulator_command(
    host: str = typer.Option("127.0.0.1", help="Interface to bind."),
    port: int = typer.Option(8765, help="Port to bind (0 picks a free one)."),
    processing_seconds: float = typer.Option(_D.processing_seconds, help="Time in 'processing'."),
    starting_seconds: float = typer.Option(_D.starting_seconds, help="Time in 'starting'."),
    finalize_seconds: float = typer.Option(
        _D.finalize_seconds, help="Outputs visible while processing, this long before success."
    ),
    url_ttl_seconds: float = typer.Option(
        _D.url_ttl_seconds, help="Lifetime of signed output URLs."
    ),
    retention_seconds: float = typer.Option(
        _D.retention_seconds, help="Output kept after completion."
    ),
    first_urls_expired: bool = typer.Option(
        _D.first_urls_expired, help="First URLs handed out are expired."
    ),
    drop_downloads: int = typer.Option(
        _D.drop_downloads, help="Next N downloads: reset after half."
    ),
    truncate_downloads: int = typer.Option(
        _D.truncate_downloads, help="Next N downloads: end after half."
    ),
    fail_downloads: int = typer.Option(_D.fail_downloads, help="Next N downloads answer 503."),
    fail_reads: int = typer.Option(_D.fail_reads, help="Next N prediction GETs answer 503."),
    throttle_creates: int = typer.Option(_D.throttle_creates, help="Next N creates answer 429."),
    retry_after_seconds: int = typer.Option(_D.retry_after_seconds, help="Retry-After of a 429."),
    drop_create_responses: int = typer.Option(
        _D.drop_create_responses, help="Next N creates: no response."
    ),
    final_status: str = typer.Option(_D.final_status, help="succeeded|failed|canceled|aborted."),
    error_text: str = typer.Option(_D.error_text, help="Error of failed predictions."),
    fail_predictions: int = typer.Option(_D.fail_predictions, help="Next N predictions fail."),
    remove_data_after_success: int = typer.Option(
        _D.remove_data_after_success, help="Next N successes lose data after one read."
    ),
    output_host: Optional[str] = typer.Option(_D.output_host, help="host[:port] for output URLs."),  # noqa: UP045
    hostile_filenames: bool = typer.Option(_D.hostile_filenames, help="Hostile output file names."),
    page_size: int = typer.Option(_D.page_size, help="Predictions per list page."),
    data_uri_outputs: bool = typer.Option(
        _D.data_uri_outputs, help="File outputs inline as data: URIs."
    ),
    delivery_bytes_per_second: float = typer.Option(
        _D.delivery_bytes_per_second, help="Bandwidth of each download (0: unlimited)."
    ),
    throttle_lists: int = typer.Option(_D.throttle_lists, help="Next N list calls answer 429."),
    webhook_retry_seconds: float = typer.Option(
        _D.webhook_retry_seconds, help="First wait before a failed webhook is retried (doubles)."
    ),
    fail_uploads: int = typer.Option(_D.fail_uploads, help="Next N uploads answer 503."),
    refuse_uploads: int = typer.Option(_D.refuse_uploads, help="Next N uploads answer 413."),
    webhook_secret: Optional[str] = typer.Option(  # noqa: UP045
        None, help="whsec_ key to sign webhooks with [default: a new random one]."
    ),
    model: list[str] = typer.Option(
        [], "--model", help="Make model OWNER/NAME exist (repeatable); others answer 404."
    ),
    any_model: bool = typer.Option(
        False, "--any-model", help="Every OWNER/NAME exists (runs the demo image model)."
    ),
) -> None:
    """Run the Replicate API emulator in the foreground (Ctrl-C to stop)."""
    try:
        faults = Faults(
            processing_seconds=processing_seconds,
            starting_seconds=starting_seconds,
            finalize_seconds=finalize_seconds,
            url_ttl_seconds=url_ttl_seconds,
            retention_seconds=retention_seconds,
            first_urls_expired=first_urls_expired,
            drop_downloads=drop_downloads,
            truncate_downloads=truncate_downloads,
            fail_downloads=fail_downloads,
            fail_reads=fail_reads,
            throttle_creates=throttle_creates,
            retry_after_seconds=retry_after_seconds,
            drop_create_responses=drop_create_responses,
            final_status=final_status,  # type: ignore[arg-type]
            error_text=error_text,
            fail_predictions=fail_predictions,
            remove_data_after_success=remove_data_after_success,
            output_host=output_host,
            hostile_filenames=hostile_filenames,
            page_size=page_size,
            data_uri_outputs=data_uri_outputs,
            delivery_bytes_per_second=delivery_bytes_per_second,
            webhook_retry_seconds=webhook_retry_seconds,
            throttle_lists=throttle_lists,
            fail_uploads=fail_uploads,
            refuse_uploads=refuse_uploads,
        )
    except (TypeError, ValueError) as exc:
        raise typer.BadParameter(str(exc)) from exc
    port = port or _free_port(host)
    delivery_host = public_host(host)
    base_url = f"http://{url_host(delivery_host)}:{port}"
    print(f"export REPLICATE_BASE_URL={base_url}")
    print(f"export REPLICATE_DELIVERY_HOSTS={delivery_host}")
    print("export REPLICATE_API_TOKEN=emulator-token")
    sys.stdout.flush()
    models = ModelRegistry(model, any_model=any_model)
    app = build_app(
        Backend(base_url, FaultBox(faults), webhook_secret=webhook_secret, models=models)
    )
    uvicorn.run(
        app, host=host, port=port, log_level="info", lifespan="off", timeout_graceful_shutdown=2
    )


def main() -> None:
    """Entry point of ``python -m emulator``."""
    typer.run(emulator_command)
