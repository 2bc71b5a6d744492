"""Command-line input parsing."""

import base64

import pytest

from archiver.errors import ConfigurationError
from archiver.inputs import load_input_json, parse_options, parse_pairs


def test_values_are_json_when_valid_else_text():
    """-i num=4 is a number, flags are booleans, lists parse, free text stays text."""
    assert parse_pairs(["n=4", "ok=true", "xs=[1,2]", "prompt=a cat", 'q="4"']) == {
        "n": 4,
        "ok": True,
        "xs": [1, 2],
        "prompt": "a cat",
        "q": "4",
    }


def test_at_path_sends_the_file_inline(tmp_path):
    """-i image=@file.png becomes a data URI with the file's bytes."""
    path = tmp_path / "cat.png"
    path.write_bytes(b"\x89PNG-bytes")
    uri = parse_pairs([f"image=@{path}"])["image"]
    assert uri.startswith("data:image/png;base64,")
    assert base64.b64decode(uri.split(",", 1)[1]) == b"\x89PNG-bytes"


def test_bad_pairs_and_files_are_one_line_errors(tmp_path):
    """Missing '=', missing files and non-object JSON are ConfigurationErrors."""
    with pytest.raises(ConfigurationError):
        parse_pairs(["novalue"])
    with pytest.raises(ConfigurationError, match="cannot read input file"):
        parse_pairs([f"image=@{tmp_path / 'missing.png'}"])
    bad = tmp_path / "in.json"
    bad.write_text("[1, 2]")
    with pytest.raises(ConfigurationError, match="JSON object"):
        load_input_json(str(bad))


def test_storage_options_parse_like_inputs():
    """--storage-option values get JSON parsing (numbers, booleans)."""
    assert parse_options(["endpoint_url=http://x:1", "anon=false", "secret=0123"]) == {
        "endpoint_url": "http://x:1",
        "anon": False,
        "secret": "0123",
    }
