"""Real GCS and Azure Blob emulators for the tests, on 127.0.0.1 only, each a child process.

`GcsEmulator` runs `gcp-storage-emulator` (PyPI, installed by `make install`) with its data on
disk; `AzuriteBlob` runs Azurite's blob service (npm, installed by `make azurite` into
tests/azurite/node_modules at the version its package-lock.json pins). Both pick a free port, keep their data in a private
directory, and `stop()` / `start()` end and restart the same server on the same port and data,
so a test can take the store down mid-run and bring it back.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from tests.s3servers import LOOPBACK, _die_with_parent, free_ports, log_tail, stop_group

ROOT = Path(__file__).resolve().parent.parent
AZURITE_BIN = ROOT / "tests" / "azurite" / "node_modules" / ".bin" / "azurite-blob"


class EmulatorUnavailable(RuntimeError):
    """The emulator could not be started here (not installed, crashed at start)."""


class _ChildServer:
    """A server process with a fixed port and data directory, restartable on both."""

    name = "server"

    def __init__(self, workdir: Path) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_ports(1)[0]
        self.log_path = self.workdir / "server.log"
        self._process: subprocess.Popen[bytes] | None = None
        atexit.register(self.stop)

    def command(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        return dict(os.environ)

    def ready(self) -> bool:
        raise NotImplementedError

    def start(self, timeout: float = 30.0) -> None:
        """Start (or restart) the server and wait until it answers."""
        if self.running:
            return
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                self.command(),
                cwd=self.workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env(),
                start_new_session=True,
                preexec_fn=_die_with_parent,  # noqa: PLW1509 - started from the main thread
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise EmulatorUnavailable(f"{self.name} exited at start: {self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if self.ready():
                    return
            time.sleep(0.05)
        self.stop()
        raise EmulatorUnavailable(f"{self.name} not ready after {timeout:.0f}s: {self.log_tail()}")

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 3 s); its data stays."""
        process, self._process = self._process, None
        stop_group(process)

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def log_tail(self) -> str:
        return log_tail(self.log_path)


class GcsEmulator(_ChildServer):
    """gcp-storage-emulator with on-disk data; `host` is what STORAGE_EMULATOR_HOST takes."""

    name = "gcp-storage-emulator"

    @property
    def host(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def command(self) -> list[str]:
        binary = Path(sys.executable).parent / "gcp-storage-emulator"
        if not binary.exists():
            raise EmulatorUnavailable("gcp-storage-emulator is not installed (make install)")
        return [str(binary), "start", "--host", LOOPBACK, "--port", str(self.port), "--quiet"]

    def env(self) -> dict[str, str]:
        return {**os.environ, "STORAGE_BASE": str(self.workdir), "STORAGE_DIR": "data"}

    def ready(self) -> bool:
        answer = httpx.get(f"{self.host}/storage/v1/b", params={"project": "test"}, timeout=1)
        return answer.status_code == 200

    def make_bucket(self, name: str) -> str:
        answer = httpx.post(
            f"{self.host}/storage/v1/b", params={"project": "test"}, json={"name": name}
        )
        answer.raise_for_status()
        return name

    def objects(self, bucket: str) -> dict[str, int]:
        """Every object in the bucket: name -> size."""
        answer = httpx.get(f"{self.host}/storage/v1/b/{bucket}/o")
        answer.raise_for_status()
        return {item["name"]: int(item["size"]) for item in answer.json().get("items", [])}

    def read(self, bucket: str, name: str) -> bytes:
        answer = httpx.get(
            f"{self.host}/download/storage/v1/b/{bucket}/o/{name.replace('/', '%2F')}",
            params={"alt": "media"},
        )
        answer.raise_for_status()
        return answer.content


# Azurite's well-known development account (public, documented by Microsoft): no secret.
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


class AzuriteBlob(_ChildServer):
    """Azurite's blob service with its data on disk; `connection_string` reaches it."""

    name = "azurite-blob"

    @property
    def endpoint(self) -> str:
        return f"http://{LOOPBACK}:{self.port}/{AZURITE_ACCOUNT}"

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};"
            f"AccountKey={AZURITE_KEY};BlobEndpoint={self.endpoint};"
        )

    def command(self) -> list[str]:
        if not AZURITE_BIN.exists() or shutil.which("node") is None:
            raise EmulatorUnavailable("Azurite is not installed (make azurite)")
        return [
            str(AZURITE_BIN),
            "--blobHost",
            LOOPBACK,
            "--blobPort",
            str(self.port),
            "--location",
            str(self.workdir / "data"),
            "--silent",
            "--skipApiVersionCheck",
            "--disableProductStyleUrl",
        ]

    def ready(self) -> bool:
        httpx.get(f"{self.endpoint}?comp=list", timeout=1)  # any answer: it listens
        return True

    def client(self) -> Any:
        from azure.storage.blob import BlobServiceClient

        return BlobServiceClient.from_connection_string(self.connection_string, retry_total=0)

    def make_container(self, name: str) -> str:
        self.client().create_container(name)
        return name

    def blobs(self, container: str) -> dict[str, int]:
        """Every committed blob in the container: name -> size."""
        listing = self.client().get_container_client(container).list_blobs()
        return {blob.name: int(blob.size) for blob in listing}

    def read(self, container: str, name: str) -> bytes:
        data: bytes = self.client().get_blob_client(container, name).download_blob().readall()
        return data


def assert_read_back_catches_corruption(dest: Any, tmp_path: Path, overwrite: Any) -> None:
    """Store a two-part file at `f.bin` of `dest`, `overwrite(bytes)` it with same-size garbage
    behind the archiver's back: size-only verification passes, read_back=True raises."""
    import hashlib

    import pytest

    from archiver import errors, storage

    size = 5 * 2**20 + 1
    data = hashlib.shake_256(tmp_path.name.encode()).digest(size)
    digest = hashlib.sha256(data).hexdigest()
    src = tmp_path / "f.bin"
    src.write_bytes(data)
    target = dest.path("f.bin")
    storage.put_file_atomic(dest, src, target, part_size=size - 1)
    storage.verify_stored(dest, target, size=size, sha256=digest, read_back=True)
    overwrite(b"x" * size)
    storage.verify_stored(dest, target, size=size, sha256=digest)
    with pytest.raises(errors.IntegrityError, match="sha256"):
        storage.verify_stored(dest, target, size=size, sha256=digest, read_back=True)
