"""GP3: loss expressions that can turn inf or NaN (division by zero, log of 0, log of softmax,
double softmax, BCE on logits, sqrt at zero, exp overflow, std normalisation without eps)."""
from __future__ import annotations

import ast
import re

from gradpath.analysis import bounds
from gradpath.analysis.dataflow import G, N, U, Val, flow
from gradpath.analysis.flow_text import is_parenthesised, module_alias, name_in_file, wrap
from gradpath.analysis.findings import Edit, Fix, Related, Span
from gradpath.analysis.rules import rule

ZERO_SHAPES = {"diff", "reduce", "norm", "raw", "nonneg", "sq", "sumsq", "prob"}


def _text(ctx, node) -> str:
    t = ctx.src.text_of(node)
    return t if len(t) <= 60 else t[:57] + "..."


def _probe(ctx, what: str, node) -> dict:
    return {"what": what, "span": ctx.span(node).to_dict(), "expr": ctx.src.text_of(node)}


_LOGGING_ATTRS = {"item", "tolist", "detach", "numpy", "cpu"}
_LOGGING_FUNCS = {"float", "int", "round", "print", "str", "repr", "format"}
_PASS_ATTRS = {"mean", "sum", "squeeze", "float", "view", "reshape", "flatten"}


def _logged_only(ctx, node, depth: int = 0) -> bool:
    """The op's result is consumed on the spot by a cut or a print: `torch.sqrt(loss).item()`,
    `float(torch.log(x))`, `print(torch.sqrt(mse))`; or it is stored in a name whose every use is
    such a consumer (`rmse = torch.sqrt(loss)` ... `print(rmse.item())`). No gradient ever flows
    through it."""
    cur = node
    for _ in range(4):
        par = ctx.facts.parent(cur)
        if isinstance(par, (ast.Assign, ast.AnnAssign)) and par.value is cur:
            targets = par.targets if isinstance(par, ast.Assign) else [par.target]
            if len(targets) == 1 and isinstance(targets[0], ast.Name) and depth < 3:
                return _name_logged_only(ctx, par, targets[0].id, depth + 1)
            return False
        step = _consumed(ctx, cur, par)
        if step is None:
            return False
        if step is True:
            return True
        cur = step
    return False


_LOG_SINKS = {"add_scalar", "add_scalars", "add_histogram", "log_metric", "log_metrics", "log_dict", "log"}


def _consumed(ctx, cur, par):
    """How `par` uses the value `cur`: True when it cuts or prints it, the call node when it passes
    it on unchanged (`.mean()`, `.view(...)`), None for any other use."""
    if isinstance(par, ast.Attribute) and par.value is cur:
        if par.attr in _LOGGING_ATTRS:
            return True
        call = ctx.facts.parent(par)
        if par.attr in _PASS_ATTRS and isinstance(call, ast.Call) and call.func is par:
            return call
        return None
    if isinstance(par, ast.Call) and isinstance(par.func, ast.Name) and par.func.id in _LOGGING_FUNCS \
            and cur in par.args:
        return True
    if isinstance(par, ast.FormattedValue):
        return True
    return None


def _name_logged_only(ctx, assign, name: str, depth: int) -> bool:
    """Every read of `name` (in the assignment's function, or at module level for a module-level name)
    only logs it: a cut or print on the spot, `"%f" % x`, `"{}".format(x)`, a comparison, or a logger call
    (`writer.add_scalar("rmse", x, step)`, `wandb.log({...})`)."""
    facts = ctx.facts
    loads, shared = ctx.memo("gp3.name_loads", lambda: _name_loads(ctx))
    if name in shared:
        return False
    scope = facts.scope_of(assign)
    for n in loads.get(name, ()):
        # a function's reads: its own body and nested functions; a module-level name's: the module's
        # own statements (a function body that reads it runs only where the module calls it)
        if scope.kind == "module":
            if facts.scope_of(n) is not scope:
                continue
        elif not any(a is scope.node for a in facts.ancestors(n)):
            continue
        if not _log_use(ctx, n, depth):
            return False
    return True


def _name_loads(ctx):
    """(name -> every Name node that reads it, names declared global/nonlocal somewhere)."""
    loads: dict[str, list] = {}
    shared: set[str] = set()
    for n in ctx.facts.all_nodes():
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load):
            loads.setdefault(n.id, []).append(n)
        elif isinstance(n, (ast.Global, ast.Nonlocal)):
            shared.update(n.names)
    return loads, shared


def _log_use(ctx, n, depth: int) -> bool:
    par = ctx.facts.parent(n)
    step = _consumed(ctx, n, par)
    if step is True:
        return True
    if step is not None:  # `rmse.mean().item()`; a pass-through stored again (`x = rmse.mean()`) is a use
        return not isinstance(ctx.facts.parent(step), (ast.Assign, ast.AnnAssign)) and _logged_only(ctx, step, depth)
    if isinstance(par, ast.Compare):
        return True
    if isinstance(par, ast.BinOp) and isinstance(par.op, ast.Mod) and par.right is n \
            and isinstance(par.left, ast.Constant) and isinstance(par.left.value, str):
        return True
    if isinstance(par, ast.Tuple) and isinstance(ctx.facts.parent(par), ast.BinOp):
        bop = ctx.facts.parent(par)
        return isinstance(bop.op, ast.Mod) and isinstance(bop.left, ast.Constant) and isinstance(bop.left.value, str)
    call = par
    if isinstance(par, ast.Dict) and n in par.values:
        call = ctx.facts.parent(par)
        n = par
    if isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and \
            (n in call.args or any(k.value is n for k in call.keywords)):
        f = call.func
        if f.attr == "format" and isinstance(f.value, ast.Constant) and isinstance(f.value.value, str):
            return True
        if f.attr in _LOG_SINKS:
            qn = ctx.symbols.qualname(f) or ""
            return not qn.split(".")[0] in ("torch", "math", "numpy", "np", "scipy")
    return False


def _live(e, v: Val, ctx=None) -> bool:
    """The value carries a graph and the op does not run under no_grad: it is loss math."""
    if v.grad != G or e.nograd:
        return False
    return ctx is None or not (_logged_only(ctx, e.node) or _after_last_backward(ctx, e))


_LOSS_CLASS_WORDS = ("loss", "criterion", "objective")


def _loss_method_input(ctx, e, *vals: Val) -> bool:
    """Loss math in a loss class's `forward` (`SupConLoss`, `DiceCriterion`) on values of unknown graph:
    its inputs are what a training loop passes it (the predictions), usually from another file, so
    the class is the place to judge them. A value known to have no graph stays out."""
    s = e.scope
    if e.nograd or s is None or s.kind != "method" or not s.class_name or s.name not in ("forward", "__call__"):
        return False
    if not any(w in s.class_name.lower() for w in _LOSS_CLASS_WORDS):
        return False
    if s.name == "forward" and not ctx.symbols.is_module_class(s.class_name):
        return False
    if not any(v is not None and v.kind == "tensor" and v.grad == U for v in vals):
        return False
    if _project_feeds(ctx, f"{s.class_name}.{s.name}"):
        return False  # the project knows its callers: crossmodule_numerics runs it on what they pass
    return not (_logged_only(ctx, e.node) or _after_last_backward(ctx, e))


def _project_feeds(ctx, qualname: str) -> bool:
    """Does the project know a call of this file's loss `qualname` on a model's output (with a graph or
    under no_grad)? Then what it is fed decides, not this file's guess."""
    from gradpath.analysis.project import linked_summary
    from gradpath.analysis.project.fed import fed_losses
    linked = linked_summary(ctx)
    if linked is None:
        return False
    _project, path, lk, _sm = linked
    return bool(fed_losses(lk).get((path, qualname)))


_LOOPS = (ast.For, ast.AsyncFor, ast.While)


def _after_last_backward(ctx, e) -> bool:
    """The op runs after every backward of its function, and no loop around it repeats one: it
    inspects the gradients (a test's expected value), it feeds none."""
    fl = flow(ctx)
    bws = [b for b in fl.events_of("backward") if b.scope is e.scope]
    if not bws:
        return False
    loops = [a for a in ctx.facts.ancestors(e.node) if isinstance(a, _LOOPS)]
    for b in bws:
        if (b.node.lineno, b.node.col_offset) >= (e.node.lineno, e.node.col_offset):
            return False
        if any(lp in loops for lp in ctx.facts.ancestors(b.node)):
            return False
    return True


def _model_of(v: Val) -> str | None:
    return sorted(v.origins)[0] if v.origins else None


def _model_related(ctx, v: Val, what: str) -> list[Related]:
    return [Related(ctx.span(mc), f"`{_text(ctx, mc)}`: {what}") for mc in v.model_calls[:1]]


def _once(seen: set, code: str, node) -> bool:
    k = (code, id(node))
    if k in seen:
        return False
    seen.add(k)
    return True


def _eps_edits(ctx, node) -> tuple[str, list[Edit]]:
    """A named `eps`: reuse one the file has, or define `eps = 1e-8` before the statement."""
    if ctx.memo("file-has-eps", lambda: name_in_file(ctx.tree, "eps", ctx.src.text)):
        return "eps", []
    stmt = ctx.facts.enclosing_stmt(node)
    if stmt is None:
        return "1e-8", []
    # a statement in a try/with header line is fine: insert on its own line at its indentation
    indent = ctx.src.indent_of(stmt.lineno)
    if ctx.src.line_text(stmt.lineno)[len(indent):].startswith(("elif", "else")):
        return "1e-8", []
    return "eps", [Edit(Span(stmt.lineno, 0, stmt.lineno, 0), f"{indent}eps = 1e-8{ctx.src.newline}")]


def _guard_fixes(ctx, den_node, clamp_first: bool) -> list[Fix]:
    eps, extra = _eps_edits(ctx, den_node)
    t = ctx.src.text_of(den_node)
    clamp = Fix(f"Clamp the denominator: `{_short(wrap(ctx.src, den_node))}.clamp_min({eps})`", False,
                tuple(extra + [Edit(ctx.span(den_node), f"{wrap(ctx.src, den_node)}.clamp_min({eps})")]))
    plus_text = f"{t} + {eps}" if is_parenthesised(ctx.src, den_node) else f"({t} + {eps})"
    plus = Fix(f"Add eps to the denominator: `{_short(plus_text)}`", False,
               tuple(extra + [Edit(ctx.span(den_node), plus_text)]))
    return [clamp, plus] if clamp_first else [plus, clamp]


def _short(t: str) -> str:
    return t if len(t) <= 50 else t[:47] + "..."


def _nonzero(v: Val) -> bool:
    """The value's range (bounds.Rng) excludes 0: `x + self.eps`, a sigmoid pulled into (0, 1)."""
    r = bounds.rng_of(v)
    return r is not None and r.excludes_zero()


def _why_zero(ctx, v: Val, node, right: Val | None = None) -> str:
    t = _text(ctx, node)
    if v.shape == "diff" and isinstance(node, ast.BinOp) and isinstance(node.op, ast.Sub) \
            and isinstance(node.left, ast.Constant) and node.left.value == 1:
        z = right if right is not None else flow(ctx).value_at(node.right)
        why = ""
        if z is not None and z.shape == "prob" and z.act == "sigmoid":
            why = " (sigmoid(x) is exactly 1.0 in float32 for x > ~17)"
        elif z is not None and z.shape == "prob" and z.act == "softmax":
            why = " (a softmax output is exactly 1.0 in float32 once one logit leads by ~17)"
        return f"`{t}` is 0 wherever `{_text(ctx, node.right)}` reaches 1{why}"
    if v.shape == "diff" and isinstance(node, ast.BinOp) and isinstance(node.op, ast.Sub):
        return f"`{t}` is 0 wherever `{_text(ctx, node.left)}` equals `{_text(ctx, node.right)}`"
    if v.shape == "diff":
        return f"`{t}` is a difference that can be 0"
    if v.shape == "prob":
        return f"`{t}` is a {v.act} output, which underflows to 0"
    if v.shape == "raw" or v.model_out:
        return f"`{t}` is a model output, which can be 0"
    if v.shape == "norm" and isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult):
        return f"`{t}` is a product of norms, 0 when either input is all zero"
    if v.shape == "norm":
        return f"`{t}` is a norm, 0 for an all-zero input"
    if v.shape in ("sq", "sumsq"):
        return f"`{t}` is a (sum of) squares, 0 when its input is 0"
    if v.shape == "reduce":
        return f"`{t}` is a sum/mean that can be 0"
    return f"`{t}` can be 0"


# -- GP301 / GP308 -------------------------------------------------------------------------------
@rule("GP301", "GP308")
def unsafe_division(ctx):
    fl = flow(ctx)
    seen: set = set()
    for e in fl.events_of("div"):
        den, num = e.vals["den"], e.vals["num"]
        den_node = e.nodes.get("den")
        if den_node is None or den.kind != "tensor":
            continue
        if den.shape == "std":
            if not den.torchy or e.nograd and den.grad != G:
                continue  # NumPy/pandas, or a value of unknown type: not ours to judge
            if not _once(seen, "GP308", den_node):
                continue
            msg = (f"`{_text(ctx, e.node)}` divides by `{_text(ctx, den_node)}` with no eps: NaN for a batch "
                   f"of one (std of a single element) and inf for a constant batch")
            eps, extra = _eps_edits(ctx, den_node)
            t = ctx.src.text_of(den_node)
            plus_text = f"{t} + {eps}" if is_parenthesised(ctx.src, den_node) else f"({t} + {eps})"
            yield ctx.finding("GP308", den_node, msg,
                              fixes=[Fix(f"Add eps: `{_short(plus_text)}`", False,
                                         tuple(extra + [Edit(ctx.span(den_node), plus_text)]))],
                              related=_model_related(ctx, den, "where the normalised values come from"),
                              data={"probe": _probe(ctx, "std", den_node)})
            continue
        if den.shape not in ZERO_SHAPES or _nonzero(den):
            continue
        if not (_live(e, den) or _live(e, num) or _loss_method_input(ctx, e, den, num)) \
                or _logged_only(ctx, e.node) or _after_last_backward(ctx, e):
            continue
        if bounds.guarded_by_test(ctx.facts, e.node, den_node) or bounds.result_checked(ctx.facts, e.node):
            continue  # `if den > 0:` before it, or `ratio[ratio.isinf()] = ...` after it
        if not _once(seen, "GP301", den_node):
            continue
        msg = (f"division by {_why_zero(ctx, den, den_node)}: there the loss is inf and its gradient "
               f"-inf/NaN")
        data = {"probe": _probe(ctx, "denominator", den_node)}
        m = _model_of(den) or _model_of(num)
        if m:
            data["model"] = m
        rel = _model_related(ctx, den if den.model_calls else num, "where the denominator's values come from")
        sev = None
        if _layer_internals(ctx, fl, e):
            # a layer's own normalisation (node degrees, a norm of its weights): a contract of its caller
            sev = "info"
            msg += f" (inside `{e.scope.class_name}.{e.scope.name}`, with no loss in sight)"
        yield ctx.finding("GP301", den_node, msg, fixes=_guard_fixes(ctx, den_node, den.shape != "diff"),
                          related=rel, data=data, severity=sev)


_TRAINING_WORDS = ("loss", "step", "train", "criterion", "objective", "backward", "fit", "optimi", "update",
                   "learn", "reward", "penalty", "regulari")


def _layer_internals(ctx, fl, e) -> bool:
    """The division is part of a layer's own computation (`forward`, `get_delta_weight` of an nn.Module
    that is not a loss), in a method with no loss call and no backward, and its numerator is no loss
    (`loss.sum() / mask.sum()` stays a warning: an all-padding batch is real there)."""
    s = e.scope
    if s is None or s.kind != "method" or not s.class_name:
        return False
    cls, name = s.class_name.lower(), s.name.lower()
    if any(w in cls for w in ("loss", "criterion", "objective", "trainer", "lightningmodule")) \
            or any(w in name for w in _TRAINING_WORDS):
        return False
    if not ctx.symbols.is_module_class(s.class_name):
        return False
    num_node = e.nodes.get("num")
    if num_node is not None and "loss" in ctx.src.text_of(num_node).lower():
        return False
    return not any(ev.scope is s and ev.kind in ("loss", "backward") for ev in fl.events)


# -- GP302 / GP303 -------------------------------------------------------------------------------
def _log_softmax_text(ctx, act_node) -> str | None:
    """`torch.softmax(x, 1)` -> `torch.log_softmax(x, 1)`; `torch.sigmoid(x)` -> `F.logsigmoid(x)`."""
    if not isinstance(act_node, ast.Call) or not isinstance(act_node.func, (ast.Attribute, ast.Name)):
        return None
    src = ctx.src
    func = act_node.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id
    call_text = src.text_of(act_node)
    func_text = src.text_of(func)
    rest = call_text[len(func_text):]
    qn = ctx.symbols.qualname(func)
    if name in ("softmax",):
        if isinstance(func, ast.Attribute):
            return f"{src.text_of(func.value)}.log_softmax{rest}"
        return None
    if name in ("sigmoid", "expit"):
        F = module_alias(ctx.symbols, "torch.nn.functional")
        if F is None:
            t = module_alias(ctx.symbols, "torch")
            if t is None:
                return None
            F = f"{t}.nn.functional"
        if qn is not None:  # torch.sigmoid(x) / F.sigmoid(x)
            return f"{F}.logsigmoid{rest}"
        if isinstance(func, ast.Attribute) and not act_node.args and not act_node.keywords:  # x.sigmoid()
            return f"{F}.logsigmoid({src.text_of(func.value)})"
    return None


def _log_softmax_through_name(ctx, a: Val, an, log_node, better) -> list[Fix]:
    """`probs = F.softmax(z, 1)` ... `torch.log(probs[i, y])` -> `F.log_softmax(z, 1)[i, y]` (unsafe:
    `z` must still hold the same logits there)."""
    base = an
    while True:
        if isinstance(base, ast.Subscript):
            base = base.value
        elif isinstance(base, ast.Call) and isinstance(base.func, ast.Attribute) and base.func.attr in (
                "gather", "squeeze", "unsqueeze", "view", "reshape", "index_select", "flatten"):
            base = base.func.value
        else:
            break
    if not isinstance(base, ast.Name) or not isinstance(a.act_input, (ast.Name, ast.Attribute)):
        return []  # (a call as the softmax's input would run twice)
    assign = ctx.facts.parent(a.act_node)
    if not (isinstance(assign, ast.Assign) and len(assign.targets) == 1 and isinstance(assign.targets[0], ast.Name)
            and assign.targets[0].id == base.id):
        return []
    new_act = _log_softmax_text(ctx, a.act_node)
    bs, asp = ctx.span(base), ctx.span(an)
    if not new_act or (bs.line, bs.col) != (asp.line, asp.col):
        return []
    new = new_act + ctx.src.text_of(an)[len(base.id):]
    return [Fix(f"Use `{better}` on the logits: `{_short(new)}`", False, (Edit(ctx.span(log_node), new),))]


@rule("GP302", "GP303")
def unsafe_log(ctx):
    fl = flow(ctx)
    seen: set = set()
    for e in fl.events_of("log"):
        a = e.vals["arg"]
        an = e.nodes["arg"]
        if a.kind != "tensor" or e.nograd or _logged_only(ctx, e.node):
            continue
        if a.shape == "prob" and a.grad != N:
            if not _once(seen, "GP303", e.node):
                continue
            better = "log_softmax" if a.act == "softmax" else "logsigmoid"
            where = ""
            if a.act_node is not None and a.act_node is not an:
                where = f" (`{_text(ctx, a.act_node)}`, line {a.act_node.lineno})"
            example = ("at logits -200 log(softmax) is -inf where log_softmax gives -200" if a.act == "softmax"
                       else "log(sigmoid(-200)) is -inf where logsigmoid gives -200")
            msg = (f"`{_text(ctx, e.node)}` takes the log of a {a.act} output{where}: it underflows to "
                   f"-inf ({example}); use `{better}`")
            fixes = []
            if a.exact and a.act_node is an:
                new = _log_softmax_text(ctx, a.act_node)
                if new:
                    fixes.append(Fix(f"Use `{better}`: `{_short(new)}`", True, (Edit(ctx.span(e.node), new),),
                                     preferred=True))
            elif a.act_node is not None and a.act_scope is e.scope:
                fixes += _log_softmax_through_name(ctx, a, an, e.node, better)
            rel = []
            if a.act_node is not None and a.act_node is not an:
                rel.append(Related(ctx.span(a.act_node), f"the {a.act} is applied here"))
            yield ctx.finding("GP303", e.node, msg, fixes=fixes, related=rel + _model_related(
                ctx, a, "the model output behind it"), data={"probe": _probe(ctx, "log-arg", an),
                                                              **({"model": _model_of(a)} if _model_of(a) else {})})
            continue
        if a.shape not in ("raw", "diff", "nonneg") or _nonzero(a) or not (_live(e, a, ctx)
                                                                           or _loss_method_input(ctx, e, a)):
            continue
        if not _once(seen, "GP302", e.node):
            continue
        msg = (f"`{_text(ctx, e.node)}`: {_why_zero(ctx, a, an, e.vals.get('right'))}, and log(0) = -inf with gradient -inf; "
               f"clamp it first")
        eps, extra = _eps_edits(ctx, an)
        fixes = [Fix(f"Clamp: `{_short(wrap(ctx.src, an))}.clamp_min({eps})`", False,
                     tuple(extra + [Edit(ctx.span(an), f"{wrap(ctx.src, an)}.clamp_min({eps})")]))]
        yield ctx.finding("GP302", e.node, msg, fixes=fixes,
                          related=_model_related(ctx, a, "where the log's input comes from"),
                          data={"probe": _probe(ctx, "log-arg", an),
                                **({"model": _model_of(a)} if _model_of(a) else {})})


# -- GP304 / GP305 / GP303 (NLLLoss on softmax) -------------------------------------------------------
def _loss_name(ctx, e) -> str:
    mod = e.info.get("module")
    short = e.info["loss"].rsplit(".", 1)[-1]
    if mod is not None and mod.module_key and not mod.module_key.endswith("]"):
        return f"`{mod.module_key}` ({short})"
    if mod is None:
        return f"`{ctx.src.text_of(e.node.func)}`"
    return short


def _uses_of_ctor(fl, ctor) -> int:
    nodes = {id(e.node) for e in fl.events_of("loss")
             if e.info.get("module") is not None and e.info["module"].module_ctor is ctor}
    return len(nodes)


def _rename_loss(ctx, e, new_module: str, new_fn: str) -> Edit | None:
    mod = e.info.get("module")
    if mod is None:
        func = e.node.func
        if isinstance(func, ast.Attribute):
            return Edit(ctx.span(func), f"{ctx.src.text_of(func.value)}.{new_fn}")
        return None
    ctor = mod.module_ctor
    if not isinstance(ctor, ast.Call):
        return None
    func = ctor.func
    if isinstance(func, ast.Attribute):
        return Edit(ctx.span(func), f"{ctx.src.text_of(func.value)}.{new_module}")
    nn = module_alias(ctx.symbols, "torch.nn")
    if nn is None:
        return None
    return Edit(ctx.span(func), f"{nn}.{new_module}")


def _logits_fix(ctx, fl, e, a: Val, inp_node, extra_edits=(), title="Pass the logits", force_unsafe=False):
    """Replace the activation's output by its input: at the call (direct), or in forward."""
    if a.act_node is None:
        return []
    if a.act_node is inp_node and a.act_input is not None:
        return [Fix(f"{title}: `{_short(_text(ctx, a.act_input))}`", not force_unsafe,
                    tuple(list(extra_edits) + [Edit(ctx.span(inp_node), ctx.src.text_of(a.act_input))]),
                    preferred=not force_unsafe)]
    if isinstance(a.act_node, ast.Call) and a.act_input is None:
        # a softmax/sigmoid layer at the end of an nn.Sequential: drop it from the container
        parent = ctx.facts.parent(a.act_node)
        if isinstance(parent, ast.Call) and parent.args and parent.args[-1] is a.act_node and len(parent.args) > 1 \
                and (ctx.symbols.qualname(parent.func) or "").endswith("Sequential"):
            prev = parent.args[-2]
            pe, ae = ctx.span(prev), ctx.span(a.act_node)
            return [Fix(f"Remove `{_text(ctx, a.act_node)}` from the model's Sequential (it outputs logits then)",
                        False, tuple(list(extra_edits) + [Edit(Span(pe.end_line, pe.end_col, ae.end_line, ae.end_col), "")]))]
        return []
    if a.act_input is None or not isinstance(a.act_node, ast.Call):
        return []
    if a.act_scope is e.scope and isinstance(inp_node, ast.Name) and isinstance(a.act_input, ast.Name):
        return [Fix(f"{title}: `{a.act_input.id}`", False,
                    tuple(list(extra_edits) + [Edit(ctx.span(inp_node), a.act_input.id)]))]
    if a.act_scope is not None and a.act_scope is not e.scope:
        where = getattr(a.act_scope, "name", "forward")
        return [Fix(f"Return the logits from `{where}` (removes the {a.act} there)", False,
                    tuple(list(extra_edits) + [Edit(ctx.span(a.act_node), ctx.src.text_of(a.act_input))]))]
    return []


def softmax_owner(ctx, a: Val, e) -> str | None:
    """Words for the code that applies the softmax (or sigmoid) reaching a loss, when that is where the
    fix edits: a layer (`nn.Softmax()` in a Sequential), or an activation in another function
    (`Net.forward`, a helper); None when it is written where the loss is (the fix passes the logits
    there)."""
    node = a.act_node
    if node is None or node is e.nodes.get("input"):
        return None
    layer = a.act_input is None  # a layer object, dropped from its container by the fix
    if not layer and (a.act_scope is None or a.act_scope is e.scope):
        return None
    cls = fn = None
    for anc in ctx.facts.ancestors(node):
        if fn is None and isinstance(anc, (ast.FunctionDef, ast.AsyncFunctionDef)):
            fn = anc.name
        elif isinstance(anc, ast.ClassDef):
            cls = anc.name
            break
    if cls and fn == "__init__":
        return f"the model `{cls}` (a layer built in `{cls}.__init__`)"
    if cls and fn:
        return f"`{cls}.{fn}`"
    if fn:
        return f"`{fn}`"
    return "the model built here"


@rule("GP303", "GP304", "GP305")
def loss_inputs(ctx):
    fl = flow(ctx)
    seen: set = set()
    for e in fl.events_of("loss"):
        kind = e.info.get("loss_kind")
        a = e.vals["input"]
        inp = e.nodes.get("input")
        if kind is None or inp is None or a.kind != "tensor":
            continue
        lname = _loss_name(ctx, e)
        probe = {"probe": _probe(ctx, "loss-input", inp)}
        if _model_of(a):
            probe["model"] = _model_of(a)
        act_where = ""
        if a.act_node is not None and a.act_node is not inp:
            scope_name = getattr(a.act_scope, "name", None)
            cls = getattr(a.act_scope, "class_name", None)
            in_what = f" in `{cls}.{scope_name}`" if cls and a.act_scope is not e.scope else ""
            act_where = f" (line {a.act_node.lineno}{in_what})"
        rel = []
        if a.act_node is not None and a.act_node is not inp:
            rel.append(Related(ctx.span(a.act_node), f"the {a.act} is applied here"))
        rel += _model_related(ctx, a, "the model output passed to the loss")
        if kind == "ce" and a.shape == "prob" and a.act == "softmax":
            if not _once(seen, "GP304", inp):
                continue
            if a.act_node is not None and a.act_node is not inp and not _once(seen, "GP304-act", a.act_node):
                continue  # one warning per softmax layer, not one per loss call on its output
            fixes = _logits_fix(ctx, fl, e, a, inp)
            at = softmax_owner(ctx, a, e)
            if at is not None:
                # the softmax is part of a model (its forward, or a layer it builds): the code that must
                # change is there, as when the loss sits in another file; the loss call is the other end
                msg = (f"{at} ends in a softmax whose output reaches {lname} as `{_text(ctx, inp)}` (line "
                       f"{inp.lineno}), which applies log_softmax itself: the loss is squashed and gradients "
                       f"shrink (for example, with 5 classes a prediction wrong by a logit margin of 19 costs "
                       f"1.90 instead of 19.0); return the logits")
                rel = [Related(ctx.span(inp), f"{lname} applies log_softmax again here")] + \
                    _model_related(ctx, a, "the model output passed to the loss")
                yield ctx.finding("GP304", a.act_node, msg, fixes=fixes, related=rel, data=probe)
                continue
            msg = (f"{lname} applies log_softmax itself, but `{_text(ctx, inp)}` is already a softmax "
                   f"output{act_where}: the loss is squashed and gradients shrink (for example, with 5 classes "
                   f"a prediction wrong by a logit margin of 19 costs 1.90 instead of 19.0); pass the logits")
            yield ctx.finding("GP304", inp, msg, fixes=fixes, related=rel, data=probe)
        elif kind == "nll" and a.shape == "prob" and a.act == "softmax":
            if not _once(seen, "GP303", inp):
                continue
            msg = (f"{lname} expects log-probabilities, but `{_text(ctx, inp)}` is a softmax output"
                   f"{act_where}: use `log_softmax` (log(softmax) underflows to -inf)")
            fixes = []
            if a.act_node is inp and a.exact:
                new = _log_softmax_text(ctx, a.act_node)
                if new:
                    fixes.append(Fix(f"Use `log_softmax`: `{_short(new)}`", True, (Edit(ctx.span(inp), new),),
                                     preferred=True))
            yield ctx.finding("GP303", inp, msg, fixes=fixes, related=rel, data=probe)
        elif kind == "bce" and a.shape == "raw":
            if not _once(seen, "GP305", inp):
                continue
            msg = (f"{lname} gets raw logits `{_text(ctx, inp)}` (the model ends in a linear layer, no "
                   f"sigmoid): BCELoss raises RuntimeError: all elements of input should be between 0 and 1; "
                   f"use BCEWithLogitsLoss")
            ed = _rename_loss(ctx, e, "BCEWithLogitsLoss", "binary_cross_entropy_with_logits")
            fixes = [Fix("Use BCEWithLogitsLoss on the logits", False, (ed,))] if ed else []
            yield ctx.finding("GP305", inp, msg, severity="error", fixes=fixes, related=rel, data=probe)
        elif kind == "bce" and a.shape == "prob" and a.act == "sigmoid":
            if e.nograd:
                continue  # an evaluation loss: the hazard is the training gradient, and there is none
            if not _once(seen, "GP305", inp):
                continue
            if a.act_node is not None and a.act_node is not inp and not _once(seen, "GP305-act", a.act_node):
                continue  # one warning per sigmoid: a GAN's three BCE calls on D's output are one cause
            in_model = a.act_node is not inp and a.act_scope is not e.scope
            msg = (f"{lname} on a sigmoid output `{_text(ctx, inp)}`{act_where} is less stable than "
                   f"BCEWithLogitsLoss on the logits: once the sigmoid saturates (a logit of 17 rounds to 1.0 in "
                   f"float32), BCELoss clamps log(0) to -100, so a confidently wrong prediction costs a flat 100 "
                   f"and its gradient is exactly 0")
            if in_model:
                msg += "; the sigmoid is part of the model, so moving it out changes the model's outputs"
            ed = _rename_loss(ctx, e, "BCEWithLogitsLoss", "binary_cross_entropy_with_logits")
            fixes = []
            if ed is not None:
                shared = e.info.get("module") is not None and _uses_of_ctor(fl, e.info["module"].module_ctor) > 1
                fixes = _logits_fix(ctx, fl, e, a, inp, extra_edits=[ed],
                                    title="Use BCEWithLogitsLoss on the logits", force_unsafe=shared)
            yield ctx.finding("GP305", inp, msg, severity="info" if in_model else "warning", fixes=fixes,
                              related=rel, data=probe)
        elif kind == "bcel" and a.shape == "prob" and a.act == "sigmoid":
            if not _once(seen, "GP305", inp):
                continue
            at = softmax_owner(ctx, a, e)
            if at is not None:
                # as GP304: the sigmoid the fix removes is part of a model, so the finding goes there
                msg = (f"{at} ends in a sigmoid whose output reaches {lname} as `{_text(ctx, inp)}` (line "
                       f"{inp.lineno}), which applies sigmoid itself: sigmoid is applied twice and the loss "
                       f"cannot go below ~0.31; return the logits")
                rel = [Related(ctx.span(inp), f"{lname} applies sigmoid again here")] + \
                    _model_related(ctx, a, "the model output passed to the loss")
                yield ctx.finding("GP305", a.act_node, msg, severity="warning",
                                  fixes=_logits_fix(ctx, fl, e, a, inp), related=rel, data=probe)
                continue
            msg = (f"{lname} applies sigmoid itself, but `{_text(ctx, inp)}` is already a sigmoid output"
                   f"{act_where}: sigmoid is applied twice and the loss cannot go below ~0.31")
            yield ctx.finding("GP305", inp, msg, severity="warning", fixes=_logits_fix(ctx, fl, e, a, inp),
                              related=rel, data=probe)


# -- GP306 ---------------------------------------------------------------------------------------
def _sum_of_squares(ctx, node):
    """`(d ** 2).sum(dim)`, `d.pow(2).sum(dim)`, `torch.sum(d ** 2, dim)`: (d, tail args text)."""
    src = ctx.src
    inner, dim_nodes, kws = None, [], []
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "sum":
        qn = ctx.symbols.qualname(node.func)
        if qn is not None and qn.endswith("torch.sum") and node.args:
            inner, dim_nodes, kws = node.args[0], node.args[1:], node.keywords
        elif qn is None:
            inner, dim_nodes, kws = node.func.value, node.args, node.keywords
    if inner is None:
        return None
    d = None
    if isinstance(inner, ast.BinOp) and isinstance(inner.op, ast.Pow) and isinstance(inner.right, ast.Constant) \
            and inner.right.value == 2:
        d = inner.left
    elif isinstance(inner, ast.BinOp) and isinstance(inner.op, ast.Mult) and \
            ast.dump(inner.left) == ast.dump(inner.right):
        d = inner.left
    elif isinstance(inner, ast.Call) and isinstance(inner.func, ast.Attribute) and inner.func.attr in ("pow", "square") \
            and ctx.symbols.qualname(inner.func) is None:
        if inner.func.attr == "square" or (inner.args and isinstance(inner.args[0], ast.Constant) and inner.args[0].value == 2):
            d = inner.func.value
    if d is None:
        return None
    parts = []
    if dim_nodes:
        parts.append(f"dim={src.text_of(dim_nodes[0])}")
        if len(dim_nodes) > 1:
            parts.append(f"keepdim={src.text_of(dim_nodes[1])}")
    for kw in kws:
        if kw.arg in ("dim", "keepdim"):
            parts.append(f"{kw.arg}={src.text_of(kw.value)}")
        else:
            return None
    return d, parts


@rule("GP306")
def sqrt_at_zero(ctx):
    fl = flow(ctx)
    seen: set = set()
    for e in fl.events_of("sqrt"):
        a = e.vals["arg"]
        an = e.nodes["arg"]
        if a.shape not in ("sq", "sumsq") or not (_live(e, a, ctx) or _loss_method_input(ctx, e, a)):
            continue
        if not _once(seen, "GP306", e.node):
            continue
        msg = (f"`{_text(ctx, e.node)}`: `{_text(ctx, an)}` is a sum or mean of squares that can be exactly 0, where "
               f"sqrt's gradient is NaN (the forward value 0 is fine); `torch.linalg.vector_norm` gives 0 there")
        fixes = []
        sos = _sum_of_squares(ctx, an)
        t = module_alias(ctx.symbols, "torch")
        if sos is not None and t is not None:
            d, parts = sos
            new = f"{t}.linalg.vector_norm({', '.join([ctx.src.text_of(d)] + parts)})"
            fixes.append(Fix(f"Use `{_short(new)}`", False, (Edit(ctx.span(e.node), new),), preferred=True))
        eps, extra = _eps_edits(ctx, an)
        at = ctx.src.text_of(an)
        if e.info.get("form") == "func":
            plus = f"{at} + {eps}"
        else:
            plus = f"({at} + {eps})" if not is_parenthesised(ctx.src, an) else f"{at} + {eps}"
        fixes.append(Fix(f"Add eps under the root: `{_short(plus)}`", False,
                         tuple(extra + [Edit(ctx.span(an), plus)])))
        yield ctx.finding("GP306", e.node, msg, fixes=fixes,
                          related=_model_related(ctx, a, "where the squared values come from"),
                          data={"probe": _probe(ctx, "sqrt-arg", an),
                                **({"model": _model_of(a)} if _model_of(a) else {})})


# -- GP307 ---------------------------------------------------------------------------------------
# A log-variance / log-std / log-scale head: exp of it is the standard reparameterisation (a VAE's
# `torch.exp(0.5 * logvar)`, its KL term's `logvar.exp()`), not an overflow waiting to happen.
_LOG_SCALE = re.compile(r"(?:^|_)log_?(?:var(?:iance)?|sigma|std|stddev|stdev|scale|sd)(?:$|_|\d|sq)")


def _log_scale(node) -> bool:
    """`logvar`, `0.5 * logvar`, `logvar / 2`, `-log_std`, `logvar.mul(0.5)`, `self.log_sigma`,
    `logvar.clamp(-10, 10)`, `self.fc_logvar(h)`: a log-scale quantity, up to a constant factor."""
    cur = node
    for _ in range(6):
        if isinstance(cur, ast.UnaryOp) and isinstance(cur.op, (ast.USub, ast.UAdd)):
            cur = cur.operand
        elif isinstance(cur, ast.BinOp) and isinstance(cur.op, (ast.Mult, ast.Div)):
            if _is_number(cur.right):
                cur = cur.left
            elif isinstance(cur.op, ast.Mult) and _is_number(cur.left):
                cur = cur.right
            else:
                return False
        elif isinstance(cur, ast.Call) and isinstance(cur.func, ast.Attribute) and cur.func.attr in (
                "mul", "div", "clamp", "clip", "clamp_max", "clamp_min") and all(_is_number(a) for a in cur.args):
            cur = cur.func.value
        elif isinstance(cur, ast.Subscript):
            cur = cur.value
        elif isinstance(cur, ast.Call) and isinstance(cur.func, (ast.Name, ast.Attribute)):
            cur = cur.func  # `self.fc_logvar(h)`: the output of a log-variance head
            break
        else:
            break
    name = cur.id if isinstance(cur, ast.Name) else cur.attr if isinstance(cur, ast.Attribute) else None
    if name is None:
        return False
    snake = re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()
    return bool(_LOG_SCALE.search(snake))


def _is_number(node) -> bool:
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        node = node.operand
    return isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool)


@rule("GP307")
def unsafe_exp(ctx):
    fl = flow(ctx)
    seen: set = set()
    for e in fl.events_of("exp"):
        a = e.vals["arg"]
        an = e.nodes["arg"]
        if a.shape != "raw" or not _live(e, a, ctx) or _log_scale(an):
            continue
        if not _once(seen, "GP307", e.node):
            continue
        msg = (f"`{_text(ctx, e.node)}` of `{_text(ctx, an)}`, an unbounded model output: exp overflows to inf "
               f"above ~88 in float32; clamp it or use `torch.logsumexp`/`log_softmax`")
        fix = Fix(f"Clamp: `{_short(wrap(ctx.src, an))}.clamp(max=80.0)`", False,
                  (Edit(ctx.span(an), f"{wrap(ctx.src, an)}.clamp(max=80.0)"),))
        yield ctx.finding("GP307", e.node, msg, fixes=[fix],
                          related=_model_related(ctx, a, "the model output inside exp"),
                          data={"probe": _probe(ctx, "exp-arg", an),
                                **({"model": _model_of(a)} if _model_of(a) else {})})
