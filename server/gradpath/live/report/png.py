"""The gradient-flow picture as a PNG, drawn with Pillow from the same primitives as the SVG.

Pillow (the `report` extra, pinned in requirements-test.txt) is imported only here, only when a PNG
is asked for: its wheels carry their own FreeType and zlib, so it installs without system libraries,
and its bundled default font draws text when no DejaVu Sans Mono is installed.
"""
from __future__ import annotations

import os

from gradpath.live.report.layout import Canvas, layout

MONO_CANDIDATES = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf",
    "/usr/share/fonts/TTF/DejaVuSansMono.ttf",
    "/Library/Fonts/Menlo.ttc",
    "/System/Library/Fonts/Menlo.ttc",
    "C:\\Windows\\Fonts\\consola.ttf",
)
BOLD_CANDIDATES = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSansMono-Bold.ttf",
    "/usr/share/fonts/TTF/DejaVuSansMono-Bold.ttf",
    "C:\\Windows\\Fonts\\consolab.ttf",
)


class MissingPillow(RuntimeError):
    pass


def _pil():
    try:
        from PIL import Image, ImageDraw, ImageFont
    except ImportError as exc:
        raise MissingPillow("a PNG report needs Pillow: pip install 'gradpath[report]' (or Pillow>=10.1); "
                            "--report report.svg or report.html need nothing more") from exc
    return Image, ImageDraw, ImageFont


def _font_loader(ImageFont, scale: float):
    cache: dict = {}

    def font(size: int, bold: bool):
        key = (size, bold)
        if key not in cache:
            px = max(6, round(size * scale))
            f = None
            for path in (BOLD_CANDIDATES if bold else ()) + MONO_CANDIDATES:
                if os.path.exists(path):
                    try:
                        f = ImageFont.truetype(path, px)
                        break
                    except OSError:
                        continue
            cache[key] = f or ImageFont.load_default(size=px)
        return cache[key]
    return font


def canvas_png(c: Canvas, path: str, scale: float = 1.0) -> tuple[int, int]:
    Image, ImageDraw, ImageFont = _pil()
    w, h = round(c.width * scale), round(c.height * scale)
    img = Image.new("RGB", (w, h), "#ffffff")
    draw = ImageDraw.Draw(img)
    font = _font_loader(ImageFont, scale)
    s = scale
    anchors = {"start": "ls", "middle": "ms", "end": "rs"}
    for op in c.ops:
        kind = op[0]
        if kind == "rect":
            _, x, y, rw, rh, fill, _title = op
            if rw > 0 and rh > 0:
                draw.rectangle([x * s, y * s, (x + rw) * s - 1, (y + rh) * s - 1], fill=fill)
        elif kind == "line":
            _, x1, y1, x2, y2, col = op
            draw.line([x1 * s, y1 * s, x2 * s, y2 * s], fill=col, width=max(1, round(s)))
        elif kind == "text":
            _, x, y, text, size, col, bold, anchor = op
            draw.text((x * s, y * s), text, fill=col, font=font(size, bold), anchor=anchors.get(anchor, "ls"))
    img.save(path, format="PNG", compress_level=6)
    return w, h


def render_png(view: dict, path: str, title: str | None = None, scale: float = 1.0) -> tuple[int, int]:
    """Writes the PNG; returns its (width, height) in pixels."""
    return canvas_png(layout(view, title), path, scale)
