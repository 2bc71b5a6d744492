"""Batch files: JSONL, CSV and JSON lists at any fsspec URL, per-record models, line-numbered errors."""

import asyncio
import gzip
import json

import fsspec
import pytest
from fsspec.implementations.memory import MemoryFileSystem

from archiver.batchfile import load_batch, parse_batch, read_batch
from archiver.errors import ConfigurationError, StorageUnavailable


def test_jsonl_records_are_inputs_or_carry_their_own_model():
    """A bare object is an input for the default model; {"model", "input"} names its own."""
    text = '{"prompt": "a"}\n\n{"model": "acme/other:abc123", "input": {"prompt": "b"}}\n'
    items = parse_batch(text, name="b.jsonl", default_model="acme/default")
    assert [(i.index, i.line, i.model, i.input, i.error) for i in items] == [
        (0, 1, "acme/default", {"prompt": "a"}, None),
        (1, 3, "acme/other:abc123", {"prompt": "b"}, None),
    ]


def test_a_record_without_a_model_is_only_that_items_error():
    """With no default model, records naming none fail alone; the others stay valid."""
    text = '{"prompt": "a"}\n{"model": "acme/m", "input": {"prompt": "b"}}\n'
    first, second = parse_batch(text, name="b.jsonl")
    assert first.error == 'line 1: no model: give the record a "model" or pass --model'
    assert second.error is None and second.model == "acme/m"


def test_broken_records_become_item_errors_with_line_numbers():
    """A bad JSONL line, a non-object or a bad model reference is an error naming its line."""
    text = '{"prompt": "ok"}\n{oops\n[1, 2]\n{"model": "not a model", "input": {}}\n'
    items = parse_batch(text, name="b.jsonl", default_model="acme/m")
    assert items[0].error is None
    assert items[1].error.startswith("line 2: not valid JSON")
    assert items[2].error.startswith("line 3: expected an object")
    assert items[3].error.startswith("line 4: invalid model reference")


def test_csv_columns_are_input_keys_parsed_like_dash_i_values():
    """Cells parse as JSON when they can (numbers, booleans, lists), else text; empty cells drop."""
    text = 'prompt,seed,upscale,tags\n"a cat, sitting",7,true,"[1, 2]"\nplain,,,\n'
    items = parse_batch(text, name="prompts.csv", default_model="acme/m")
    assert items[0].input == {
        "prompt": "a cat, sitting",
        "seed": 7,
        "upscale": True,
        "tags": [1, 2],
    }
    assert items[1].input == {"prompt": "plain"} and items[1].line == 3


def test_csv_rows_with_extra_cells_fail_alone_and_bad_headers_fail_the_file():
    """Too many cells is that row's error; a nameless or repeated column rejects the file."""
    items = parse_batch("a,b\n1,2\n1,2,3\n", name="x.csv", default_model="acme/m")
    assert (
        items[0].error is None and items[1].error == "line 3: 3 values for the 2 columns of line 1"
    )
    with pytest.raises(ConfigurationError, match="x.csv line 1: column 'a' appears twice"):
        parse_batch("a,a\n1,2\n", name="x.csv", default_model="acme/m")


def test_json_list_items_know_their_lines_and_syntax_errors_name_one():
    """Elements of a JSON list carry the line they start on; a broken list is a file error."""
    text = '[\n  {"prompt": "a"},\n\n  {"model": "acme/n", "input": {}}\n]\n'
    items = parse_batch(text, name="b.json", default_model="acme/m")
    assert [(i.line, i.model) for i in items] == [(2, "acme/m"), (4, "acme/n")]
    with pytest.raises(ConfigurationError, match=r"b.json line 2: expected ',' or '\]'"):
        parse_batch('[{"a": 1}\n {"b": 2}]', name="b.json")


def test_format_is_sniffed_when_the_suffix_says_nothing():
    """Without a known suffix, "[" means a JSON list, "{" JSONL, anything else CSV."""
    assert parse_batch('[{"a": 1}]', name="f", default_model="o/n")[0].input == {"a": 1}
    assert parse_batch('{"a": 1}\n{"a": 2}', name="f", default_model="o/n")[1].input == {"a": 2}
    assert parse_batch("a\n1\n", name="f", default_model="o/n")[0].input == {"a": 1}


def test_files_are_read_through_fsspec_and_decompressed():
    """A memory:// URL and a gzip-compressed JSONL file read like a local file."""
    fs = fsspec.filesystem("memory")
    fs.pipe("/batchtest/prompts.jsonl.gz", gzip.compress(b'{"prompt": "zipped"}\n'))
    items = load_batch("memory://batchtest/prompts.jsonl.gz", default_model="acme/m")
    assert [i.input for i in items] == [{"prompt": "zipped"}]


def test_a_missing_file_or_a_bad_default_model_is_a_one_line_error(tmp_path):
    """Errors about the whole batch say what is wrong before anything is paid for."""
    with pytest.raises(ConfigurationError, match="does not exist"):
        load_batch(str(tmp_path / "nope.jsonl"), default_model="acme/m")
    (tmp_path / "ok.jsonl").write_text(json.dumps({"prompt": "x"}))
    with pytest.raises(ConfigurationError, match="invalid model reference"):
        load_batch(str(tmp_path / "ok.jsonl"), default_model="bad model")


class FlakyFileSystem(MemoryFileSystem):
    """An in-memory store whose first `fail` opens drop the connection."""

    protocol = "flaky"
    store: dict = {}  # noqa: RUF012 - fsspec's own layout: a store of the class, not memory://'s
    pseudo_dirs = [""]  # noqa: RUF012
    fail = 0
    opens = 0

    def _open(self, path, mode="rb", **kwargs):
        type(self).opens += 1
        if type(self).opens <= type(self).fail:
            raise ConnectionResetError("connection reset by the store")
        return super()._open(path, mode, **kwargs)


def _flaky_batch(fail: int) -> str:
    fsspec.register_implementation("flaky", FlakyFileSystem, clobber=True)
    FlakyFileSystem.fail = 0
    with fsspec.open("flaky://batch.jsonl", "w") as out:
        out.write('{"prompt": "a"}\n')
    FlakyFileSystem.fail, FlakyFileSystem.opens = fail, 0
    return "flaky://batch.jsonl"


def test_a_store_outage_while_reading_the_batch_is_tried_three_times():
    """A dropped connection is read again (3 reads in all); a third failure is the error."""
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    url = _flaky_batch(fail=2)
    items = asyncio.run(read_batch(url, default_model="acme/m", sleep=sleep))
    assert [i.input for i in items] == [{"prompt": "a"}] and FlakyFileSystem.opens == 3
    assert waits == [1.0, 2.0]
    url = _flaky_batch(fail=3)
    with pytest.raises(StorageUnavailable, match="connection reset"):
        asyncio.run(read_batch(url, default_model="acme/m", sleep=sleep))
    assert FlakyFileSystem.opens == 3


def test_a_missing_batch_file_is_not_read_again():
    """A file that does not exist fails on the first read, naming it."""
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    with pytest.raises(ConfigurationError, match="absent.jsonl does not exist"):
        asyncio.run(read_batch("memory://absent.jsonl", sleep=sleep))
    assert waits == []
