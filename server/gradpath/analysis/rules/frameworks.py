"""GP401/GP402 across iterations: how the clears and steps of gradient accumulation line up.

One iteration's events come from `loops.py` (framework bodies included: a manual-optimization
`training_step`, an ignite process function). Each clear, backward and step carries the `if`s
around it; counter guards (`(batch_idx + 1) % k == 0`, `i % k == r`, `i % k`) are read by
`accumulation.py`, and `with accelerator.accumulate(model):` lets the prepared optimizers' `step()`
and `zero_grad()` through on sync steps only. The iterations are then played out:
- a clear that runs while gradients of a backward wait for a step that has not run yet throws those
  micro-batches away: GP402 (the clear runs more often than the step);
- a clear whose guard can never be true is no clear at all: GP401 (see `dead_clears`, read by the
  GP401 checker in loop.py).
"""
from __future__ import annotations

import ast
import math

from gradpath.analysis import accumulation, frameworks
from gradpath.analysis.accumulation import CounterGuard
from gradpath.analysis.facts import key_of
from gradpath.analysis.findings import Edit, Fix, Related, Span
from gradpath.analysis.loops import ACCUM, CALL, IF, LOOP, display, loop_facts, nameable
from gradpath.analysis.rules import rule

SYNC = "<accelerate sync step>"
# accelerate's sync steps for a period we do not know: every other micro-step stands for "not all"
_SYNC_GUARD = CounterGuard(SYNC, 2, frozenset({1}))
_ALL = "all"


def _const_resolver(lf, scope):
    def const(node):
        if isinstance(node, ast.Subscript):
            base = lf.binding_value(key_of(node.value), scope) if key_of(node.value) else None
            sl = node.slice
            if isinstance(base, ast.Dict) and isinstance(sl, ast.Constant):
                for k, v in zip(base.keys, base.values):
                    if isinstance(k, ast.Constant) and k.value == sl.value and isinstance(v, ast.Constant):
                        return v.value
            return None
        k = key_of(node)
        v = lf.binding_value(k, scope) if k else None
        if v is None and isinstance(node, ast.Attribute) and key_of(node.value):
            # `cfg.accum_steps` with `cfg = Config()` (or `Config.accum_steps`): a class attribute
            owner = lf.binding_value(key_of(node.value), scope)
            cls = owner.func.id if isinstance(owner, ast.Call) and isinstance(owner.func, ast.Name) else \
                node.value.id if isinstance(node.value, ast.Name) else None
            info = lf.sym.classes.get(cls) if cls else None
            for st in info.node.body if info is not None else ():
                if isinstance(st, ast.Assign) and any(isinstance(t, ast.Name) and t.id == node.attr for t in st.targets):
                    v = st.value
        if isinstance(v, ast.Constant) and type(v.value) is int:
            return v.value
        return None
    return const


def site(ev):
    """Where an event is reported: the call in the unit's own code that reaches it, or itself."""
    call = next((f[1] for f in ev.path if f[0] == CALL), None)
    return call if call is not None else ev.node


def _frames_in(ev, loop):
    if loop is None:
        return ev.path
    for i, f in enumerate(ev.path):
        if f[0] == LOOP and f[1] is loop:
            return ev.path[i + 1:]
    return ()


def guard_of(ev, loop, const, wrapped: bool):
    """The counter guard under which `ev` runs in an iteration of `loop`: _ALL (always), a
    CounterGuard, or None (a condition we cannot evaluate). `wrapped`: an event accelerate's
    accumulate() skips on non-sync steps (the prepared optimizer's step/zero_grad)."""
    g = _ALL
    for f in _frames_in(ev, loop):
        if f[0] == IF:
            if not isinstance(f[1], ast.If):
                return None  # an except handler / a match case
            cg = accumulation.parse_guard(f[1].test, const)
            if cg is None:
                return None
            if f[2] == 1:
                cg = cg.negate()
        elif f[0] == ACCUM and wrapped:
            cg = _SYNC_GUARD
        elif f[0] == LOOP:
            return None  # an inner loop: not one run per iteration
        else:
            continue
        g = cg if g == _ALL else accumulation.combine(g, cg)
        if g is None:
            return None
    return g


def dead_clears(ctx, unit, loop, clears) -> list:
    """The clears among `clears` that sit under a guard no iteration satisfies (`if i % 1 == 1:`)."""
    lf = loop_facts(ctx)
    const = _const_resolver(lf, unit.scope)
    out = []
    for z in clears:
        for f in _frames_in(z, loop):
            if f[0] == IF and isinstance(f[1], ast.If) and f[2] == 0 and accumulation.never_true(f[1].test, const):
                out.append(z)
                break
    return out


def never_true_in(ctx, unit):
    """A predicate: is this `if` test never true (constants resolved as seen from `unit`)?"""
    const = _const_resolver(loop_facts(ctx), unit.scope)
    return lambda test: accumulation.never_true(test, const)


def body_insert_point(fn, code: str):
    """The statement of a framework body (`training_step`) before which `code` can run: after the
    docstring and after the statements binding the names `code` uses (`opt = self.optimizers()`)."""
    used = {n.id for n in ast.walk(ast.parse(code)) if isinstance(n, ast.Name)}
    body = list(fn.body)
    i = 1 if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
        and isinstance(body[0].value.value, str) else 0
    for j, st in enumerate(body):
        bound = {n.id for n in ast.walk(st) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
        if bound & used:
            i = j + 1
    return body[i] if i < len(body) else None


def _counter_ok(ctx, lf, unit, loop, counter: str) -> bool:
    """Does `counter` grow by exactly one per iteration of `loop`?"""
    if counter == SYNC:
        return True
    if isinstance(loop, (ast.FunctionDef, ast.AsyncFunctionDef)):
        body = frameworks.body_of(ctx, loop)
        return body is not None and body.counter == counter
    if isinstance(loop, (ast.For, ast.AsyncFor)):
        t, it = loop.target, loop.iter
        if isinstance(it, ast.Call) and isinstance(it.func, ast.Name) and it.func.id == "enumerate" and \
                isinstance(t, ast.Tuple) and t.elts and isinstance(t.elts[0], ast.Name) and t.elts[0].id == counter:
            step_kw = [k for k in it.keywords if k.arg != "start"]
            return not step_kw
        if isinstance(it, ast.Call) and isinstance(it.func, ast.Name) and it.func.id == "range" and \
                isinstance(t, ast.Name) and t.id == counter and len(it.args) <= 2:
            return True
    # `i += 1` as a statement of the loop's own body
    for st in getattr(loop, "body", ()):
        if isinstance(st, ast.AugAssign) and isinstance(st.op, ast.Add) and ast.unparse(st.target) == counter \
                and isinstance(st.value, ast.Constant) and st.value.value == 1:
            return True
    return False


def _start(ctx, loop) -> int:
    body = frameworks.body_of(ctx, loop) if isinstance(loop, (ast.FunctionDef, ast.AsyncFunctionDef)) else None
    return body.counter_start if body is not None else 0


def _wasting_clear(order, guards, start: int, period: int):
    """Play the iterations out; the first clear that runs while a backward's gradients still wait
    for a step, with the iteration number, or None."""
    pending = None
    for c in range(start, start + 2 * period + 2):
        for e in order:
            g = guards[id(e)]
            if g != _ALL and not g.holds(c):
                continue
            if e.kind == "zero_grad":
                if pending is not None:
                    return e, pending, c
            elif e.kind == "backward":
                pending = pending or e
            elif e.kind == "step":
                pending = None
    return None


@rule("GP402")
def accumulation_clears(ctx):
    from gradpath.analysis.rules.loop import _clears, _lossish  # the loop rules' own reading of a clear

    lf = loop_facts(ctx)
    done = set()
    for unit in lf.training_units:
        const = _const_resolver(lf, unit.scope)
        for loop in unit.loops:
            seq = [e for _, e in unit.loop_events(loop)]
            fwd = {e.key for e in seq if e.kind == "fwd" and not _lossish(e.key)}
            for s in seq:
                if s.kind != "step" or s.target != "optimizer" or not nameable(s.key):
                    continue
                if any(o.kind == "opaque" and ("*" in o.args or s.key in o.args) for o in seq):
                    continue
                clears = [z for z in seq if _clears(z, s, strict=True, fwd=fwd)]
                backs = [b for b in seq if b.kind == "backward" and not b.nograd]
                if not clears or not backs:
                    continue
                guards = {}
                has_accum = any(f[0] == ACCUM for e in seq for f in e.path)
                for e in [s] + clears + backs:
                    wrapped = e.kind == "step" or (e.kind == "zero_grad" and e.target == "optimizer")
                    if wrapped and has_accum and not any(f[0] == ACCUM for f in e.path):
                        # a prepared optimizer skips step()/zero_grad() outside the block too, as
                        # long as the last accumulate() was not a sync step: not modelled
                        guards[id(e)] = None
                        continue
                    guards[id(e)] = guard_of(e, loop, const, wrapped)
                if any(g is None for g in guards.values()) or guards[id(s)] == _ALL:
                    continue
                counters = {g.counter for g in guards.values() if g != _ALL}
                if len(counters) != 1 or not _counter_ok(ctx, lf, unit, loop, next(iter(counters))):
                    continue
                period = 1
                for g in guards.values():
                    if g != _ALL:
                        period = period * g.period // math.gcd(period, g.period)
                order = [e for e in seq if id(e) in guards]
                hit = _wasting_clear(order, guards, _start(ctx, loop), period)
                if hit is None:
                    continue
                z, b, _c = hit
                node = site(z)
                span = ctx.span(node)
                if span in done:
                    continue
                done.add(span)
                yield _report(ctx, unit, loop, z, b, s, guards, node, span)


def _cond_text(ctx, ev, loop) -> str | None:
    for f in reversed(_frames_in(ev, loop)):
        if f[0] == IF and isinstance(f[1], ast.If):
            t = ctx.src.text_of(f[1].test)
            if len(t) <= 50:
                return f"`{t}`" if f[2] == 0 else f"`{t}` is false"
    return None


def _short(ctx, node, fallback):
    t = ctx.src.text_of(node)
    return t if 0 < len(t) <= 60 and "\n" not in t else fallback


def _report(ctx, unit, loop, z, b, s, guards, node, span):
    zt = _short(ctx, z.node, f"{display(z.key)}.zero_grad()")
    if node is not z.node:  # a clear inside a helper: named by the call in the loop
        zt = f"{_short(ctx, node, 'this call')} (through {zt}, line {z.node.lineno})"
    st = _short(ctx, s.node, f"{display(s.key)}.step()")
    bt = _short(ctx, b.node, "backward()")
    accum = next((f for f in _frames_in(s, loop) if f[0] == ACCUM), None)
    zg = guards[id(z)]
    if accum is not None and guards[id(s)].counter == SYNC:
        where = f"inside `{_short(ctx, accum[1].items[0].context_expr, 'accelerator.accumulate(...)')}`"
        msg = (f"{zt} runs on every micro-step {where}, but accelerate skips {st} (line {s.node.lineno}) on "
               f"every micro-step that is not a sync step (it wraps the prepared optimizer, not "
               f"{display(z.key)}.zero_grad()): each clear throws away the gradients accumulated since the "
               f"last step and the step sees only the last micro-batch's")
    else:
        scond = _cond_text(ctx, s, loop) or "under a condition"
        zcond = "on every iteration" if zg == _ALL else f"when {_cond_text(ctx, z, loop) or 'its condition holds'}"
        msg = (f"{zt} runs {zcond} but {st} (line {s.node.lineno}) only when {scond}: "
               f"each clear throws away the gradients {bt} (line {b.node.lineno}) accumulated since the last "
               f"step, so the step sees only the last micro-batch's")
    related = [Related(ctx.span(b.node), "gradients accumulated here are cleared before any step uses them"),
               Related(ctx.span(s.node), "the step that runs only on some iterations")]
    if node is not z.node:
        related.insert(0, Related(ctx.span(z.node), "the clear runs here, inside the helper"))
    fixes = []
    zst = ctx.facts.enclosing_stmt(z.node) if not isinstance(z.node, ast.stmt) else z.node
    sst = ctx.facts.enclosing_stmt(s.node)
    if node is z.node and z.fn is s.fn and isinstance(zst, ast.Expr) and zst.value is z.node and \
            isinstance(sst, ast.Expr) and zst.end_lineno < len(ctx.src.lines):
        indent = ctx.src.indent_of(sst.lineno)
        end = ctx.src.line_text(sst.end_lineno)
        # under accumulate(): the prepared optimizer's own zero_grad(), which accelerate skips with the step
        text = f"{display(s.key)}.zero_grad()" if accum is not None else ctx.src.text_of(zst)
        fixes.append(Fix(f"Clear with {text} only after {st}", False, (
            Edit(Span(zst.lineno, 0, zst.end_lineno + 1, 0), ""),
            Edit(Span(sst.end_lineno, len(end), sst.end_lineno, len(end)), ctx.src.newline + indent + text))))
    loops = s.loops()
    return ctx.finding("GP402", span, msg, fixes=fixes, related=related,
                       data={k: v for k, v in dict(optimizer=display(s.key), loop_line=loops[-1].lineno if loops else None,
                                                   needs_iterations=2, accumulation=True, clear_line=z.node.lineno).items()
                                 if v is not None})
