"""A fresh PREFECT_HOME's database, migrated once per Prefect version instead of once per home.

A `prefect server start` on a home without a database runs Prefect's ~200 migrations and registers
its block types: about 10 s of one core, which a new user's first run used to wait for. The same
work, done once by a server with no UI and no services on a throwaway home, is kept as a copy:

    $XDG_CACHE_HOME/replicate-archiver/prefect-<version>.db   (~/.cache/... by default)

`python -m flows server prepare` (which `make install` runs) builds it; when the local server
starts on a home with no database, `seed` copies it there and tells that start to skip what the
copy has already done. A copy holds Prefect's schema and block types only: no runs, no keys, no
configuration. Nothing is seeded where Prefect may use another database (a database setting in
the environment, a profile, or a `prefect.toml`/`.env` the server would read), nor where a
database file exists, nor with `ARCHIVER_SERVER_TEMPLATE=false`.

Stdlib only (no Prefect import).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import shutil
import sqlite3
import tempfile
from pathlib import Path

from archiver.errors import ConfigurationError
from cli.server_process import Echo, flock, print_stderr
from cli.temporary_server import TemporaryServer

# What a server started on a copy need not do again (its start is ~5 s instead of ~14 s).
DONE = {
    "PREFECT_SERVER_DATABASE_MIGRATE_ON_START": "false",
    "PREFECT_SERVER_REGISTER_BLOCKS_ON_START": "false",
}
# Settings by which Prefect would use a database other than $PREFECT_HOME/prefect.db.
_DATABASE_KEYS = ("CONNECTION_URL", "DRIVER", "HOST", "PORT", "USER", "NAME", "PASSWORD")


def path() -> Path:
    """This Prefect version's template, in the user's cache directory."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser()
    version = importlib.metadata.version("prefect")
    return cache / "replicate-archiver" / f"prefect-{version}.db"


def build(timeout: float = 120.0, echo: Echo = print_stderr) -> Path:
    """The template, built if missing (under a lock, so concurrent builds make one)."""
    target = path()
    target.parent.mkdir(parents=True, exist_ok=True)
    with flock(target.with_suffix(".lock"), timeout + 30):
        if _valid(target):
            return target
        echo(f"migrating a Prefect database once, for new PREFECT_HOMEs: {target}")
        work = Path(tempfile.mkdtemp(prefix="prefect-template-", dir=target.parent))
        try:
            with TemporaryServer(timeout=timeout, echo=lambda _note: None, home=work):
                pass  # answering means migrated, block types registered
            # The backup API copies a consistent database, whatever the server left in its WAL.
            partial = work / "template.db"
            source = sqlite3.connect(work / "prefect.db")
            copy = sqlite3.connect(partial)
            try:
                source.backup(copy)
            finally:
                copy.close()
                source.close()
            if not _valid(partial):
                raise ConfigurationError(
                    f"the Prefect server started to migrate a database in {work} did not"
                )
            os.replace(partial, target)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return target


def _valid(template: Path) -> bool:
    """A file that is a migrated Prefect database with its block types (an interrupted copy
    never is one: copies are renamed into place whole, but a user may have put anything there)."""
    if not template.is_file():
        return False
    try:
        with contextlib.closing(sqlite3.connect(f"file:{template}?mode=ro", uri=True)) as db:
            migrated = db.execute("SELECT count(*) FROM alembic_version").fetchone()[0] == 1
            return migrated and db.execute("SELECT count(*) FROM block_type").fetchone()[0] > 0
    except sqlite3.Error:
        return False


def database_may_be_configured(home: Path) -> bool:
    """Whether the server of `home` might use a database other than its SQLite default: a
    database setting in the environment, or the word in a file Prefect reads settings from (its
    profiles, and `prefect.toml`, `pyproject.toml`, `.env` in the server's working directory, the
    home). True when in doubt."""
    for key in os.environ:
        if key.startswith("PREFECT_") and "DATABASE_" in key:
            if key.rsplit("DATABASE_", 1)[1] in _DATABASE_KEYS:
                return True
    profiles = Path(os.environ.get("PREFECT_PROFILES_PATH") or home / "profiles.toml")
    for source in (profiles, home / "prefect.toml", home / "pyproject.toml", home / ".env"):
        try:
            if "database" in source.read_text(errors="replace").lower():
                return True
        except FileNotFoundError:
            continue
        except OSError:
            return True
    return False


def seed(home: Path) -> dict[str, str]:
    """Copy the template to `home`'s database if the home has none (and may use no other);
    the settings for the server's start that follow from it ({} when nothing was seeded)."""
    template = path()
    database = home / "prefect.db"
    if database.exists() or not _valid(template) or database_may_be_configured(home):
        return {}
    home.mkdir(parents=True, exist_ok=True)
    partial = home / f".prefect.db.{os.getpid()}.partial"
    try:
        shutil.copyfile(template, partial)
        os.link(partial, database)  # never replaces a database that appeared meanwhile
    except OSError:  # it appeared; or no hard links here, a full disk: Prefect migrates its own
        return {}
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
    return dict(DONE)
