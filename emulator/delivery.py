"""The file delivery endpoint: ``GET|HEAD /delivery/{id}/{index}/{name}?expires=..&sig=..``.

A raw ASGI handler routed on ``scope["raw_path"]`` so percent-encoded ``/`` in hostile
names does not split path segments.  Bodies are streamed in chunks with a correct
``Content-Length``; single ``Range: bytes=..`` requests are honoured (206).
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Iterator
from typing import Any, Literal
from urllib.parse import parse_qs

from emulator.faults import FaultBox
from emulator.signing import DELIVERY_PREFIX, UrlSigner, quote_name
from emulator.state import Store
from emulator.stats import StatsRecorder

Scope = dict[str, Any]


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def parse_range(header: str | None, size: int) -> tuple[int, int] | None | Literal[False]:
    """``(start, stop)`` for a single byte range, None without one, False if unsatisfiable."""
    if not header or not header.startswith("bytes=") or "," in header:
        return None
    first, _, last = header[6:].strip().partition("-")
    try:
        if not first:
            suffix = int(last)
            return (max(size - suffix, 0), size) if suffix > 0 and size > 0 else False
        start = int(first)
        stop = min(int(last) + 1, size) if last else size
    except ValueError:
        return None
    return (start, stop) if start < size and start < stop else False


async def _cut(transport: Any, abrupt: bool) -> None:
    """End the connection mid-body: FIN after flushing, or an RST when ``abrupt``."""
    if transport is None:  # not uvicorn: let the server tear the connection down
        raise ConnectionAbortedError("emulator fault: connection cut")
    for _ in range(200):
        if transport.get_write_buffer_size() == 0:
            break
        await asyncio.sleep(0.005)
    if abrupt:
        await asyncio.sleep(0.05)  # let the client read the headers and half body first
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
    else:
        transport.close()
    for _ in range(3):  # let the server see the disconnect before the app returns
        await asyncio.sleep(0)


def _slices(chunks: Iterator[bytes], size: int) -> Iterator[bytes]:
    """The same bytes in pieces of at most `size` (for paced delivery)."""
    for chunk in chunks:
        for offset in range(0, len(chunk), size):
            yield chunk[offset : offset + size]


class Delivery:
    """Serves output files of the predictions in ``store``."""

    def __init__(
        self,
        store: Store,
        signer: UrlSigner,
        faults: FaultBox,
        stats: StatsRecorder,
        stopping: asyncio.Event,
    ) -> None:
        self.store, self.signer, self.faults, self.stats = store, signer, faults, stats
        self.stopping = stopping  # set when the server shuts down: cut running downloads

    async def __call__(self, scope: Scope, send: Any, transport: Any) -> None:
        """Answer one delivery request (``transport`` is uvicorn's, or None)."""
        path = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
        host = _header(scope, b"host")
        auth = _header(scope, b"authorization")
        sent = 0

        async def reply(status: int, text: str, headers: list[tuple[bytes, bytes]] = []) -> None:  # noqa: B006
            body = text.encode()
            head = [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ]
            self.stats.download(path, host, status, auth, 0)
            await send({"type": "http.response.start", "status": status, "headers": head})
            await send({"type": "http.response.body", "body": body})

        if scope["method"] not in ("GET", "HEAD"):
            return await reply(405, "Method Not Allowed", [(b"allow", b"GET, HEAD")])
        if self.faults.take("fail_downloads"):
            return await reply(503, "Service Unavailable (emulated)")
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        expires = query.get("expires", [None])[0]
        if not self.signer.verify(path, expires, query.get("sig", [None])[0]):
            return await reply(403, "Forbidden: invalid signature")
        pred_id, index, name = (path[len(DELIVERY_PREFIX) :].split("/") + ["", "", ""])[:3]
        pred = self.store.get(pred_id)
        file = None
        if pred is not None and index.isdigit() and int(index) < len(pred.files):
            file = pred.files[int(index)]
        if file is None or quote_name(file.name) != name:
            return await reply(404, "Not Found: the data has been removed")
        if self.signer.expired(expires or "0"):
            return await reply(403, "Forbidden: URL expired")

        byte_range = parse_range(_header(scope, b"range"), file.size)
        if byte_range is False:  # unsatisfiable
            return await reply(
                416, "Range Not Satisfiable", [(b"content-range", f"bytes */{file.size}".encode())]
            )
        start, stop = byte_range or (0, file.size)
        headers = [
            (b"content-type", file.content_type.encode()),
            (b"content-length", str(stop - start).encode()),
            (b"accept-ranges", b"bytes"),
            (b"cache-control", b"private, max-age=0"),
        ]
        status = 206 if byte_range else 200
        if byte_range:
            headers.append((b"content-range", f"bytes {start}-{stop - 1}/{file.size}".encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        if scope["method"] == "HEAD":
            self.stats.download(path, host, status, auth, 0)
            return await send({"type": "http.response.body", "body": b""})

        cut = "drop" if self.faults.take("drop_downloads") else None
        cut = cut or ("truncate" if self.faults.take("truncate_downloads") else None)
        limit = (stop - start) // 2 if cut else stop - start
        chunks = file.iter_range(start, start + limit)
        rate = self.faults.get().delivery_bytes_per_second
        if rate:
            chunks = _slices(chunks, max(1, int(rate / 20)))  # 20 paced sends a second
        chunk = next(chunks, b"")
        while True:
            if self.stopping.is_set() or (transport is not None and transport.is_closing()):
                cut = cut or "gone"  # the client went away (or we stop): stop generating
                break
            following = next(chunks, None)
            if following is None and not cut:
                # Record before the last bytes go out: the client may act on them at once.
                self.stats.download(path, host, status, auth, sent + len(chunk))
                return await send({"type": "http.response.body", "body": chunk})
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            sent += len(chunk)
            if rate:
                await asyncio.sleep(len(chunk) / rate)
            if following is None:
                break
            chunk = following
        self.stats.download(path, host, status, auth, sent)
        await _cut(transport, abrupt=cut == "drop")
