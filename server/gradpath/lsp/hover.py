"""Hover: a finding's rule explanation (and live verdict), a model's parameters, an optimizer's
coverage. Reads the stored analysis and its facts; degrades to less text when a fact is unknown."""
from __future__ import annotations

import logging
import re
from typing import Any

from lsprotocol import types

from gradpath.analysis import catalog
from gradpath.lsp.convert import evidence_text, from_units, lsp_range, verdict_dict

log = logging.getLogger("gradpath.lsp")

_CHAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\s*\.\s*[A-Za-z_][A-Za-z0-9_]*)*")


def rule_markdown(code: str, message: str | None = None, verdict: Any = None) -> str:
    """The rule card of a finding. The editor shows the diagnostic's own message right above a
    hover (VS Code does), so the hover passes no `message` and does not repeat it."""
    from gradpath.live.verdict_words import VERDICT_MEANING, headline  # pure Python: no torch
    rule = catalog.RULES.get(code)
    parts = []
    if rule is None:
        return f"**{code}** {message or ''}"
    parts.append(f"**{rule.code} {rule.slug}** ({rule.severity})")
    if message:
        parts.append(message)
    parts.append(f"**What it catches:** {rule.catches}")
    parts.append(f"**What PyTorch does:** {rule.behaviour}")
    parts.append(f"**Fix:** {rule.fix}")
    v = verdict_dict(verdict)
    if v is not None:
        mode = f" ({v['mode']})" if v.get("mode") and v.get("mode") != "none" else ""
        ev = evidence_text(v, 1500)
        meaning = VERDICT_MEANING.get(v.get("verdict"))
        parts.append(f"**Live CPU step:** {headline(v)}{mode}" + (f" — _{meaning}_" if meaning else "")
                     + (f"\n\n```\n{ev}\n```" if ev else ""))
    parts.append(f"[{rule.code} documentation]({rule.docs_url})")
    return "\n\n".join(parts)


def _key_at(line_text: str, col: int) -> tuple[str, int, int] | None:
    """The dotted name under the cursor, cut after the identifier the cursor is on:
    hovering `model` in `self.model.parameters()` gives ("self.model", start, end)."""
    for m in _CHAIN.finditer(line_text):
        if m.start() <= col <= m.end():
            chain = m.group(0)
            off = m.start()
            parts = []
            for seg in re.finditer(r"[A-Za-z_][A-Za-z0-9_]*", chain):
                parts.append(seg.group(0))
                if off + seg.start() <= col <= off + seg.end():
                    return ".".join(parts), off + seg.start(), off + seg.end()
            return None
    return None


def _shape(s: Any) -> str:
    if s is None:
        return "?"
    if isinstance(s, (list, tuple)):
        return "(" + ", ".join(str(x) for x in s) + ("," if len(s) == 1 else "") + ")"
    return str(s)


def _count(shape: Any) -> int | None:
    if not isinstance(shape, (list, tuple)):
        return None
    n = 1
    for x in shape:
        if not isinstance(x, int):
            return None
        n *= x
    return n


def _normalise_inventory(inv: Any) -> list[tuple[str, Any]] | None:
    """Accepts {name: shape}, [(name, shape)], [{name, shape}], or objects with .name/.shape."""
    if inv is None:
        return None
    items = []
    if isinstance(inv, dict):
        if "params" in inv and isinstance(inv["params"], (list, dict)):
            return _normalise_inventory(inv["params"])
        items = list(inv.items())
    else:
        try:
            seq = list(inv)
        except TypeError:
            seq = list(getattr(inv, "params", []) or [])
        for x in seq:
            if isinstance(x, (list, tuple)) and len(x) >= 1:
                items.append((str(x[0]), x[1] if len(x) > 1 else None))
            elif isinstance(x, dict) and "name" in x:
                items.append((x["name"], x.get("shape")))
            elif isinstance(x, str):
                items.append((x, None))
            elif hasattr(x, "name"):
                items.append((x.name, getattr(x, "shape", None)))
    return items


def model_inventory(ctx, binding) -> list[tuple[str, Any]] | None:
    """Parameter names and shapes of a model binding, from whatever inventory the facts offer."""
    facts = ctx.facts
    for name in ("parameters_of", "param_inventory", "inventory_of", "model_params", "params_of"):
        fn = getattr(facts, name, None)
        if callable(fn):
            try:
                inv = fn(binding)
            except TypeError:
                try:
                    inv = fn(binding.key, binding.scope)
                except Exception:
                    continue
            except Exception:
                log.debug("facts.%s failed", name, exc_info=True)
                continue
            out = _normalise_inventory(inv)
            if out is not None:
                if not getattr(inv, "complete", True) or getattr(inv, "maybe_more", False):
                    out.append(("…", None))  # marker: there may be more
                return out
    for attr in ("params", "inventory", "parameters"):
        inv = getattr(binding, attr, None)
        if inv is not None and not callable(inv):
            out = _normalise_inventory(inv)
            if out is not None:
                return out
    return None


def model_markdown(ctx, binding) -> str:
    cls = binding.cls
    short = cls.rsplit(".", 1)[-1]
    head = f"**{binding.key}**: `{short}`" + (f" (`{cls}`)" if cls != short else "")
    inv = None
    try:
        inv = model_inventory(ctx, binding)
    except Exception:
        log.debug("inventory failed", exc_info=True)
    more = bool(inv) and inv[-1][0] == "…"
    if more:
        inv = inv[:-1]
    if inv is None or (not inv and more):
        return head + "\n\nParameters: not known statically."
    if not inv:
        return head + "\n\nNo parameters."
    counts = [_count(s) for _, s in inv]
    total = sum(c for c in counts if c is not None) if all(c is not None for c in counts) else None
    lines = [head, "", ("at least " if more else "") + f"{len(inv)} parameter tensor{'s' if len(inv) != 1 else ''}"
             + (f", {total:,} scalars" if total is not None else "") + ":", ""]
    for (name, shape) in inv[:40]:
        lines.append(f"- `{name}` {_shape(shape)}")
    if len(inv) > 40:
        lines.append(f"- … and {len(inv) - 40} more")
    return "\n".join(lines)


def coverage_lines(ctx, opt) -> list[str]:
    """`Adam: 1 of 2 parameter tensors of model, 10 of 11 scalars; never updated: linear.bias`, one
    line per model the optimizer takes parameters from, when the facts can tell."""
    facts = ctx.facts
    cov_fn, inv_fn = getattr(facts, "coverage", None), getattr(facts, "inventory_of", None)
    if not callable(cov_fn) or not callable(inv_fn):
        return []
    cov = cov_fn(opt)
    out = []
    models = cov.models() if callable(getattr(cov, "models", None)) else {}
    for key, model in models.items():
        inv = inv_fn(model)
        if inv is None or not getattr(inv, "params", None):
            continue
        given = cov.names_of(model)
        params = list(inv.params)
        have = [p for p in params if p.name in given]
        missing = [p.name for p in params if p.name not in given]
        counts = [_count(p.shape) for p in params]
        text = f"{opt.short}: {len(have)} of {len(params)} parameter tensor{'s' if len(params) != 1 else ''} of {key}"
        if all(c is not None for c in counts):
            total = sum(counts)
            got = sum(_count(p.shape) for p in have)
            text += f", {got:,} of {total:,} scalars"
        if not getattr(inv, "complete", True):
            text += " (the model may have more parameters than Gradpath can see)"
        if missing:
            shown = ", ".join(missing[:12]) + (f" and {len(missing) - 12} more" if len(missing) > 12 else "")
            text += f"; never updated: {shown}"
        out.append(text)
    if getattr(cov, "unknown", False) and out:
        out.append("(part of its parameter list could not be read statically)")
    return out


def optimizer_markdown(ctx, opt, findings) -> str:
    head = f"**{opt.key or opt.short}**: `{opt.cls}`"
    lines = [head]
    try:
        lines += coverage_lines(ctx, opt)
    except Exception:
        log.debug("coverage failed", exc_info=True)
    related = [f for f in findings if f.code.startswith("GP1")
               and (f.span.line == opt.line or (opt.key is not None and f.data.get("optimizer") == opt.key))]
    for f in related:
        lines.append(f"{f.code}: {f.message}")
        missing = f.data.get("missing")
        if missing and not any("never updated" in l for l in lines[1:]):
            lines.append("never updated: " + ", ".join(f"`{m}`" for m in missing[:20]))
    if len(lines) == 1:
        try:
            params = ctx.src.text_of(opt.params) if opt.params is not None else "(no parameters given)"
        except Exception:
            params = "?"
        lines.append(f"parameters: `{params}`")
    return "\n\n".join(lines)


def hover(st, ctx, snap, uri: str, position: types.Position, encoding: str) -> types.Hover | None:
    line_text = snap.doc_line_text(uri, position.line)
    aline = snap.to_analysed(uri, position.line)
    if aline is None:
        return None
    col = from_units(line_text, position.character, encoding)

    def doc_text(l0):
        return snap.doc_line_text(uri, l0)

    # 1. findings under the cursor
    hits = [f for f in st.findings if f.span.contains(aline, col)]
    if hits:
        md = "\n\n---\n\n".join(rule_markdown(f.code, None, st.verdicts.get(f.id)) for f in hits[:3])
        if any(f.id in st.verdicts for f in hits[:3]):
            from gradpath.lsp.flow import hover_link
            link = hover_link(st)
            md += f"\n\n{link}" if link else ""
        m = snap.map_span(hits[0].span)
        rng = lsp_range(m[1], doc_text, encoding) if m and m[0] == uri else None
        return types.Hover(contents=types.MarkupContent(kind=types.MarkupKind.Markdown, value=md), range=rng)
    if ctx is None:
        return None
    # 2. a model or optimizer name (not in a comment or a string)
    if _in_comment_or_string(line_text, col):
        return None
    k = _key_at(line_text, col)
    if k is None:
        return None
    key, c0, c1 = k
    facts = ctx.facts
    rng = types.Range(start=types.Position(line=position.line, character=_units(line_text, c0, encoding)),
                      end=types.Position(line=position.line, character=_units(line_text, c1, encoding)))
    opt = _pick([o for o in facts.optimizers if o.key == key], aline)
    if opt is not None:
        md = optimizer_markdown(ctx, opt, st.findings)
        return types.Hover(contents=types.MarkupContent(kind=types.MarkupKind.Markdown, value=md), range=rng)
    b = _pick([b for b in facts.models if b.key == key], aline)
    if b is not None:
        md = model_markdown(ctx, b)
        return types.Hover(contents=types.MarkupContent(kind=types.MarkupKind.Markdown, value=md), range=rng)
    return None


def _in_comment_or_string(line_text: str, col: int) -> bool:
    import io
    import tokenize
    try:
        for tok in tokenize.generate_tokens(io.StringIO(line_text.lstrip() + "\n").readline):
            off = len(line_text) - len(line_text.lstrip())
            if tok.type in (tokenize.COMMENT, tokenize.STRING) and tok.start[0] == 1 \
                    and tok.start[1] + off <= col < (tok.end[1] + off if tok.end[0] == 1 else 10 ** 9):
                return True
    except (tokenize.TokenError, IndentationError, SyntaxError):
        pos = line_text.find("#")
        return 0 <= pos <= col
    return False


def _scope_span(scope) -> tuple[int, int]:
    node = scope.node
    return getattr(node, "lineno", 1), getattr(node, "end_lineno", None) or 10 ** 9


def _pick(bindings: list, line: int):
    """The binding a name at `line` most likely refers to: one in the innermost scope around the
    line (a Trainer's `self.` attributes: any method of the same class), the latest before it."""
    if not bindings:
        return None
    around = [b for b in bindings if _scope_span(b.scope)[0] <= line <= _scope_span(b.scope)[1]]
    if not around:
        classes = {b.scope.class_name for b in bindings if b.scope.class_name}
        around = [b for b in bindings if b.scope.class_name in classes] if classes else []
    if around:
        inner = max(_scope_span(b.scope)[0] for b in around)
        cands = [b for b in around if _scope_span(b.scope)[0] == inner] or around
    else:
        cands = bindings
    before = [b for b in cands if b.line <= line]
    return max(before, key=lambda b: b.line) if before else min(cands, key=lambda b: b.line)


def _units(line_text: str, col: int, encoding: str) -> int:
    from gradpath.lsp.convert import to_units
    return to_units(line_text, col, encoding)
