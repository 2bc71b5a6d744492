"""`verify` re-reads every archived file (outputs, and in schema 2 archived inputs and logs):
ok, corrupt, missing, and unreadable manifests, each named with its prediction; exit 1 then."""

from __future__ import annotations

import json
import subprocess
import sys

from archiver.catalog import Catalog, Filters, catalog_file, manifest_paths, sync
from archiver.catalog.verify import verify
from archiver.storage import open_destination
from tests.archives import prediction, write_local
from tests.conftest import ROOT


def _verify(root, **filters):
    dest = open_destination(str(root))
    with Catalog(catalog_file(dest)) as store:
        sync(dest, store)
        selected = manifest_paths(store, Filters.parse(**filters))
    return verify(dest, selected, workers=3)


def test_an_intact_archive_is_all_ok_old_and_new_manifests(tmp_path):
    root = tmp_path / "archive"
    write_local(root, prediction("p1", "one"))
    write_local(root, prediction("p2", "two", schema=2))
    report = _verify(root)
    # p1: 2 outputs; p2: 2 outputs + the archived input (the reference one has no file) + logs
    assert (report.manifests, report.files, report.ok, report.problems) == (2, 6, 6, [])


def test_every_problem_is_named_with_its_prediction(tmp_path):
    root = tmp_path / "archive"
    p1, p2 = prediction("p1", "one"), prediction("p2", "two", schema=2)
    write_local(root, p1)
    write_local(root, p2)
    day = "black-forest-labs/flux-schnell/2026/12/01"
    flipped = bytearray((root / f"{day}/p1/out-0.png").read_bytes())
    flipped[3] ^= 1
    (root / f"{day}/p1/out-0.png").write_bytes(bytes(flipped))  # same size, other bytes
    (root / f"{day}/p1/out-1.png").write_bytes(b"short")
    (root / f"{day}/p2/logs.txt").unlink()
    (root / f"{day}/p2/inputs/image.png").write_bytes(b"changed")
    (root / "x/y/bad").mkdir(parents=True)
    (root / "x/y/bad/manifest.json").write_text('["not", "a", "manifest"]')
    report = _verify(root)
    found = {(p.prediction_id, p.path, p.outcome) for p in report.problems}
    assert found == {
        ("p1", f"{day}/p1/out-0.png", "corrupt"),
        ("p1", f"{day}/p1/out-1.png", "corrupt"),
        ("p2", f"{day}/p2/logs.txt", "missing"),
        ("p2", f"{day}/p2/inputs/image.png", "corrupt"),
        (None, "x/y/bad/manifest.json", "unreadable"),
    }
    assert report.ok == 2 and not report.clean
    assert _verify(root, prediction_id="p2").manifests == 1


def test_a_manifest_removed_since_the_catalog_saw_it_is_unreadable(tmp_path):
    root = tmp_path / "archive"
    write_local(root, prediction("p1", "one"))
    _verify(root)
    (root / "black-forest-labs/flux-schnell/2026/12/01/p1/manifest.json").write_text("{")
    [problem] = _verify(root).problems
    assert problem.outcome == "unreadable" and problem.prediction_id == "p1"


def test_cli_exit_codes_and_json(tmp_path):
    root = tmp_path / "archive"
    write_local(root, prediction("p1", "one"))

    def run(*args):
        return subprocess.run(
            [sys.executable, "-m", "flows", "verify", "--dest", str(root), *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    ok = run()
    assert ok.returncode == 0 and "2 ok, no problems" in ok.stdout, ok.stderr
    (root / "black-forest-labs/flux-schnell/2026/12/01/p1/out-1.png").unlink()
    bad = run("--json")
    assert bad.returncode == 1
    doc = json.loads(bad.stdout)
    assert doc["problems"] == [
        {
            "prediction_id": "p1",
            "path": "black-forest-labs/flux-schnell/2026/12/01/p1/out-1.png",
            "outcome": "missing",
            "detail": "not in the store",
        }
    ]
    assert run("--concurrency", "0").returncode == 2
