"""Code lenses: "Run one CPU step" over each optimizer construction (only where execution is
allowed: the workspace is trusted and Gradpath is enabled)."""
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
