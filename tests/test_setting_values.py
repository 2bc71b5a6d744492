"""A setting out of its bounds or not JSON fails in one line naming the variable, and its value
unless the setting may hold a secret; the CLI says so before anything starts."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from archiver.errors import ConfigurationError
from archiver.settings import Settings


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("ARCHIVER_POLL_INTERVAL", "-1", "invalid setting ARCHIVER_POLL_INTERVAL=-1: Input should"),
        (
            "ARCHIVER_DOWNLOAD_CONCURRENCY",
            "many",
            "invalid setting ARCHIVER_DOWNLOAD_CONCURRENCY=many: ",
        ),
        (
            "ARCHIVER_STORAGE_OPTIONS",
            '{"secret": "hunter2"',
            "ARCHIVER_STORAGE_OPTIONS: not a JSON",
        ),
        ("ARCHIVER_STORAGE_OPTIONS", '["hunter2"]', "ARCHIVER_STORAGE_OPTIONS: Value error"),
    ],
)
def test_a_bad_setting_is_one_line_naming_it(monkeypatch, name, value, expected):
    """Out of bounds, not a number, not JSON, not an object: one line; a secret never repeated."""
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError) as caught:
        Settings()
    message = str(caught.value)
    assert message.startswith(expected) or expected in message, message
    assert "\n" not in message and "hunter2" not in message


def test_the_cli_refuses_a_bad_setting_in_one_line(tmp_path):
    """`run` with ARCHIVER_POLL_INTERVAL=-1: exit 1, one line naming the variable and value."""
    env = {**os.environ, "ARCHIVER_POLL_INTERVAL": "-1", "REPLICATE_API_TOKEN": "r8_x_not_used"}
    result = subprocess.run(
        [sys.executable, "-m", "flows", "run", "a/b", "-i", "x=1", "--dest", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    lines = [line for line in result.stderr.splitlines() if not line.startswith("flow run: ")]
    assert result.returncode == 1, result.stderr
    assert lines == [
        "error: invalid setting ARCHIVER_POLL_INTERVAL=-1: "
        "Input should be greater than or equal to 0.01"
    ]
    assert not any(tmp_path.iterdir())
