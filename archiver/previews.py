"""Thumbnails of a run's image outputs, as `data:` URIs a markdown artifact can embed.

Made with Pillow from local bytes only (the staged files, or a local archive's own files),
never downloaded again. Each is at most `MAX_SIDE` px on its longest side and at most
`MAX_BYTES` bytes (JPEG; the quality, then the size, step down until it fits). A file Pillow
cannot read gets a `Preview` without an image: it is listed, never fatal.

How many thumbnails a run makes is bounded by a `PreviewBudget` (a gallery shows at most
`MAX_THUMBNAILS`): a batch shares one budget between all its items, so its thousand images
cost 24 thumbnails, not a thousand. Runs start with no budget (benchmarks and plain scripts
make none); flows install one with `use_previews`. `local_previews` makes them for a prediction
already in a local archive (a cached run), from the archive's own files; `archived_previews`
for any archived files (find-in-archive's gallery), fetching remote ones up to `MAX_FETCH` bytes.
"""

from __future__ import annotations

import base64
import io
import mimetypes
import threading
import warnings
from collections.abc import Iterable
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

if TYPE_CHECKING:  # types only: the pipeline imports this module
    from .pipeline import RunSummary
    from .storage import Destination

MAX_SIDE = 256  # px, the longest side of a thumbnail
MAX_BYTES = 40_000  # per thumbnail, before base64
MAX_THUMBNAILS = 24  # per gallery artifact
MAX_SOURCE_BYTES = 256 * 2**20  # larger files are listed without a thumbnail
MAX_SOURCE_PIXELS = 100_000_000  # likewise for images larger than this when decoded
MAX_FETCH = 16 * 2**20  # largest image fetched from a remote archive for a thumbnail
QUALITIES = (80, 65, 50, 35)
OVER_LIMIT = "over the gallery's limit"


class Preview(BaseModel):
    """One output file as a gallery shows it: a thumbnail for readable images, else a listing."""

    name: str
    content_type: str | None = None
    size: int
    thumbnail: str | None = None  # data:image/jpeg;base64,... (<= MAX_BYTES before base64)
    width: int | None = None  # of the thumbnail
    height: int | None = None
    note: str | None = None  # why there is no thumbnail, for an image that has none


class PreviewBudget:
    """How many thumbnails may still be made; shared by every item of a run, thread-safe."""

    def __init__(self, limit: int = MAX_THUMBNAILS) -> None:
        self.left = max(0, limit)
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            if self.left <= 0:
                return False
            self.left -= 1
            return True


_current: ContextVar[PreviewBudget | None] = ContextVar("archiver_previews", default=None)


def use_previews(budget: PreviewBudget | None) -> None:
    """Make thumbnails, within `budget`, for runs started from this context (None: none)."""
    _current.set(budget)


def current_budget() -> PreviewBudget | None:
    return _current.get()


def is_image(name: str, content_type: str | None) -> bool:
    """Whether a file looks like an image, by its content type or else its name."""
    kind = content_type or mimetypes.guess_type(name)[0] or ""
    return kind.split(";")[0].strip().lower().startswith("image/")


def previews_of(
    files: Iterable[tuple[str, str | None, int, Path]], budget: PreviewBudget | None
) -> list[Preview]:
    """A Preview per `(name, content_type, size, local path)`; thumbnails while `budget` lasts.

    Non-images are listed without being opened. An empty list without a budget: nothing to show
    and nothing spent.
    """
    if budget is None:
        return []
    result = []
    for name, content_type, size, path in files:
        preview = Preview(name=name, content_type=content_type, size=size)
        if is_image(name, content_type):
            if size > MAX_SOURCE_BYTES:
                preview.note = "too large for a thumbnail"
            elif budget.take():
                made = thumbnail(path)
                if isinstance(made, str):
                    preview.note = made
                else:
                    preview.thumbnail, preview.width, preview.height = made
            else:
                preview.note = OVER_LIMIT
        result.append(preview)
    return result


def local_previews(
    summary: RunSummary, dest: Destination, budget: PreviewBudget | None
) -> list[Preview]:
    """Previews of an already archived (cached) prediction, read from a local archive; none
    from remote stores (nothing is downloaded for a gallery)."""
    if not dest.is_local or summary.previews:
        return list(summary.previews)
    files = [(f.name, None, f.size, Path(f.url)) for f in summary.files]
    return previews_of(files, budget)


def archived_previews(
    files: Iterable[tuple[str, str | None, int]], dest: Destination, budget: PreviewBudget
) -> dict[str, Preview]:
    """`{path: Preview}` per `(path in dest, content_type, size)` of files already archived:
    thumbnails read from local disk, or fetched from other stores up to `MAX_FETCH` bytes each,
    while `budget` lasts. A file that cannot be read or fetched is listed with the reason."""
    result = {}
    for path, content_type, size in files:
        name = path.rsplit("/", 1)[-1]
        kind = content_type or mimetypes.guess_type(name)[0]
        preview = Preview(name=name, size=size, content_type=kind)
        if is_image(name, kind) and budget.take():
            made = _archived_thumbnail(dest, path, size)
            if isinstance(made, str):
                preview.note = made
            else:
                preview.thumbnail, preview.width, preview.height = made
        result[path] = preview
    return result


def _archived_thumbnail(dest: Destination, path: str, size: int) -> tuple[str, int, int] | str:
    full = dest.path(path)
    if dest.is_local:
        return thumbnail(Path(full))
    if size > MAX_FETCH:
        return "too large to fetch for a thumbnail"
    try:
        return thumbnail(bytes(dest.fs.cat_file(full)))
    except Exception as exc:  # noqa: BLE001 - a gallery never fails the search
        return f"not fetched ({type(exc).__name__})"


def thumbnail(path: Path | bytes) -> tuple[str, int, int] | str:
    """`(data URI, width, height)` of a JPEG thumbnail of the image, or why there is none."""
    from PIL import Image, ImageOps

    source = io.BytesIO(path) if isinstance(path, bytes) else path
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source) as opened:
                if opened.width * opened.height > MAX_SOURCE_PIXELS:
                    return "too large for a thumbnail"
                opened.draft("RGB", (MAX_SIDE, MAX_SIDE))  # JPEG: decode at a reduced scale
                image = ImageOps.exif_transpose(opened)
                image.thumbnail((MAX_SIDE, MAX_SIDE), reducing_gap=2.0)
                image = _rgb(image)
    except Exception as exc:  # noqa: BLE001 - any unreadable image is listed, not fatal
        return f"not readable as an image ({type(exc).__name__})"
    while True:
        for quality in QUALITIES:
            out = io.BytesIO()
            image.save(out, "JPEG", quality=quality, optimize=True)
            if out.tell() <= MAX_BYTES:
                encoded = base64.b64encode(out.getvalue()).decode("ascii")
                return f"data:image/jpeg;base64,{encoded}", image.width, image.height
        if max(image.size) <= 16:
            return "no thumbnail fits the size limit"
        image = image.resize((max(1, image.width * 3 // 4), max(1, image.height * 3 // 4)))


def _rgb(image: Any) -> Any:
    """The image in RGB; transparency composed over white (JPEG has no alpha)."""
    from PIL import Image

    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")
