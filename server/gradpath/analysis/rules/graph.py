"""GP2: losses cut off from the graph (backward on a detached value, forward under no_grad, the
requires_grad "fix" that hides it, one model detached on the way to the loss)."""
from __future__ import annotations

import ast

from gradpath.analysis.dataflow import G, N, U, Val, flow
from gradpath.analysis.facts import key_of
from gradpath.analysis.findings import Edit, Fix, Related, Span
from gradpath.analysis.rules import rule

RAISES = ("backward() raises RuntimeError: element 0 of tensors does not require grad and does not "
          "have a grad_fn")
_NO_ATTR = {"number": "float", "numpy": "numpy.ndarray", "list": "list"}


def _text(ctx, node) -> str:
    t = ctx.src.text_of(node)
    return t if len(t) <= 60 else t[:57] + "..."


def _line(node) -> int:
    return getattr(node, "lineno", 0)


def _probe(ctx, node) -> dict:
    return {"what": "backward-value", "span": ctx.span(node).to_dict(), "expr": ctx.src.text_of(node)}


def _first_model(v: Val) -> str | None:
    for c in v.cuts:
        if c.models:
            return sorted(c.models)[0]
    for n in v.nograd:
        if n.model:
            return n.model
    return None


def _related_for(ctx, v: Val) -> list[Related]:
    rel = []
    for c in v.cuts[:2]:
        rel.append(Related(ctx.span(c.node), f"the graph is cut here: `{_text(ctx, c.node)}` has no grad_fn"))
    if v.const is not None:
        rel.append(Related(ctx.span(v.const), f"`{_text(ctx, v.const)}` creates a tensor with no path to "
                                                "any parameter"))
    for mc in v.model_calls[:1]:
        rel.append(Related(ctx.span(mc), f"`{_text(ctx, mc)}`: the model output whose graph is lost"))
    return rel


def _why(ctx, v: Val, value_node) -> str:
    """`loss_detached is loss.detach()` / `loss is computed from out.detach() (line 12)`."""
    vt = _text(ctx, value_node)
    if v.cuts:
        c = v.primary_cut()
        ct = _text(ctx, c.node)
        if c.node is value_node or ct == vt:
            return f"`{vt}` has no grad_fn"
        if v.src is c.node:
            return f"`{vt}` is `{ct}`"
        return f"`{vt}` is computed from `{ct}` (line {_line(c.node)})"
    if v.const is not None:
        ct = _text(ctx, v.const)
        if v.src is v.const:
            return f"`{vt}` is `{ct}`, a new tensor with no path to any parameter"
        return f"`{vt}` is computed from `{ct}` (line {_line(v.const)}), a new tensor with no path to any parameter"
    return f"`{vt}` has no grad_fn"


def _tail(v: Val) -> str:
    if v.kind in _NO_ATTR:
        return f"backward() fails: it is a Python {_NO_ATTR[v.kind]}, not a tensor (AttributeError: " \
               f"'{_NO_ATTR[v.kind]}' object has no attribute 'backward')"
    return RAISES


def _cut_fix(ctx, v: Val) -> list[Fix]:
    """Remove bare `.detach()` / `.data` cuts when they are the only cuts on the path (safe)."""
    if not v.cuts or v.nograd or v.const is not None:
        return []
    if not all(c.bare and c.receiver is not None for c in v.cuts):
        return []
    edits = tuple(Edit(ctx.span(c.node), ctx.src.text_of(c.receiver)) for c in v.cuts)
    what = ", ".join(f"`{_text(ctx, c.node)}`" for c in v.cuts)
    return [Fix(f"Remove the cut: {what} -> " + ", ".join(f"`{_text(ctx, c.receiver)}`" for c in v.cuts),
                True, edits, preferred=True)]


def _nograd_fix(ctx, r) -> list[Fix]:
    if r.with_stmt is not None:
        st = r.with_stmt
        if len(st.items) != 1 or not st.body:
            return []
        src = ctx.src
        first = st.body[0].lineno
        body_indent = src.indent_of(first)
        with_indent = src.indent_of(st.lineno)
        if not body_indent.startswith(with_indent) or len(body_indent) <= len(with_indent):
            return []
        cut = len(body_indent) - len(with_indent)
        lines = []
        for ln in range(first, st.end_lineno + 1):
            t = src.line_text(ln)
            lines.append(t[cut:] if t[:cut].strip() == "" else t.lstrip())
        new = src.newline.join(lines)
        span = Span(st.lineno, 0, st.end_lineno, len(src.line_text(st.end_lineno)))
        return [Fix(f"Run the forward pass outside `{r.ctx_text}` (remove the block)", False,
                    (Edit(span, new),))]
    if r.decorator_of is not None:
        d = r.ctx_node
        return [Fix(f"Remove `{r.ctx_text}` from `{r.decorator_of.name}`", False,
                    (Edit(Span(d.lineno, 0, d.end_lineno + 1, 0), ""),))]
    return []


def _report_no_graph(ctx, e, v: Val, value_node, alt=None):
    """GP201/GP202/GP203 for one definition `v` without a graph that reaches `e`'s backward."""
    may = alt is not None
    sev = "warning" if may else None
    bw = e.node
    where = ""
    if may:
        where = f"if {_via(ctx, alt)}, "
    data_base = {"probe": _probe(ctx, value_node), "backward_line": _line(bw)}
    model = _first_model(v)
    if model:
        data_base["model"] = model
    if v.patched is not None:
        if not (v.cuts or v.nograd or v.const is not None):
            return
        p = v.patched
        cause = v.primary_cut().node if v.cuts else (v.nograd[0].node if v.nograd else v.const)
        target = ('`' + model + '`') if model else 'any model parameter'
        # "learns nothing" only where there is something to learn: a model or an optimizer in the file
        learns = "; training runs and learns nothing" if model or ctx.facts.models or ctx.facts.optimizers else ""
        if cause is p and v.cuts and v.cuts[0].receiver is not None:
            msg = (f"{where}`{_text(ctx, p)}` copies `{_text(ctx, v.cuts[0].receiver)}` into a new leaf tensor "
                   f"with no graph: `{_text(ctx, bw)}` runs but no gradient reaches {target}{learns}")
        else:
            msg = (f"{where}`{_text(ctx, p)}` hides the cut at `{_text(ctx, cause)}` (line {_line(cause)}): "
                   f"`{_text(ctx, bw)}` runs but no gradient reaches {target}{learns}")
        rel = [Related(ctx.span(cause), f"the graph is cut here: `{_text(ctx, cause)}`"),
               Related(ctx.span(bw), "the backward that sees only the patched tensor")]
        yield ctx.finding("GP203", p, msg, severity=sev, related=rel, fixes=_patch_fix(ctx, v),
                          data=dict(data_base, probe={"what": "backward-value", "span": ctx.span(value_node).to_dict(),
                                                      "expr": ctx.src.text_of(value_node)}))
        return
    if v.cuts or (v.const is not None and not v.nograd):
        msg = f"{where}{_why(ctx, v, value_node)}: {_tail(v)}"
        if e.info.get("how") == "returned":  # a LightningModule's training_step, a Trainer's compute_loss
            who = {"lightning": "Lightning", "transformers": "the Trainer"}.get(e.info.get("framework"), "the framework")
            msg += f" when {who} backwards the loss `{getattr(e.scope, 'name', '')}` returns"
        if may:
            msg = msg.replace("backward() raises", "backward() would raise")
        yield ctx.finding("GP201", bw, msg, severity=sev, related=_related_for(ctx, v) + (
            [Related(ctx.span(alt.via), "the definition without a graph comes from here")] if may else []),
            fixes=_cut_fix(ctx, v), data=data_base)
    for r in v.nograd:
        fwd = r.node
        scope_txt = f"`{r.ctx_text}` (line {_line(r.ctx_node)})"
        if r.decorator_of is not None:
            scope_txt = f"`{r.ctx_text}` (`{r.decorator_of.name}` is decorated with it)"
        msg = (f"{where}`{_text(ctx, fwd)}` runs under {scope_txt} and its result reaches "
               f"`{_text(ctx, bw)}` (line {_line(bw)}): " + RAISES.replace("raises", "would raise" if may else "raises"))
        rel = [Related(ctx.span(r.ctx_node), f"gradients are disabled here: `{r.ctx_text}`"),
               Related(ctx.span(bw), f"`{_text(ctx, value_node)}` is backwarded here")]
        data = dict(data_base)
        if r.model:
            data["model"] = r.model
        yield ctx.finding("GP202", fwd, msg, severity=sev, related=rel, fixes=_nograd_fix(ctx, r), data=data)


def _via(ctx, alt) -> str:
    if alt.how == "except":
        return f"the `except` branch at line {_line(alt.via)} runs"
    if alt.how == "loop":
        return f"the loop at line {_line(alt.via)} runs zero times"
    return f"the other branch of line {_line(alt.via)} is taken"


def _patch_fix(ctx, v: Val) -> list[Fix]:
    p = v.patched
    src = ctx.src
    edits = []
    if isinstance(p, ast.Call) and v.patch_kind == "requires_grad=True":
        c = v.primary_cut()
        if c is not None and c.had_graph and c.receiver is not None and (c.node is p or p.args and p.args[0] is c.node):
            return [Fix(f"Use `{_text(ctx, c.receiver)}` itself (keeps its graph)", False,
                        (Edit(ctx.span(p), src.text_of(c.receiver)),))]
        return []
    stmt = ctx.facts.enclosing_stmt(p)
    if isinstance(p, ast.Call) and not (isinstance(stmt, ast.Expr) and stmt.value is p):
        # `x.detach().requires_grad_()` inside an expression: drop both the patch and the cut
        c = v.primary_cut()
        if isinstance(p.func, ast.Attribute) and c is not None and p.func.value is c.node and c.bare \
                and c.receiver is not None and len(v.cuts) == 1:
            return [Fix(f"Use `{_text(ctx, c.receiver)}` itself (keeps its graph)", False,
                        (Edit(ctx.span(p), src.text_of(c.receiver)),))]
        return []
    if stmt is None or stmt.lineno != stmt.end_lineno:
        return []
    sp = ctx.span(stmt)
    line = src.line_text(stmt.lineno)
    rest = line[sp.end_col:].strip()
    if line[:sp.col].strip() or (rest and not rest.startswith("#")):
        return []
    edits.append(Edit(Span(stmt.lineno, 0, stmt.lineno + 1, 0), ""))
    if v.cuts:
        if not all(c.bare and c.receiver is not None for c in v.cuts):
            return []
        edits += [Edit(ctx.span(c.node), src.text_of(c.receiver)) for c in v.cuts]
    elif v.nograd or v.const is not None:
        return []
    return [Fix("Remove the requires_grad patch and the cut behind it", False, tuple(edits))]


@rule("GP201", "GP202", "GP203")
def backward_without_graph(ctx):
    fl = flow(ctx)
    for e in fl.events_of("backward"):
        v = e.vals["value"]
        value_node = e.nodes.get("value") or e.node
        got = []
        if v.grad == N:
            got = list(_report_no_graph(ctx, e, v, value_node))
        elif v.alts:
            for alt in v.alts:
                got += list(_report_no_graph(ctx, e, alt.val, value_node, alt=alt))
        if not any(f.code == "GP201" for f in got):
            got += _direct_cut(ctx, e, value_node)
        yield from got


def _direct_cut(ctx, e, value_node) -> list:
    """`<anything>.detach().backward()` / `<anything>.data.backward()` raise whatever the value was
    (a detached tensor never requires grad), even where the dataflow cannot tell what the value
    is (a list filled elsewhere, an attribute)."""
    n = value_node
    if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "detach" \
            and not n.args and not n.keywords:
        recv = n.func.value
    elif isinstance(n, ast.Attribute) and n.attr == "data":
        recv = n.value
    else:
        return []
    bw = e.node
    msg = (f"`{_text(ctx, n)}` has no graph (a detached tensor never requires grad): `{_text(ctx, bw)}` raises "
           f"RuntimeError: element 0 of tensors does not require grad and does not have a grad_fn")
    fix = Fix(f"Remove the cut: `{_text(ctx, n)}` -> `{_text(ctx, recv)}`", True,
              (Edit(ctx.span(n), ctx.src.text_of(recv)),), preferred=True)
    return [ctx.finding("GP201", bw, msg, fixes=[fix],
                        related=[Related(ctx.span(n), f"the graph is cut here: `{_text(ctx, n)}`")],
                        data={"probe": _probe(ctx, n), "backward_line": _line(bw)})]


# -- GP204 ---------------------------------------------------------------------------------------
def _param_keys(ctx, expr, scope, depth=0) -> set[str]:
    """Model keys whose `.parameters()` an optimizer's params expression holds (one hop through a
    name: `params = list(a.parameters()) + ...; Adam(params)`)."""
    keys: set[str] = set()
    if expr is None or depth > 2:
        return keys
    receivers = set()
    for n in ast.walk(expr):
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr in (
                "parameters", "named_parameters"):
            k = key_of(n.func.value)
            if k:
                keys.add(k)
                receivers.update(id(x) for x in ast.walk(n.func.value))
    names = {n.id for n in ast.walk(expr) if isinstance(n, ast.Name) and id(n) not in receivers}
    if names and depth < 2:
        for s in ctx.facts.visible_scopes(scope):
            for st in s.walk():
                if isinstance(st, ast.Assign) and any(isinstance(t, ast.Name) and t.id in names for t in st.targets):
                    keys |= _param_keys(ctx, st.value, scope, depth + 1)
    return keys


def _holds(keys: set[str], model: str) -> bool:
    return any(model == k or model.startswith(k + ".") for k in keys)


def _pos(node):
    return (getattr(node, "lineno", 0), getattr(node, "col_offset", 0))


def _next_step(ctx, e):
    """The first `opt.step()` after this backward in the same scope (by position)."""
    best = None
    here = _pos(e.node)
    for c in ctx.facts.calls_named("step", e.scope):
        if _pos(c.call) <= here:
            continue
        opt = ctx.facts.optimizer_at(c.receiver, e.scope)
        if opt is None:
            continue
        if best is None or _pos(c.call) < _pos(best[0].call):
            best = (c, opt)
    return best


@rule("GP204")
def partial_detach(ctx):
    fl = flow(ctx)
    for e in fl.events_of("backward"):
        v = e.vals["value"]
        if v.grad != G or not any(c.kind in (".detach()", ".data", ".detach_()") and c.had_graph
                                  and c.models - v.origins for c in v.cuts):
            continue
        step = _next_step(ctx, e)
        if step is None:
            continue
        call, opt = step
        keys = ctx.memo(f"gp204-params:{id(opt)}", lambda: _param_keys(ctx, opt.params, opt.scope))
        for c in v.cuts:
            if c.kind not in (".detach()", ".data", ".detach_()") or not c.had_graph or c.conditional:
                continue
            cut_models = [m for m in sorted(c.models) if m not in v.origins
                          and not any(o == m or o.startswith(m + ".") for o in v.origins)]
            held = [m for m in cut_models if _holds(keys, m)]
            if not held:
                continue
            m = held[0]
            value_node = e.nodes.get("value") or e.node
            optname = opt.key or opt.short
            msg = (f"`{_text(ctx, c.node)}` cuts `{m}`'s output out of `{_text(ctx, value_node)}`: `{m}`'s "
                   f"parameters are in `{optname}` ({opt.short}) but get no gradient from "
                   f"`{_text(ctx, e.node)}` (line {_line(e.node)})")
            rel = [Related(ctx.span(e.node), "the backward that skips them"),
                   Related(ctx.span(opt.call), f"`{optname}` holds `{m}`'s parameters"),
                   Related(ctx.span(call.call), f"`{optname}.step()` updates them with no gradient from this loss")]
            fixes = []
            if c.bare and c.receiver is not None:
                fixes.append(Fix(f"Remove `.detach()`: `{_text(ctx, c.receiver)}`", False,
                                 (Edit(ctx.span(c.node), ctx.src.text_of(c.receiver)),)))
            yield ctx.finding("GP204", c.node, msg, related=rel, fixes=fixes,
                              data={"model": m, "optimizer": opt.key, "optimizer_class": opt.cls,
                                    "probe": _probe(ctx, value_node)})
