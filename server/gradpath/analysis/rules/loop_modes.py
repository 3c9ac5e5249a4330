"""GP407 (training in eval mode: dropout and batch norm off while the optimizer steps) and GP408
(`model.forward(x)` called directly, skipping the module's hooks)."""
from __future__ import annotations


from gradpath.analysis.facts import key_of
from gradpath.analysis.findings import Edit, Fix, Related, Span
from gradpath.analysis.forward_hooks import hook_facts, in_test_function, is_test_path
from gradpath.analysis.loop_guards import rebuilt_in_loop, steps_model_after
from gradpath.analysis.loops import (
    LOOP, CALL, display, exclusive, key_matches, loop_facts, nameable, same_model)
from gradpath.analysis.rules import rule
from gradpath.analysis.rules._loop_common import (
    _backward_text, _data, _insert_before, _short, _stmt, _top_of_body)


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
