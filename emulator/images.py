"""Deterministic PNG rendering for the emulated image models (Pillow only)."""

from __future__ import annotations

import hashlib
import io
import textwrap
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont


def _colours(seed: int, index: int) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    digest = hashlib.sha256(f"gradient/{seed}/{index}".encode()).digest()
    top = (digest[0], digest[1], digest[2])
    bottom = (digest[3], digest[4], digest[5])
    return top, bottom


@lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def render_png(prompt: str, seed: int, index: int, width: int = 256, height: int = 256) -> bytes:
    """A ``width`` x ``height`` PNG: ``prompt`` written over a gradient chosen by seed and index.

    The same arguments always give the same bytes (for a given Pillow version).
    """
    top, bottom = _colours(seed, index)
    column = Image.new("RGB", (1, height))
    span = max(height - 1, 1)
    column.putdata(
        [
            tuple(round(a + (b - a) * y / span) for a, b in zip(top, bottom, strict=True))
            for y in range(height)
        ]
    )
    image = column.resize((width, height))
    draw = ImageDraw.Draw(image)
    font_size = max(8, min(width, height) // 16)
    text = "\n".join(
        textwrap.wrap(f"{prompt} #{index}", width=max(4, width // (font_size // 2 + 1)))
    )
    ink = (255, 255, 255) if sum(top) + sum(bottom) < 3 * 255 else (0, 0, 0)
    try:
        draw.multiline_text((4, 4), text, fill=ink, font=_font(font_size))
    except UnicodeEncodeError:  # bitmap font: latin-1 only
        safe = text.encode("latin-1", "replace").decode("latin-1")
        draw.multiline_text((4, 4), safe, fill=ink, font=_font(font_size))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()
