"""One self-contained HTML file for a `gradpath confirm` run: every file's step, one table row per
tensor (grouped by the module tree), inline SVG bars on a log scale, coloured flags with a legend, and
the findings each highlighted row is the subject of. No scripts, no external assets, no links out."""
from __future__ import annotations

import datetime
from html import escape

from gradpath.live.report.view import FLAGS, SHORT

BAR_W = 160

CSS = """
:root { color-scheme: light dark; --fg: #1f2328; --muted: #59636e; --bg: #ffffff; --band: #eef1f4;
  --rule: #d0d7de; --grad: #2f6fde; --update: #1a7f37; --subject: #fff1e5; --edge: #d1242f; }
@media (prefers-color-scheme: dark) { :root { --fg: #e6edf3; --muted: #9198a1; --bg: #0d1117;
  --band: #21262d; --rule: #30363d; --grad: #58a6ff; --update: #3fb950; --subject: #3d1f14; --edge: #f85149; } }
body { font: 13px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); background: var(--bg);
  margin: 24px; }
h1 { font-size: 20px; margin: 0 0 4px; } h2 { font-size: 16px; margin: 28px 0 4px; }
.meta, .muted { color: var(--muted); }
.summary { font-weight: 600; margin: 4px 0 8px; }
.legend { display: flex; flex-wrap: wrap; gap: 6px 16px; list-style: none; padding: 0; margin: 8px 0 12px; }
.legend li { display: flex; align-items: center; gap: 6px; color: var(--muted); }
.flag { display: inline-block; padding: 0 6px; border-radius: 3px; color: #fff; font-size: 11px; font-weight: 600;
  margin-right: 4px; white-space: nowrap; }
table.flow { border-collapse: collapse; font: 12px/1.3 ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace;
  width: 100%; }
table.flow th { text-align: left; color: var(--muted); font-weight: 600; border-bottom: 1px solid var(--rule);
  padding: 4px 6px; }
table.flow td { padding: 1px 6px; white-space: nowrap; vertical-align: middle; }
tr.group td { font-weight: 700; padding-top: 4px; }
tr.group .muted { font-weight: 400; }
tr.subject td { background: var(--subject); }
tr.subject td:first-child { box-shadow: inset 3px 0 0 var(--edge); }
svg.bar { vertical-align: middle; margin-right: 6px; }
svg.bar .track { fill: var(--band); } svg.bar .grad { fill: var(--grad); } svg.bar .update { fill: var(--update); }
svg.bar .nonfinite { fill: #ad1457; }
.findings { margin: 6px 0 0 0; padding-left: 18px; }
.code { font-weight: 700; }
"""


def _flag_chip(key: str, colours: dict) -> str:
    return f'<span class="flag flag-{key}" style="background:{colours[key]}">{escape(SHORT[key])}</span>'


def _bar(frac, cls: str) -> str:
    w = 0 if frac is None else round(BAR_W * frac, 1)
    return (f'<svg class="bar" width="{BAR_W}" height="10" role="img" aria-hidden="true">'
            f'<rect class="track" width="{BAR_W}" height="10"/>'
            + (f'<rect class="{cls}" width="{w}" height="10"/>' if w > 0 else "") + "</svg>")


def _kind(text, kind: str) -> str:
    return "nonfinite" if text in ("nan", "inf", "-inf") else kind


def _shape(shape) -> str:
    if not isinstance(shape, list):
        return ""
    return "(" + ", ".join(str(x) for x in shape) + ("," if len(shape) == 1 else "") + ")"


def file_section(view: dict, anchor: str) -> str:
    colours = {k: c for k, _, c, _ in FLAGS}
    rows = view.get("rows") or []
    out = [f'<section class="file" id="{escape(anchor)}">', f"<h2>{escape(view.get('title') or '')}</h2>"]
    meta = [f"{view.get('steps', 0)} optimizer step(s)", f"{view.get('backward', 0)} backward call(s)"]
    if view.get("mode"):
        meta.append(f"mode: {view['mode']}")
    opts = ", ".join(f"{o.get('label')} (line {o.get('line')}, {o.get('tensors')} tensors)"
                     for o in view.get("optimizers") or [])
    if opts:
        meta.append("optimizers: " + opts)
    unused = [f"{u.get('var') or u.get('class')} ({u.get('class')}, line {u.get('line')}, {u.get('tensors')} tensors)"
              for u in view.get("unused_roots") or []]
    if unused:
        meta.append("built but not used by this step: " + ", ".join(unused))
    out.append(f'<div class="meta">{escape("; ".join(meta))}</div>')
    out.append(f'<p class="summary">{escape(view.get("summary") or "")}</p>')
    if view.get("stopped"):
        out.append(f'<p class="muted">The run stopped at {escape(view["stopped"].splitlines()[0][:300])}</p>')
    if not rows:
        out.append('<p class="muted">No parameter tensors: the step did not build a model.</p></section>')
        return "\n".join(out)
    out.append('<ul class="legend">' + "".join(
        f"<li>{_flag_chip(k, colours)}{escape(t)} ({item_count})</li>"
        for k, t, item_count in ((x["flag"], x["text"], x["count"]) for x in view.get("legend") or []))
        + '<li><span class="flag" style="background:var(--subject);box-shadow:inset 3px 0 0 var(--edge);'
          'color:var(--fg)">row</span>subject of a finding</li></ul>')
    out.append('<table class="flow"><thead><tr><th>tensor (module tree)</th><th>shape</th>'
               '<th>gradient norm (log)</th><th>|Δw| / |w| after the step (log)</th><th>optimizer</th>'
               '<th>flags</th></tr></thead><tbody>')
    for it in view.get("items") or []:
        pad = 6 + 14 * it["depth"]
        if it["type"] == "group":
            extra = []
            if it.get("class") and it["class"] != it["label"] and not it["label"].endswith(f": {it['class']}"):
                extra.append(it["class"])
            if it.get("line"):
                extra.append(f"line {it['line']}")
            out.append(f'<tr class="group" data-path="{escape(it["path"])}"><td colspan="6" style="padding-left:{pad}px">'
                       f'{escape(it["label"])} <span class="muted">{escape(" · ".join(extra))}</span></td></tr>')
            continue
        r = rows[it["index"]]
        cls = "tensor" + (" subject" if r.get("findings") else "")
        leaf = r["name"].rsplit(".", 1)[-1] if r.get("owner") else r["name"]
        where = f"line {r['line']}" if r.get("line") else ""
        flags = "".join(_flag_chip(k, colours) for k in r.get("flags") or [])
        subj = ""
        if r.get("findings"):
            subj = " " + " ".join(f'<span class="code">{escape(f.split(":")[0])}</span>' for f in r["findings"])
        out.append(
            f'<tr class="{cls}" data-qualname="{escape(r["qualname"])}" data-flags="{escape(" ".join(r.get("flags") or []))}">'
            f'<td style="padding-left:{pad}px" title="{escape(r["qualname"] + (" · " + where if where else ""))}">'
            f"{escape(leaf)}</td><td>{escape(_shape(r.get('shape')))}</td>"
            f'<td>{_bar(r.get("grad_frac"), _kind(r.get("grad_text"), "grad"))}{escape(r.get("grad_text", ""))}</td>'
            f'<td>{_bar(r.get("update_frac"), _kind(r.get("update_text"), "update"))}'
            f'{escape(r.get("update_text", ""))}</td>'
            f'<td>{escape(", ".join(r.get("optimizers") or []) or "none")}</td><td>{flags}{subj}</td></tr>')
    out.append("</tbody></table>")
    fs = view.get("findings") or []
    if fs:
        out.append('<ul class="findings">' + "".join(
            f'<li><span class="code">{escape(f["code"])}</span> line {f.get("line")}: {escape(f.get("message") or "")}'
            + (f' <span class="muted">(live: {escape(str(f["verdict"]))})</span>' if f.get("verdict") else "")
            + "</li>" for f in fs) + "</ul>")
    if view.get("truncated"):
        out.append('<p class="muted">The table was cut at its first 400 tensors.</p>')
    out.append("</section>")
    return "\n".join(out)


def render_html(views: list[dict], title: str = "Gradient flow") -> str:
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    total = sum(v.get("total", 0) for v in views)
    updated = sum(v.get("updated", 0) for v in views)
    body = [f"<h1>{escape(title)}</h1>",
            f'<div class="meta">gradpath confirm, {stamp}: {len(views)} file(s), {updated} of {total} tensors '
            f"updated</div>"]
    if len(views) > 1:
        body.append("<ul>" + "".join(f'<li><a href="#file-{i}">{escape(v.get("title") or "")}</a>: '
                                     f'{escape(v.get("summary") or "")}</li>' for i, v in enumerate(views)) + "</ul>")
    for i, v in enumerate(views):
        body.append(file_section(v, f"file-{i}"))
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{escape(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
            + "\n".join(body) + "\n</body>\n</html>\n")
