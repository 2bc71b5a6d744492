"""A host that does not resolve fails at once in one line naming the host and its setting.

Real lookups of names that do not exist would leave this machine (its resolver is not on
loopback), so the resolver is the one part replaced here: it fails every name but loopback.
"""

from __future__ import annotations

import json
import socket
import threading

import pytest
from typer.testing import CliRunner

from archiver.errors import ConfigurationError
from cli import checks

LOOPBACK = ("127.0.0.1", "localhost")


def offline(host, port, *args, **kwargs):
    """getaddrinfo as an offline machine answers: loopback names only."""
    if host in LOOPBACK:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port or 0))]
    raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")


@pytest.mark.parametrize(
    ("env", "dest", "needle"),
    [
        ({"REPLICATE_BASE_URL": "https://api.nowhere.invalid"}, None, "REPLICATE_BASE_URL"),
        ({}, "ftp://x/archive", "--dest"),
        ({"ARCHIVER_DEST": "https://dav.nowhere.invalid/a"}, None, "ARCHIVER_DEST"),
        (
            {"ARCHIVER_STORAGE_OPTIONS": json.dumps({"endpoint_url": "http://s3.nowhere.invalid"})},
            "s3://bucket/a",
            "storage option endpoint_url",
        ),
        (
            {"AWS_ENDPOINT_URL_S3": "http://s3.nowhere.invalid:9000"},
            "s3://b/a",
            "AWS_ENDPOINT_URL_S3",
        ),
    ],
)
def test_unresolvable_host_names_host_and_setting(archive_env, monkeypatch, env, dest, needle):
    """REPLICATE_BASE_URL, --dest, ARCHIVER_DEST, endpoint_url, AWS_ENDPOINT_URL_S3: one line
    naming the host and the setting that chose it."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError) as caught:
        checks.hosts(dest, resolve=offline)
    message = str(caught.value)
    host = message.split()[1]
    assert message.startswith(f"host {host} of {needle}") and "does not resolve" in message
    assert host not in LOOPBACK and "\n" not in message


def test_loopback_and_bucket_names_pass(archive_env):
    """The emulator's loopback URL and an s3:// bucket (not a host) need no lookup to pass."""
    checks.hosts("s3://some-bucket/archive", resolve=offline)
    checks.hosts(str(archive_env), resolve=offline)


def test_a_lookup_that_hangs_is_bounded(archive_env, monkeypatch):
    """A resolver that never answers fails after RESOLVE_SECONDS, naming the setting."""
    monkeypatch.setattr(checks, "RESOLVE_SECONDS", 0.2)
    never = threading.Event()
    with pytest.raises(ConfigurationError, match="did not resolve within 0.2 s; check --dest"):
        checks.hosts("https://slow.example/a", resolve=lambda *a: never.wait())
    never.set()


def test_run_refuses_before_prefect_or_replicate(archive_env, emulator, monkeypatch):
    """`run --dest ftp://x/...` with an offline resolver: exit 1, one line, nothing created."""
    from cli.app import app

    monkeypatch.setattr(socket, "getaddrinfo", offline)
    result = CliRunner().invoke(app, ["run", "o/m", "-i", "prompt=x", "--dest", "ftp://x/a"])
    assert result.exit_code == 1
    assert result.output.strip() == (
        "error: host x of --dest (ftp://x/a) does not resolve (Name or service not known); "
        "check --dest"
    )
    assert emulator.stats().create_attempts == 0
