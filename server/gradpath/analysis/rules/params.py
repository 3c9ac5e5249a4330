"""GP1: parameters that never reach the optimizer: GP101-GP103 (what the optimizer covers). GP104,
GP105 and GP112 are in registration.py, GP106 and GP107 in lifecycle.py, GP108-GP111 in
optimizer_args.py; the helpers they share in _gp1.py.

Every rule reads `ctx.facts` (model bindings and their inventories, what each optimizer's params
expression covers, freezes, which models' outputs reach a backwarded loss). When a fact is not
known (an unknown factory, a params list built in a loop, a conditional freeze) the rule says
nothing.
"""
from __future__ import annotations

import ast

from gradpath.analysis.facts import const_value, key_of
from gradpath.analysis.findings import Edit, Fix, Related, Span
from gradpath.analysis.rules import rule
from gradpath.analysis.rules._gp1 import (
    _is_empty_params, _model_related, _param_related, _trainable_models_visible, model_data, names_text,
    short,
)
from gradpath.analysis.rules.lifecycle import (
    _HARMLESS_FUNCS, _changed_after_build, _empty_outcome, _params_iter, _single_def, _unwrap_iter,
)


@rule("GP101")
def empty_param_list(ctx):
    facts = ctx.facts
    for opt in facts.optimizers:
        p = opt.params
        if p is None or not _is_empty_params(p):
            continue
        cands = _trainable_models_visible(facts, opt)
        clear = None
        if len(cands) == 1:
            clear = cands[0]
        elif cands:
            reach = [m for m in cands if m.origin != "copy" and facts.reaches_backward(m)]
            if len(reach) == 1:
                clear = reach[0]
        fixes, related = [], []
        if clear is not None:
            fixes.append(Fix(f"Pass {clear.key}.parameters() to {opt.short}", True,
                             (Edit(ctx.span(p), f"{clear.key}.parameters()"),), preferred=True))
            related.append(_model_related(ctx, clear, "is the model trained here"))
        else:
            for m in cands:
                fixes.append(Fix(f"Pass {m.key}.parameters() to {opt.short}", False,
                                 (Edit(ctx.span(p), f"{m.key}.parameters()"),)))
                related.append(_model_related(ctx, m))
        yield ctx.finding(
            "GP101", p,
            f"{opt.short} is given an empty parameter list: PyTorch raises ValueError: optimizer got an "
            f"empty parameter list when it is constructed",
            fixes=fixes, related=related, data=model_data(clear, opt, []))
    for opt in facts.optimizers:
        hit = _empty_name_filter(ctx, opt)
        if hit is None:
            continue
        model, recv, names, test, built = hit
        who = ctx.src.text_of(recv)
        n = len(names)
        shown = names_text(names, limit=4)
        msg = (f"{opt.short} gets the parameters of {who} for which `{_clip(ctx.src.text_of(test))}` holds, but none "
               f"of its {n} parameter name{'s' if n != 1 else ''} ({shown}) match, so the list is empty: "
               f"{_empty_outcome(opt, False, ' when it is constructed')}")
        near = _near_name(test, names)
        fixes = []
        if near:
            msg += f" (did you mean `{near[1]}`?)"
            const, right = near
            text = ctx.src.text_of(const)
            if const.value in text:
                fixes.append(Fix(f"Look for `{right}`", False,
                                 (Edit(ctx.span(const), text.replace(const.value.strip("."), right, 1)),),
                                 preferred=True))
        related = [_model_related(ctx, model)]
        if built is not None:
            related.insert(0, Related(ctx.span(built), f"{ctx.src.text_of(opt.params)} is built here"))
        yield ctx.finding("GP101", opt.params, msg, fixes=fixes, related=related,
                          data=model_data(model, opt, []))


def _near_name(test, names: list[str]):
    """A parameter-name part close to the one string the test looks for (`classifer` -> `classifier`)."""
    import difflib
    consts = [n for n in ast.walk(test) if isinstance(n, ast.Constant) and isinstance(n.value, str)]
    if len(consts) != 1 or not consts[0].value.strip("."):
        return None
    key = consts[0].value.strip(".")
    parts = sorted({seg for n in names for seg in n.split(".") if not seg.isdigit()})
    close = difflib.get_close_matches(key, parts, n=1, cutoff=0.8)
    return (consts[0], close[0]) if close and close[0] != key else None


def _clip(text: str, limit: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _empty_name_filter(ctx, opt):
    """`[p for n, p in model.named_parameters() if "head" in n]` where no parameter name of the model
    (its inventory is complete) passes the test: (model, receiver, names, test, the assignment the
    list came from or None), else None."""
    facts = ctx.facts
    e = _unwrap_iter(opt.params) if opt.params is not None else None
    d = None
    if isinstance(e, ast.Name) and opt.stmt is not None:
        d = _single_def(facts, e.id, opt)
        e = _unwrap_iter(d.value) if d is not None else None
    if not isinstance(e, (ast.ListComp, ast.GeneratorExp, ast.SetComp)) or len(e.generators) != 1:
        return None
    gen = e.generators[0]
    src = _params_iter(gen.iter)
    if src is None or src[1] != "named_parameters" or gen.is_async or not gen.ifs:
        return None
    t = gen.target
    if not (isinstance(t, ast.Tuple) and len(t.elts) == 2 and isinstance(t.elts[0], ast.Name)):
        return None
    var = t.elts[0].id
    r = facts.resolve_receiver(src[0], opt.scope, opt.line)
    if r is None:
        return None
    model, path = r
    inv = facts.inventory_of(model)
    if inv is None or not inv.complete or inv.maybe_more or _changed_after_build(facts, model):
        return None
    names = [p.name[len(path) + 1:] if path else p.name for p in inv.under(path)]
    if not names or _handed_off_before(facts, model, opt):
        return None
    for name in names:
        if any(_name_test(c, var, name) is False for c in gen.ifs):
            continue
        return None
    test = gen.ifs[0] if len(gen.ifs) == 1 else e
    return model, src[0], names, test, d


def _handed_off_before(facts, model, opt) -> bool:
    """The model is given to a call (that may add parameters to it) before the optimizer is built."""
    keys = {model.key} | {r.key for r in facts.roots_of(model)}
    scopes = [opt.scope] + ([model.scope] if model.scope is not opt.scope else [])
    for node in (n for s in scopes for n in s.walk()):
        if isinstance(node, ast.Call) and node is not opt.call and getattr(node, "lineno", 0) <= opt.line:
            if isinstance(node.func, ast.Name) and node.func.id in _HARMLESS_FUNCS:
                continue
            for a in list(node.args) + [k.value for k in node.keywords]:
                k = key_of(a.value if isinstance(a, ast.Starred) else a)
                if k and any(k == m or k.startswith(m + ".") for m in keys):
                    return True
    return False


def _name_test(node, var: str, name: str):
    """True/False for a test on the parameter name `var` (`"fc" in n`, `n.startswith(...)`, `==`,
    `not`, `and`/`or`, `any(k in n for k in (...))`), None when it cannot be decided."""
    def is_var(x) -> bool:
        return isinstance(x, ast.Name) and x.id == var

    def strs(x):
        v = const_value(x)
        if isinstance(v, str):
            return (v,)
        if isinstance(v, tuple) and v and all(isinstance(i, str) for i in v):
            return v
        if isinstance(x, ast.Set) and x.elts:
            vals = tuple(const_value(i) for i in x.elts)
            return vals if all(isinstance(i, str) for i in vals) else None
        return None

    if isinstance(node, ast.BoolOp):
        vals = [_name_test(v, var, name) for v in node.values]
        if isinstance(node.op, ast.And):
            return False if False in vals else (True if all(v is True for v in vals) else None)
        return True if True in vals else (False if all(v is False for v in vals) else None)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        v = _name_test(node.operand, var, name)
        return None if v is None else not v
    if isinstance(node, ast.Compare) and len(node.ops) == 1:
        left, op, right = node.left, node.ops[0], node.comparators[0]
        if isinstance(op, (ast.In, ast.NotIn)) and is_var(right):
            ks = strs(left)
            if ks is None or len(ks) != 1:
                return None
            hit = ks[0] in name
        elif isinstance(op, (ast.In, ast.NotIn)) and is_var(left) and isinstance(right, (ast.Tuple, ast.List, ast.Set)):
            ks = strs(right)
            if ks is None:
                return None
            hit = name in ks
        elif isinstance(op, (ast.Eq, ast.NotEq)) and (is_var(left) or is_var(right)):
            ks = strs(right if is_var(left) else left)
            if ks is None or len(ks) != 1:
                return None
            hit = name == ks[0]
        else:
            return None
        return hit if isinstance(op, (ast.In, ast.Eq)) else not hit
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and is_var(node.func.value) \
            and node.func.attr in ("startswith", "endswith") and len(node.args) == 1 and not node.keywords:
        ks = strs(node.args[0])
        if ks is None:
            return None
        return name.startswith(ks) if node.func.attr == "startswith" else name.endswith(ks)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("any", "all") \
            and len(node.args) == 1 and isinstance(node.args[0], ast.GeneratorExp):
        g = node.args[0]
        if len(g.generators) != 1 or g.generators[0].ifs or not isinstance(g.generators[0].target, ast.Name):
            return None
        ks = strs(g.generators[0].iter)
        kv = g.generators[0].target.id
        if ks is None or kv == var:
            return None
        vals = []
        for k in ks:
            sub = _subst(g.elt, kv, k)
            vals.append(None if sub is None else _name_test(sub, var, name))
        if None in vals:
            return None
        return any(vals) if node.func.id == "any" else all(vals)
    return None


def _subst(node, name: str, value: str):
    """A copy of `node` with the name `name` replaced by the string constant `value`."""
    class _R(ast.NodeTransformer):
        def visit_Name(self, n):
            return ast.copy_location(ast.Constant(value), n) if n.id == name else n
    try:
        import copy as _copy
        return _R().visit(_copy.deepcopy(node))
    except RecursionError:
        return None


# -- GP102 ----------------------------------------------------------------------------------
@rule("GP102")
def partial_params(ctx):
    facts = ctx.facts
    if any(facts.coverage(o).unknown and not facts.coverage(o).parts for o in facts.optimizers):
        pass  # an opaque optimizer elsewhere is checked per model below
    reported: set[int] = set()
    covs = [(o, facts.coverage(o)) for o in facts.optimizers]
    any_unknown = any(c.unknown for _o, c in covs)
    with_parts = [c for _o, c in covs if c.parts]
    for opt in sorted(facts.optimizers, key=lambda o: o.line):
        if ctx.out_of_time():
            return
        cov = facts.coverage(opt)
        if cov.unknown or cov.empty:
            continue
        for model in list(cov.models().values()):
            if id(model) in reported:
                continue
            parts = [pt for pt in cov.parts if pt.model is model]
            if any(pt.kind in ("all",) for pt in parts) or any(pt.kind == "name-filter" for pt in parts):
                continue
            inv = facts.inventory_of(model)
            if inv is None or not inv.params:
                continue
            # every optimizer that touches this model (a split across optimizers is fine); one whose
            # parameters cannot be read may hold the rest, if it can see this model at all
            union: set[str] = set()
            if any_unknown and any(c.unknown and _may_reach(ctx, o, model) for o, c in covs):
                continue
            opaque = False
            for c in with_parts:
                union |= {n for pt in c.parts if pt.model is not None and facts.same_instance(pt.model, model)
                          for n in pt.names}
                if c.deliberate(model):
                    opaque = True
            if opaque:
                continue
            frozen, uncertain = facts.frozen_names(model)
            if uncertain:
                continue
            missing = [p.name for p in inv.params if p.name not in union and p.name not in frozen]
            if inv.used is not None:
                missing = [n for n in missing if n.split(".")[0] in inv.used]
            if not missing:
                continue
            if not facts.model_calls(model.key) and not facts.reaches_backward(model):
                continue
            reported.add(id(model))
            here = cov.names_of(model)
            total = len(inv.params)
            of = f"{len(here)} of {total}" if inv.complete else f"{len(here)} of at least {total}"
            verb = "is" if len(missing) == 1 else "are"
            msg = (f"{opt.short} gets {of} parameter tensor{'s' if total != 1 else ''} of {model.key}; "
                   f"{names_text(missing)} {verb} never updated")
            fixes = []
            if not cov.groups and all(pt.model is model for pt in cov.parts) and opt.params is not None \
                    and not cov.sources:
                fixes.append(Fix(f"Pass all of {model.key}.parameters() to {opt.short}", False,
                                 (Edit(ctx.span(opt.params), f"{model.key}.parameters()"),), preferred=True))
            related = [_model_related(ctx, model)] + _param_related(ctx, inv, missing)
            yield ctx.finding("GP102", opt.params, msg, fixes=fixes, related=related,
                              data=model_data(model, opt, missing))


# -- where an optimizer can see a model ---------------------------------------------------------
def _scope_names(ctx, scope) -> set[str]:
    """Names a scope's code mentions (module level: outside its functions and classes)."""
    memo = ctx.memo("gp1.scope-names", dict)
    hit = memo.get(id(scope))
    if hit is None:
        if scope.kind == "module":
            nodes = (n for st in scope.body if not isinstance(st, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                     for n in ast.walk(st))
        else:
            nodes = ast.walk(scope.node)
        hit = memo[id(scope)] = {n.id for n in nodes if isinstance(n, ast.Name)}
    return hit


def _may_reach(ctx, o, model) -> bool:
    """Could optimizer `o` hold `model`'s parameters, for all we can tell? Only from code that can
    see the model: the same function, the same class, module level for a global (or a function
    that names it), or a function or class that the model's code calls. A namesake `model` in an
    unrelated function (every training function has one) is another object."""
    so, sm = o.scope, model.scope
    if so is sm or so is None or sm is None:
        return True
    if so.class_name and so.class_name == sm.class_name:
        return True
    if so.kind == "module":
        return sm.kind == "module" or (o.key or "").split(".")[0] in _scope_names(ctx, sm)
    callee = so.class_name if so.kind == "method" and so.class_name else so.name
    if sm.kind == "module":
        return model.key.split(".")[0] in _scope_names(ctx, so) or callee in _scope_names(ctx, sm)
    return callee in _scope_names(ctx, sm)


# -- GP103 ----------------------------------------------------------------------------------
def _held(ctx, model) -> bool:
    facts = ctx.facts
    for o in facts.optimizers:
        cov = facts.coverage(o)
        for pt in cov.parts:
            if pt.model is None:
                continue
            if facts.same_instance(pt.model, model) or (pt.model.key == model.key and _may_reach(ctx, o, model)):
                return True
            if model.origin == "derived" and pt.model.key == model.source_key and _may_reach(ctx, o, model):
                return True
        if any(facts.same_instance(m, model) or (m.key == model.key and _may_reach(ctx, o, model))
               for _n, m, _p in cov.modules):
            return True
    return False


@rule("GP103")
def model_not_optimized(ctx):
    facts = ctx.facts
    if not facts.optimizers:
        return
    unknown = [o for o in facts.optimizers if facts.coverage(o).unknown]
    done: set[tuple[str, int]] = set()
    for bw in sorted(facts.backwards(), key=lambda b: b.line):
        deps = [facts.model_at(k, bw.scope, bw.line) for k in sorted(bw.deps)]
        deps = [m for m in deps if m is not None]
        held = [m for m in deps if _held(ctx, m)]
        if not held:
            continue
        for model in deps:
            if model in held or model.origin == "copy":
                continue
            # an optimizer whose parameters cannot be read may hold it
            if any(_may_reach(ctx, o, model) for o in unknown):
                continue
            inv = facts.inventory_of(model)
            if inv is None or not inv.params:
                continue
            frozen, uncertain = facts.frozen_names(model)
            if frozen or uncertain:
                continue
            if facts.escapes(model) or facts.in_eval_only(model) or _loaded_from_model(facts, model):
                continue
            if model.origin == "derived" and model.source_key:
                src = facts.model_at(model.source_key, model.scope, model.line - 1)
                if src is not None and (facts.escapes(src) or _held(ctx, src)):
                    continue
            # the optimizer that trains the other model(s) of this loss
            cands = [o for o in sorted(facts.optimizers, key=lambda o: o.line)
                     if any(pt.model is not None and any(facts.same_instance(pt.model, h)
                                                         or (pt.model.key == h.key and _may_reach(ctx, o, h))
                                                         for h in held) for pt in facts.coverage(o).parts)]
            opt = _pick_optimizer(facts, cands, model)
            if opt is None or opt.params is None or (model.key, id(opt)) in done:
                continue
            done.add((model.key, id(opt)))
            names = inv.names
            n = len(names)
            msg = (f"{model.key} ({short(model.cls)}) is in no optimizer, but its output reaches the loss "
                   f"backwarded at line {bw.line}: its {n} parameter tensor{'s' if n != 1 else ''} get gradients "
                   f"and never change")
            fixes = _gp103_fixes(ctx, opt, model)
            mine = {id(pt.model) for pt in facts.coverage(opt).parts if pt.model is not None}
            others = {id(pt.model) for x in facts.optimizers if x is not opt for pt in facts.coverage(x).parts
                      if pt.model is not None}
            if mine and mine <= others and opt.params is not None:
                # a copy-paste: this optimizer repeats another's parameters
                fixes = [Fix(f"Give {opt.key or opt.short} {model.key}.parameters() instead", False,
                             (Edit(ctx.span(opt.params), f"{model.key}.parameters()"),), preferred=True)] + \
                    [Fix(fx.title, fx.safe, fx.edits, False) for fx in fixes]
            related = [_model_related(ctx, model),
                       Related(ctx.span(bw.node), f"the loss that {model.key}'s output reaches is backwarded here")]
            yield ctx.finding("GP103", opt.params, msg, fixes=fixes, related=related,
                              data=model_data(model, opt, names))


def _loaded_from_model(facts, model) -> bool:
    """`target.load_state_dict(policy.state_dict())`: a target network kept in sync by copying."""
    keys = {model.key} | {r.key for r in facts.roots_of(model)}
    for c in facts.calls:
        if c.method == "load_state_dict" and c.receiver in keys and c.call.args:
            a = c.call.args[0]
            if isinstance(a, ast.Call) and isinstance(a.func, ast.Attribute) and a.func.attr == "state_dict" \
                    and key_of(a.func.value) not in keys:
                return True
    return False


def _name_residue(key: str | None) -> str:
    k = (key or "").lower().split(".")[-1]
    for affix in ("optimizer", "optim", "opt"):
        k = k.replace(affix, "")
    return k.strip("_")


def _pick_optimizer(facts, cands, model):
    """Where to report a model no optimizer holds: the optimizer named after it (`decoder_opt`,
    `opt_g` for `gen`), else one that duplicates another optimizer's parameters (a copy-paste),
    else the first."""
    if not cands:
        return None
    mk = model.key.lower().split(".")[-1]
    mc = short(model.cls).lower()
    for o in cands:
        r = _name_residue(o.key)
        if r and (r in mk or mk.startswith(r) or r in mc):
            return o
    for o in reversed(cands):
        mine = {id(pt.model) for pt in facts.coverage(o).parts if pt.model is not None}
        others = {id(pt.model) for x in facts.optimizers if x is not o for pt in facts.coverage(x).parts
                  if pt.model is not None}
        if mine and mine <= others:
            return o
    return cands[0]


def _gp103_fixes(ctx, opt, model) -> list[Fix]:
    p = opt.params
    text = ctx.src.text_of(p)
    add = f"{model.key}.parameters()"
    cov = ctx.facts.coverage(opt)
    if cov.groups and isinstance(p, ast.List) and p.elts:
        end = ctx.span(p.elts[-1])
        return [Fix(f"Add {model.key}'s parameters as a second param group of {opt.short}", False,
                    (Edit(Span(end.end_line, end.end_col, end.end_line, end.end_col), f", {{\"params\": {add}}}"),),
                    preferred=True)]
    if "\n" in text:
        return []
    chain = None
    for local, qn in ctx.symbols.aliases.items():
        if qn == "itertools.chain":
            chain = local
        elif qn == "itertools" and chain is None:
            chain = f"{local}.chain"
    if chain:
        new = f"{chain}({text}, {add})"
    elif isinstance(p, ast.List):
        new = f"{text[:-1]}, *{add}]" if p.elts else f"[*{add}]"
    else:
        new = f"list({text}) + list({add})"
    return [Fix(f"Add {model.key}'s parameters to {opt.short}", False, (Edit(ctx.span(p), new),), preferred=True)]


