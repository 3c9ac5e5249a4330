"""`gradpath confirm --report PATH`: the format comes from the extension (.html, .svg, .png)."""
from __future__ import annotations

import os

FORMATS = (".html", ".htm", ".svg", ".png")


class ReportError(Exception):
    pass


def report_format(path: str) -> str:
    ext = os.path.splitext(path)[1].lower()
    if ext not in FORMATS:
        raise ReportError(f"--report {path}: the file name must end in .html, .svg or .png")
    return "html" if ext == ".htm" else ext[1:]


def write_report(path: str, views: list[dict]) -> str:
    """Writes the report; returns a one-line description for stderr. An image shows one file's step:
    the first file whose step saw parameter tensors (the HTML file shows every file)."""
    fmt = report_format(path)
    if fmt == "html":
        from gradpath.live.report.html import render_html
        text = render_html(views)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
        rows = sum(v.get("total", 0) for v in views)
        return f"gradient-flow report: {path} ({len(views)} file(s), {rows} tensors)"
    shown = next((v for v in views if v.get("rows")), views[0] if views else None)
    if shown is None:
        raise ReportError("--report: no file was run, so there is no step to draw")
    note = ""
    if len(views) > 1:
        note = f"; the image shows {shown.get('title')} (use .html for every file)"
    if fmt == "svg":
        from gradpath.live.report.svg import render_svg
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(render_svg(shown))
        return f"gradient-flow image: {path}{note}"
    from gradpath.live.report.png import MissingPillow, render_png
    try:
        w, h = render_png(shown, path)
    except MissingPillow as exc:
        raise ReportError(str(exc)) from exc
    return f"gradient-flow image: {path} ({w}x{h}){note}"
