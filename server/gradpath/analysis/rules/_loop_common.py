"""Helpers shared by the GP4 rule modules (loop.py, loop_graph.py, loop_modes.py): short texts of
nodes, statements moved or inserted by fixes, the loops of a unit."""
from __future__ import annotations

import ast

from gradpath.analysis.facts import key_of
from gradpath.analysis.findings import Edit, Fix, Span
from gradpath.analysis.loops import display, key_matches, loop_header_span, nameable, same_model


# -- small helpers ------------------------------------------------------------------------------------

def _short(ctx, node, fallback: str, limit: int = 60) -> str:
    try:
        span = ctx.span(node)
    except Exception:
        return fallback
    if span.line != span.end_line:
        return fallback
    text = ctx.src.text_in(span)
    return text if 0 < len(text) <= limit else fallback


def _backward_text(ctx, ev) -> str:
    if ev.key and ":" not in ev.key and isinstance(ev.node, ast.Call) and \
            isinstance(ev.node.func, ast.Attribute) and ev.node.func.attr == "backward" and \
            key_of(ev.node.func.value) == ev.key:
        return f"{ev.key}.backward()"
    return _short(ctx, ev.node, "backward()", limit=40)


def _ev_span(ctx, ev) -> Span:
    if isinstance(ev.node, (ast.For, ast.AsyncFor, ast.While)):
        return loop_header_span(ctx.src, ev.node)
    return ctx.span(ev.node)


def _stmt(ctx, node):
    return ctx.facts.enclosing_stmt(node) if not isinstance(node, ast.stmt) else node


def _owns_lines(ctx, st) -> bool:
    """The statement alone on its lines (a trailing comment allowed)."""
    span = ctx.span(st)
    before = ctx.src.line_text(span.line)[:span.col]
    after = ctx.src.line_text(span.end_line)[span.end_col:]
    return not before.strip() and (not after.strip() or after.strip().startswith("#"))


def _stmt_text(ctx, st, indent: str) -> str:
    """The statement's lines re-indented to `indent`, without a trailing newline."""
    old = ctx.src.indent_of(st.lineno)
    lines = []
    for ln in range(st.lineno, st.end_lineno + 1):
        t = ctx.src.line_text(ln)
        lines.append(indent + t[len(old):] if t.startswith(old) else t)
    return ctx.src.newline.join(lines)


def _delete_lines(ctx, st) -> Edit | None:
    if st.end_lineno >= len(ctx.src.lines):
        return None
    return Edit(Span(st.lineno, 0, st.end_lineno + 1, 0), "")


def _insert_before(ctx, st, code: str) -> Edit | None:
    """A new line `code` just before statement `st`, at its indentation."""
    indent = ctx.src.indent_of(st.lineno)
    if ctx.src.char_col(st.lineno, st.col_offset) != len(indent):
        return None  # `x = 1; st` or a body on the header's line
    return Edit(Span(st.lineno, 0, st.lineno, 0), indent + code + ctx.src.newline)


def _insert_after(ctx, st, code: str, indent: str) -> Edit:
    end = ctx.src.line_text(st.end_lineno)
    return Edit(Span(st.end_lineno, len(end), st.end_lineno, len(end)), ctx.src.newline + indent + code)


def _top_of_body(ctx, loop, code: str) -> Edit | None:
    if isinstance(loop, (ast.FunctionDef, ast.AsyncFunctionDef)):
        from gradpath.analysis.rules.frameworks import body_insert_point  # a framework's loop body
        first = body_insert_point(loop, code)
        return _insert_before(ctx, first, code) if first is not None else None
    first = loop.body[0]
    if first.lineno == loop.lineno:
        return None
    return _insert_before(ctx, first, code)


def _same_block(ctx, a, b) -> bool:
    pa, pb = ctx.facts.parent(a), ctx.facts.parent(b)
    if pa is None or pa is not pb:
        return False
    for fld in ("body", "orelse", "finalbody"):
        lst = getattr(pa, fld, None) or []
        if any(x is a for x in lst) and any(x is b for x in lst):
            return True
    return False


def _ancestor_in_block(ctx, node, block_member):
    """The statement enclosing `node` that sits in the same block as `block_member`."""
    cur = _stmt(ctx, node)
    while cur is not None:
        if _same_block(ctx, cur, block_member):
            return cur
        cur = ctx.facts.parent(cur)
        while cur is not None and not isinstance(cur, ast.stmt):
            cur = ctx.facts.parent(cur)
    return None


def _move_after(ctx, st, anchor) -> Fix | None:
    """Edits moving `st` to just after `anchor` (same block, `anchor` later)."""
    if not _owns_lines(ctx, st) or not _same_block(ctx, st, anchor) or anchor.lineno <= st.end_lineno:
        return None
    delete = _delete_lines(ctx, st)
    if delete is None:
        return None
    indent = ctx.src.indent_of(st.lineno)
    return (delete, _insert_after(ctx, anchor, _stmt_text(ctx, st, indent).lstrip(" \t"), indent))


def _move_before(ctx, st, anchor):
    if not _owns_lines(ctx, st) or anchor.lineno >= st.lineno:
        return None
    delete = _delete_lines(ctx, st)
    indent = ctx.src.indent_of(anchor.lineno)
    if delete is None or ctx.src.char_col(anchor.lineno, anchor.col_offset) != len(indent):
        return None
    ins = Edit(Span(anchor.lineno, 0, anchor.lineno, 0), _stmt_text(ctx, st, indent) + ctx.src.newline)
    return (ins, delete)


def _opt_class(ctx, key, scope) -> str | None:
    b = ctx.facts.optimizer_at(display(key), scope) if key else None
    return b.short if b else None


def _data(**kw) -> dict:
    return {k: v for k, v in kw.items() if v is not None}


def _loop_seqs(unit):
    yield None, list(unit.events)
    for loop in unit.loops:
        yield loop, [e for _, e in unit.loop_events(loop)]


def _lossish(key: str | None) -> bool:
    k = display(key).rsplit(".", 1)[-1].lower()
    return "loss" in k or "crit" in k or k in ("bce", "mse", "ce", "nll", "l1")


def _clears(z, s, strict: bool, fwd: set | None = None) -> bool:
    """Does zero_grad event z clear the gradients optimizer step s uses? Strictly: only when that
    is known (the optimizer itself, a model it holds, or the one model called in the sequence)."""
    if z.kind != "zero_grad":
        return False
    if z.target == "any":  # a helper such as zero_grad(params): it may clear these; never sure
        return not strict
    if z.target == "optimizer":
        return z.key == s.key
    if not s.models:
        if strict:
            return bool(fwd) and len(fwd) == 1 and same_model(z.key, next(iter(fwd)))
        return True
    if strict:
        return any(same_model(z.key, m) or display(m).startswith(display(z.key) + ".") for m in s.models)
    return any(key_matches(z.key, m) for m in s.models)


def _called_models(evs) -> list[str]:
    """Models called in these events (`model(x)`), losses left out: for messages when the
    optimizer's parameters are not known (an optimizer passed in as an argument)."""
    out = []
    for e in evs:
        if e.kind == "fwd" and nameable(e.key) and not _lossish(e.key) and not e.nograd and e.key not in out:
            out.append(e.key)
    return out


def _models_text(models) -> str | None:
    names = [display(m) for m in models]
    return ", ".join(names) if names else None


def _descendant_loops(unit, outer_loop) -> list:
    """Loops nested in `outer_loop` (in any event's path, after it)."""
    out = []
    for e in unit.events:
        ls = e.loops()
        for i, l in enumerate(ls):
            if l is outer_loop:
                out += [x for x in ls[i + 1:] if not any(x is y for y in out)]
    return out
