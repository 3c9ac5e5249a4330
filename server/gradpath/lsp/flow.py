"""The gradient-flow picture over LSP: the table reaches the client once, on request.

Request `gradpath/gradientFlow` (client -> server), params {"uri": <document or notebook uri>}:
answers {"uri", "available": false, "reason"} when the document has no live step for its current
text, else {"uri", "available": true, "view": <gradpath.live.report.view.flow_view(...)>} with, added
here, `location` {"uri", "line"} (0-based, in the document that holds it: a notebook cell's own uri)
on every row and group whose layer was built in the file, and an LSP `range` on every finding.

The diagnostics never carry the table; the gradpath.confirm command's result carries only
`gradientFlow`: {"available", "summary", "tensors", "updated"} (brief()). After a live step the
server asks the client to refresh its code lenses, so the "Gradient flow" lens appears beside
"Run one CPU step" (the client's command gradpath.showGradientFlow opens the view).
"""
from __future__ import annotations

import logging
import os
from typing import Any

from lsprotocol import types

from gradpath.analysis.findings import Span
from gradpath.lsp.convert import lsp_range, range_dict

log = logging.getLogger("gradpath.lsp")

FLOW_REQUEST = "gradpath/gradientFlow"
SHOW_COMMAND = "gradpath.showGradientFlow"


def _param(params: Any, name: str) -> Any:
    if isinstance(params, dict):
        return params.get(name)
    return getattr(params, name, None)


def brief(run: dict | None, findings=()) -> dict:
    """What the command result says about the picture (the rows stay on the server)."""
    table = (run or {}).get("flow")
    if not isinstance(table, dict) or not table.get("rows"):
        return {"available": False}
    from gradpath.live.report.view import finding_dict, flow_view
    v = flow_view(table, [finding_dict(f) for f in findings])
    return {"available": True, "summary": v["summary"], "tensors": v["total"], "updated": v["updated"]}


def _locate(snap, line: int | None) -> dict | None:
    if not line:
        return None
    m = snap.map_span(Span(line, 0, line, 0))
    if m is None:
        return None
    return {"uri": m[0], "line": m[1].line - 1}


def build_view(st, encoding: str) -> dict | None:
    from gradpath.live.report.view import finding_dict, flow_view
    run = st.live_run or {}
    table = run.get("flow")
    snap = st.snapshot
    if not isinstance(table, dict) or not table.get("rows") or snap is None:
        return None
    findings = [f for f in st.findings if f.code != "GP000"]
    view = flow_view(table, [finding_dict(f, st.verdicts.get(f.id)) for f in findings],
                     title=os.path.basename(snap.path or snap.key), path=snap.path)
    for r in view["rows"]:
        r["location"] = _locate(snap, r.get("line"))
    for it in view["items"]:
        if it["type"] == "group":
            it["location"] = _locate(snap, it.get("line"))
    by_id = {f.id: f for f in findings}
    for fd in view["findings"]:
        f = by_id.get(fd["id"])
        m = snap.map_span(f.span) if f is not None else None
        if m is not None:
            fd["uri"] = m[0]
            fd["range"] = range_dict(lsp_range(m[1], lambda l0, u=m[0]: snap.doc_line_text(u, l0), encoding))
        fd.pop("data", None)
    return view


async def gradient_flow(ls, params: Any) -> dict:
    uri = _param(params, "uri")
    if not isinstance(uri, str) or not uri:
        return {"uri": uri, "available": False, "reason": "no document uri given"}
    key = ls.analyzer.unit_key(uri)
    st = ls.analyzer.units.get(key)
    if st is None or st.snapshot is None:
        return {"uri": uri, "available": False, "reason": "the document is not open"}
    if key in ls.live.running:
        return {"uri": key, "available": False, "reason": "a live step is running for this document"}
    if not st.live_run:
        return {"uri": key, "available": False,
                "reason": "no live CPU step for the current text: run one (the code lens over the optimizer, "
                          "or Gradpath: Confirm Findings with a Live CPU Step)"}
    view = build_view(st, ls.analyzer.encoding)
    if view is None:
        reason = "the live step saw no parameter tensors"
        err = (st.live_run or {}).get("error") or {}
        if err.get("message"):
            reason += f" (it stopped: {err.get('type') + ': ' if err.get('type') else ''}{err['message']})"
        return {"uri": key, "available": False, "reason": reason}
    return {"uri": key, "available": True, "view": view}


def with_flow_lenses(st, lenses: list[types.CodeLens] | None) -> list[types.CodeLens]:
    """A "Gradient flow" lens beside each "Run one CPU step" lens once the document has a step."""
    lenses = list(lenses or [])
    table = (st.live_run or {}).get("flow") if st is not None else None
    if not isinstance(table, dict) or not table.get("rows") or st.snapshot is None:
        return lenses
    rows = table["rows"]
    changed = sum(1 for r in rows if r.get("changed") is True)
    out = []
    for lens in lenses:
        out.append(lens)
        out.append(types.CodeLens(range=lens.range, command=types.Command(
            title=f"Gradient flow ({changed} of {len(rows)} tensors updated)", command=SHOW_COMMAND,
            arguments=[st.snapshot.key])))
    return out


def hover_link(st) -> str:
    """Markdown link to the view, for the live-step part of a finding's hover."""
    table = (st.live_run or {}).get("flow") if st is not None else None
    if not isinstance(table, dict) or not table.get("rows") or st.snapshot is None:
        return ""
    import json
    from urllib.parse import quote
    args = quote(json.dumps([st.snapshot.key]))
    return f"[Show the gradient flow of this step](command:{SHOW_COMMAND}?{args})"


def refresh_lenses(ls) -> None:
    caps = ls.client_capabilities
    ws = caps.workspace if caps else None
    cl = ws.code_lens if ws else None
    if cl is None or not cl.refresh_support:
        return
    try:
        ls.workspace_code_lens_refresh(None)
    except Exception:
        log.debug("codeLens refresh failed", exc_info=True)
