"""Archiving staged files locally: verification by identity, and what is durable before the
manifest (one directory fsync for all of a prediction's files, before the manifest's rename)."""

from __future__ import annotations

import hashlib
import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from archiver import errors
from archiver.archive import archive_staged
from archiver.download import Staged, StagedFile, identity_of, load_staged
from archiver.manifest import MANIFEST_NAME
from archiver.prediction import Prediction
from archiver.storage import open_destination, verify
from archiver.storage.backends import local

TEMPLATE = "{owner}/{name}/{prediction_id}"


def _stage(staging: Path, names: list[str], *, identity: bool = True) -> Staged:
    """Files staged as downloads stage them: written, fsynced, read-only, with their identity."""
    directory = staging / "p1"
    directory.mkdir(parents=True)
    files = []
    for index, name in enumerate(names):
        data = os.urandom(4096 + index)
        path = directory / name
        with path.open("xb") as sink:
            sink.write(data)
            sink.flush()
            os.fsync(sink.fileno())
            seen = identity_of(os.fstat(sink.fileno()))
        path.chmod(0o444)
        files.append(
            StagedFile(
                name=name,
                pointer=f"/{index}",
                size=len(data),
                sha256=hashlib.sha256(data).hexdigest(),
                source_url=f"https://example.test/{name}",
                identity=seen if identity else None,
            )
        )
    prediction = Prediction(
        id="p1",
        status="succeeded",
        model="owner/model",
        output=[f.source_url for f in files],
        created_at=datetime(2026, 1, 2, tzinfo=UTC),
    )
    return Staged(prediction=prediction, directory=str(directory), files=files)


def _archive(staged: Staged, root: Path):
    dest = open_destination(str(root))
    return archive_staged(staged, dest, cache_key="k", template=TEMPLATE, part_size=1 << 20)


def _no_read_back(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    reads: list[str] = []
    real = verify._stored_sha256

    def counting(dest, path):
        reads.append(path)
        return real(dest, path)

    monkeypatch.setattr(verify, "_stored_sha256", counting)
    return reads


def test_hard_link_with_the_hashed_identity_is_not_read_again(tmp_path, monkeypatch):
    """A file linked from staging whose inode, size and mtime are those it was hashed with is
    verified without reading its bytes again; the manifest lists it."""
    reads = _no_read_back(monkeypatch)
    staged = _stage(tmp_path / "staging", ["a.bin", "b.bin"])
    manifest = _archive(staged, tmp_path / "archive")
    assert reads == []
    assert [f.name for f in manifest.files] == ["a.bin", "b.bin"]
    for item in staged.files:
        archived = tmp_path / "archive" / manifest.directory / item.name
        assert identity_of(archived.stat()) == item.identity


def test_staged_file_changed_after_hashing_is_read_back_and_refused(tmp_path, monkeypatch):
    """A staged file rewritten in place after it was hashed no longer has its identity: it is
    read back, its sha256 mismatches, and no manifest is written."""
    reads = _no_read_back(monkeypatch)
    staged = _stage(tmp_path / "staging", ["a.bin"])
    path = staged.path_of(staged.files[0])
    path.chmod(0o644)
    stat = path.stat()
    path.write_bytes(os.urandom(staged.files[0].size))  # same size, other bytes
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    with pytest.raises(errors.IntegrityError):
        _archive(staged, tmp_path / "archive")
    assert len(reads) == 1
    assert not list((tmp_path / "archive").rglob(MANIFEST_NAME))


def test_without_an_identity_the_archive_reads_back(tmp_path, monkeypatch):
    """Staged files whose identity is unknown are verified by reading their sha256 back."""
    reads = _no_read_back(monkeypatch)
    staged = _stage(tmp_path / "staging", ["a.bin", "b.bin"], identity=False)
    _archive(staged, tmp_path / "archive")
    assert len(reads) == 2


def test_reused_staging_is_rehashed_and_gets_its_identity(tmp_path):
    """A staging found again by a rerun is re-hashed, and its files carry the identity they
    were re-hashed with (staged.json does not keep identities)."""
    staging = tmp_path / "staging"
    staged = _stage(staging, ["a.bin"])
    marker = staged.model_dump(mode="json", exclude={"prediction": True})
    marker["files"][0].pop("identity")
    (staging / "p1" / "staged.json").write_text(json.dumps(marker))
    again = load_staged(staging, staged.prediction)
    assert again is not None
    assert again.files[0].identity == identity_of(staged.path_of(staged.files[0]).stat())


def test_file_names_are_fsynced_once_and_before_the_manifest(tmp_path, monkeypatch):
    """All of a prediction's links are made durable by one fsync of their directory, after the
    last link and before the manifest is renamed into place (and its directory fsynced)."""
    events: list[tuple[str, str]] = []
    real_fsync_dir, real_replace = local.fsync_dir, os.replace

    def fsync_dir(directory):
        events.append(("fsync-dir", os.path.basename(directory)))
        real_fsync_dir(directory)

    def replace(src, dst, **kwargs):
        events.append(("rename", os.path.basename(dst)))
        real_replace(src, dst, **kwargs)

    monkeypatch.setattr(local, "fsync_dir", fsync_dir)
    monkeypatch.setattr(os, "replace", replace)
    staged = _stage(tmp_path / "staging", ["a.bin", "b.bin", "c.bin"])
    _archive(staged, tmp_path / "archive")
    assert events == [
        ("rename", "a.bin"),
        ("rename", "b.bin"),
        ("rename", "c.bin"),
        ("fsync-dir", "p1"),
        ("rename", MANIFEST_NAME),
        ("fsync-dir", "p1"),
    ]
