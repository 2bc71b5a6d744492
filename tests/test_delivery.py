"""The delivery client (`archiver.delivery`): redirects, broken and cancelled transfers."""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from archiver.delivery import Delivery, Fetched
from archiver.errors import DownloadInterrupted, HostNotAllowed, UrlExpired
from archiver.outputs import HostAllowList
from tests.waiting import wait_until

BODY = bytes(range(256)) * 4096  # 1 MiB


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        server = self.server
        path = self.path.split("?")[0]
        with server.lock:  # type: ignore[attr-defined]
            server.requests[path] += 1  # type: ignore[attr-defined]
        route = server.routes[path]  # type: ignore[attr-defined]
        route(self)

    def log_message(self, *args: object) -> None:
        pass


def _body(handler: BaseHTTPRequestHandler) -> None:
    handler.send_response(200)
    handler.send_header("Content-Type", "application/octet-stream")
    handler.send_header("Content-Length", str(len(BODY)))
    handler.end_headers()
    handler.wfile.write(BODY)


def _redirect(location: str):
    def answer(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(302)
        handler.send_header("Location", location)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    return answer


def _short(handler: BaseHTTPRequestHandler) -> None:
    """Declares the whole body, sends half of it, hangs up."""
    handler.close_connection = True
    handler.send_response(200)
    handler.send_header("Content-Length", str(len(BODY)))
    handler.end_headers()
    handler.wfile.write(BODY[: len(BODY) // 2])


def _stall(handler: BaseHTTPRequestHandler) -> None:
    """Sends a first chunk, then nothing until the client hangs up (or the test ends)."""
    handler.close_connection = True
    handler.send_response(200)
    handler.send_header("Content-Length", str(len(BODY)))
    handler.end_headers()
    handler.wfile.write(BODY[:65536])
    handler.wfile.flush()
    handler.server.stalled.wait(60)  # type: ignore[attr-defined]


def _expired(handler: BaseHTTPRequestHandler) -> None:
    handler.send_response(403)
    handler.send_header("Content-Length", "0")
    handler.end_headers()


@pytest.fixture
def host() -> Iterator[ThreadingHTTPServer]:
    """A delivery host on 127.0.0.1 with a few routes, counting the requests to each."""
    yield from _serve("127.0.0.1")


@pytest.fixture
def elsewhere() -> Iterator[ThreadingHTTPServer]:
    """Another host (127.0.0.2), not on the allow-list."""
    yield from _serve("127.0.0.2")


def _serve(address: str) -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer((address, 0), _Handler)
    server.daemon_threads = True
    server.requests = Counter()  # type: ignore[attr-defined]
    server.lock = threading.Lock()  # type: ignore[attr-defined]
    server.stalled = threading.Event()  # type: ignore[attr-defined]
    server.routes = {"/file": _body, "/short": _short, "/stall": _stall, "/gone": _expired}  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stalled.set()  # type: ignore[attr-defined]
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _url(server: ThreadingHTTPServer, path: str) -> str:
    address, port = server.server_address[:2]
    return f"http://{address!s}:{port}{path}"


def _fetch(host: ThreadingHTTPServer, path: str, directory: Path) -> Fetched:
    async def go() -> Fetched:
        delivery = _delivery(host)
        try:
            return await delivery.fetch(
                _url(host, path),
                directory / ".f.tmp-1",
                directory / "f",
                name="f",
                chunk_size=2**16,
            )
        finally:
            delivery.close()

    return asyncio.run(go())


def _delivery(host: ThreadingHTTPServer, streams: int = 2) -> Delivery:
    allow = HostAllowList(f"127.0.0.1:{host.server_address[1]}")
    return Delivery(streams=streams, timeout=60, user_agent="test", allow=allow)


def test_a_whole_file_gets_its_name_with_its_size_and_sha256(host, tmp_path):
    """The body lands at the final name, read-only, with the size and sha256 measured."""
    fetched = _fetch(host, "/file", tmp_path)
    assert (tmp_path / "f").read_bytes() == BODY
    assert (fetched.size, fetched.sha256) == (len(BODY), hashlib.sha256(BODY).hexdigest())
    assert (tmp_path / "f").stat().st_mode & 0o222 == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


def test_a_redirect_within_the_allow_list_is_followed(host, tmp_path):
    """A 302 to another path of an allowed host is followed; the recorded URL is the last."""
    host.routes["/moved"] = _redirect("/file")
    fetched = _fetch(host, "/moved", tmp_path)
    assert fetched.url == _url(host, "/file")
    assert (tmp_path / "f").read_bytes() == BODY


def test_a_redirect_off_the_allow_list_is_refused_before_any_request(host, elsewhere, tmp_path):
    """A 302 to a host not on the allow-list fails with HostNotAllowed; that host sees nothing."""
    host.routes["/away"] = _redirect(_url(elsewhere, "/file"))
    with pytest.raises(HostNotAllowed):
        _fetch(host, "/away", tmp_path)
    assert sum(elsewhere.requests.values()) == 0
    assert list(tmp_path.iterdir()) == []


def test_a_body_shorter_than_declared_is_interrupted_and_leaves_no_file(host, tmp_path):
    """Half the declared bytes, then a hang-up: DownloadInterrupted, and no file at all."""
    with pytest.raises(DownloadInterrupted):
        _fetch(host, "/short", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_refused_url_is_expired(host, tmp_path):
    """403 from the delivery host is UrlExpired (the caller re-fetches the prediction)."""
    with pytest.raises(UrlExpired, match="403"):
        _fetch(host, "/gone", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_cancelling_a_stalled_transfer_frees_its_thread_and_removes_its_temp_file(host, tmp_path):
    """Cancelled mid-body while the server stalls: the worker's blocked read ends (its socket
    is shut down, no read timeout waited for), its temp file is removed, no file is named."""
    part = tmp_path / ".f.tmp-1"

    async def go() -> None:
        delivery = _delivery(host, streams=1)
        started = asyncio.Event()
        try:
            fetch = asyncio.create_task(
                delivery.fetch(
                    _url(host, "/stall"),
                    part,
                    tmp_path / "f",
                    name="f",
                    chunk_size=2**16,
                    received=lambda count: started.set(),
                )
            )
            await started.wait()  # the first chunk is on disk; the next read blocks
            fetch.cancel()
            with pytest.raises(asyncio.CancelledError):
                await fetch
            # The one worker thread is free again: a new fetch completes (the server stalls
            # for 60 s: a worker still blocked in its read would not get to it within 20 s).
            second = delivery.fetch(
                _url(host, "/file"),
                tmp_path / ".g.tmp-1",
                tmp_path / "g",
                name="g",
                chunk_size=2**16,
            )
            await asyncio.wait_for(second, 20)
        finally:
            delivery.close()

    asyncio.run(go())
    wait_until(
        lambda: not part.exists(), timeout=10, what="the cancelled transfer's temp file to go"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g"]
    assert not host.stalled.is_set()  # the server was still stalling: the client hung up
