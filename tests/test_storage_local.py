"""archiver.storage on local disk and memory://: atomic writes, reads, checks, removal."""

from __future__ import annotations

import hashlib
import os
import subprocess
import uuid
from pathlib import Path

import fsspec
import pytest

from archiver import errors, storage
from archiver.storage import open_destination

MiB = 2**20


def _file(path: Path, size: int, seed: int = 1) -> tuple[Path, str]:
    """Write `size` pseudo-random bytes to `path`; return it with its sha256."""
    block = hashlib.sha256(str(seed).encode()).digest() * (MiB // 32)
    data = (block * (size // len(block) + 1))[:size]
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


def _litter(directory: Path) -> list[str]:
    """Temp files left in a directory by an atomic write."""
    return [p.name for p in directory.rglob("*") if ".tmp-" in p.name]


@pytest.fixture
def memory_dest():
    """A memory:// destination with a unique root, emptied afterwards."""
    dest = open_destination(f"memory://archive-{uuid.uuid4().hex[:8]}")
    yield dest
    if dest.fs.exists(dest.root):
        dest.fs.rm(dest.root, recursive=True)


def test_local_url_is_normalised(tmp_path, monkeypatch):
    """Relative, "~", file:// and trailing-slash forms all open as the absolute local path."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    for url in ("out", "out/", "~/out", f"file://{tmp_path}/out", str(tmp_path / "out")):
        dest = open_destination(url)
        assert dest.is_local
        assert dest.root == dest.url == str(tmp_path / "out")
    assert dest.path("a", "b/c.png") == str(tmp_path / "out" / "a" / "b" / "c.png")
    assert dest.url_for(dest.path("x")) == str(tmp_path / "out" / "x")
    with pytest.raises(ValueError):
        dest.path("..", "etc")


def test_memory_url_round_trips():
    """memory:// destinations keep a memory:// URL that reopens the same root."""
    dest = open_destination("memory://bucket/prefix/")
    assert not dest.is_local
    assert dest.url == "memory://bucket/prefix"
    assert dest.url_for(dest.path("a.txt")) == "memory://bucket/prefix/a.txt"
    assert open_destination(dest.url).root == dest.root


def test_unknown_protocol_is_configuration_error():
    """An unknown URL scheme is a ConfigurationError, not a crash."""
    with pytest.raises(errors.ConfigurationError):
        open_destination("nosuchproto://x/y")


def test_local_put_copies_whole_file(tmp_path):
    """A copy lands complete under new directories, the source stays, no temp file remains."""
    src, digest = _file(tmp_path / "src.bin", 3 * MiB + 17)
    dest = open_destination(str(tmp_path / "archive"))
    target = dest.path("pred", "out.bin")
    storage.put_file_atomic(dest, src, target)
    assert Path(target).read_bytes() == src.read_bytes()
    assert src.exists()
    storage.verify_stored(dest, target, size=src.stat().st_size, sha256=digest)
    assert _litter(tmp_path) == []


def test_local_put_failure_leaves_nothing(tmp_path, fail_source_after):
    """A source failing mid-copy leaves no file at the final path and no temp litter."""
    src, _ = _file(tmp_path / "src.bin", 3 * MiB)
    dest = open_destination(str(tmp_path / "archive"))
    target = dest.path("out.bin")
    fail_source_after(2 * MiB)
    with pytest.raises(errors.StorageError, match="injected failure"):
        storage.put_file_atomic(dest, src, target)
    assert not os.path.exists(target)
    assert _litter(tmp_path) == []


def test_local_put_failure_keeps_previous_version(tmp_path, fail_source_after):
    """A failed overwrite leaves the previous complete file in place, untouched."""
    dest = open_destination(str(tmp_path / "archive"))
    target = dest.path("out.bin")
    storage.write_bytes_atomic(dest, target, b"previous version")
    src, _ = _file(tmp_path / "src.bin", 3 * MiB)
    fail_source_after(MiB)
    with pytest.raises(errors.StorageError):
        storage.put_file_atomic(dest, src, target)
    assert Path(target).read_bytes() == b"previous version"
    assert _litter(tmp_path) == []


def test_local_move_renames_in_place(tmp_path):
    """move=True on the same device renames the source into place (same inode, copy-like mode)."""
    src, digest = _file(tmp_path / "src.bin", MiB + 5)
    inode = src.stat().st_ino
    dest = open_destination(str(tmp_path / "archive"))
    target = dest.path("deep", "out.bin")
    src.chmod(0o600)  # as a download temp file usually is
    storage.put_file_atomic(dest, src, target, move=True)
    assert not src.exists()
    assert os.stat(target).st_ino == inode
    copied = dest.path("copied.bin")
    storage.write_bytes_atomic(dest, copied, b"x")
    assert os.stat(target).st_mode == os.stat(copied).st_mode  # same mode as a copy
    storage.verify_stored(dest, target, size=MiB + 5, sha256=digest)


def test_local_move_across_devices_copies_and_keeps_source_on_failure(
    tmp_path, monkeypatch, fail_source_after
):
    """move=True that cannot rename (other device) copies; a failed copy keeps the source."""
    src, _ = _file(tmp_path / "src.bin", 2 * MiB)
    dest = open_destination(str(tmp_path / "archive"))
    target = dest.path("out.bin")
    monkeypatch.setattr(storage.backends.local, "_rename_into_place", lambda *a: False)
    fail_source_after(MiB)
    with pytest.raises(errors.StorageError):
        storage.put_file_atomic(dest, src, target, move=True)
    assert src.exists() and not os.path.exists(target)
    storage.put_file_atomic(dest, src, target, move=True)
    assert not src.exists() and Path(target).stat().st_size == 2 * MiB
    assert _litter(tmp_path) == []


def test_local_small_files_read_exists_size_remove(tmp_path):
    """write/read/exists/size/remove agree, and missing files read as None and remove quietly."""
    dest = open_destination(str(tmp_path / "archive"))
    path = dest.path("manifest.json")
    assert storage.read_bytes(dest, path) is None
    assert not storage.exists(dest, path)
    assert storage.stored_size(dest, path) is None
    storage.write_bytes_atomic(dest, path, b'{"a": 1}')
    assert storage.read_bytes(dest, path) == b'{"a": 1}'
    assert storage.exists(dest, path)
    assert storage.stored_size(dest, path) == 8
    assert not storage.exists(dest, dest.root)  # a directory is not a stored file
    storage.remove(dest, path)
    storage.remove(dest, path)
    assert not storage.exists(dest, path)
    assert _litter(tmp_path) == []


def test_local_verify_detects_mismatch(tmp_path):
    """verify_stored raises IntegrityError on wrong size, wrong content, or a missing file."""
    dest = open_destination(str(tmp_path))
    path = dest.path("f.bin")
    storage.write_bytes_atomic(dest, path, b"hello")
    good = hashlib.sha256(b"hello").hexdigest()
    storage.verify_stored(dest, path, size=5, sha256=good.upper())
    with pytest.raises(errors.IntegrityError, match="expected 6"):
        storage.verify_stored(dest, path, size=6, sha256=good)
    with pytest.raises(errors.IntegrityError, match="sha256"):
        storage.verify_stored(dest, path, size=5, sha256=hashlib.sha256(b"jello").hexdigest())
    with pytest.raises(errors.IntegrityError, match="missing"):
        storage.verify_stored(dest, dest.path("nope"), size=5, sha256=good)


def test_memory_put_and_verify(tmp_path, memory_dest):
    """The generic fsspec path stores a multi-chunk file whole at the final memory:// path."""
    src, digest = _file(tmp_path / "src.bin", 2 * MiB + 3)
    target = memory_dest.path("p", "out.bin")
    storage.put_file_atomic(memory_dest, src, target, move=True)
    assert not src.exists()
    assert storage.stored_size(memory_dest, target) == 2 * MiB + 3
    storage.verify_stored(memory_dest, target, size=2 * MiB + 3, sha256=digest)
    assert [p for p in memory_dest.fs.find(memory_dest.root) if ".tmp-" in p] == []


def test_memory_put_failure_leaves_nothing(tmp_path, memory_dest, fail_source_after):
    """A source failing mid-write on memory:// leaves no final object and no temp object."""
    src, _ = _file(tmp_path / "src.bin", 3 * MiB)
    target = memory_dest.path("out.bin")
    fail_source_after(MiB)
    with pytest.raises(errors.StorageError):
        storage.put_file_atomic(memory_dest, src, target)
    assert not storage.exists(memory_dest, target)
    assert memory_dest.fs.find(memory_dest.root) == []
    assert src.exists()


def test_memory_small_files_and_verify(memory_dest):
    """memory:// reads, sizes, removes and hashes like local disk (read-back is always on)."""
    path = memory_dest.path("cache", "rec.json")
    assert storage.read_bytes(memory_dest, path) is None
    storage.write_bytes_atomic(memory_dest, path, b"abc")
    assert storage.read_bytes(memory_dest, path) == b"abc"
    assert storage.exists(memory_dest, path)
    with pytest.raises(errors.IntegrityError):
        storage.verify_stored(memory_dest, path, size=3, sha256="0" * 64)
    storage.remove(memory_dest, path)
    storage.remove(memory_dest, path)
    assert not storage.exists(memory_dest, path)
    assert isinstance(memory_dest.fs, fsspec.AbstractFileSystem)


def test_link_places_a_hard_link_and_keeps_the_source(tmp_path):
    """link=True on a local destination is a hard link: no copy, and the source stays."""
    from archiver.storage import open_destination, put_file_atomic

    source = tmp_path / "staging" / "a.bin"
    source.parent.mkdir()
    source.write_bytes(b"x" * 1000)
    dest = open_destination(str(tmp_path / "archive"))
    put_file_atomic(dest, source, dest.path("p/a.bin"), link=True)
    target = tmp_path / "archive" / "p" / "a.bin"
    assert source.exists() and target.read_bytes() == b"x" * 1000
    assert target.stat().st_ino == source.stat().st_ino


@pytest.fixture
def tiny_disk(tmp_path):
    """A 1 MiB tmpfs mounted under tmp_path (needs root, else the test is skipped)."""
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount_point)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    yield mount_point
    subprocess.run(["umount", str(mount_point)], check=True)


def test_disk_full_is_a_one_line_storage_error_naming_the_path(tmp_path, tiny_disk):
    """A write that fills the disk (ENOSPC) raises a one-line StorageError naming the path, and
    leaves the previous version whole and no temp file behind."""
    dest = open_destination(str(tiny_disk / "archive"))
    target = dest.path("p", "out.bin")
    storage.write_bytes_atomic(dest, target, b"previous version")
    src, _ = _file(tmp_path / "src.bin", 3 * MiB)
    with pytest.raises(errors.StorageError) as caught:
        storage.put_file_atomic(dest, src, target)
    message = str(caught.value)
    assert "disk full" in message and target in message and "\n" not in message
    assert not isinstance(caught.value, errors.TransientError)  # a retry right away cannot help
    assert Path(target).read_bytes() == b"previous version"
    assert _litter(tiny_disk) == []


def test_temp_names_never_repeat_within_a_process_or_across_a_fork():
    """Every call gets its own hidden temp name, and so does a forked child whose serial
    number starts where its parent's was."""
    names = {storage.temp_name("a.png") for _ in range(1000)}
    assert len(names) == 1000 and all(n.startswith(".a.png.tmp-") for n in names)
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through the pipe
        os.write(write, storage.temp_name("a.png").encode())
        os._exit(0)
    os.close(write)
    os.waitpid(child, 0)
    with os.fdopen(read, "rb") as pipe:
        in_child = pipe.read().decode()
    assert in_child.startswith(".a.png.tmp-") and in_child != storage.temp_name("a.png")
