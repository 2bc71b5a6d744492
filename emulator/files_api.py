"""Replicate's Files API: ``POST/GET /v1/files``, ``GET/DELETE /v1/files/{id}`` and the signed,
expiring ``GET /v1/files/{id}/download``.

An upload is a ``multipart/form-data`` body with ``content`` (filename and type from its part
headers, or the ``filename``/``type`` fields) and optional ``metadata`` (a JSON object). Files
are held in memory and deleted ``retention_seconds`` (the prediction retention fault) after
their upload, as Replicate deletes an API prediction's files after an hour. The file object
carries ``urls.get`` (the API URL a prediction input names) and, beyond the documented schema,
``urls.download``: a download URL signed for ``url_ttl_seconds``, like delivery URLs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import secrets
import threading
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from emulator import views
from emulator.clock import Clock
from emulator.faults import FaultBox
from emulator.responses import authorized, input_problem, problem_response, unauthenticated
from emulator.state import new_prediction_id
from emulator.stats import StatsRecorder

MAX_FILE_BYTES = 100 * 2**20  # "Files must be less than 100MB in size"
OWNER = "emulator"  # the account's username (GET /v1/account)


@dataclass
class StoredFile:
    """One uploaded file."""

    id: str
    name: str
    content_type: str
    data: bytes
    metadata: dict[str, Any]
    created_at: float
    sha256: str = field(init=False)

    def __post_init__(self) -> None:
        self.sha256 = hashlib.sha256(self.data).hexdigest()


class MultipartError(ValueError):
    """An upload body that is not the multipart form Replicate expects."""


def parse_upload(content_type: str, body: bytes) -> tuple[str, str, bytes, dict[str, Any]]:
    """``(filename, content type, bytes, metadata)`` of a ``POST /v1/files`` body."""
    if not content_type.lower().startswith("multipart/form-data"):
        raise MultipartError("Content-Type must be multipart/form-data")
    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
    )
    if not message.is_multipart():
        raise MultipartError("body is not a multipart form")
    fields: dict[str, Any] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if isinstance(name, str):
            fields[name] = part
    if "content" not in fields:
        raise MultipartError("content is required")
    content = fields["content"]
    data = content.get_payload(decode=True) or b""
    filename = _text(fields.get("filename")) or content.get_filename() or "file"
    kind = _text(fields.get("type")) or content.get_content_type() or "application/octet-stream"
    metadata: Any = {}
    if "metadata" in fields:
        try:
            metadata = json.loads(_text(fields["metadata"]) or "{}")
        except ValueError as exc:
            raise MultipartError(f"metadata is not valid JSON: {exc}") from exc
        if not isinstance(metadata, dict):
            raise MultipartError("metadata must be a JSON object")
    if len(filename.encode()) > 255:
        raise MultipartError("filename must be at most 255 bytes")
    return filename, kind, data, metadata


def _text(part: Any) -> str | None:
    if part is None:
        return None
    payload = part.get_payload(decode=True) or b""
    return payload.decode("utf-8", "replace").strip()


class FilesApi:
    """The Files API's state and route handlers (mounted by ``emulator.app``)."""

    def __init__(self, base_url: str, faults: FaultBox, clock: Clock, stats: StatsRecorder) -> None:
        self.base_url = base_url
        self.faults = faults
        self.clock = clock
        self.stats = stats
        self.files: dict[str, StoredFile] = {}
        self._secret = secrets.token_bytes(32)
        self._lock = threading.Lock()

    # -- state ----------------------------------------------------------------------------
    def _live(self, file_id: str) -> StoredFile | None:
        stored = self.files.get(file_id)
        if stored is None:
            return None
        if self.clock.now() - stored.created_at >= self.faults.get().retention_seconds:
            self.files.pop(file_id, None)  # deleted after retention, as Replicate does
            return None
        return stored

    def signature(self, file_id: str, expiry: int) -> str:
        """Base64 HMAC-SHA256 of ``'{owner} {id} {expiry}'`` (as the schema documents)."""
        message = f"{OWNER} {file_id} {expiry}".encode()
        return base64.b64encode(hmac.new(self._secret, message, hashlib.sha256).digest()).decode()

    def render(self, stored: StoredFile) -> dict[str, Any]:
        """A file object (``schemas_file_response``)."""
        url = f"{self.base_url}/v1/files/{stored.id}"
        expiry = math.ceil(self.clock.now() + self.faults.get().url_ttl_seconds)
        query = f"owner={OWNER}&expiry={expiry}&signature={self.signature(stored.id, expiry)}"
        retention = self.faults.get().retention_seconds
        return {
            "id": stored.id,
            "name": stored.name,
            "etag": stored.sha256[:32],
            "content_type": stored.content_type,
            "size": len(stored.data),
            "checksums": {"sha256": stored.sha256},
            "metadata": stored.metadata,
            "created_at": views.iso(stored.created_at),
            "expires_at": views.iso(stored.created_at + retention),
            "urls": {
                "get": url,
                "download": f"{url}/download?{query.replace('+', '%2B').replace('/', '%2F')}",
            },
        }

    # -- routes -----------------------------------------------------------------------------
    async def create(self, request: Request) -> Response:
        """``POST /v1/files``."""
        if not authorized(request):
            return unauthenticated()
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_FILE_BYTES + 64 * 1024:
            return problem_response(413, "Content Too Large", "Files must be less than 100MB")
        if self.faults.take("fail_uploads"):
            return problem_response(503, "Service Unavailable", "Emulated upload failure")
        if self.faults.take("refuse_uploads"):
            return problem_response(413, "Content Too Large", "Files must be less than 100MB")
        body = await request.body()
        try:
            name, kind, data, metadata = parse_upload(request.headers.get("content-type", ""), body)
        except MultipartError as exc:
            return input_problem([("content", str(exc))])
        if len(data) > MAX_FILE_BYTES:
            return problem_response(413, "Content Too Large", "Files must be less than 100MB")
        stored = StoredFile(new_prediction_id(), name, kind, data, metadata, self.clock.now())
        with self._lock:
            self.files[stored.id] = stored
        self.stats.files_call("uploads")
        return JSONResponse(self.render(stored), status_code=201)

    async def list(self, request: Request) -> Response:
        """``GET /v1/files``: most recent first, one page."""
        if not authorized(request):
            return unauthenticated()
        live = [f for f in list(self.files.values()) if self._live(f.id) is not None]
        live.sort(key=lambda f: f.created_at, reverse=True)
        return JSONResponse(
            {"next": None, "previous": None, "results": [self.render(f) for f in live]}
        )

    async def get(self, request: Request) -> Response:
        """``GET /v1/files/{id}``."""
        if not authorized(request):
            return unauthenticated()
        stored = self._live(request.path_params["id"])
        if stored is None:
            return _not_found()
        return JSONResponse(self.render(stored))

    async def delete(self, request: Request) -> Response:
        """``DELETE /v1/files/{id}``: 204, then 404 for every later request."""
        if not authorized(request):
            return unauthenticated()
        if self._live(request.path_params["id"]) is None:
            return _not_found()
        self.files.pop(request.path_params["id"], None)
        return Response(status_code=204)

    async def download(self, request: Request) -> Response:
        """``GET /v1/files/{id}/download?owner=..&expiry=..&signature=..``: the bytes, while the
        signature holds and has not expired (no token needed: the signature is the credential)."""
        file_id = request.path_params["id"]
        query = request.query_params
        expiry = query.get("expiry", "")
        if query.get("owner") != OWNER or not expiry.lstrip("-").isdigit():
            return _not_found()
        expected = self.signature(file_id, int(expiry))
        if not hmac.compare_digest(expected, query.get("signature", "")):
            return _not_found()
        if self.clock.now() > int(expiry):
            return _not_found()
        stored = self._live(file_id)
        if stored is None:
            return _not_found()
        self.stats.files_call("file_downloads")
        return Response(stored.data, media_type=stored.content_type)


def _not_found() -> Response:
    return problem_response(404, "Not found", "File not found")
