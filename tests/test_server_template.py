"""A new PREFECT_HOME's local server starts from the migrated template, and only where it is safe."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from cli import database_template, local_server
from tests.conftest import ROOT

pytestmark = pytest.mark.server

# What the template may hold: Prefect's schema version and its block types, nothing of a user's.
TEMPLATE_TABLES = {"alembic_version", "block_type", "block_schema", "block_schema_reference"}


@pytest.fixture
def no_database_settings(monkeypatch, tmp_path):
    """An environment that names no database, with profiles of its own (none yet)."""
    for key in list(os.environ):
        if key.startswith("PREFECT_") and "DATABASE" in key:
            monkeypatch.delenv(key)
    monkeypatch.setenv("PREFECT_PROFILES_PATH", str(tmp_path / "profiles.toml"))


def rows_per_table(database: Path) -> dict[str, int]:
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
        names = [n for (n,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {name: db.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0] for name in names}


def test_the_template_holds_prefects_schema_and_block_types_only(prefect_template):
    """The template is migrated (one alembic revision), has the block types, and holds no runs,
    pools, variables or configuration (no key) of anyone's."""
    rows = rows_per_table(prefect_template)
    assert rows["alembic_version"] == 1
    assert rows["block_type"] > 10
    assert {name for name, count in rows.items() if count} <= TEMPLATE_TABLES
    assert "flow_run" in rows and "configuration" in rows  # the schema is there, empty


def test_prepare_names_the_template_and_builds_nothing_when_it_exists(prefect_template):
    """`server prepare` prints this Prefect version's template and leaves a valid one alone."""
    before = prefect_template.stat().st_mtime_ns
    result = subprocess.run(
        [sys.executable, "-m", "flows", "server", "prepare"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"template: {prefect_template}"
    assert prefect_template.stat().st_mtime_ns == before


def test_a_first_start_copies_the_template_and_skips_its_migrations(
    tmp_path, prefect_template, no_database_settings
):
    """The local server's first start on an empty PREFECT_HOME copies the template to its
    database and starts with migrations and block registration off; it answers."""
    home = tmp_path / "home"
    state = local_server.ensure(home=home, timeout=600)
    try:
        environ = Path(f"/proc/{state.pid}/environ").read_bytes().split(b"\0")
        for key, value in database_template.DONE.items():
            assert f"{key}={value}".encode() in environ
        assert rows_per_table(home / "prefect.db")["block_type"] > 10
        assert local_server.healthy(state.api_url)
    finally:
        local_server.stop(home)


def test_a_home_with_a_database_is_never_seeded(tmp_path, prefect_template, no_database_settings):
    """An existing database file is left byte for byte, and nothing is skipped at start."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "prefect.db").write_bytes(b"the user's own")
    assert database_template.seed(home) == {}
    assert (home / "prefect.db").read_bytes() == b"the user's own"


@pytest.mark.parametrize(
    "variable",
    [
        "PREFECT_API_DATABASE_CONNECTION_URL",
        "PREFECT_SERVER_DATABASE_CONNECTION_URL",
        "PREFECT_SERVER_DATABASE_DRIVER",
        "PREFECT_SERVER_DATABASE_HOST",
    ],
)
def test_a_configured_database_is_never_seeded(
    tmp_path, prefect_template, no_database_settings, monkeypatch, variable
):
    """Where the environment may name another database, nothing is copied or skipped (a
    Postgres database must still be migrated at start)."""
    monkeypatch.setenv(variable, "postgresql+asyncpg://127.0.0.1/test")
    home = tmp_path / "home"
    assert database_template.seed(home) == {}
    assert not (home / "prefect.db").exists()


@pytest.mark.parametrize("source", ["profiles.toml", "prefect.toml", ".env"])
def test_a_database_in_a_settings_file_is_never_seeded(
    tmp_path, prefect_template, no_database_settings, monkeypatch, source
):
    """A database setting in the profiles or in a file the server reads in its home counts too."""
    home = tmp_path / "home"
    home.mkdir()
    where = tmp_path / "profiles.toml" if source == "profiles.toml" else home / source
    where.write_text('PREFECT_SERVER_DATABASE_CONNECTION_URL = "postgresql+asyncpg://x/y"\n')
    assert database_template.seed(home) == {}
    assert not (home / "prefect.db").exists()


def test_no_template_or_a_broken_one_seeds_nothing(tmp_path, no_database_settings, monkeypatch):
    """No template built, or a file that is not a migrated database: the home migrates its own."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    home = tmp_path / "home"
    assert database_template.seed(home) == {}
    database_template.path().parent.mkdir(parents=True)
    database_template.path().write_bytes(b"not a database")
    assert database_template.seed(home) == {}
    assert not (home / "prefect.db").exists()


def test_a_copy_that_fails_leaves_prefect_to_migrate(
    tmp_path, prefect_template, no_database_settings, monkeypatch
):
    """No hard links on the home's file system (or a full disk): nothing seeded, nothing left
    behind; the server migrates its own database as before."""

    def no_links(source, target):
        raise PermissionError(1, "Operation not permitted", str(target))

    monkeypatch.setattr(os, "link", no_links)
    home = tmp_path / "home"
    assert database_template.seed(home) == {}
    assert list(home.iterdir()) == []


def test_the_template_server_reads_no_database_setting_of_the_callers(tmp_path, monkeypatch):
    """The server that builds the template migrates only its own home's SQLite file: the
    caller's database variables and profiles never reach it."""
    from cli.temporary_server import TemporaryServer

    monkeypatch.setenv("PREFECT_SERVER_DATABASE_HOST", "db.example")
    monkeypatch.setenv("PREFECT_API_DATABASE_CONNECTION_URL", "postgresql+asyncpg://x/y")
    monkeypatch.setenv("PREFECT_PROFILES_PATH", str(tmp_path / "mine.toml"))
    env = TemporaryServer(home=tmp_path / "build").environment()
    assert not [key for key in env if "DATABASE_" in key]
    assert env["PREFECT_HOME"] == str(tmp_path / "build")
    assert env["PREFECT_PROFILES_PATH"] == str(tmp_path / "build" / "profiles.toml")


def test_the_setting_off_starts_without_the_template(monkeypatch):
    """ARCHIVER_SERVER_TEMPLATE=false reaches the local server's start."""
    from typer.testing import CliRunner

    from cli.server_cmd import server_app

    seen: dict[str, object] = {}

    def ensure(**kwargs: object) -> local_server.ServerState:
        seen.update(kwargs)
        return local_server.ServerState(pid=1, port=4300, log="log", database="db")

    monkeypatch.setattr(local_server, "ensure", ensure)
    monkeypatch.setenv("ARCHIVER_SERVER_TEMPLATE", "false")
    result = CliRunner().invoke(server_app, ["start"])
    assert result.exit_code == 0, result.output
    assert seen["template"] is False
