"""Code lenses: "Run one CPU step" over each optimizer construction, and over the first finding of a
project module that has no optimizer (`models/net.py`: "Run one CPU step via train.py", the script
the live step runs for it, see gradpath.live.reach). Only where execution is allowed: the workspace
is trusted and Gradpath is enabled."""
from __future__ import annotations

from lsprotocol import types

from gradpath.lsp.actions import CONFIRM_COMMAND
from gradpath.lsp.convert import lsp_range


def optimizer_lenses(ctx, snap, uri: str, encoding: str) -> list[types.CodeLens]:
    out: list[types.CodeLens] = []
    seen: set[int] = set()
    for opt in ctx.facts.optimizers:
        span = ctx.src.span_of(opt.call)
        m = snap.map_span(span)
        if m is None or m[0] != uri or span.line in seen:
            continue
        seen.add(span.line)
        rng = lsp_range(m[1], lambda l0: snap.doc_line_text(uri, l0), encoding)
        rng = types.Range(start=rng.start, end=rng.start if rng.end.line != rng.start.line else rng.end)
        out.append(types.CodeLens(range=rng, command=types.Command(
            title=f"Run one CPU step ({opt.short})", command=CONFIRM_COMMAND, arguments=[snap.key])))
    return out


def module_lenses(st, uri: str, encoding: str, project, have: list) -> list[types.CodeLens]:
    """Blocking (reads the candidate scripts): call it off the event loop."""
    snap = st.snapshot
    findings = [f for f in st.findings if not f.code.startswith("GP0")]
    if have or not findings:
        return []
    from gradpath.live import project_confirm, reach
    if not project_confirm.runs_via_scripts(snap.path, snap.text, project):
        return []
    f = min(findings, key=lambda x: x.sort_key())
    picks = reach.scripts_for(reach.graph_of(project), snap.path, f)
    if picks:
        import os
        title = f"Run one CPU step via {os.path.relpath(picks[0].path, os.path.dirname(snap.path))}"
    else:
        title = "Run one CPU step: no script in the project reaches this module"
    m = snap.map_span(f.span)
    if m is None or m[0] != uri:
        return []
    rng = lsp_range(m[1], lambda l0: snap.doc_line_text(uri, l0), encoding)
    rng = types.Range(start=rng.start, end=rng.start if rng.end.line != rng.start.line else rng.end)
    return [types.CodeLens(range=rng, command=types.Command(title=title, command=CONFIRM_COMMAND,
                                                            arguments=[snap.key]))]
