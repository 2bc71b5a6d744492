"""`python -m flows find | verify | usage | catalog rebuild`: the archive after the fact.

Every command first brings the catalog up to date with the manifests it has not seen (a few
stats, or one short listing of the journal on object stores; the first time, every manifest
is read, with a counter on a terminal).
Bad arguments (an unknown --dest scheme, a malformed --since...) exit 2 with one line; a store
or catalog error exits 1 with one line. Cheap to import: no Prefect.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn, cast

import typer

from cli.common import fail

DEST_HELP = "Archive: path or fsspec URL [default: ARCHIVER_DEST or ./archive]"
OPTION_HELP = "fsspec storage option K=V (repeatable)"
SINCE_HELP = "Created within (7d, 12h, 2w) or since a date (2026-12-01)"
UNTIL_HELP = "Created before this date or datetime (a date includes its day)"

catalog_app = typer.Typer(
    no_args_is_help=True, help="The catalog behind find, verify and usage (derived, disposable)."
)


def bad_argument(exc: BaseException) -> NoReturn:
    """One line on stderr, exit 2 (the code click uses for usage errors)."""
    from archiver.errors import redact

    typer.echo(f"error: {redact(str(exc).splitlines()[0] if str(exc) else repr(exc))}", err=True)
    raise typer.Exit(2)


@contextmanager
def arguments() -> Iterator[None]:
    """Checks of the command line: any error in the block exits 2."""
    from archiver.errors import ConfigurationError

    try:
        yield
    except (ConfigurationError, ValueError) as exc:
        bad_argument(exc)


def open_archive(dest: str | None, storage_option: list[str]) -> tuple[Any, Any]:
    """(Destination, Settings) for --dest and --storage-option (ConfigurationError if bad)."""
    from archiver.settings import Settings
    from archiver.storage import StorageOptions, open_destination

    settings = Settings()
    given: dict[str, Any] = {}
    if storage_option:  # archiver.inputs is not cheap to import: only when needed
        from archiver.inputs import parse_options

        given = parse_options(storage_option)
    options = StorageOptions.parse({**settings.storage_options, **given})
    return open_destination(dest or settings.dest, options), settings


def synced_catalog(destination: Any, settings: Any, *, rebuild: bool = False) -> Any:
    """The archive's catalog, brought up to date (store errors propagate: exit 1)."""
    from archiver import catalog
    from archiver.errors import StorageError

    if destination.is_local and not os.path.isdir(destination.root):
        raise StorageError(f"no archive at {destination.url} (the directory does not exist)")
    store = catalog.Catalog(catalog.catalog_file(destination, settings.catalog_dir))
    with _counter("reading manifests") as progress:
        if rebuild:
            catalog.rebuild(destination, store, progress)
        else:
            catalog.sync(destination, store, progress, list_interval=settings.catalog_list_interval)
    return store


@contextmanager
def _counter(what: str) -> Iterator[Callable[[int], None] | None]:
    """A live count on stderr when it is a terminal; nothing otherwise."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console

    with Console(stderr=True).status(f"{what}...") as status:

        def update(count: int) -> None:
            if count % 500 == 0:
                status.update(f"{what}: {count:,}")

        yield update


def find(
    words: list[str] = typer.Argument(None, help="Words of the input's text (prefixes count)"),
    dest: str = typer.Option(None, "--dest", help=DEST_HELP),
    model: str = typer.Option(None, "--model", help="Only this model, OWNER/NAME"),
    since: str = typer.Option(None, "--since", help=SINCE_HELP),
    until: str = typer.Option(None, "--until", help=UNTIL_HELP),
    prediction_id: str = typer.Option(None, "--id", help="Only this prediction id"),
    sha256: str = typer.Option(None, "--sha256", help="Only predictions holding this file"),
    limit: str = typer.Option("50", "--limit", help="Most results shown (newest first)"),
    storage_option: list[str] = typer.Option([], "--storage-option", help=OPTION_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document on stdout"),
    debug: bool = typer.Option(False, "--debug", help="Tracebacks on errors"),
) -> None:
    """Find archived predictions by the words of their input and by filters."""
    from archiver.catalog import Filters
    from archiver.catalog import find as run_find

    with arguments():
        filters = Filters.parse(
            words, model=model, since=since, until=until, prediction_id=prediction_id, sha256=sha256
        )
        count = _positive(limit, "--limit")
        destination, settings = open_archive(dest, storage_option)
    try:
        with synced_catalog(destination, settings) as store:
            total, results = run_find(
                store, filters, limit=count, manifest_url=lambda p: _url(destination, p)
            )
    except Exception as exc:  # noqa: BLE001 - the CLI's one boundary
        fail(exc, debug)
    if as_json:
        import json

        for result in results:
            result.pop("prompt")
        document = {"dest": destination.url, "total": total, "results": results}
        typer.echo(json.dumps(document, indent=2, ensure_ascii=False))
    else:
        from cli.catalog_output import print_matches

        print_matches(results)
    if not total:
        typer.echo(f"no archived prediction matches in {destination.url}", err=True)
    elif total > len(results) and not as_json:
        typer.echo(f"{total} match(es), the newest {len(results)} shown (--limit)", err=True)


def verify(
    dest: str = typer.Option(None, "--dest", help=DEST_HELP),
    model: str = typer.Option(None, "--model", help="Only this model, OWNER/NAME"),
    since: str = typer.Option(None, "--since", help=SINCE_HELP),
    until: str = typer.Option(None, "--until", help=UNTIL_HELP),
    prediction_id: str = typer.Option(None, "--id", help="Only this prediction id"),
    concurrency: str = typer.Option("4", "--concurrency", help="Files checked at once"),
    storage_option: list[str] = typer.Option([], "--storage-option", help=OPTION_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON report on stdout"),
    debug: bool = typer.Option(False, "--debug", help="Tracebacks on errors"),
) -> None:
    """Re-read every archived file and compare size and sha256 with its manifest (exit 1 on
    any corrupt or missing file or unreadable manifest)."""
    from archiver.catalog import Filters, manifest_paths
    from archiver.catalog.verify import verify as run_verify
    from cli.catalog_output import bytes_bar

    with arguments():
        filters = Filters.parse(model=model, since=since, until=until, prediction_id=prediction_id)
        workers = _positive(concurrency, "--concurrency", most=256)
        destination, settings = open_archive(dest, storage_option)
    try:
        with synced_catalog(destination, settings) as store:
            selected = manifest_paths(store, filters)
        with bytes_bar(enabled=not as_json) as progress:
            report = run_verify(destination, selected, workers=workers, progress=progress)
    except Exception as exc:  # noqa: BLE001 - the CLI's one boundary
        fail(exc, debug)
    if as_json:
        typer.echo(report.model_dump_json(indent=2))
    else:
        for problem in report.problems:
            who = problem.prediction_id or "-"
            typer.echo(f"{problem.outcome:<10} {who}  {problem.path}: {problem.detail}")
    typer.echo(report.headline(), err=as_json)
    if not report.clean:
        raise typer.Exit(1)


def usage(
    dest: str = typer.Option(None, "--dest", help=DEST_HELP),
    since: str = typer.Option("30d", "--since", help=SINCE_HELP),
    until: str = typer.Option(None, "--until", help=UNTIL_HELP),
    model: str = typer.Option(None, "--model", help="Only this model, OWNER/NAME"),
    by: str = typer.Option("model", "--by", help="model | day | month"),
    prices: str = typer.Option(
        None, "--prices", help="TOML price table [default: ARCHIVER_PRICES]"
    ),
    storage_option: list[str] = typer.Option([], "--storage-option", help=OPTION_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document on stdout"),
    debug: bool = typer.Option(False, "--debug", help="Tracebacks on errors"),
) -> None:
    """Predictions, output files, bytes and model time per model, day or month (and the
    estimated cost, with a price table)."""
    from archiver.catalog import Filters
    from archiver.catalog.usage import GroupBy, Prices
    from archiver.catalog.usage import usage as run_usage
    from archiver.errors import ConfigurationError

    with arguments():
        if by not in ("model", "day", "month"):
            raise ConfigurationError(f"invalid --by {by!r}: expected model, day or month")
        filters = Filters.parse(model=model, since=since, until=until)
        destination, settings = open_archive(dest, storage_option)
        table = prices or settings.prices
        price_table = Prices.load(table) if table else None
    try:
        with synced_catalog(destination, settings) as store:
            report = run_usage(
                store,
                filters,
                by=cast("GroupBy", by),
                prices=price_table,
                dest=destination.url,
            )
    except Exception as exc:  # noqa: BLE001 - the CLI's one boundary
        fail(exc, debug)
    if as_json:
        typer.echo(report.model_dump_json(indent=2))
    else:
        from cli.catalog_output import print_usage

        print_usage(report)


@catalog_app.command("rebuild")
def rebuild(
    dest: str = typer.Option(None, "--dest", help=DEST_HELP),
    storage_option: list[str] = typer.Option([], "--storage-option", help=OPTION_HELP),
    debug: bool = typer.Option(False, "--debug", help="Tracebacks on errors"),
) -> None:
    """Forget the catalog and read every manifest again."""
    from archiver import catalog

    with arguments():
        destination, settings = open_archive(dest, storage_option)
    try:
        with synced_catalog(destination, settings, rebuild=True) as store:
            good, bad = store.db.execute(
                "SELECT (SELECT count(*) FROM manifests), (SELECT count(*) FROM bad)"
            ).fetchone()
    except Exception as exc:  # noqa: BLE001 - the CLI's one boundary
        fail(exc, debug)
    where = catalog.catalog_file(destination, settings.catalog_dir)
    typer.echo(f"catalog {where}: {good} manifest(s), {bad} unreadable")


def _url(destination: Any, path: str) -> str:
    return str(destination.url_for(destination.path(path)))


def _positive(text: str, option: str, most: int = 1_000_000) -> int:
    from archiver.errors import ConfigurationError

    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= most:
        raise ConfigurationError(f"invalid {option} {text!r}: expected a number from 1 to {most}")
    return value
