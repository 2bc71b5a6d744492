"""Command-line input parsing."""

import base64
import hashlib

import pytest

from archiver.errors import ConfigurationError
from archiver.inputs import load_input_json, parse_options, parse_pairs
from archiver.uploads import INLINE_LIMIT, MAX_UPLOAD, LocalFile


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


def test_over_256_kb_is_a_local_file_to_upload_and_256_kb_stays_inline(tmp_path):
    """Replicate's limit for data URLs is 256 KB: one byte more is measured for an upload."""
    small, large = tmp_path / "small.jpg", tmp_path / "large.jpg"
    small.write_bytes(b"s" * INLINE_LIMIT)
    large.write_bytes(b"l" * (INLINE_LIMIT + 1))
    parsed = parse_pairs([f"a=@{small}", f"b=@{large}"])
    assert parsed["a"].startswith("data:image/jpeg;base64,")
    assert parsed["b"] == LocalFile(
        large, INLINE_LIMIT + 1, hashlib.sha256(large.read_bytes()).hexdigest(), "image/jpeg"
    )


def test_a_file_over_100_mib_is_refused_before_anything_starts(tmp_path):
    """Over the Files API's limit: one line naming the path (a sparse file: nothing written)."""
    huge = tmp_path / "huge.bin"
    with huge.open("wb") as out:
        out.truncate(MAX_UPLOAD + 1)
    with pytest.raises(ConfigurationError, match=f"input file {huge}: .* 100 MiB") as caught:
        parse_pairs([f"video=@{huge}"])
    assert "\n" not in str(caught.value)


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
