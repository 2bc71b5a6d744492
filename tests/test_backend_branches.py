"""What differs between stores lives in its backend module: no code outside
archiver/storage/backends/ branches on which store it talks to."""

from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import ROOT

PACKAGES = ("archiver", "flows", "tasks", "cli")
BACKENDS = Path("archiver/storage/backends")
# A branch on the kind of store, or a store's own client call, outside its backend module.
BRANCH = re.compile(
    r"\bis_(s3|memory|gcs|azure)\b"
    r"|backend\.name\s*[!=]="
    r"|\.name\s*[!=]=\s*[\"'](s3|gcs|azure|memory|local|file|fsspec)[\"']"
    r"|\bcall_s3\b"
    r"|\bprotocol\s*(?:[!=]=|(?:not\s+)?in\b)"
)
# `is_local` answers "are this destination's paths OS paths" only where the code then uses
# them as such; behaviour that differs by store is a backend capability instead.
IS_LOCAL = re.compile(r"\.is_local\b")
IS_LOCAL_ALLOWED = {
    Path("archiver/storage/location.py"),  # defines Destination.is_local
    Path("archiver/catalog/__init__.py"),  # the catalog file sits in the archive's own dir
    Path("archiver/previews.py"),  # thumbnails opened by PIL from the OS path
    Path("archiver/runtime.py"),  # staging beside a local archive; the local-disk I/O pool
    Path("cli/catalog.py"),  # "no archive at <dir>": os.path.isdir on the root
}


def branches(source: str) -> list[str]:
    """The lines of `source` that branch on the kind of store."""
    return [line.strip() for line in source.splitlines() if BRANCH.search(line)]


def sources() -> list[Path]:
    return [
        path.relative_to(ROOT)
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        if BACKENDS not in path.relative_to(ROOT).parents
    ]


def test_the_branch_pattern_catches_every_style():
    """Each style of store branch is caught, and ordinary code is not."""
    caught = [
        'if dest.backend.name == "s3":',
        "if backend.name != 'gcs':",
        'extra = {} if kind.name == "memory" else {}',
        "if dest.is_s3:",
        "if store.is_memory or x:",
        'page = fs.call_s3("list_objects_v2")',
        'if protocol == "s3":',
        'if protocol in ("gs", "gcs"):',
    ]
    ordinary = [
        "name = posixpath.basename(path)",
        'if record.name == "manifest.json":',
        "if dest.backend.journaled:",
        "protocol, _ = split_protocol(text)",
    ]
    assert [line for line in caught if not BRANCH.search(line)] == []
    assert [line for line in ordinary if BRANCH.search(line)] == []


def test_no_store_branches_outside_the_backends():
    """No module of archiver/, flows/, tasks/ or cli/ outside the backends branches on the
    store's kind (`is_s3`, `backend.name ==`, `protocol ==`) or calls a store's own client."""
    offenders = {
        str(path): found
        for path in sources()
        if (found := branches((ROOT / path).read_text(encoding="utf-8")))
    }
    assert offenders == {}


def test_is_local_only_where_paths_are_used_as_os_paths():
    """`is_local` is read only in the modules allowed to treat the destination's paths as OS
    paths (each says why above); store behaviour is a backend capability."""
    offenders = sorted(
        str(path)
        for path in sources()
        if path not in IS_LOCAL_ALLOWED
        and IS_LOCAL.search((ROOT / path).read_text(encoding="utf-8"))
    )
    assert offenders == []
