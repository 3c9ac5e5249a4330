"""GP4: training loops in the wrong order (GP401-GP408).

The order facts come from `gradpath.analysis.loops`: each scope flattened into events
(`zero_grad`, `backward`, `step`, `sched`, `train`, `eval`, ...) with the loops, branches and
calls around them. The checks here only read those events and the AST of the lines they report.
"""
from __future__ import annotations

import ast

from gradpath.analysis.facts import key_of
from gradpath.analysis.findings import Fix, Related
from gradpath.analysis.loop_guards import share_iteration, torch_scheduler_event
from gradpath.analysis.loops import (
    IF, display, exclusive, key_matches, loop_facts, loop_header_span, nameable)
from gradpath.analysis.frameworks import lightning_optimizer_names
from gradpath.analysis.rules import rule
from gradpath.analysis.rules._loop_common import (
    _ancestor_in_block, _backward_text, _called_models, _clears, _data, _descendant_loops, _ev_span,
    _insert_after, _loop_seqs, _lossish, _models_text, _move_after, _move_before, _opt_class,
    _owns_lines, _short, _stmt, _top_of_body)


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
