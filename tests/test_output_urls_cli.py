"""Reproduction 2 through `python -m flows run`: odd output URLs are downloaded or exit 1."""

import json

import pytest

ECHO = "emulator/echo"


def echo_input(output) -> str:
    """`-i output=...`: the output as JSON text (a string input of the echo model)."""
    return "output=" + json.dumps(json.dumps(output))


def manifests(archive):
    return sorted(archive.rglob("manifest.json")) if archive.exists() else []


def test_upper_case_scheme_is_downloaded_and_nothing_signed_is_kept(cli, archive_env, emulator):
    """`HTTP://` on the delivery host is a file (downloaded, exit 0); neither its signed query
    nor a text output's userinfo and query reach the manifest."""
    output = {
        "image": "HTTP://{delivery}",
        "caption": "mirror: https://bob:hunter2@mirror.example/a.png?sig=SIGNED9 thanks",
    }
    result = cli("run", ECHO, "-i", echo_input(output), "--dest", str(archive_env), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert [f["name"] for f in summary["files"]] == ["echo-0.png"]
    assert len(emulator.stats().downloads) == 1
    (manifest,) = manifests(archive_env)
    record = json.loads(manifest.read_text())
    assert (manifest.parent / "echo-0.png").stat().st_size == summary["files"][0]["size"]
    kept = json.dumps([record["output"], record["files"]])  # (the input is the user's own)
    assert "hunter2" not in kept and "SIGNED9" not in kept and "sig=" not in kept
    assert record["output"]["caption"] == "mirror: https://mirror.example/a.png thanks"


@pytest.mark.parametrize(
    ("output", "needle"),
    [
        (["https:/{delivery}", "a caption"], "names no host"),
        ({"file": "file:/etc/passwd"}, "file:/etc/passwd"),
        ("ftp:/{delivery}", "ftp:/"),
        (["s3://bucket/key.png?X-Amz-Signature=SIGNED9"], "s3://bucket/key.png"),
    ],
)
def test_url_that_cannot_be_fetched_exits_1_with_one_line(
    cli, archive_env, emulator, output, needle
):
    """`https:/host`, `file:/`, `ftp:/`, `s3://`: exit 1, one line naming the URL (query
    dropped), nothing downloaded, no manifest, nothing on stdout."""
    result = cli("run", ECHO, "-i", echo_input(output), "--dest", str(archive_env), "--json")
    # Beside the run's own `flow run: URL` line, one error line.
    lines = [x for x in result.stderr.strip().splitlines() if not x.startswith("flow run: ")]
    assert result.returncode == 1, result.stderr
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], lines
    assert "SIGNED9" not in result.stderr and "sig=" not in result.stderr
    assert result.stdout.strip() == ""
    assert emulator.stats().downloads == [] and manifests(archive_env) == []
