"""`python -m flows`: the typer app, assembled from one module per command group.

Every module is cheap to import: heavy imports (Prefect, httpx, the emulator) happen inside
commands, so `--help`, `settings` and `emulator` stay cheap.
"""

from __future__ import annotations

import typer

from cli import account, catalog, demo, setup_cmd
from cli.batch_cmd import batch
from cli.run_cmd import run
from cli.server_cmd import server_app

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Archive Replicate predictions before their URLs die.",
)

# Make predictions and archive them at once: one, or a batch file's worth.
app.command("run")(run)
app.command("batch")(batch)

# Set-up and trying it out offline.
app.command("settings")(setup_cmd.settings)
app.command(
    "emulator",
    help="Serve the Replicate emulator (offline API + delivery); --help for its options.",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    add_help_option=False,
)(setup_cmd.emulator)
app.command("demo")(demo.demo)
app.add_typer(server_app, name="server")

# Archive what the account pays for, made by any client: by id, by sweep, by webhook.
app.command("archive")(account.archive)
app.command("sweep")(account.sweep)
app.command("webhooks")(account.webhooks)

# The archive after the fact: search it, check it, account for it (catalog derived from manifests).
app.command("find")(catalog.find)
app.command("verify")(catalog.verify)
app.command("usage")(catalog.usage)
app.add_typer(catalog.catalog_app, name="catalog")
