"""GP4: training loops in the wrong order (GP401-GP408).

The order facts come from `gradpath.analysis.loops`: each scope flattened into events
(`zero_grad`, `backward`, `step`, `sched`, `train`, `eval`, ...) with the loops, branches and
calls around them. The checks here only read those events and the AST of the lines they report.
"""
from __future__ import annotations

import ast

from gradpath.analysis.facts import key_of
from gradpath.analysis.findings import Edit, Fix, Related, Span
from gradpath.analysis.forward_hooks import hook_facts, in_test_function, is_test_path
from gradpath.analysis.loop_guards import (backwarded_in_loop, in_module_forward, numpy_accumulator, rebound_in,
                                          rebuilt_in_loop, returns_plain_value, steps_model_after,
                                          share_iteration, torch_scheduler_event, training_or_eval_loop)
from gradpath.analysis.loops import (LOOP, CALL, IF, display, exclusive, key_matches, loop_facts,
                                     loop_header_span, nameable, same_model)
from gradpath.analysis.frameworks import lightning_optimizer_names
from gradpath.analysis.rules import rule


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


# -- GP401 --------------------------------------------------------------------------------------------

def _partial_conds(z, loop) -> list:
    """The `if` branches inside `loop` that zero_grad event z sits in (try handlers and match cases
    left out: those count as clearing)."""
    return [f for f in z.frames_after(loop) if f[0] == IF and isinstance(f[1], ast.If)]


def _always_clears(zs, loop) -> bool:
    """On every iteration of `loop`, does one of the zero_grad events `zs` run? (`if i == 0:
    opt.zero_grad()` alone does not; a zero_grad in both branches of an `if` does.)"""
    return _covers([_partial_conds(z, loop) for z in zs])


def _covers(conds: list[list]) -> bool:
    if any(not c for c in conds):
        return True
    by_if: dict[int, dict[int, list]] = {}
    for c in conds:
        by_if.setdefault(id(c[0][1]), {}).setdefault(c[0][2], []).append(c[1:])
    return any(len(br) == 2 and all(_covers(v) for v in br.values()) for br in by_if.values())


def _condition_text(ctx, z, loop) -> str:
    conds = _partial_conds(z, loop)
    if not conds:
        return "under a condition"
    node, branch = conds[0][1], conds[0][2]
    test = _short(ctx, node.test, "", limit=40)
    if not test:
        return "under a condition"
    return f"only when `{test}`" if branch == 0 else f"only when `{test}` is false"


@rule("GP401")
def missing_zero_grad(ctx):
    from gradpath.analysis.rules.frameworks import dead_clears, never_true_in  # accumulation guards
    lf = loop_facts(ctx)
    done = set()
    for unit in lf.training_units:
        for loop in unit.loops:
            evs = [e for _, e in unit.loop_events(loop)]
            backs = [e for e in evs if e.kind == "backward" and not e.nograd]
            if not backs:
                continue
            missing: dict[str, object] = {}
            partial: dict[str, object] = {}  # optimizer -> a zero_grad that runs on some iterations only
            never: dict[str, object] = {}  # optimizer -> a zero_grad whose guard no iteration satisfies
            for s in evs:
                if s.kind != "step" or s.target != "optimizer" or not nameable(s.key):
                    continue
                inner = next((l for l in reversed(s.loops()) if any(b.in_loop(l) for b in backs)), None)
                if inner is not loop:
                    continue
                clears = [z for z in evs if _clears(z, s, strict=False)]
                dead = dead_clears(ctx, unit, loop, clears)  # under a guard never true: no clear at all
                if dead:
                    clears = [z for z in clears if z not in dead]
                    never.setdefault(s.key, dead[0])
                if clears and (s.conditional_in(loop) or _always_clears(clears, loop)):
                    # a step under a condition is deliberate accumulation: any clear in the loop will do
                    continue
                if any(o.kind == "opaque" and ("*" in o.args or s.key in o.args) for o in evs):
                    continue
                missing.setdefault(s.key, s)
                if clears and s.key not in partial:
                    partial[s.key] = clears[0]
            if not missing:
                continue
            span = loop_header_span(ctx.src, loop)
            if span in done:
                continue
            done.add(span)
            keys = list(missing)
            steps = [missing[k] for k in keys]
            models = []
            for s in steps:
                models += [m for m in s.models if m not in models]
            outer = [z for z in unit.events if any(_clears(z, s, strict=False) for s in steps)
                     and not z.in_loop(loop)]
            # the most telling one first: in a loop around this one, then before it, then after
            outer.sort(key=lambda z: (not any(loop in _descendant_loops(unit, l) for l in z.loops()),
                                      z.node.lineno > loop.lineno))
            names = " and ".join(f"{display(k)}.zero_grad()" for k in keys)
            shown = models or _called_models(evs)[:1]
            what = f"gradients of {_models_text(shown)}" if shown else "gradients"
            part = [partial[k] for k in keys if k in partial]
            dead_z = [never[k] for k in keys if k in never]
            never_true_test = never_true_in(ctx, unit)
            if dead_z and not part:
                z = dead_z[0]
                test = next((f[1].test for f in _partial_conds(z, loop) if never_true_test(f[1].test)), None)
                cond = f"when `{_short(ctx, test, 'its condition', limit=60)}`" if test is not None else "under a condition"
                msg = (f"{names} runs only {cond} (line {z.node.lineno}), which is never true: {what} are never "
                       f"cleared and add up across iterations")
            elif part:
                z = part[0]
                cond = _condition_text(ctx, z, loop)
                msg = (f"{names} runs only on some iterations of this loop ({cond}, line {z.node.lineno}) while "
                       f"{_short(ctx, steps[0].node, 'step()')} runs on every one: on the others {what} add up "
                       f"across iterations")
            elif outer:
                z = outer[0]
                msg = (f"{names} is called only outside this loop (line {z.node.lineno}): {what} add up "
                       f"across its iterations")
            else:
                msg = f"{names} {'is' if len(keys) == 1 else 'are'} never called in this loop: {what} add up across iterations"
            related = [Related(ctx.span(s.node), f"{_short(ctx, s.node, 'step()')} applies the sum of every "
                                                  "iteration's gradients") for s in steps]
            b = next(b for b in backs if b.in_loop(loop))
            related.append(Related(ctx.span(b.node), f"{_short(ctx, b.node, 'backward()')} adds this "
                                                      "iteration's gradients to .grad"))
            if dead_z and not part:
                related.append(Related(_ev_span(ctx, dead_z[0]), "gradients would be cleared here, but its "
                                                                  "condition never holds"))
            elif part:
                related.append(Related(_ev_span(ctx, part[0]), "gradients are cleared here, on some iterations only"))
            elif outer:
                z = outer[0]
                enclosing = any(z.in_loop(l) and loop in _descendant_loops(unit, l) for l in z.loops())
                related.append(Related(_ev_span(ctx, z), "gradients are cleared here, once per outer iteration"
                                       if enclosing else "gradients are cleared here, not on every iteration"))
            fixes = []
            ins = _top_of_body(ctx, loop, "; ".join(f"{k}.zero_grad()" for k in keys))
            if ins is not None:
                fixes.append(Fix(f"Call {names} at the top of the loop", True, (ins,), preferred=True))
            yield ctx.finding("GP401", span, msg, fixes=fixes, related=related,
                              data=_data(optimizer=keys[0], optimizer_class=_opt_class(ctx, keys[0], unit.scope),
                                         model=display(shown[0]) if shown else None,
                                         loop_line=loop.lineno, needs_iterations=2))


# -- GP402 --------------------------------------------------------------------------------------------

@rule("GP402")
def zero_grad_before_step(ctx):
    lf = loop_facts(ctx)
    done = set()
    for unit in lf.training_units:
        for loop, seq in _loop_seqs(unit):
            fwd = {e.key for e in seq if e.kind == "fwd" and not _lossish(e.key)}
            for j, s in enumerate(seq):
                if s.kind != "step" or s.target != "optimizer":
                    continue
                for zi in range(j - 1, -1, -1):
                    z = seq[zi]
                    if z.kind in ("backward", "setgrad") and not exclusive(z, s):
                        break
                    if z.kind == "opaque" and ("*" in z.args or s.key in z.args or
                                               any(key_matches(a, m) for a in z.args for m in s.models)):
                        break  # a call we cannot see may write the gradients
                    if not _clears(z, s, strict=True, fwd=fwd) or exclusive(z, s):
                        continue
                    b = next((seq[bi] for bi in range(zi - 1, -1, -1) if seq[bi].kind == "backward"
                              and not seq[bi].nograd and not exclusive(seq[bi], z)), None)
                    if b is None:
                        break
                    span = _ev_span(ctx, z)
                    if span in done:
                        break
                    done.add(span)
                    yield _gp402(ctx, unit, z, b, s, span)
                    break


def _gp402(ctx, unit, z, b, s, span):
    ztext = _short(ctx, z.node, f"{display(z.key)}.zero_grad()") if not isinstance(z.node, ast.stmt) \
        else f"resetting {display(z.key)}'s .grad"
    btext = _backward_text(ctx, b)
    stext = _short(ctx, s.node, f"{display(s.key)}.step()")
    msg = (f"{ztext} clears the gradients that {btext} (line {b.node.lineno}) computed before {stext} "
           f"(line {s.node.lineno}) uses them: the step finds no gradients and nothing learns")
    fixes = []
    if z.fn is b.fn:
        zst, bst = _stmt(ctx, z.node), _stmt(ctx, b.node)
        edits = _move_before(ctx, zst, bst) if zst is not None and bst is not None else None
        if edits:
            fixes.append(Fix(f"Move {ztext} before {btext}", True, edits, preferred=True))
    loops = s.loops()
    return ctx.finding("GP402", span, msg, fixes=fixes,
                       related=[Related(ctx.span(b.node), "gradients computed here"),
                                Related(ctx.span(s.node), "the step that finds them cleared")],
                       data=_data(optimizer=display(s.key), optimizer_class=_opt_class(ctx, s.key, unit.scope),
                                  model=display(s.models[0]) if s.models else None,
                                  loop_line=loops[-1].lineno if loops else None))


# -- GP403 --------------------------------------------------------------------------------------------

@rule("GP403")
def step_before_backward(ctx):
    lf = loop_facts(ctx)
    done = set()
    for unit in lf.training_units:
        for loop in unit.loops:
            seq = [e for _, e in unit.loop_events(loop)]
            for j, s in enumerate(seq):
                if s.kind != "step" or s.target != "optimizer" or not s.loops() or s.loops()[-1] is not loop:
                    continue
                if s.conditional_in(loop):
                    continue
                if any(e.kind == "backward" and not exclusive(e, s) for e in seq[:j]):
                    continue
                # a step of an optimizer local to one call and a backward in another call made
                # after it (two runs of a loop body) are not one iteration's order
                b = next((e for e in seq[j + 1:] if e.kind == "backward" and not e.nograd
                          and not exclusive(e, s) and (nameable(s.key) or share_iteration(s, e))), None)
                if b is None:
                    continue
                bi = seq.index(b)
                if any(e.kind == "step" and e.key == s.key for e in seq[bi + 1:]):
                    continue
                span = ctx.span(s.node)
                if span in done:
                    continue
                done.add(span)
                stext = _short(ctx, s.node, f"{display(s.key)}.step()")
                btext = _backward_text(ctx, b)
                msg = (f"{stext} runs before {btext} (line {b.node.lineno}) in the same iteration: each step "
                       f"applies the previous iteration's gradients")
                fixes = []
                if s.fn is b.fn:
                    sst, bst = _stmt(ctx, s.node), _stmt(ctx, b.node)
                    edits = _move_after(ctx, sst, bst) if sst is not None and bst is not None else None
                    if edits:
                        fixes.append(Fix(f"Move {stext} after {btext}", True, edits, preferred=True))
                yield ctx.finding("GP403", span, msg, fixes=fixes,
                                  related=[Related(ctx.span(b.node), "this iteration's gradients are computed "
                                                                     "only here, after the step")],
                                  data=_data(optimizer=display(s.key),
                                             optimizer_class=_opt_class(ctx, s.key, unit.scope),
                                             model=display(s.models[0]) if s.models else None,
                                             loop_line=loop.lineno, needs_iterations=2))


# -- GP404 --------------------------------------------------------------------------------------------

def _visible_optimizers(ctx, lf, scope) -> list[str]:
    facts = ctx.facts
    keys: list[str] = []
    fn_names = set()
    if scope.kind != "module":
        fn_names = {n.id for n in ast.walk(scope.node) if isinstance(n, ast.Name)}
    for o in facts.optimizers:
        if o.key is None:
            continue
        ok = (o.scope is scope
              or (o.scope.kind == "module" and "." not in o.key and o.key in fn_names)
              or (scope.class_name and o.scope.class_name == scope.class_name and o.key.startswith("self.")))
        if ok and o.key not in keys:
            keys.append(o.key)
    if scope.kind != "module":
        a = scope.node.args
        for p in a.posonlyargs + a.args + a.kwonlyargs:
            if lf.is_optimizer(p.arg, scope) and p.arg not in keys:
                keys.append(p.arg)
        # `opt = self.optimizers()` in a LightningModule with manual optimization
        keys += [k for k in lightning_optimizer_names(scope.node) if k not in keys]
    return keys


def _stepped_elsewhere(ctx, lf, key: str, scope) -> bool:
    """Is optimizer `key` (as seen from `scope`) stepped by code outside this scope? Only for
    attributes of `self` (other methods) and module globals; a local or parameter is not shared."""
    head = key.split(".")[0]
    if scope.kind != "module" and head != "self" and head in lf._local_names(scope.node):
        return False
    for c in ctx.facts.calls:
        if c.method not in ("step", "optimizer_step"):
            continue
        keys = {c.receiver} | {k for k in (key_of(a) for a in c.call.args[:1]) if k}
        if key not in keys or c.scope is scope:
            continue
        if head == "self":
            if c.scope.class_name == scope.class_name:
                return True
        elif c.scope.kind == "module" or head not in lf._local_names(c.scope.node):
            return True
    return False


@rule("GP404")
def missing_step(ctx):
    lf = loop_facts(ctx)
    done = set()
    for unit in lf.training_units:
        if any(e.kind == "step" for e in unit.events) or \
                not any(e.kind == "backward" and e.loops() for e in unit.events):
            continue
        opts = _visible_optimizers(ctx, lf, unit.scope)
        if not opts or any(_stepped_elsewhere(ctx, lf, k, unit.scope) for k in opts):
            continue
        for loop in unit.loops:
            if unit.parent_loop(loop) is not None:
                continue
            evs = [e for _, e in unit.loop_events(loop)]
            backs = [e for e in evs if e.kind == "backward" and not e.nograd and not e.in_closure]
            if not backs:
                continue
            if any(e.kind == "opaque" and ("*" in e.args or any(a in opts for a in e.args)) for e in evs):
                continue
            b = backs[0]
            span = ctx.span(b.node)
            if span in done:
                continue
            done.add(span)
            btext = _backward_text(ctx, b)
            fixes = []
            if len(opts) == 1:
                opt = opts[0]
                models = lf.optimizer_models(opt, unit.scope)
                shown = models or _called_models(evs)[:1]
                what = f"the weights of {_models_text(shown)}" if shown else "the weights"
                msg = (f"{btext} computes gradients but {opt}.step() is never called in this loop: "
                       f"{what} never change")
                bst = _stmt(ctx, b.node)
                if not b.via_call and bst is not None and _owns_lines(ctx, bst):
                    fixes.append(Fix(f"Call {opt}.step() after {btext}", False,
                                     (_insert_after(ctx, bst, f"{opt}.step()", ctx.src.indent_of(bst.lineno)),)))
            else:
                opt, models = None, ()
                msg = (f"{btext} computes gradients but no optimizer's step() is called in this loop "
                       f"({', '.join(opts)}): the weights never change")
            rel = []
            sc = unit.scope
            for o in ctx.facts.optimizers:
                # the optimizers this loop sees: its own scope's, the module's, its class's (not a
                # namesake in another function)
                if o.key in opts and (o.scope is sc or o.scope.kind == "module"
                                      or (sc.class_name and o.scope.class_name == sc.class_name)):
                    rel.append(Related(ctx.span(o.call), f"{o.key} is created here and never stepped"))
            yield ctx.finding("GP404", span, msg, fixes=fixes, related=rel,
                              data=_data(optimizer=opt, optimizer_class=_opt_class(ctx, opt, unit.scope),
                                         model=display(models[0]) if models else None, loop_line=loop.lineno))
    yield from _zeroed_never_stepped(ctx, lf, done)


def _zeroed_never_stepped(ctx, lf, done):
    """A loop that steps one optimizer but only clears another one (a GAN whose generator step was
    forgotten): `opt_g.zero_grad()` then a backward, and `opt_g.step()` nowhere."""
    for unit in lf.training_units:
        if any(e.kind == "step" and e.target == "unknown" for e in unit.events):
            continue
        stepped = {e.key for e in unit.events if e.kind == "step"}
        for loop in unit.loops:
            if unit.parent_loop(loop) is not None:
                continue
            seq = [e for _, e in unit.loop_events(loop)]
            for i, z in enumerate(seq):
                k = z.key
                if z.kind != "zero_grad" or z.target != "optimizer" or not nameable(k) or k in stepped:
                    continue
                if _stepped_elsewhere(ctx, lf, k, unit.scope) or any(
                        e.kind == "opaque" and ("*" in e.args or k in e.args) for e in seq):
                    continue
                b = next((e for e in seq[i + 1:] if e.kind == "backward" and not e.nograd
                          and not e.in_closure and not exclusive(e, z)), None)
                if b is None:
                    continue
                span = ctx.span(b.node)
                if span in done:
                    continue
                done.add(span)
                btext = _backward_text(ctx, b)
                models = z.models
                what = f"the weights of {_models_text(models)}" if models else f"the weights {k} holds"
                fixes = []
                bst = _stmt(ctx, b.node)
                if not b.via_call and bst is not None and _owns_lines(ctx, bst):
                    fixes.append(Fix(f"Call {k}.step() after {btext}", False,
                                     (_insert_after(ctx, bst, f"{k}.step()", ctx.src.indent_of(bst.lineno)),)))
                yield ctx.finding(
                    "GP404", span, fixes=fixes, message=
                    (f"{btext} computes gradients for {k} (cleared at line {z.node.lineno}) but {k}.step() is "
                     f"never called: {what} never change"),
                    related=[Related(ctx.span(z.node), f"{k} is cleared here but never stepped")],
                    data=_data(optimizer=display(k), optimizer_class=_opt_class(ctx, k, unit.scope),
                               model=display(models[0]) if models else None, loop_line=loop.lineno))


# -- GP405 --------------------------------------------------------------------------------------------

_DETACHING = {"item", "detach", "tolist", "numpy", "detach_"}
# results that carry no graph (integer, boolean or non-differentiable outputs)
_NO_GRAD_RESULT = {"argmax", "argmin", "argsort", "eq", "ne", "gt", "lt", "ge", "le", "long", "int", "bool",
                   "sign", "round", "floor", "ceil", "nonzero", "numel", "size", "dim", "isnan", "isinf",
                   "isfinite", "all", "any", "equal", "allclose", "count_nonzero", "bincount", "multinomial",
                   "randint", "randn_like", "rand_like", "zeros_like", "ones_like"}
_PLAIN = {"float", "int", "len", "round", "str", "bool", "abs", "max", "min"}


class _Graph:
    """Which names hold a tensor that carries an autograd graph at a given statement."""

    def __init__(self, ctx, lf, scope, backwarded: set[str]):
        self.ctx, self.lf, self.scope = ctx, lf, scope
        self.backwarded = backwarded
        self.state: dict[str, str] = {}

    def name(self, n: str) -> bool:
        st = self.state.get(n, "unknown")
        return st == "graph" or (st == "unknown" and n in self.backwarded)

    def expr(self, e) -> bool:
        if isinstance(e, ast.Name):
            return self.name(e.id)
        if isinstance(e, ast.Call):
            f = e.func
            qn = self.ctx.symbols.qualname(f)
            if isinstance(f, ast.Attribute) and (f.attr in _DETACHING or f.attr in _NO_GRAD_RESULT):
                return False
            if isinstance(f, ast.Name) and f.id in _PLAIN and f.id not in self.ctx.symbols.functions:
                return False
            if isinstance(f, ast.Name) and returns_plain_value(self.ctx.symbols.functions.get(f.id)):
                return False  # a helper of this file annotated `-> float` (a numpy reference value)
            if qn and (qn.startswith(("math.", "numpy.", "np.")) or qn in ("torch.tensor", "torch.as_tensor")
                       or (qn.startswith("torch.") and qn.rsplit(".", 1)[-1] in _NO_GRAD_RESULT)):
                return False
            fk = key_of(f)
            if fk and not isinstance(f, ast.Attribute) or (fk and fk.startswith("self.") and fk.count(".") == 1):
                b = self.ctx.facts.model_at(fk, self.scope)
                if b is not None and not b.cls.endswith("Loss"):
                    return True
            args = list(e.args) + [k.value for k in e.keywords]
            if isinstance(f, ast.Attribute) and self.expr(f.value):
                return True
            return any(self.expr(a) for a in args)
        if isinstance(e, ast.BinOp):
            return self.expr(e.left) or self.expr(e.right)
        if isinstance(e, ast.UnaryOp):
            return self.expr(e.operand)
        if isinstance(e, ast.Subscript):
            return self.expr(e.value)
        if isinstance(e, ast.Attribute):
            return e.attr not in ("data", "grad", "shape", "dtype", "device") and self.expr(e.value)
        if isinstance(e, ast.IfExp):
            return self.expr(e.body) or self.expr(e.orelse)
        if isinstance(e, (ast.Tuple, ast.List)):
            return any(self.expr(x) for x in e.elts)
        return False

    def assign(self, target: str, value, nograd: bool) -> None:
        base = value
        while isinstance(base, (ast.Attribute, ast.Subscript)):
            base = base.value
        if nograd or (isinstance(base, ast.Name) and base is not value and self.state.get(base.id) == "detached"):
            # `loss = outputs.loss` where `outputs` came from a forward under no_grad
            self.state[target] = "detached"
        elif self.expr(value):
            self.state[target] = "graph"
        elif isinstance(value, ast.Constant) or (isinstance(value, ast.Call) and (
                isinstance(value.func, ast.Attribute) and value.func.attr in _DETACHING
                or isinstance(value.func, ast.Name) and value.func.id in _PLAIN)):
            self.state[target] = "detached"
        else:
            self.state[target] = "unknown"


def _under_nograd(ctx, lf, node, scope) -> bool:
    for a in ctx.facts.ancestors(node):
        if isinstance(a, (ast.With, ast.AsyncWith)) and any(lf._is_nograd_ctx(i.context_expr) for i in a.items):
            return True
        if a is scope.node:
            return any(lf._is_nograd_ctx(d) for d in getattr(a, "decorator_list", []))
    return False


def _innermost_loop(ctx, node, scope):
    for a in ctx.facts.ancestors(node):
        if a is scope.node:
            return None
        if isinstance(a, (ast.For, ast.AsyncFor, ast.While)):
            return a
    return None


def _names_in(node) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


@rule("GP405")
def loss_accumulated_with_graph(ctx):
    lf = loop_facts(ctx)
    for unit in lf.units:
        if ctx.out_of_time():
            return  # the units not flattened yet would be flattened here (see loops.Unit)
        scope = unit.scope
        stmts = lf.scope_stmts(scope)
        if not any(_accumulation(st) is not None for st in stmts) or not unit.loops:
            continue
        if in_module_forward(ctx, scope):
            continue  # `sp = sp + spx[i]` in a forward is the architecture, not a loop holding graphs
        backwarded = {e.key for e in unit.events if e.kind == "backward" and e.key and "." not in e.key
                      and not e.via_call}
        # names backwarded as `name.backward()` with no gradient argument: one-element tensors
        scalars = {e.key for e in unit.events if e.kind == "backward" and e.key in backwarded
                   and isinstance(e.node, ast.Call) and isinstance(e.node.func, ast.Attribute)
                   and e.node.func.attr == "backward" and key_of(e.node.func.value) == e.key
                   and not e.node.args and not any(k.arg == "gradient" for k in e.node.keywords)}
        assigns = []  # (statement, target name, value), one per name bound
        for n in stmts:
            if isinstance(n, ast.Assign):
                for t in n.targets:
                    assigns += _bound(n, t, n.value)
            elif isinstance(n, ast.AnnAssign) and n.value is not None:
                assigns += _bound(n, n.target, n.value)
        assigns.sort(key=lambda a: (a[0].lineno, a[0].col_offset))
        # (statement, key, value) for `self.total = ...` / `stats["loss"] = ...`
        key_assigns = [(n, k[0], n.value) for n in stmts if isinstance(n, ast.Assign)
                       for t in n.targets if not isinstance(t, ast.Name) for k in [_acc_key(t)] if k]
        cands = []
        for st in stmts:
            acc = _accumulation(st)
            if acc is None or not any(isinstance(n, ast.Name) for n in ast.walk(acc[1])):
                continue
            target, container = acc[0], acc[3]
            loop = _innermost_loop(ctx, st, scope)
            if loop is None or _under_nograd(ctx, lf, st, scope) or not training_or_eval_loop(ctx, lf, unit, loop):
                continue
            # the accumulator lives across iterations: set before the loop (an attribute of self
            # lives on the object), not reset inside it
            head = (container or target).split(".")[0]
            if head != "self" and not any(a[1] == head and a[0].lineno < loop.lineno for a in assigns):
                continue
            if head != "self" and numpy_accumulator(ctx, [a for a in assigns if a[1] == head
                                                         and a[0].lineno < loop.lineno][-1][2]):
                continue  # `acc = np.zeros(...)`: numpy holds no autograd graph
            # reset on every iteration (not under a condition): nothing carries over
            resets = [a for a in assigns + key_assigns
                      if a[1] in (target, container) or (a[1] == head and head != "self")]
            if any(_unconditional_in(ctx, a[0], loop) and target not in _refs(a[2]) for a in resets):
                continue
            cands.append((st, acc, loop))
        if not cands:
            continue
        cands.sort(key=lambda c: (c[0].lineno, c[0].col_offset))
        nodes: list = []  # every node of the scope, walked only when a candidate needs it
        g = _Graph(ctx, lf, scope, backwarded)
        ai = 0
        for st, (target, value, kind, container, tnode), loop in cands:
            while ai < len(assigns) and (assigns[ai][0].lineno, assigns[ai][0].col_offset) < (st.lineno, st.col_offset):
                node, nm, val = assigns[ai]
                g.assign(nm, val, _under_nograd(ctx, lf, node, scope))
                ai += 1
            # a value bound before the loop is the same graph on every iteration: nothing piles up
            carriers = [n for n in ast.walk(value) if isinstance(n, ast.Name) and g.name(n.id)
                        and _not_detached_on_path(ctx, n, value) and rebound_in(loop, n.id)]
            if not carriers or not g.expr(value):
                continue
            if not nodes:
                nodes = list(scope.walk())
            if _consumed_later(ctx, nodes, assigns, target, st, container) and \
                    not backwarded_in_loop(ctx, loop, {c.id for c in carriers}):
                continue
            scalar = all(c.id in scalars for c in carriers)
            yield _gp405(ctx, st, _short(ctx, tnode, target), value, kind, carriers, loop, scalar)


def _bound(stmt, target, value) -> list[tuple]:
    if isinstance(target, ast.Name):
        return [(stmt, target.id, value)]
    if isinstance(target, (ast.Tuple, ast.List)):
        if isinstance(value, (ast.Tuple, ast.List)) and len(value.elts) == len(target.elts) and \
                not any(isinstance(e, ast.Starred) for e in target.elts):
            out = []
            for t, v in zip(target.elts, value.elts):
                out += _bound(stmt, t, v)
            return out
        # `a, b = f(x)`: each name gets "something from f(x)"
        return [(stmt, n.id, value) for n in ast.walk(target) if isinstance(n, ast.Name)]
    return []


def _unconditional_in(ctx, node, loop) -> bool:
    """`node` runs on every iteration of `loop`: inside it, under no if/loop/try handler of its own."""
    for a in ctx.facts.ancestors(node):
        if a is loop:
            return True
        if isinstance(a, (ast.If, ast.For, ast.AsyncFor, ast.While, ast.ExceptHandler, ast.Match,
                          ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            return False
    return False


def _not_detached_on_path(ctx, name_node, root) -> bool:
    cur = name_node
    while cur is not None and cur is not root:
        p = ctx.facts.parent(cur)
        if isinstance(p, ast.Attribute) and p.attr in ("data", "grad"):
            return False
        if isinstance(p, ast.Attribute) and isinstance(ctx.facts.parent(p), ast.Call) and \
                ctx.facts.parent(p).func is p and p.attr in _DETACHING:
            return False
        if isinstance(p, ast.Call) and isinstance(p.func, ast.Name) and p.func.id in _PLAIN:
            return False
        cur = p
    return True


def _acc_key(t):
    """(key, container key) of an accumulator: `total` -> ("total", None), `self.total` ->
    ("self.total", None), `stats["loss"]` -> ('stats["loss"]', "stats"); None for anything else."""
    if isinstance(t, ast.Name):
        return t.id, None
    if isinstance(t, ast.Attribute):
        k = key_of(t)
        return (k, None) if k else None
    if isinstance(t, ast.Subscript) and isinstance(t.slice, ast.Constant) and \
            isinstance(t.slice.value, (str, int)):
        ck = key_of(t.value)
        if ck:
            return f"{ck}[{t.slice.value!r}]", ck
    return None


def _accumulation(st):
    """(accumulator key, added value, "aug"|"assign"|"append", container key, accumulator node)
    for `t += v`, `t = t + v`, `t.append(v)`; t a name, an attribute (`self.total`) or a constant
    subscript (`stats["loss"]`)."""
    if isinstance(st, ast.AugAssign) and isinstance(st.op, (ast.Add, ast.Sub)):
        k = _acc_key(st.target)
        if k:
            return k[0], st.value, "aug", k[1], st.target
    if isinstance(st, ast.Assign) and len(st.targets) == 1 and \
            isinstance(st.value, ast.BinOp) and isinstance(st.value.op, ast.Add):
        k = _acc_key(st.targets[0])
        if k and _acc_key(st.value.left) == k and type(st.value.left) is type(st.targets[0]):
            return k[0], st.value.right, "assign", k[1], st.targets[0]
    if isinstance(st, ast.Expr) and isinstance(st.value, ast.Call):
        c = st.value
        if isinstance(c.func, ast.Attribute) and c.func.attr == "append" and \
                isinstance(c.func.value, (ast.Name, ast.Attribute)) and len(c.args) == 1 and not c.keywords:
            k = _acc_key(c.func.value)
            if k:
                return k[0], c.args[0], "append", k[1], c.func.value
    return None


def _refs(node) -> set[str]:
    """Names, attribute keys (`self.total`) and constant-subscript keys (`stats["loss"]`) in node."""
    out = set()
    for n in ast.walk(node):
        if isinstance(n, (ast.Name, ast.Attribute, ast.Subscript)):
            k = _acc_key(n)
            if k:
                out.add(k[0])
    return out


def _consumed_later(ctx, nodes, assigns, target, st, container=None) -> bool:
    """The accumulated value is meant to carry its graph: later backwarded or returned."""
    derived = {target} | ({container} if container else set())
    for node, name, val in assigns:
        if node.lineno > st.lineno and _refs(val) & derived:
            derived.add(name)
    for n in nodes:
        if isinstance(n, (ast.Return, ast.Yield, ast.YieldFrom)) and n.value is not None and \
                _refs(n.value) & derived:
            return True
        if isinstance(n, ast.Call):
            f = n.func
            is_back = (isinstance(f, ast.Attribute) and f.attr in ("backward", "manual_backward")) or \
                ctx.symbols.qualname(f) in ("torch.autograd.backward", "torch.autograd.grad")
            if is_back and _refs(n) & derived:
                return True
    return False


def _gp405(ctx, st, target, value, kind, carriers, loop, scalar: bool):
    name = carriers[0].id
    vtext = _short(ctx, value, name)
    if kind == "append":
        stmt_text = f"{target}.append({vtext})"
    elif kind == "aug":
        stmt_text = f"{target} += {vtext}"
    else:
        stmt_text = f"{target} = {target} + {vtext}"
    if kind == "append":
        msg = (f"{stmt_text} keeps every iteration's autograd graph of {name} alive: memory grows every "
               f"iteration; append {name}.item() or {name}.detach()")
    else:
        msg = (f"{stmt_text} keeps the autograd graph of {name} alive across iterations: {target} chains "
               f"every iteration's graph and memory grows with it; accumulate {name}.item() or {name}.detach()")
    fixes = []
    # `.item()` needs a one-element tensor: known when the name is backwarded without a gradient
    # argument (PyTorch requires a scalar there); `.detach()` keeps the value exactly as it was.
    for suffix, safe, pref in ((".item()", scalar, scalar), (".detach()", True, not scalar)):
        edits = tuple(Edit(Span(s.end_line, s.end_col, s.end_line, s.end_col), suffix)
                      for s in (ctx.span(c) for c in carriers))
        fixes.append(Fix(f"Accumulate {name}{suffix}", safe, edits, preferred=pref))
    span = ctx.span(st.value if kind == "append" else st)
    return ctx.finding("GP405", span, msg, fixes=fixes,
                       related=[Related(loop_header_span(ctx.src, loop), "the loop whose iterations pile up graphs")],
                       data=_data(loop_line=loop.lineno, needs_iterations=2, accumulator=target, value=name))


# -- GP406 --------------------------------------------------------------------------------------------

@rule("GP406")
def scheduler_before_step(ctx):
    lf = loop_facts(ctx)
    done = set()
    for unit in lf.training_units:
        for loop, seq in _loop_seqs(unit):
            for j, sc in enumerate(seq):
                if sc.kind != "sched" or sc.target == "plateau":
                    continue
                # only an optimizer step in the same iteration (and the same call) counts: a
                # one-off `step(start_epoch)` before the loop positions a resumed schedule
                steps = [e for e in seq if e.kind == "step" and e.target == "optimizer" and (
                    share_iteration(sc, e) or (e.key == sc.opt and nameable(e.key) and _share_loop(sc, e)))]
                if sc.opt:
                    mine = [e for e in steps if e.key == sc.opt]
                else:
                    keys = {e.key for e in steps}
                    mine = steps if len(keys) == 1 else []
                if not mine:
                    continue
                if any(seq.index(e) < j for e in mine):
                    continue
                s = next((e for e in mine if not exclusive(e, sc)), None)
                if s is None or not torch_scheduler_event(ctx, lf, unit, sc):
                    continue  # only torch.optim.lr_scheduler schedulers wrap optimizer.step and warn
                span = ctx.span(sc.node)
                if span in done:
                    continue
                done.add(span)
                sctext = _short(ctx, sc.node, f"{display(sc.key)}.step()")
                stext = _short(ctx, s.node, f"{display(s.key)}.step()")
                msg = (f"{sctext} runs before {stext} (line {s.node.lineno}) in the same iteration: PyTorch "
                       f"warns (\"Detected call of `lr_scheduler.step()` before `optimizer.step()`\") and "
                       f"the first value of the learning-rate schedule is skipped")
                fixes = []
                if sc.fn is s.fn:
                    scst = _stmt(ctx, sc.node)
                    anchor = _ancestor_in_block(ctx, s.node, scst) if scst is not None else None
                    edits = _move_after(ctx, scst, anchor) if anchor is not None else None
                    if edits:
                        fixes.append(Fix(f"Move {sctext} after {stext}", True, edits, preferred=True))
                loops = sc.loops()
                yield ctx.finding("GP406", span, msg, fixes=fixes,
                                  related=[Related(ctx.span(s.node), "the optimizer step it should follow")],
                                  data=_data(optimizer=display(s.key), scheduler=display(sc.key),
                                             optimizer_class=_opt_class(ctx, s.key, unit.scope),
                                             loop_line=loops[-1].lineno if loops else None))


def _share_loop(a, b) -> bool:
    return any(any(x is y for y in b.loops()) for x in a.loops())


# -- GP407 --------------------------------------------------------------------------------------------

@rule("GP407")
def eval_mode_training(ctx):
    from gradpath.analysis.modelling import opaque_forward
    lf = loop_facts(ctx)
    done = set()
    # a function's own unit before the module-level code that calls it: the same eval() is then
    # reported with the loop's own names, where the fix can insert `.train()`
    for unit in sorted(lf.training_units, key=lambda u: u.scope.kind == "module"):
        events = unit.events
        steps = [e for e in events if e.kind == "step" and e.target == "optimizer"]
        if not steps:
            continue
        trained = [m for s in steps for m in s.models]
        unknown = any(not s.models for s in steps)
        for idx, ev in enumerate(events):
            if ev.kind != "eval" or not ev.key:
                continue
            m = ev.key
            if not (any(same_model(m, t) for t in trained) or
                    (unknown and any(e.kind == "fwd" and same_model(e.key, m) and not e.nograd
                                     and e.loops() for e in events))):
                continue

            def is_training(e):
                return e.kind == "backward" and not e.nograd

            loop = next((l for l in reversed(ev.loops()) if any(is_training(e) and e.in_loop(l) for e in events)),
                        None)
            if loop is not None:
                here = ev.frames_to(loop)
                seq = [e for e in events if e.in_loop(loop) and e.frames_to(loop) == here]
                pos = seq.index(ev)
                # the next iteration starts over from seq[:pos], unless the loop rebinds the model
                # to a fresh module (in train mode) on every iteration
                wrap = [] if rebuilt_in_loop(ctx, m, loop) else seq[:pos]
                order = [e for e in seq[pos + 1:] if not exclusive(e, ev)] + wrap
            else:
                # `if is_train: model.train() else: model.eval()` and later `if is_train: backward`
                order = [e for e in events[idx + 1:] if not exclusive(e, ev)]
            hit = None
            ran = False  # m's own forward with gradients on, since the eval()
            for e in order:
                if e.kind == "train" and key_matches(e.key, m):
                    break
                if e.kind == "opaque" and ("*" in e.args or any(key_matches(a, m) for a in e.args)):
                    if not e.nograd and any(key_matches(a, m) for a in e.args) and opaque_forward(
                            ctx.facts, e.node, [x.node for x in order if x.kind == "backward"]):
                        ran = True  # `loss = compute_loss(model, x); loss.backward()`: a forward of m
                        continue
                    break
                if e.kind == "fwd" and not e.nograd and e.key and same_model(e.key, m):
                    ran = True
                if is_training(e):
                    if ran and steps_model_after(events, e, m, trained_by=steps):
                        hit = e
                        break
                    # a backward that m took no part in (another model's loss, a teacher read
                    # under no_grad), or one no optimizer step of m follows (gradients computed
                    # to be plotted or inspected): it does not train m in eval mode; look further
                    ran = False  # the next backward needs m's forward of its own
                    continue
            if hit is None:
                continue
            if ctx.span(ev.node) in done:
                continue
            done.add(ctx.span(ev.node))
            # an eval() inside a helper (`self.validate()`) is reported at the call in this unit
            span = ctx.span(next((f[1] for f in ev.path if f[0] == CALL), ev.node))
            name = display(m)
            htext = _backward_text(ctx, hit)
            fixes = []
            if loop is not None:
                msg = (f"{name}.eval() is never undone before the next training step ({htext}, line "
                       f"{hit.node.lineno}): from the next iteration on {name} trains in eval mode "
                       f"(dropout off, batch norm statistics frozen)")
                if nameable(m) and any(l is loop for l in unit.loops):
                    ins = _top_of_body(ctx, loop, f"{m}.train()")
                    if ins:
                        fixes.append(Fix(f"Call {m}.train() at the top of the loop", True, (ins,), preferred=True))
                loop_line = loop.lineno
            else:
                msg = (f"{name}.eval() is still in effect when {name} trains ({htext}, line "
                       f"{hit.node.lineno}): dropout and batch norm stay in eval behaviour during training")
                first = next((f for f in hit.path if f[0] in (LOOP, CALL)), None)
                anchor = None
                if first is not None:
                    anchor = first[1] if first[0] == LOOP else ctx.facts.enclosing_stmt(first[1])
                elif not hit.via_call:
                    anchor = _stmt(ctx, hit.node)
                if anchor is not None and nameable(m):
                    ins = _insert_before(ctx, anchor, f"{m}.train()")
                    if ins:
                        fixes.append(Fix(f"Call {m}.train() before training", True, (ins,), preferred=True))
                hl = hit.loops()
                loop_line = hl[0].lineno if hl else None
            via = []
            if ev.via_call:
                call = next(f[1] for f in ev.path if f[0] == CALL)
                origin = getattr(ev, "origin", None)  # (display path, Span, path): a helper in another module
                where = f"{origin[0]}:{origin[1].line}" if origin else f"line {ev.node.lineno}"
                msg = msg.replace(f"{name}.eval()", f"{name}.eval() ({where}, reached through "
                                                    f"`{_short(ctx, call, 'this call')}`)", 1)
                via = [Related(origin[1], "eval() runs here, inside the helper", origin[2])] if origin else \
                    [Related(ctx.span(ev.node), f"{_short(ctx, ev.node, 'eval()')} runs here, inside the helper")]
            yield ctx.finding("GP407", span, msg, fixes=fixes,
                              related=via + [Related(ctx.span(hit.node), f"{name} trains here in eval mode")],
                              data=_data(model=name, loop_line=loop_line,
                                         needs_iterations=2 if loop is not None else None))


# -- GP408 --------------------------------------------------------------------------------------------

@rule("GP408")
def direct_forward(ctx):
    facts = ctx.facts
    calls = [mc for mc in facts.calls if mc.method == "forward"]
    if not calls or is_test_path(ctx.path):
        return  # tests call forward directly on purpose (and never on a module that has hooks)
    hf = None
    for mc in calls:
        node, scope = mc.call, mc.scope
        recv = node.func.value
        rk = key_of(recv)
        if rk is None or rk == "self":
            continue  # super().forward(x), self.forward(x)
        if ctx.symbols.qualname(recv) is not None or in_test_function(scope):
            continue  # nn.Module.forward(self, x), Base.forward(self, x); a pytest function
        hf = hf or hook_facts(ctx)
        if scope.kind != "module" and scope.name in hf.hook_fns:
            continue  # inside a hook: calling the module would run the hook again
        # only the receiver's own hooks are skipped (its submodules are still called through
        # __call__), and only a module known to carry hooks has any: see forward_hooks
        h = hf.hook_on(rk, scope, node.lineno) or hf.hook_through_param(rk, scope, node.lineno)
        if h is None:
            continue
        b = facts.model_at(rk, scope, node.lineno)
        rspan, fspan = ctx.span(recv), ctx.span(node.func)
        call_text = _short(ctx, node, f"{rk}.forward(...)")
        fix = Fix(f"Call {rk}(...) instead of {rk}.forward(...)", True,
                  (Edit(Span(rspan.end_line, rspan.end_col, fspan.end_line, fspan.end_col), ""),),
                  preferred=True)
        where = " inside a forward()" if scope.name == "forward" else ""
        hook_text = _short(ctx, h.node, "", limit=50)
        installed = f" (`{hook_text}`, line {h.node.lineno})" if hook_text else f" (line {h.node.lineno})"
        related = [Related(ctx.span(h.node), f"{h.what} is installed here")]
        if b is not None:
            related.append(Related(ctx.span(b.stmt), f"{rk} is created here"))
        yield ctx.finding("GP408", fspan,
                          f"{call_text} calls forward directly{where}: {h.what} that {rk} carries{installed} "
                          f"does not run, since only {rk}(...) runs a module's hooks; call {rk}(...)",
                          fixes=[fix], related=related,
                          data=_data(model=rk, model_class=b.cls if b else None, hook_line=h.node.lineno))
