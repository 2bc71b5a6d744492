"""`data:` URI outputs (RFC 2397): recognised, decoded within a size bound, staged as files.

Replicate's sync API may return small file outputs inline as `data:<mediatype>[;base64],<data>`
instead of a delivery URL. They are archived like downloaded files; only their header
(`data:image/png;base64`, never the payload) is kept as the source.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import mimetypes
import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote_to_bytes

from .errors import InvalidOutput
from .storage import temp_name

DEFAULT_MEDIA_TYPE = "text/plain;charset=US-ASCII"
_TOKEN = r"[A-Za-z0-9!#$&^_.+-]+"
# data:[type/subtype][;attr=value]*[;base64], -- no spaces: a caption like "data: 3, 4" is text.
_HEADER = re.compile(
    rf"^data:(?P<type>{_TOKEN}/{_TOKEN})?(?P<params>(?:;{_TOKEN}=[^;,\s]*)*)(?P<b64>;base64)?,",
    re.IGNORECASE,
)
_ASCII_SPACE = re.compile(rb"[ \t\r\n\f\v]+")


@dataclass(frozen=True)
class DataUri:
    """A decoded `data:` URI."""

    content_type: str  # the media type with its parameters, e.g. "text/plain;charset=US-ASCII"
    is_base64: bool
    data: bytes

    @property
    def source(self) -> str:
        """What a manifest records as the source: the header, without the payload."""
        return header(self.content_type, self.is_base64)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def is_data_uri(value: object) -> bool:
    """True for a string that is a well-formed `data:` URI header followed by a payload."""
    return isinstance(value, str) and _HEADER.match(value) is not None


def header(content_type: str, is_base64: bool) -> str:
    return f"data:{content_type}{';base64' if is_base64 else ''}"


def media_type(uri: str) -> tuple[str, bool]:
    """(content type, base64?) of a `data:` URI, without decoding its payload."""
    match = _HEADER.match(uri)
    if match is None:
        raise InvalidOutput("not a data: URI")
    kind, params = match.group("type"), match.group("params") or ""
    content_type = f"{kind}{params}" if kind else (f"text/plain{params}" if params else "")
    return content_type or DEFAULT_MEDIA_TYPE, match.group("b64") is not None


def source_of(uri: str) -> str:
    """The header of a `data:` URI (`data:image/png;base64`): safe to record and log."""
    return header(*media_type(uri))


def extension(content_type: str) -> str:
    """`.png` for image/png, `.txt` for text/plain...; "" when the type has no known one."""
    bare = content_type.split(";", 1)[0].strip().lower()
    return mimetypes.guess_extension(bare) or ""


def decode(uri: str, *, max_bytes: int, what: str) -> DataUri:
    """Decode a `data:` URI (base64 or percent-encoded), refusing more than `max_bytes`.

    `what` names the output in the one-line `InvalidOutput` raised when the URI is malformed,
    undecodable or over the bound.
    """
    match = _HEADER.match(uri)
    if match is None:
        raise InvalidOutput(f"{what}: not a well-formed data: URI")
    content_type, is_base64 = media_type(uri)
    payload = uri[match.end() :]
    shown = header(content_type, is_base64)
    # Decoded size is at most the payload's length (base64: 3/4 of it): refuse before decoding.
    bound = (len(payload) * 3) // 4 if is_base64 else len(payload)
    if bound > max_bytes + 3:
        raise InvalidOutput(
            f"{what}: {shown} URI holds more than ARCHIVER_MAX_DATA_URI_BYTES={max_bytes} bytes"
        )
    raw = unquote_to_bytes(payload)
    if is_base64:
        raw = _ASCII_SPACE.sub(b"", raw)
        try:
            data = base64.b64decode(raw + b"=" * (-len(raw) % 4), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InvalidOutput(f"{what}: {shown} URI is not valid base64 ({exc})") from exc
    else:
        data = raw
    if len(data) > max_bytes:
        raise InvalidOutput(
            f"{what}: {shown} URI holds {len(data)} bytes, over "
            f"ARCHIVER_MAX_DATA_URI_BYTES={max_bytes}"
        )
    return DataUri(content_type, is_base64, data)


def write_atomic(data: bytes, target: Path) -> None:
    """Write `data` to `target` through a temp name of this call's own (never a shared path
    opened for writing), flushed to disk, made read-only, then renamed into place."""
    part = target.with_name(temp_name(target.name))
    try:
        with part.open("xb") as sink:
            sink.write(data)
            sink.flush()
            os.fsync(sink.fileno())
        os.chmod(part, 0o444)
        os.replace(part, target)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
