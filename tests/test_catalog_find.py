"""`find` over a local archive: words and filters, newest first, new manifests picked up by the
next query without a rebuild, bad manifests skipped, the catalog disposable."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime

import pytest

from archiver.catalog import Catalog, Filters, catalog_file, find, rebuild, sync
from archiver.errors import ConfigurationError
from archiver.storage import open_destination
from tests.archives import flows_cli, manifest_path, prediction, write_local
from tests.conftest import ROOT

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


@pytest.fixture
def archive(tmp_path):
    root = tmp_path / "archive"
    write_local(root, prediction("p1", "A Lighthouse at sunset", created="2026-12-01T10:00:00Z"))
    write_local(
        root,
        prediction(
            "p2", "lighthouse in a storm", model="stability-ai/sdxl", created="2026-12-05T09:00:00Z"
        ),
    )
    write_local(root, prediction("p3", "a red fox", created="2026-11-01T08:00:00Z", schema=2))
    return root


def _find(root, words=(), limit=50, **filters):
    dest = open_destination(str(root))
    with Catalog(catalog_file(dest)) as store:
        sync(dest, store)
        total, results = find(
            store,
            Filters.parse(list(words), now=NOW, **filters),
            limit=limit,
            manifest_url=lambda p: dest.url_for(dest.path(p)),
        )
    return total, [r["prediction_id"] for r in results]


def test_every_word_must_match_by_prefix_case_insensitively(archive):
    assert _find(archive, ["LIGHT"]) == (2, ["p2", "p1"])  # newest first
    assert _find(archive, ["light", "sun"]) == (1, ["p1"])
    assert _find(archive, ["lighthouse", "fox"]) == (0, [])
    assert _find(archive) == (3, ["p2", "p1", "p3"])


def test_filters_narrow_the_matches(archive):
    assert _find(archive, ["lighthouse"], model="stability-ai/sdxl") == (1, ["p2"])
    assert _find(archive, since="2026-12-02") == (1, ["p2"])
    assert _find(archive, until="2026-12-01") == (2, ["p1", "p3"])  # a date includes its day
    assert _find(archive, since="10d") == (2, ["p2", "p1"])
    assert _find(archive, prediction_id="p3") == (1, ["p3"])
    manifest = json.loads(
        (
            archive
            / manifest_path(
                prediction("p1", "A Lighthouse at sunset", created="2026-12-01T10:00:00Z")
            )
        ).read_text()
    )
    assert _find(archive, sha256=manifest["files"][1]["sha256"].upper()) == (1, ["p1"])
    assert _find(archive, limit=1) == (3, ["p2"])


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("since", "3x"),
        ("until", "yesterday"),
        ("model", "no-slash"),
        ("sha256", "abc"),
        ("prediction_id", "a b"),
    ],
)
def test_bad_filters_name_the_value(option, value):
    with pytest.raises(ConfigurationError, match=repr(value).replace("'", ".")):
        Filters.parse(**{option: value})


def test_manifests_written_after_a_query_are_found_by_the_next_one(archive):
    """A new day directory, a new prediction in a known day, a manifest that arrives in a
    directory whose files were there before, and a removed prediction: all seen, no rebuild."""
    _age(archive)  # mtimes the catalog trusts (a fresh one is re-listed anyway)
    assert _find(archive)[0] == 3
    write_local(archive, prediction("p4", "lighthouse again", created="2026-12-06T10:00:00Z"))
    write_local(archive, prediction("p5", "lighthouse twin", created="2026-12-01T11:00:00Z"))
    pending = prediction("p6", "late manifest", created="2026-12-01T12:00:00Z")
    manifest = manifest_path(pending)
    write_local(archive, {k: v for k, v in pending.items() if k != manifest})
    assert _find(archive, ["lighthouse"]) == (4, ["p4", "p2", "p5", "p1"])
    assert _find(archive, ["late"]) == (0, [])
    write_local(archive, {manifest: pending[manifest]})
    shutil.rmtree(archive / "stability-ai")
    assert _find(archive, ["late"]) == (1, ["p6"])
    assert _find(archive, ["lighthouse"]) == (3, ["p4", "p5", "p1"])


def _age(root):
    """Every directory's mtime an hour back, as in an archive written earlier."""
    old = time.time() - 3600
    for path in [root, *root.rglob("*")]:
        os.utime(path, (old, old))


def test_corrupt_and_foreign_manifests_are_skipped_and_kept_as_unreadable(archive):
    (archive / "x/y/2026/12/01/bad").mkdir(parents=True)
    (archive / "x/y/2026/12/01/bad/manifest.json").write_text("{not json")
    (archive / "x/y/2026/12/01/foreign").mkdir(parents=True)
    (archive / "x/y/2026/12/01/foreign/manifest.json").write_text('{"name": "some other tool"}')
    assert _find(archive) == (3, ["p2", "p1", "p3"])
    dest = open_destination(str(archive))
    with Catalog(catalog_file(dest)) as store:
        assert dict(store.db.execute("SELECT path, reason FROM bad").fetchall()).keys() == {
            "x/y/2026/12/01/bad/manifest.json",
            "x/y/2026/12/01/foreign/manifest.json",
        }
    (archive / "x/y/2026/12/01/bad/manifest.json").write_bytes(
        prediction("fixed", "mended by hand")[
            "black-forest-labs/flux-schnell/2026/12/01/fixed/manifest.json"
        ]
    )
    assert _find(archive, ["mended"]) == (1, ["fixed"])


def test_the_catalog_is_disposable(archive):
    before = _find(archive)
    dest = open_destination(str(archive))
    catalog_file(dest).unlink()
    assert _find(archive) == before
    with Catalog(catalog_file(dest)) as store:
        rebuild(dest, store)
        assert store.db.execute("SELECT count(*) FROM manifests").fetchone()[0] == 3


def test_find_json_document_and_exit_codes(archive, tmp_path):
    result = flows_cli(
        "find",
        "lighthouse",
        "--model",
        "black-forest-labs/flux-schnell",
        "--json",
        "--dest",
        str(archive),
    )
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["dest"] == str(archive) and doc["total"] == 1
    [match] = doc["results"]
    assert set(match) == {
        "prediction_id",
        "model",
        "version",
        "created_at",
        "input",
        "manifest",
        "files",
    }
    assert match["manifest"] == str(
        archive / "black-forest-labs/flux-schnell/2026/12/01/p1/manifest.json"
    )
    assert [set(f) for f in match["files"]] == [{"path", "size", "sha256", "content_type"}] * 2

    table = flows_cli("find", "--dest", str(archive))
    assert table.returncode == 0 and len(table.stdout.splitlines()) == 3
    assert table.stdout.splitlines()[0].split("\t")[2:5] == ["p2", "lighthouse in a storm", "2"]

    nothing = flows_cli("find", "unicorn", "--dest", str(archive))
    assert (
        nothing.returncode == 0
        and nothing.stdout == ""
        and "no archived prediction" in nothing.stderr
    )

    for args, value in [
        (["--since", "3x"], "'3x'"),
        (["--dest", "nosuch://bucket"], "nosuch://bucket"),
        (["--limit", "0"], "'0'"),
        (["--model", "flux"], "'flux'"),
    ]:
        bad = flows_cli(
            "find",
            *args,
            "--dest" if "--dest" not in args else "--json",
            *([str(archive)] if "--dest" not in args else []),
        )
        assert bad.returncode == 2, (args, bad.stderr)
        assert len(bad.stderr.strip().splitlines()) == 1 and value in bad.stderr, bad.stderr

    missing = flows_cli("find", "--dest", str(tmp_path / "nowhere"))
    assert missing.returncode == 1 and len(missing.stderr.strip().splitlines()) == 1
    assert "nowhere" in missing.stderr


def test_find_imports_neither_prefect_nor_httpx(archive):
    """The whole-process time of a later `find` is mostly imports: none of the heavy ones."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "flows", "find", "x", "--dest", str(archive)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    imported = {
        line.rsplit("|", 1)[-1].strip().split(".")[0] for line in result.stderr.splitlines()
    }
    assert not imported & {"prefect", "httpx", "urllib3", "replicate"}


def test_catalog_rebuild_command_and_an_unwritable_catalog(archive, tmp_path):
    rebuilt = flows_cli("catalog", "rebuild", "--dest", str(archive))
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert rebuilt.stdout.strip().endswith(": 3 manifest(s), 0 unreadable")
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("")
    env = {"ARCHIVER_CATALOG_DIR": str(blocked)}
    result = flows_cli("find", "--dest", str(archive), env=env)
    assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1
    assert "cannot open the catalog" in result.stderr and "ARCHIVER_CATALOG_DIR" in result.stderr
