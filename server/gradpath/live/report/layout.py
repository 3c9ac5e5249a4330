"""Places one file's gradient-flow view (view.flow_view) on a canvas as drawing primitives; svg.py and
png.py only serialise them, so the two images are the same picture.

Primitives (tuples, coordinates in pixels, text at its left/middle/right baseline):
    ("rect", x, y, w, h, fill, title)            title: a tooltip (SVG only) or None
    ("line", x1, y1, x2, y2, colour)
    ("text", x, y, text, size, colour, bold, anchor)    anchor: "start" | "middle" | "end"
"""
from __future__ import annotations

from dataclasses import dataclass, field

from gradpath.live.report.view import FLAGS, SHORT

WIDTH = 1100
ROW_H = 18
FONT = 12
CHAR_W = 0.6  # of the font size: DejaVu Sans Mono and friends
MAX_ITEMS = 240

COL_NAME = 12
COL_GRAD = 380
COL_UPD = 610
BAR_W = 150
COL_FLAGS = 846

PALETTE = {
    "bg": "#ffffff", "fg": "#1f2328", "muted": "#59636e", "rule": "#d0d7de", "band": "#f6f8fa",
    "grad": "#2f6fde", "update": "#1a7f37", "subject": "#fff1e5", "subject_edge": "#d1242f",
    "axis": "#8c959f",
}
FLAG_COLOUR = {k: light for k, _, light, _ in FLAGS}


@dataclass
class Canvas:
    width: int
    height: int
    ops: list = field(default_factory=list)

    def rect(self, x, y, w, h, fill, title=None):
        self.ops.append(("rect", round(x, 1), round(y, 1), round(w, 1), round(h, 1), fill, title))

    def line(self, x1, y1, x2, y2, colour):
        self.ops.append(("line", round(x1, 1), round(y1, 1), round(x2, 1), round(y2, 1), colour))

    def text(self, x, y, s, size=FONT, colour=None, bold=False, anchor="start"):
        self.ops.append(("text", round(x, 1), round(y, 1), s, size, colour or PALETTE["fg"], bold, anchor))


def text_width(s: str, size: int = FONT) -> float:
    return len(s) * size * CHAR_W


def clip(s: str, width: float, size: int = FONT) -> str:
    n = int(width // (size * CHAR_W))
    return s if len(s) <= n else s[: max(1, n - 1)] + "…"


def wrap(s: str, width: float, size: int = FONT, limit: int = 3) -> list[str]:
    """Lines of at most `width` pixels, broken after "; " or ", " where possible (at most `limit`)."""
    n = max(8, int(width // (size * CHAR_W)))
    lines: list[str] = []
    while len(s) > n and len(lines) < limit - 1:
        cut = max(s.rfind("; ", 0, n), s.rfind(", ", 0, n))
        cut = cut + 2 if cut > 0 else n
        lines.append(s[:cut].rstrip())
        s = s[cut:]
    lines.append(clip(s, width, size))
    return lines


def _shape(shape) -> str:
    if not isinstance(shape, list):
        return ""
    return "(" + ", ".join(str(x) for x in shape) + ("," if len(shape) == 1 else "") + ")"


def _bar(c: Canvas, x: float, y: float, frac, value_text: str, colour: str, state: str | None = None):
    c.rect(x, y + 4, BAR_W, ROW_H - 8, PALETTE["band"])
    if frac is not None and frac > 0:
        c.rect(x, y + 4, BAR_W * frac, ROW_H - 8, FLAG_COLOUR["nonfinite"] if state == "nonfinite" else colour)
    tcol = PALETTE["muted"]
    if state in FLAG_COLOUR:
        tcol = FLAG_COLOUR[state]
    c.text(x + BAR_W + 6, y + ROW_H - 5, value_text, FONT - 1, tcol)


def layout(view: dict, title: str | None = None) -> Canvas:
    rows = view.get("rows") or []
    items = list(view.get("items") or [])
    more = 0
    if len(items) > MAX_ITEMS:
        more = sum(1 for it in items[MAX_ITEMS:] if it["type"] == "row")
        items = items[:MAX_ITEMS]
    legend = [(k, t) for k, t, _, _ in FLAGS]
    # legend rows: chips wrapped at the width
    legend_lines: list[list[tuple[str, str]]] = [[]]
    x = COL_NAME
    for k, t in legend + [("subject", "subject of a finding")]:
        w = 14 + text_width(t, FONT - 1) + 18
        if x + w > WIDTH - 12 and legend_lines[-1]:
            legend_lines.append([])
            x = COL_NAME
        legend_lines[-1].append((k, t))
        x += w
    summary = wrap(view.get("summary") or "", WIDTH - 24)
    head = 44 + 16 * (len(summary) - 1)
    top = head + 14 + 20 * len(legend_lines) + 10
    height = int(top + 34 + ROW_H * len(items) + (ROW_H if more else 0) + 14)
    c = Canvas(WIDTH, height)
    c.rect(0, 0, WIDTH, height, PALETTE["bg"])
    c.text(COL_NAME, 24, clip(title or view.get("title") or "Gradient flow", WIDTH - 24, 15), 15, bold=True)
    for i, line in enumerate(summary):
        c.text(COL_NAME, 44 + 16 * i, line, FONT, PALETTE["fg"])
    y = head + 14
    for line in legend_lines:
        x = COL_NAME
        for k, t in line:
            if k == "subject":
                c.rect(x, y + 3, 12, 12, PALETTE["subject"])
                c.rect(x, y + 3, 3, 12, PALETTE["subject_edge"])
            else:
                c.rect(x, y + 3, 12, 12, FLAG_COLOUR[k])
            c.text(x + 17, y + 13, t, FONT - 1, PALETTE["muted"])
            x += 14 + text_width(t, FONT - 1) + 18
        y += 20
    y = top
    # column headers and log-axis ticks
    c.text(COL_NAME, y + 12, "tensor (module tree)", FONT, PALETTE["muted"], bold=True)
    c.text(COL_GRAD, y + 12, "gradient norm (log)", FONT, PALETTE["muted"], bold=True)
    c.text(COL_UPD, y + 12, "|Δw| / |w| after the step (log)", FONT, PALETTE["muted"], bold=True)
    c.text(COL_FLAGS, y + 12, "flags", FONT, PALETTE["muted"], bold=True)
    scales = view.get("scales") or {}
    for col, key in ((COL_GRAD, "grad"), (COL_UPD, "update")):
        for t in scales.get(key) or []:
            tx = col + BAR_W * (t["frac"] or 0)
            c.line(tx, y + 17, tx, y + 21, PALETTE["axis"])
            c.text(tx, y + 30, t["label"], FONT - 3, PALETTE["axis"], anchor="middle")
    y += 34
    c.line(COL_NAME, y - 1, WIDTH - 12, y - 1, PALETTE["rule"])
    for it in items:
        if it["type"] == "group":
            indent = COL_NAME + 14 * it["depth"]
            label = it["label"]
            extra = []
            if it.get("class") and it["class"] != label and not label.endswith(f": {it['class']}"):
                extra.append(it["class"])
            if it.get("line"):
                extra.append(f"line {it['line']}")
            c.text(indent, y + ROW_H - 5, clip(label, COL_GRAD - indent - 12), FONT, PALETTE["fg"], bold=True)
            if extra:
                ex = indent + text_width(label) + 8
                if ex < COL_GRAD - 40:
                    c.text(ex, y + ROW_H - 5, clip(" · ".join(extra), COL_GRAD - ex - 12, FONT - 1), FONT - 1,
                           PALETTE["muted"])
        else:
            r = rows[it["index"]]
            if r.get("findings"):
                c.rect(COL_NAME - 8, y, WIDTH - COL_NAME, ROW_H, PALETTE["subject"],
                       "subject of " + ", ".join(f.split(":")[0] for f in r["findings"]))
                c.rect(COL_NAME - 8, y, 3, ROW_H, PALETTE["subject_edge"])
            indent = COL_NAME + 14 * it["depth"]
            leaf = r["name"].rsplit(".", 1)[-1] if r.get("owner") else r["name"]
            label = f"{leaf} {_shape(r.get('shape'))}"
            c.text(indent, y + ROW_H - 5, clip(label, COL_GRAD - indent - 12), FONT, PALETTE["fg"])
            gstate = {"none": "no-grad", "zero": "zero-grad", "nonfinite": "nonfinite"}.get(r.get("grad_state"))
            _bar(c, COL_GRAD, y, r.get("grad_frac"), r.get("grad_text", ""), PALETTE["grad"], gstate)
            ustate = "unchanged" if r.get("changed") is False and r.get("requires_grad") else None
            if r.get("update_text") in ("nan", "inf", "-inf"):
                ustate = "nonfinite"
            _bar(c, COL_UPD, y, r.get("update_frac"), r.get("update_text", ""), PALETTE["update"], ustate)
            fx = COL_FLAGS
            for k in r.get("flags") or []:
                t = SHORT[k]
                w = text_width(t, FONT - 2) + 10
                if fx + w > WIDTH - 8:
                    c.text(fx, y + ROW_H - 5, "…", FONT, PALETTE["muted"])
                    break
                c.rect(fx, y + 2, w, ROW_H - 4, FLAG_COLOUR[k], FLAG_TEXT_BY_KEY[k])
                c.text(fx + 5, y + ROW_H - 6, t, FONT - 2, "#ffffff", bold=True)
                fx += w + 4
            else:
                codes = " ".join(dict.fromkeys(f.split(":")[0] for f in r.get("findings") or []))
                if codes and fx + text_width(codes, FONT - 1) < WIDTH - 8:
                    c.text(fx + 2, y + ROW_H - 5, codes, FONT - 1, PALETTE["subject_edge"], bold=True)
        y += ROW_H
    if more:
        c.text(COL_NAME, y + ROW_H - 5, f"… {more} more tensors (see the HTML report)", FONT, PALETTE["muted"])
    return c


FLAG_TEXT_BY_KEY = {k: t for k, t, _, _ in FLAGS}
