"""The gradient-flow picture as a standalone SVG (no external fonts, images or links)."""
from __future__ import annotations

from xml.sax.saxutils import escape, quoteattr

from gradpath.live.report.layout import Canvas, layout

FONT_FAMILY = "DejaVu Sans Mono, Menlo, Consolas, 'Liberation Mono', monospace"


def canvas_svg(c: Canvas, standalone: bool = True) -> str:
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{c.width}" height="{c.height}" '
           f'viewBox="0 0 {c.width} {c.height}" font-family={quoteattr(FONT_FAMILY)} role="img">']
    if not standalone:  # inline in HTML: the namespace attribute is not needed (and names no URL)
        out[0] = out[0].replace(' xmlns="http://www.w3.org/2000/svg"', "")
    for op in c.ops:
        kind = op[0]
        if kind == "rect":
            _, x, y, w, h, fill, title = op
            if title:
                out.append(f'<rect x="{x}" y="{y}" width="{w}" height="{h}" fill="{fill}"><title>'
                           f'{escape(title)}</title></rect>')
            else:
                out.append(f'<rect x="{x}" y="{y}" width="{w}" height="{h}" fill="{fill}"/>')
        elif kind == "line":
            _, x1, y1, x2, y2, col = op
            out.append(f'<line x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2}" stroke="{col}" stroke-width="1"/>')
        elif kind == "text":
            _, x, y, s, size, col, bold, anchor = op
            weight = ' font-weight="bold"' if bold else ""
            anc = f' text-anchor="{anchor}"' if anchor != "start" else ""
            out.append(f'<text x="{x}" y="{y}" font-size="{size}" fill="{col}"{weight}{anc} '
                       f'xml:space="preserve">{escape(s)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def render_svg(view: dict, title: str | None = None) -> str:
    return canvas_svg(layout(view, title))
