"""Two processes bringing one catalog up to date at once, while manifests keep arriving, lose
nothing: every manifest is in the catalog afterwards, and neither process fails on a lock."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from archiver.catalog import Catalog, catalog_file, sync
from archiver.storage import open_destination
from tests.archives import prediction, write_local
from tests.conftest import ROOT

SYNCER = textwrap.dedent(
    """
    import sys
    from archiver.catalog import Catalog, catalog_file, sync
    from archiver.storage import open_destination

    dest = open_destination(sys.argv[1])
    print("ready", flush=True)
    sys.stdin.readline()
    for _ in range(int(sys.argv[2])):
        with Catalog(catalog_file(dest)) as store:
            sync(dest, store)
    print("done", flush=True)
    """
)


@pytest.mark.timeout(120)
def test_two_syncing_processes_lose_nothing(tmp_path):
    root = tmp_path / "archive"
    for i in range(300):  # a first scan for both at once
        write_local(
            root, prediction(f"a{i}", f"first {i}", created=f"2026-11-{i % 28 + 1:02d}T10:00:00Z")
        )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", SYNCER, str(root), "15"],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for proc in procs:
        assert proc.stdout.readline().strip() == "ready"
    for proc in procs:  # both start together
        proc.stdin.write("go\n")
        proc.stdin.flush()
    for i in range(150):  # new days, new predictions in known days, while they sync
        write_local(
            root, prediction(f"b{i}", f"second {i}", created=f"2026-12-{i % 20 + 1:02d}T10:00:00Z")
        )
    for proc in procs:
        out, err = proc.communicate(timeout=100)
        assert proc.returncode == 0 and out.strip() == "done", err
    dest = open_destination(str(root))
    with Catalog(catalog_file(dest)) as store:
        sync(dest, store)  # whatever arrived after their last sync
        ids = {row[0] for row in store.db.execute("SELECT prediction_id FROM manifests")}
        files = store.db.execute("SELECT count(*) FROM files").fetchone()[0]
        texts = store.db.execute("SELECT count(*) FROM search").fetchone()[0]
    assert ids == {f"a{i}" for i in range(300)} | {f"b{i}" for i in range(150)}
    assert files == 2 * 450 and texts == 450  # no row written twice
