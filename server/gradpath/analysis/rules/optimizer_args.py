"""GP108-GP111: what is handed to the optimizer: a fresh instance's parameters, the bound method, the
module itself, a parameters() generator consumed before (or by another) optimizer."""
from __future__ import annotations

import ast

from gradpath.analysis.facts import key_of
from gradpath.analysis.findings import Edit, Fix, Related, Span
from gradpath.analysis.rules import rule
from gradpath.analysis.rules._gp1 import ITERATING_CALLS, _CONFIG_NAMES, _model_related, model_data, short
from gradpath.analysis.symbols import canonical


# -- GP108 ----------------------------------------------------------------------------------
@rule("GP108")
def fresh_instance(ctx):
    facts = ctx.facts
    for opt in facts.optimizers:
        cov = facts.coverage(opt)
        for call, cls in cov.fresh:
            trained = [b for b in facts.models if b.cls == cls and b.origin == "new" and b.value is not call
                       and (facts.model_calls(b.key) or facts.reaches_backward(b))]
            seen, cands = set(), []
            for b in trained:
                if b.key not in seen:
                    seen.add(b.key)
                    cands.append(b)
            if not cands:
                continue
            visible = [b for b in cands if facts.model_at(b.key, opt.scope, opt.line) is not None]
            fixes = []
            for b in visible:
                fixes.append(Fix(f"Use the trained instance {b.key}", len(visible) == 1,
                                 (Edit(ctx.span(call), b.key),), preferred=len(visible) == 1))
            b = cands[0]
            msg = (f"{opt.short} gets the parameters of a new {short(cls)} built right here, not of the trained "
                   f"instance {b.key} (line {b.line}): {b.key} never changes")
            related = [_model_related(ctx, x, "is the instance that is trained") for x in cands[:3]]
            yield ctx.finding("GP108", call, msg, fixes=fixes, related=related, data=model_data(b, opt))


# -- GP109 / GP110 --------------------------------------------------------------------------
@rule("GP109")
def params_not_called(ctx):
    facts = ctx.facts
    seen = set()
    for opt in facts.optimizers:
        cov = facts.coverage(opt)
        for attr, model in cov.bound_methods:
            if id(attr) in seen:
                continue
            rk = key_of(attr.value)
            if model is None and (rk is None or rk in _CONFIG_NAMES or rk.split(".")[0] in _CONFIG_NAMES):
                continue
            seen.add(id(attr))
            sp = ctx.span(attr)
            text = ctx.src.text_of(attr)
            yield ctx.finding(
                "GP109", attr,
                f"{opt.short} is given the bound method {text}, not its result: PyTorch raises TypeError: "
                f"'method' object is not iterable",
                fixes=[Fix(f"Call {text}()", True, (Edit(Span(sp.end_line, sp.end_col, sp.end_line, sp.end_col), "()"),),
                           preferred=True)],
                related=[_model_related(ctx, model)] if model else [],
                data=model_data(model, opt))


@rule("GP110")
def module_not_params(ctx):
    facts = ctx.facts
    for opt in facts.optimizers:
        cov = facts.coverage(opt)
        items = [(node, model, path, None) for node, model, path in cov.modules] + \
            [(node, None, "", cls) for node, cls in cov.fresh_modules]
        for node, model, path, fresh_cls in items:
            if model is None:
                cls = fresh_cls
                text = ctx.src.text_of(node)
                sp = ctx.span(node)
                yield ctx.finding(
                    "GP110", node,
                    f"{opt.short} is given the module {text if len(text) <= 40 else short(cls) + '(...)'} itself, not "
                    f"its parameters: PyTorch raises {_gp110_error(cls)}",
                    fixes=[Fix(f"Pass {short(cls)}(...).parameters()", True,
                               (Edit(Span(sp.end_line, sp.end_col, sp.end_line, sp.end_col), ".parameters()"),),
                               preferred=True)],
                    data={"model_class": cls, "optimizer": opt.key, "optimizer_class": opt.cls})
                continue
            inv = facts.inventory_of(model)
            cls = model.cls if not path else ((inv.submodules.get(path) if inv else None) or "")
            if not cls:
                continue
            err = _gp110_error(cls)
            text = ctx.src.text_of(node)
            sp = ctx.span(node)
            yield ctx.finding(
                "GP110", node,
                f"{opt.short} is given the module {text} itself, not its parameters: PyTorch raises {err}",
                fixes=[Fix(f"Pass {text}.parameters()", True,
                           (Edit(Span(sp.end_line, sp.end_col, sp.end_line, sp.end_col), ".parameters()"),),
                           preferred=True)],
                related=[_model_related(ctx, model)], data=model_data(model, opt))


def _gp110_error(cls: str) -> str:
    if cls in ("torch.nn.Sequential", "torch.nn.ModuleList"):
        return "TypeError: optimizer can only optimize Tensors, but one of the params is a module"
    if cls == "torch.nn.ModuleDict":
        return "TypeError: optimizer can only optimize Tensors, but one of the params is str"
    return f"TypeError: '{short(cls)}' object is not iterable"


# -- GP111 ----------------------------------------------------------------------------------
def _is_generator_expr(ctx, v) -> bool:
    if isinstance(v, ast.GeneratorExp):
        return True
    if isinstance(v, ast.Call):
        f = v.func
        if isinstance(f, ast.Attribute) and f.attr in ("parameters", "named_parameters", "children", "modules"):
            return True
        if isinstance(f, ast.Name) and f.id in ("filter", "map", "iter", "zip", "reversed"):
            return True
        qn = canonical(ctx.symbols.qualname(f) or "")
        if qn in ("itertools.chain",):
            return True
    return False


def _consumers(ctx, scope, name: str, start: int, end: int, opt_call) -> list[tuple[ast.AST, str]]:
    """Uses of `name` (a Name) that iterate it, between lines start and end."""
    facts = ctx.facts
    out = []
    for n in scope.walk():
        if not isinstance(n, ast.Name) or n.id != name or not isinstance(n.ctx, ast.Load):
            continue
        ln = n.lineno
        if ln <= start or ln > end:
            continue
        par = facts.parent(n)
        if par is opt_call or _exclusive_branches(facts, n, opt_call):
            continue  # `if sgd: SGD(params) elif adam: Adam(params)`: only one of them runs
        how = None
        if isinstance(par, (ast.For, ast.AsyncFor)) and par.iter is n:
            how = f"the for loop at line {ln}"
        elif isinstance(par, ast.comprehension) and par.iter is n:
            how = f"the comprehension at line {ln}"
        elif isinstance(par, ast.Starred):
            how = f"*{name} at line {ln}"
        elif isinstance(par, ast.Call) and n in par.args:
            fq = canonical(ctx.symbols.qualname(par.func) or "")
            fname = par.func.id if isinstance(par.func, ast.Name) else None
            if fname in ITERATING_CALLS:
                how = f"{fname}({name}) at line {ln}"
            elif any(o.call is par for o in facts.optimizers):
                how = f"the optimizer built at line {ln}"
            elif fq.startswith("torch.nn.utils."):
                how = f"{fq.rsplit('.', 1)[-1]}({name}) at line {ln}"
        if how:
            out.append((n, how))
    return out


def _exclusive_branches(facts, a, b) -> bool:
    """Are nodes a and b in different branches of one `if`/`elif` chain or `match` (never both run)?"""
    anc_b = {id(x): x for x in facts.ancestors(b)}
    child = a
    for anc in facts.ancestors(a):
        if id(anc) in anc_b:
            if isinstance(anc, ast.If):
                sides = [any(child is x for x in anc.body), any(child is x for x in anc.orelse)]
                b_child = next((x for x in anc.body + anc.orelse if x is b or id(x) in anc_b), None)
                b_sides = [any(b_child is x for x in anc.body), any(b_child is x for x in anc.orelse)]
                return b_child is not None and sides != b_sides and any(sides) and any(b_sides)
            if isinstance(anc, ast.Match):
                return not any(child is x for x in (anc.subject,))  # two different cases
            return False
        child = anc
    return False


@rule("GP111")
def consumed_generator(ctx):
    facts = ctx.facts
    for opt in facts.optimizers:
        p = opt.params
        if not isinstance(p, ast.Name):
            continue
        scope = opt.scope
        assigns = [n for n in scope.walk() if isinstance(n, ast.Assign) and len(n.targets) == 1
                   and isinstance(n.targets[0], ast.Name) and n.targets[0].id == p.id and n.lineno < opt.line]
        if not assigns:
            continue
        a = max(assigns, key=lambda n: n.lineno)
        if not _is_generator_expr(ctx, a.value):
            continue
        cons = _consumers(ctx, scope, p.id, a.end_lineno or a.lineno, opt.line, opt.call)
        reason = None
        if cons:
            reason = f"it was already consumed by {cons[-1][1]}"
        else:
            loop = _loop_between(facts, opt.call, a)
            if loop is not None:
                reason = (f"the loop at line {loop.lineno} builds {opt.short} again from the same generator, "
                          f"which the first iteration consumed")
        if reason is None:
            continue
        gen_text = ctx.src.text_of(a.value)
        msg = (f"{p.id} is a one-shot generator ({gen_text if len(gen_text) <= 40 else 'parameters()'}); {reason}, "
               f"{'so' if cons else 'so from the second iteration on'} {opt.short} gets nothing: PyTorch raises ValueError: optimizer got an empty parameter list")
        fixes = [Fix(f"Store a list: {p.id} = list(...)", True, (Edit(ctx.span(a.value), f"list({gen_text})"),),
                     preferred=True)]
        related = [Related(ctx.span(a), f"{p.id} is created here")] + \
            [Related(ctx.span(n), f"{p.id} is iterated here") for n, _h in cons[:2]]
        model = None
        if isinstance(a.value, ast.Call) and isinstance(a.value.func, ast.Attribute):
            r = facts.resolve_receiver(a.value.func.value, scope, a.lineno)
            model = r[0] if r else None
        yield ctx.finding("GP111", p, msg, fixes=fixes, related=related, data=model_data(model, opt))


def _loop_between(facts, inner, outer_stmt):
    """The innermost loop that contains `inner` but not `outer_stmt`."""
    outer_anc = {id(a) for a in facts.ancestors(outer_stmt)}
    for anc in facts.ancestors(inner):
        if isinstance(anc, (ast.For, ast.While, ast.AsyncFor)) and id(anc) not in outer_anc:
            if isinstance(anc, (ast.For, ast.AsyncFor)) and any(n is outer_stmt for n in ast.walk(anc)):
                return None
            return anc
        if isinstance(anc, (ast.FunctionDef, ast.AsyncFunctionDef)):
            return None
    return None
