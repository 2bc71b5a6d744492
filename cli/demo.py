"""`python -m flows demo`: the main job end to end, offline, against the built-in emulator.

It starts the emulator with the first output URLs already expired, archives real PNGs, shows the
expired URLs being recovered by a re-fetch, then runs the same input again to show the cache.
"""

from __future__ import annotations

import asyncio
import os

import typer

DEMO_MODEL = "black-forest-labs/flux-schnell"
DEMO_INPUT = {"prompt": "a lighthouse archiving the sunset", "num_outputs": 2, "seed": 7}


def demo(
    dest: str = typer.Option("./archive", "--dest", help="Where to archive the demo outputs"),
    processing_seconds: float = typer.Option(1.0, help="Simulated model time"),
) -> None:
    """The main job end to end, offline, on the built-in emulator."""
    # One prediction through the pipeline on the emulator, then again from cache.
    from archiver.progress import use_progress
    from cli.console import RichProgress, print_summary, stderr
    from cli.prefect_api import prefect_api
    from emulator import Emulator
    from flows.console import quiet_prefect_console

    with (
        Emulator(processing_seconds=processing_seconds, first_urls_expired=True) as emulator,
        prefect_api(),
    ):
        from flows.archive_prediction import archive_prediction

        os.environ.update(emulator.env())
        os.environ["REPLICATE_API_TOKEN"] = "demo-token-not-secret"
        stderr.print(f"emulator at {emulator.base_url} (first output URLs handed out expired)")
        quiet_prefect_console(debug=False)
        summaries = []
        for attempt in ("first run", "same input again"):
            stderr.print(f"[bold]{attempt}[/]: {DEMO_MODEL} {DEMO_INPUT}")
            with RichProgress() as progress:
                use_progress(progress)
                summaries.append(
                    asyncio.run(archive_prediction(model=DEMO_MODEL, input=DEMO_INPUT, dest=dest))
                )
        stats = emulator.stats()
    print_summary(summaries[:1])
    first, second = summaries
    if first.cached:  # an earlier demo archived this input into the same dest
        stderr.print(
            f"already archived by an earlier demo in {dest}: both runs came from the cache; "
            f"predictions paid for: {stats.creates_accepted} (remove {dest} to watch expired "
            "URLs being recovered)"
        )
        if not (second.cached and stats.creates_accepted == 0):
            raise typer.Exit(1)
        return
    expired = sum(1 for d in stats.downloads if d["status"] == 403)
    stderr.print(
        f"{expired} download(s) hit an expired URL and were recovered by {first.refetches} "
        f"re-fetch(es); predictions paid for: {stats.creates_accepted} "
        f"(second run cached: {second.cached})"
    )
    if not (first.refetches and second.cached and stats.creates_accepted == 1):
        raise typer.Exit(1)
