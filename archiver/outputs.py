"""Which parts of a prediction's output are files, what to call them, and who may serve them."""

from __future__ import annotations

import ipaddress
import posixpath
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, unquote, urlsplit, urlunsplit

from .datauri import extension, is_data_uri, media_type, source_of
from .errors import ConfigurationError, HostNotAllowed

MAX_NAME_BYTES = 200
_UNSAFE = re.compile(r"[\x00-\x1f\x7f/\\:*?\"<>|]+")
_RESERVED = {"manifest.json", "staged.json"}
# What is a file (docs/safety.md): an output string that, leading and trailing whitespace aside,
# is one RFC 3986 scheme, ":", then something without whitespace that is not only slashes, and
# either starts with "/" ("x:/...", "x://...": any scheme) or follows a scheme that names a
# place to fetch from (`https:host/x`). Everything else ("a:b", "note: fine", "a://") is text.
_URL = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*):(?P<slashes>/*)[^/\s]\S*$")
FETCH_SCHEMES = frozenset(
    {"http", "https", "ftp", "ftps", "sftp", "file", "s3", "s3a", "gs", "gcs", "az", "abfs"}
    | {"abfss", "adl", "hdfs", "webdav", "dav", "ws", "wss"}
)
# A URL inside text: its userinfo, query string and fragment are scrubbed from the manifest.
_EMBEDDED = re.compile(
    r"(?<![A-Za-z0-9+.-])(?P<head>[A-Za-z][A-Za-z0-9+.-]*:/+)(?P<userinfo>[^\s/?#@]*@)?"
    r"(?P<rest>[^\s?#]*)(?P<query>[?#]\S*)?"
)


@dataclass(frozen=True)
class OutputFile:
    """One file in a prediction's output: where it sits in the output and where to fetch it."""

    pointer: str  # JSON-pointer-like position in the output tree ("" for a bare string, "/0")
    url: str
    name: str  # sanitized, unique within the prediction


def output_url(value: Any) -> str | None:
    """The URL an output value is (whitespace around it dropped), or None when it is text.

    http(s) URLs are downloaded if `HostAllowList.check` lets them; any other scheme is refused
    by it: a URL is never kept as text."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    match = _URL.match(text)
    if match is None:
        return None
    if match.group("slashes") or match.group("scheme").lower() in FETCH_SCHEMES:
        return text
    return None


def is_file_url(value: Any) -> bool:
    """An output value archived as a file (or refused): a URL (`output_url`) or a `data:` URI."""
    return is_data_uri(value) or output_url(value) is not None


def public_url(url: str) -> str:
    """A URL as it may be recorded or logged: no userinfo, query or fragment; a `data:` URI as
    its header only (`data:image/png;base64`). The scheme is lowercased, `//` kept as given."""
    if is_data_uri(url):
        return source_of(url)
    parts = urlsplit(url.strip())
    if not parts.scheme:
        return urlunsplit(("", "", parts.path, "", ""))
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    netloc = f"{host}:{parts.port}" if _port(parts) else host
    authority = url.strip()[len(parts.scheme) + 1 :].startswith("//")
    return f"{parts.scheme}:{'//' + netloc if authority else ''}{parts.path}"


def scrub_text(text: str) -> str:
    """Text with every URL inside it reduced to `public_url`'s form (no userinfo, query or
    fragment): what a manifest keeps of a text output."""
    return _EMBEDDED.sub(lambda m: m.group("head") + m.group("rest"), text)


def _port(parts: SplitResult) -> int | None:
    """The URL's port, or None when there is none or it is not a number."""
    try:
        return parts.port
    except ValueError:
        return None


def iter_urls(output: Any, pointer: str = "") -> Iterator[tuple[str, str]]:
    """Every (pointer, url) in an output tree, depth first, in output order: file URLs, data:
    URIs, and URLs of other schemes or hosts (which `HostAllowList.check` refuses)."""
    url = output if is_data_uri(output) else output_url(output)
    if url is not None:
        yield pointer, url
    elif isinstance(output, list):
        for index, item in enumerate(output):
            yield from iter_urls(item, f"{pointer}/{index}")
    elif isinstance(output, dict):
        for key, item in output.items():
            yield from iter_urls(item, f"{pointer}/{key}")


def file_outputs(output: Any) -> list[OutputFile]:
    """The output's files, named from their URL paths: sanitized and unique."""
    taken: set[str] = set()
    files = []
    for index, (pointer, url) in enumerate(iter_urls(output)):
        if is_data_uri(url):
            raw = f"output-{index}{extension(media_type(url)[0])}"
        else:
            raw = url_basename(url)
        name = unique_name(safe_name(raw, fallback=f"output-{index}"), taken)
        taken.add(name.lower())
        files.append(OutputFile(pointer, url, name))
    return files


def files_complete(output: Any, input: dict[str, Any]) -> bool:
    """True when a still-processing prediction already shows every file it will produce.

    Knowable only for a single file output, or a list whose length the input fixes
    (`num_outputs`); anything else waits for `succeeded`.
    """
    if is_file_url(output):
        return True
    expected = input.get("num_outputs")
    if not isinstance(output, list) or not isinstance(expected, int) or isinstance(expected, bool):
        return False
    return len(output) == expected and all(is_file_url(item) for item in output)


def url_at(output: Any, pointer: str) -> str | None:
    """The URL at `pointer` in a (re-fetched) output tree, or None if the shape changed."""
    node = output
    for part in [p for p in pointer.split("/")][1:]:
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return None
    return node if is_data_uri(node) else output_url(node)


def replace_files(output: Any, names: dict[str, str], pointer: str = "") -> Any:
    """The output tree with each file URL replaced by its archived path (for the manifest), and
    every other string scrubbed of URL userinfo, query strings and fragments."""
    if pointer in names and is_file_url(output):
        return {"file": names[pointer]}
    if isinstance(output, str):
        return scrub_text(output)
    if isinstance(output, list):
        return [replace_files(item, names, f"{pointer}/{i}") for i, item in enumerate(output)]
    if isinstance(output, dict):
        return {k: replace_files(v, names, f"{pointer}/{k}") for k, v in output.items()}
    return output


def url_basename(url: str) -> str:
    """The last path segment of a URL, percent-decoded (may still be hostile)."""
    path = urlsplit(url).path
    return unquote(path.rsplit("/", 1)[-1]) if path else ""


def safe_name(raw: str, *, fallback: str) -> str:
    """A file name that cannot escape its directory or confuse a store.

    No separators, no control characters, no leading dots (so no `.`/`..`), NFC-normalised,
    at most 200 UTF-8 bytes with the extension kept.
    """
    name = unicodedata.normalize("NFC", raw)
    name = _UNSAFE.sub("_", name).strip(" .")
    name = re.sub(r"_+", "_", name)
    if not name or name.strip("_") == "" or name.lower() in _RESERVED:
        name = fallback
    stem, ext = posixpath.splitext(name)
    if len(ext.encode()) > 16:
        stem, ext = name, ""
    while len((stem + ext).encode()) > MAX_NAME_BYTES:
        stem = stem[:-1]
    return stem + ext


def unique_name(name: str, taken: set[str]) -> str:
    """`name`, or `stem-2.ext`, `stem-3.ext`... if taken (case-insensitively)."""
    if name.lower() not in taken:
        return name
    stem, ext = posixpath.splitext(name)
    counter = 2
    while f"{stem}-{counter}{ext}".lower() in taken:
        counter += 1
    return f"{stem}-{counter}{ext}"


class HostAllowList:
    """The delivery hosts output files may come from.

    `replicate.delivery` matches that host; `*.replicate.delivery` any subdomain. https only;
    plain http is accepted only for loopback hosts listed explicitly (the emulator).
    """

    def __init__(self, spec: str) -> None:
        self.patterns = [p.strip().lower() for p in spec.split(",") if p.strip()]
        if not self.patterns:
            raise ConfigurationError("REPLICATE_DELIVERY_HOSTS lists no host")

    def _listed(self, host: str, port: int | None) -> bool:
        candidates = {host, f"{host}:{port}"} if port else {host}
        for pattern in self.patterns:
            if pattern.startswith("*."):
                if host.endswith(pattern[1:]):
                    return True
            elif pattern in candidates:
                return True
        return False

    def check(self, url: str) -> None:
        """Raise `HostNotAllowed` (one line naming the URL, without its secrets) unless `url`
        may be fetched: http(s), a host, no userinfo, the host listed."""
        parts = urlsplit(url.strip())
        scheme = parts.scheme.lower()
        shown = public_url(url)
        if scheme not in ("http", "https"):
            raise HostNotAllowed(
                f"output URL {shown}: scheme {scheme or '(none)'}: is not allowed (only https "
                "delivery URLs, or data: URIs); nothing was fetched or archived"
            )
        if "@" in parts.netloc:
            raise HostNotAllowed(
                f"output URL {public_url(f'{scheme}://{parts.netloc}')} carries credentials "
                "(user:password@); refused, nothing was fetched from it"
            )
        host = (parts.hostname or "").lower()
        if not host:
            raise HostNotAllowed(
                f"output URL {shown} names no host (a delivery URL is {scheme}://host/path); "
                "refused, nothing was fetched or archived"
            )
        if not self._listed(host, _port(parts)):
            raise HostNotAllowed(
                f"output URL host {public_url(f'{scheme}://{parts.netloc}')} is not in "
                f"REPLICATE_DELIVERY_HOSTS ({','.join(self.patterns)}); nothing was fetched "
                "from it"
            )
        if scheme == "https":
            return
        if _is_loopback(host):
            return
        raise HostNotAllowed(f"output URL {shown} is not https; refused")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
