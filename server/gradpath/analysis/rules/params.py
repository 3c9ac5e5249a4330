"""GP1: parameters that never reach the optimizer (GP101-GP112).

Every rule reads `ctx.facts` (model bindings and their inventories, what each optimizer's params
expression covers, freezes, which models' outputs reach a backwarded loss). When a fact is not
known (an unknown factory, a params list built in a loop, a conditional freeze) the rule says
nothing.
"""
from __future__ import annotations

import ast

from gradpath.analysis.facts import (
    _TENSOR_FACTORIES, ModelBinding, _flat_stmts, _is_requires_grad_test, _param_rg_set, const_value, key_of,
    path_parts, unwrap_same_instance,
)
from gradpath.analysis.findings import Edit, Fix, Related, Span
from gradpath.analysis.rules import rule
from gradpath.analysis.symbols import canonical

ITERATING_CALLS = frozenset({"list", "tuple", "set", "sum", "len", "sorted", "enumerate", "zip", "any", "all",
                             "max", "min", "next", "dict", "frozenset", "map", "filter"})
_CONFIG_NAMES = frozenset({"args", "cfg", "config", "opt", "opts", "hparams", "hp", "params", "options",
                           "settings", "conf", "self.args", "self.cfg", "self.config", "self.hparams"})


# -- helpers --------------------------------------------------------------------------------
def short(cls: str) -> str:
    return cls.rsplit(".", 1)[-1]


def names_text(names: list[str], limit: int = 4) -> str:
    names = list(names)
    if len(names) <= 1:
        return "".join(names)
    if len(names) > limit:
        return ", ".join(names[:limit - 1]) + f" and {len(names) - limit + 1} more"
    return ", ".join(names[:-1]) + " and " + names[-1]


def nn_prefix(ctx) -> str | None:
    """How this file spells torch.nn (`nn`, `torch.nn`), or None."""
    for local, qn in ctx.symbols.aliases.items():
        if qn == "torch.nn":
            return local
    for local, qn in ctx.symbols.aliases.items():
        if qn == "torch":
            return f"{local}.nn"
    return None


def torch_prefix(ctx) -> str | None:
    for local, qn in ctx.symbols.aliases.items():
        if qn == "torch":
            return local
    return None


def model_data(model: ModelBinding | None, opt=None, missing=None) -> dict:
    d = {}
    if model is not None:
        d["model"] = model.key
        d["model_class"] = model.cls
    if opt is not None:
        d["optimizer"] = opt.key
        d["optimizer_class"] = opt.cls
    if missing is not None:
        d["missing"] = list(missing)
    return d


def _param_related(ctx, inv, names: list[str], limit: int = 3) -> list[Related]:
    out, seen = [], set()
    for p in inv.params:
        if p.name in names and p.node is not None and p.path in (None, ctx.path) and id(p.node) not in seen:
            seen.add(id(p.node))
            out.append(Related(ctx.span(p.node), f"{p.name} is created here"))
            if len(out) >= limit:
                break
    return out


def _model_related(ctx, model: ModelBinding, what: str = "is created here") -> Related:
    return Related(ctx.span(model.stmt), f"{model.key} ({short(model.cls)}) {what}")


def _trainable_models_visible(facts, opt) -> list[ModelBinding]:
    """Models with parameters that exist where the optimizer is built, one per key (latest)."""
    out: dict[str, ModelBinding] = {}
    for s in facts.visible_scopes(opt.scope):
        for b in facts.models:
            if b.scope is not s or b.key in out:
                continue
            if s is opt.scope and b.line > opt.line:
                continue
            cur = facts.model_at(b.key, opt.scope, opt.line)
            if cur is None:
                continue
            inv = facts.inventory_of(cur)
            if inv is None or not inv.has_params:
                continue
            if s is not opt.scope and s.kind != "module" and not b.key.startswith("self."):
                continue
            out[b.key] = cur
    return list(out.values())


def _indent(ctx, line: int) -> str:
    return ctx.src.indent_of(line)


# -- GP101 ----------------------------------------------------------------------------------
def _is_empty_params(p) -> bool:
    if isinstance(p, (ast.List, ast.Tuple)) and not p.elts:
        return True
    return isinstance(p, ast.Call) and isinstance(p.func, ast.Name) and p.func.id in ("list", "tuple") \
        and not p.args and not p.keywords


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


# -- GP104 / GP105 / GP112: inside nn.Module classes ------------------------------------------
def _module_classes(ctx):
    for name, info in ctx.symbols.classes.items():
        if ctx.symbols.is_module_class(name):
            yield name, info.node


def _methods(cls_node):
    return [n for n in cls_node.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]


def _is_module_ctor(ctx, e) -> bool:
    return ctx.facts.module_class_of_call(e) is not None


def _has_param_ctor(ctx, e) -> bool:
    """A module construction that certainly has parameters (or whose class may)."""
    if not _is_module_ctor(ctx, e):
        return False
    inv = ctx.facts.inventories.of_call(e)
    return inv is not None and inv.has_params


def _method_nodes(ctx, m):
    """The nodes of method `m`'s own body (the cached walk of its scope when Facts has one)."""
    scope = ctx.facts.scope_for(m)
    return scope.walk() if scope is not None else _walk_no_defs(m)


def _walk_no_defs(node):
    stack = list(ast.iter_child_nodes(node))
    while stack:
        n = stack.pop()
        yield n
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            continue
        stack.extend(ast.iter_child_nodes(n))


@rule("GP104")
def unregistered_submodules(ctx):
    nn = nn_prefix(ctx)
    for cname, cls in _module_classes(ctx):
        if any((isinstance(n, ast.Attribute) and n.attr in ("add_module", "register_module")) or
               (isinstance(n, ast.Name) and n.id == "setattr") for n in ast.walk(cls)):
            continue
        assigns: dict[str, list] = {}
        for m in _methods(cls):
            for n in _method_nodes(ctx, m):
                if isinstance(n, ast.Assign):
                    for t in n.targets:
                        a = _self_attr_name(t)
                        if a and not (len(n.targets) == 1 and _self_concat(n.value, a)):
                            assigns.setdefault(a, []).append(n)
        for attr, nodes in assigns.items():
            if len(nodes) != 1:
                continue  # reassigned (e.g. wrapped into nn.ModuleList later): leave it
            node = nodes[0]
            v = node.value
            kind, elts = _container_kind(v)
            if kind is None:
                continue
            if _wrapped_later(ctx, cls, attr):
                continue  # nn.Sequential(*self.layers) / nn.ModuleList(self.layers) registers them
            modules = [e for e in elts if _is_module_ctor(ctx, e)]
            appended = []
            if not elts:
                appended = _appends(ctx, cls, attr)
                modules = appended
            if not modules:
                continue
            fixes = []
            if nn is not None:
                text = ctx.src.text_of(v)
                wrapper = "ModuleDict" if kind == "dict" else "ModuleList"
                ok = kind != "dict" or all(isinstance(k, ast.Constant) and isinstance(k.value, str)
                                           for k in getattr(v, "keys", []))
                if ok and (kind != "dict" or isinstance(v, ast.Dict)):
                    new = f"{nn}.{wrapper}()" if not elts and not isinstance(v, (ast.ListComp, ast.DictComp)) \
                        else f"{nn}.{wrapper}({text})"
                    fixes.append(Fix(f"Use {nn}.{wrapper} so the submodules are registered", True,
                                     (Edit(ctx.span(v), new),), preferred=True))
            what = {"list": "list", "tuple": "tuple", "dict": "dict"}[kind]
            msg = (f"self.{attr} is a plain {what} of modules: {cname} does not register them, so their "
                   f"parameters are missing from {cname}.parameters(), state_dict() and .to(), so an optimizer "
                   f"built from {cname}.parameters() never sees them and a saved checkpoint leaves them out")
            related = [Related(ctx.span(a), f"a module is added to self.{attr} here") for a in appended[:3]]
            yield ctx.finding("GP104", v, msg, fixes=fixes, related=related,
                              data={"model_class": cname, "attribute": attr})


def _wrapped_later(ctx, cls, attr) -> bool:
    for n in ast.walk(cls):
        if isinstance(n, ast.Call) and _is_module_ctor(ctx, n):
            for a in list(n.args) + [k.value for k in n.keywords]:
                inner = a.value if isinstance(a, ast.Starred) else a
                if _self_attr_name(inner) == attr:
                    return True
    return False


def _self_attr_name(t) -> str | None:
    if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == "self":
        return t.attr
    return None


def _container_kind(v):
    if isinstance(v, ast.List):
        return "list", v.elts
    if isinstance(v, ast.Tuple):
        return "tuple", v.elts
    if isinstance(v, ast.Dict):
        return "dict", v.values
    if isinstance(v, ast.ListComp):
        return "list", [v.elt]
    if isinstance(v, ast.DictComp):
        return "dict", [v.value]
    if isinstance(v, ast.Call) and isinstance(v.func, ast.Name) and v.func.id in ("list", "dict") and not v.args \
            and not v.keywords:
        return v.func.id, []
    return None, []


def _appends(ctx, cls, attr) -> list:
    out = []
    local_mods: dict[str, ast.AST] = {}
    for m in _methods(cls):
        for n in _walk_no_defs(m):
            if isinstance(n, ast.Assign) and len(n.targets) == 1 and isinstance(n.targets[0], ast.Name) \
                    and _is_module_ctor(ctx, n.value):
                local_mods[n.targets[0].id] = n.value
    for m in _methods(cls):
        for n in _walk_no_defs(m):
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr in ("append", "insert") \
                    and _self_attr_name(n.func.value) == attr and n.args:
                a = n.args[-1]
                if _is_module_ctor(ctx, a) or (isinstance(a, ast.Name) and a.id in local_mods):
                    out.append(a)
            elif isinstance(n, ast.Assign) and len(n.targets) == 1 and isinstance(n.targets[0], ast.Subscript) \
                    and _self_attr_name(n.targets[0].value) == attr and _is_module_ctor(ctx, n.value):
                out.append(n.value)
            elif (isinstance(n, ast.Assign) and len(n.targets) == 1 and _self_attr_name(n.targets[0]) == attr
                  and _self_concat(n.value, attr)) or \
                    (isinstance(n, ast.AugAssign) and isinstance(n.op, ast.Add)
                     and _self_attr_name(n.target) == attr and isinstance(n.value, (ast.List, ast.Tuple))):
                # self.layers = self.layers + [nn.Linear(...)] / self.layers += [nn.Linear(...)]
                extra = n.value.right if isinstance(n, ast.Assign) else n.value
                out += [e for e in extra.elts if _is_module_ctor(ctx, unwrap_same_instance(e))
                        or (isinstance(e, ast.Name) and e.id in local_mods)]
    return out


def _self_concat(value, attr: str) -> bool:
    """`self.<attr> + [...]`: the attribute grown by list concatenation (still a plain list)."""
    return (isinstance(value, ast.BinOp) and isinstance(value.op, ast.Add)
            and _self_attr_name(value.left) == attr and isinstance(value.right, (ast.List, ast.Tuple)))


_RG_FACTORY_SKIP = ("torch.tensor",)


@rule("GP105")
def unregistered_tensor(ctx):
    sym = ctx.symbols
    nn = nn_prefix(ctx)
    tp = torch_prefix(ctx)
    for cname, cls in _module_classes(ctx):
        for m in _methods(cls):
            for n in _walk_no_defs(m):
                if not isinstance(n, ast.Assign) or len(n.targets) != 1:
                    continue
                attr = _self_attr_name(n.targets[0])
                if attr is None:
                    continue
                v = n.value
                res = _gp105(ctx, v, nn, tp)
                if res is None:
                    continue
                msg, new = res
                fixes = [Fix(f"Register self.{attr} as an nn.Parameter", True, (Edit(ctx.span(v), new),),
                             preferred=True)] if new else []
                yield ctx.finding("GP105", v, f"self.{attr} {msg}: {cname} does not register it, so it is missing "
                                  f"from {cname}.parameters() and no optimizer updates it",
                                  fixes=fixes, data={"model_class": cname, "attribute": attr})


def _qn(ctx, f) -> str:
    return canonical(ctx.symbols.qualname(f) or "")


def _is_param_call(ctx, e) -> bool:
    return isinstance(e, ast.Call) and _qn(ctx, e.func) in ("torch.nn.Parameter",)


def _gp105(ctx, v, nn, tp):
    text = ctx.src.text_of
    if not isinstance(v, (ast.Call, ast.BinOp)):
        return None
    if isinstance(v, ast.Call):
        qn = _qn(ctx, v.func)
        # torch.randn(..., requires_grad=True)
        if qn in _TENSOR_FACTORIES:
            kw = next((k for k in v.keywords if k.arg == "requires_grad"), None)
            if kw is None or const_value(kw.value) is not True:
                return None
            new = None
            if nn is not None:
                new = f"{nn}.Parameter({_without_kw(ctx, v, kw)})"
            return "is a plain tensor with requires_grad=True, not an nn.Parameter", new
        f = v.func
        if isinstance(f, ast.Attribute):
            inner = f.value
            if f.attr == "requires_grad_" and isinstance(inner, ast.Call) and _qn(ctx, inner.func) in _TENSOR_FACTORIES:
                if v.args and const_value(v.args[0]) is not True:
                    return None
                new = f"{nn}.Parameter({text(inner)})" if nn else None
                return "is a plain tensor with requires_grad_(), not an nn.Parameter", new
            if _is_param_call(ctx, inner):
                conv = _conversion(ctx, f.attr, v, tp)
                if conv is None:
                    return None
                label, kwtext = conv
                new = None
                pinner = inner.args[0] if inner.args else None
                if kwtext and isinstance(pinner, ast.Call) and _qn(ctx, pinner.func) in _TENSOR_FACTORIES \
                        and "\n" not in text(pinner) and not any(k.arg == kwtext.split("=")[0] for k in pinner.keywords):
                    ft = text(pinner)
                    sep = ", " if (pinner.args or pinner.keywords) else ""
                    new = f"{text(inner.func)}({ft[:-1]}{sep}{kwtext})" + (
                        text(inner)[len(text(inner.func)) + 1 + len(ft):] if False else ")")
                return f"is nn.Parameter(...).{label}", new
        return None
    # arithmetic on a Parameter, or on a requires_grad factory tensor (a non-leaf plain tensor)
    if isinstance(v, ast.BinOp):
        for side in (v.left, v.right):
            if isinstance(side, ast.Call) and _qn(ctx, side.func) in _TENSOR_FACTORIES:
                kw = next((k for k in side.keywords if k.arg == "requires_grad"), None)
                if kw is not None and const_value(kw.value) is True:
                    new = None
                    if nn is not None and "\n" not in text(v):
                        whole = text(v)
                        ss, vs = ctx.span(side), ctx.span(v)
                        a, b = ss.col - vs.col, ss.end_col - vs.col
                        new = f"{nn}.Parameter({whole[:a]}{_without_kw(ctx, side, kw)}{whole[b:]})"
                    return "is arithmetic on a requires_grad tensor: a plain (non-leaf) Tensor, not an nn.Parameter", new
        if _is_param_call(ctx, v.left) and v.left.args:
            p = v.left
            op = ctx.src.text_in(Span(ctx.span(p).end_line, ctx.span(p).end_col, ctx.span(v).end_line, ctx.span(v).end_col))
            new = f"{text(p.func)}({text(p.args[0])}{op})" if len(p.args) == 1 and not p.keywords else None
            return "is arithmetic on an nn.Parameter, which returns a plain Tensor", new
        if _is_param_call(ctx, v.right) and v.right.args:
            p = v.right
            op = ctx.src.text_in(Span(ctx.span(v).line, ctx.span(v).col, ctx.span(p).line, ctx.span(p).col))
            new = f"{text(p.func)}({op}{text(p.args[0])})" if len(p.args) == 1 and not p.keywords else None
            return "is arithmetic on an nn.Parameter, which returns a plain Tensor", new
    return None


_DTYPES = {"double": "float64", "half": "float16", "bfloat16": "bfloat16"}


def _conversion(ctx, attr, call, tp):
    if attr in _DTYPES:
        return f"{attr}(), which returns a plain Tensor", (f"dtype={tp}.{_DTYPES[attr]}" if tp else None)
    if attr == "cuda":
        if call.args:
            return "cuda(...), which returns a plain Tensor", None
        return "cuda(), which returns a plain Tensor", 'device="cuda"'
    if attr == "to":
        if not call.args and not call.keywords:
            return None
        a = call.args[0] if call.args else next((k.value for k in call.keywords if k.arg in ("device", "dtype")), None)
        if a is None:
            return None
        c = const_value(a)
        if isinstance(c, str) and c.startswith("cpu"):
            return None  # Parameter.to('cpu') on a CPU tensor returns the same Parameter
        qn = _qn(ctx, a)
        if qn in ("torch.float32", "torch.float"):
            return None
        atext = ctx.src.text_of(a)
        if qn.startswith("torch.") and qn.rsplit(".", 1)[-1] in ("float64", "double", "float16", "half",
                                                                  "bfloat16", "int64", "long", "int32"):
            return f"to({atext}), which returns a plain Tensor", f"dtype={atext}"
        if len(call.args) > 1 or call.keywords and call.args:
            return f"to({atext}, ...), which returns a plain Tensor whenever it moves or converts the data", None
        return (f"to({atext}), which returns a plain Tensor whenever it moves the data (to a GPU)",
                f"device={atext}")
    return None


def _without_kw(ctx, call, kw) -> str:
    """Source text of `call` without the keyword argument `kw`."""
    full = ctx.span(call)
    items = list(call.args) + list(call.keywords)
    idx = items.index(kw)
    ks = ctx.span(kw)
    if idx > 0:
        prev = ctx.span(items[idx - 1])
        cut = Span(prev.end_line, prev.end_col, ks.end_line, ks.end_col)
    elif len(items) > 1:
        nxt = ctx.span(items[1])
        cut = Span(ks.line, ks.col, nxt.line, nxt.col)
    else:
        cut = ks
    before = ctx.src.text_in(Span(full.line, full.col, cut.line, cut.col))
    after = ctx.src.text_in(Span(cut.end_line, cut.end_col, full.end_line, full.end_col))
    return before + after


@rule("GP112")
def layer_in_forward(ctx):
    from gradpath.analysis.modclass import forward_reach, opaque_library_class, stored_on_self
    done: set = set()
    for cname, cls in _module_classes(ctx):
        methods = _methods(cls)
        init = next((m for m in methods if m.name == "__init__"), None)
        attrs = {a for m in methods for n in ast.walk(m) for a in [_self_attr_name(n)] if a}
        # forward and the methods it reaches through self. calls (own or inherited): each def once
        for owner, m in forward_reach(ctx.symbols, cname):
            if id(m) in done or (owner != cname and m.name == "forward"):
                continue
            done.add(id(m))
            where = "forward()" if m.name == "forward" else f"{m.name}() (which forward() calls)"
            parents = ctx.facts.parents
            for n in _walk_no_defs(m):
                if not isinstance(n, ast.Call) or not _is_module_ctor(ctx, n):
                    continue
                inv = ctx.facts.inventories.of_call(n)
                if inv is None or not inv.has_params or opaque_library_class(ctx, n, inv):
                    continue
                par = parents.get(id(n))
                if stored_on_self(ctx.facts.enclosing_stmt(n)) and _under_if(n, parents, m):
                    continue  # lazy init: `if not self.initialized: self.lin[k] = nn.Linear(...).to(dev)`
                target_name = None
                self_target = None
                if isinstance(par, ast.Assign) and len(par.targets) == 1:
                    t = par.targets[0]
                    if _self_attr_name(t):
                        # self.fc = nn.Linear(...) in forward: lazy init under an `if` is a pattern
                        if _under_if(n, parents, m):
                            continue
                        self_target = _self_attr_name(t)
                    elif isinstance(t, ast.Name):
                        target_name = t.id
                text = ctx.src.text_of(n)
                pnames = names_text(inv.names) if inv.params else "parameters"
                msg = (f"{text if len(text) <= 40 else short(ctx.facts.module_class_of_call(n)) + '(...)'} is built inside "
                       f"{where}: every call creates a fresh {pnames} that {cname} does not register, so no "
                       f"optimizer trains them")
                fixes = _gp112_fix(ctx, n, init, target_name, attrs, par, self_target) if owner == cname else []
                yield ctx.finding("GP112", n, msg, fixes=fixes,
                                  data={"model_class": cname, "layer_class": ctx.facts.module_class_of_call(n)})


def _under_if(node, parents, stop) -> bool:
    cur = parents.get(id(node))
    while cur is not None and cur is not stop:
        if isinstance(cur, ast.If):
            return True
        cur = parents.get(id(cur))
    return False


def _gp112_fix(ctx, call, init, target_name, attrs, parent, self_target=None) -> list[Fix]:
    if init is None or not init.body:
        return []
    # only when the constructor's arguments need nothing from forward()
    for n in ast.walk(call):
        if isinstance(n, ast.Name) and n is not call.func and not _is_root_of_func(n, call):
            if n.id == "self":
                continue
            if n.id in ctx.symbols.aliases or n.id in ctx.symbols.classes:
                continue
            return []
    text = ctx.src.text_of(call)
    if "\n" in text:
        return []
    last = init.body[-1]
    end_line = last.end_lineno or last.lineno
    indent = ctx.src.indent_of(init.body[0].lineno)
    line_len = len(ctx.src.line_text(end_line))
    if self_target is not None:
        # `self.fc = nn.Linear(...)` in forward: move the whole statement to __init__
        ps = ctx.span(parent)
        rest = ctx.src.line_text(ps.end_line)[ps.end_col:].strip()
        if ctx.src.line_text(ps.line)[:ps.col].strip() or (rest and not rest.startswith("#")):
            return []
        stmt = ctx.src.text_of(parent)
        insert = Edit(Span(end_line, line_len, end_line, line_len), f"\n{indent}{stmt}")
        delete = Edit(Span(ps.line, 0, ps.end_line + 1, 0), "")
        return [Fix(f"Build self.{self_target} once in __init__", False, (insert, delete), preferred=True)]
    base = target_name or short(ctx.facts.module_class_of_call(call) or "layer").lower()
    name, i = base, 2
    while name in attrs and not (target_name and name == target_name and False):
        name = f"{base}{i}"
        i += 1
    last = init.body[-1]
    end_line = last.end_lineno or last.lineno
    indent = ctx.src.indent_of(init.body[0].lineno)
    line_len = len(ctx.src.line_text(end_line))
    insert = Edit(Span(end_line, line_len, end_line, line_len), f"\n{indent}self.{name} = {text}")
    replace = Edit(ctx.span(call), f"self.{name}")
    return [Fix(f"Build it once in __init__ as self.{name}", False, (insert, replace), preferred=True)]


def _is_root_of_func(name_node, call) -> bool:
    f = call.func
    while isinstance(f, ast.Attribute):
        f = f.value
    return f is name_node


# -- GP106 ----------------------------------------------------------------------------------
@rule("GP106")
def stale_optimizer(ctx):
    facts = ctx.facts
    for opt in facts.optimizers:
        cov = facts.coverage(opt)
        models = list(cov.models().values())
        if len(models) != 1 or opt.key is None or opt.stmt is None:
            continue
        old = models[0]
        later = sorted((b for b in facts.models if b.key == old.key and b.scope is opt.scope and b.line > opt.line
                        and b.origin in ("new", "copy")), key=lambda b: b.line)
        for new in later:
            if new.origin == "new" and _wraps(new.value, old.key):
                continue  # nn.DataParallel(model), Wrapper(model): shares the old instance's tensors
            # the optimizer is rebuilt after the rebinding: fine
            rebuilt = any(a.line > new.line and a.scope is opt.scope for a in _assignments(facts, opt.key, opt.scope))
            if rebuilt:
                break
            steps = [c for c in facts.calls if c.receiver == opt.key and c.method == "step" and c.scope is opt.scope
                     and c.line > new.line]
            used = [c for c in facts.model_calls(new.key) if c.lineno > new.line]
            helper = None  # a local function trains both: train_iter(new_model, optimizer, x)
            if not steps or not used:
                helper = _trained_by_helper(ctx, opt.key, new.key, opt.scope, new.line)
                if helper is None:
                    continue
            what = "a copy" if new.origin == "copy" else f"a new {short(new.cls)}"
            msg = (f"{new.key} is rebound to {what} after {opt.short} took the parameters of the previous instance "
                   f"(line {opt.line}): {opt.short} keeps updating the old tensors and the new {new.key} never changes")
            if helper is not None:
                step_at = Related(ctx.span(helper), f"{ctx.src.text_of(helper.func)}() steps {opt.key} on the old "
                                                    "instance here")
            else:
                step_at = Related(ctx.span(steps[0].call), f"{opt.key}.step() updates the old instance here")
            related = [Related(ctx.span(opt.call), f"{opt.short} takes the parameters of the old {old.key} here"),
                       step_at]
            fixes = _move_after(ctx, opt.stmt, new.stmt, opt)
            yield ctx.finding("GP106", new.stmt, msg, fixes=fixes, related=related,
                              data=model_data(new, opt))
            break
    yield from _copy_trained_instead(ctx)


def _trained_by_helper(ctx, opt_key: str, model_key: str, scope, after_line: int):
    """A call, after `after_line` in `scope`, of a function defined in this file that receives both
    the optimizer and the model (`train_iter(model, optimizer, x)`) and, in its own body, calls the
    model and steps the optimizer it received: the model and optimizer are trained together there."""
    defs = {s.node.name: s for s in ctx.facts.scopes
            if isinstance(s.node, (ast.FunctionDef, ast.AsyncFunctionDef)) and s.class_name is None}
    for n in scope.walk():
        if not (isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in defs
                and n.lineno > after_line):
            continue
        fn_scope = defs[n.func.id]
        fn = fn_scope.node
        params = [a.arg for a in fn.args.posonlyargs + fn.args.args]
        bound = {params[i]: key_of(a) for i, a in enumerate(n.args) if i < len(params)
                 and not isinstance(a, ast.Starred)}
        bound.update({k.arg: key_of(k.value) for k in n.keywords if k.arg})
        pm = next((p for p, k in bound.items() if k == model_key), None)
        po = next((p for p, k in bound.items() if k == opt_key), None)
        if pm is None or po is None:
            continue
        body = list(fn_scope.walk())
        steps = any(isinstance(x, ast.Call) and isinstance(x.func, ast.Attribute) and x.func.attr == "step"
                    and isinstance(x.func.value, ast.Name) and x.func.value.id == po for x in body)
        calls = any(isinstance(x, ast.Call) and isinstance(x.func, ast.Name) and x.func.id == pm for x in body)
        rebound = any(isinstance(x, ast.Name) and x.id in (pm, po) and isinstance(x.ctx, ast.Store)
                      for x in body)
        if steps and calls and not rebound:
            return n
    return None


def _copy_trained_instead(ctx):
    """`model2 = copy.deepcopy(model)` after the optimizer took model's parameters, then model2 is
    the one trained (its output reaches the backwarded loss, model's no longer does): model2 never
    changes. A copy kept as an EMA/target network (updated under no_grad, never backwarded, or
    backwarded together with the trained model) is not this."""
    facts = ctx.facts
    opts = [o for o in facts.optimizers if o.stmt is not None]
    done: set[int] = set()
    for opt in opts:
        models = list(facts.coverage(opt).models().values())
        if len(models) != 1:
            continue
        # an optimizer here we cannot read, or parameters added to one later, may hold the copy
        if any(facts.coverage(o).unknown for o in opts if o.scope is opt.scope) or any(
                c.method == "add_param_group" and c.scope is opt.scope for c in facts.calls):
            continue
        old = models[0]
        for new in sorted(facts.models, key=lambda b: b.line):
            if new.origin != "copy" or new.key == old.key or new.scope is not opt.scope or new.line <= opt.line \
                    or id(new) in done or not isinstance(new.value, ast.Call) \
                    or canonical(ctx.symbols.qualname(new.value.func) or "") != "copy.deepcopy":
                continue
            src = facts.model_at(new.source_key, new.scope, new.line - 1) if new.source_key else None
            if src is None or not (facts.same_instance(src, old) or src.key == old.key):
                continue
            if facts.model_at(old.key, opt.scope, new.line) is not facts.model_at(old.key, opt.scope, opt.line):
                continue  # the old name was rebound in between (that is the GP106 above)
            if _held_anywhere(facts, new) or facts.escapes(new) or any(
                    o.line > new.line and o.scope is opt.scope for o in opts):
                continue
            trained = [b for b in facts.reaches_backward(new) if b.scope is opt.scope and b.line > new.line]
            if not trained:
                continue
            later = [b for b in facts.backwards() if b.scope is opt.scope and b.line > new.line]
            if any(old.key in b.deps for b in later):
                continue  # the original is still trained (distillation, a target network)
            bw = trained[0]
            steps = [c for c in facts.calls if c.receiver == opt.key and c.method == "step" and c.scope is opt.scope
                     and c.line > bw.line] if opt.key else []
            if not steps:
                continue
            done.add(id(new))
            msg = (f"{new.key} is a deep copy of {old.key} made after {opt.short} took the parameters of {old.key} "
                   f"(line {opt.line}), and {new.key} is the model trained here: {opt.short} keeps updating "
                   f"{old.key}'s tensors and {new.key} never changes")
            related = [Related(ctx.span(opt.call), f"{opt.short} takes the parameters of {old.key} here"),
                       Related(ctx.span(bw.node), f"the loss that {new.key}'s output reaches is backwarded here"),
                       Related(ctx.span(steps[0].call), f"{opt.key}.step() updates {old.key}, not {new.key}")]
            yield ctx.finding("GP106", new.stmt, msg, fixes=_retarget_after(ctx, opt, old, new), related=related,
                              data=model_data(new, opt))


def _held_anywhere(facts, model) -> bool:
    """Some optimizer holds this instance (or the same name in the same scope)."""
    for o in facts.optimizers:
        cov = facts.coverage(o)
        for m in [pt.model for pt in cov.parts if pt.model is not None] + [m for _n, m, _p in cov.modules]:
            if facts.same_instance(m, model) or (m.key == model.key and m.scope is model.scope):
                return True
    return False


def _retarget_after(ctx, opt, old, new) -> list[Fix]:
    """Build the optimizer after the copy, on the copy's parameters (unsafe)."""
    src = ctx.src
    stmt = opt.stmt
    if stmt.lineno != stmt.end_lineno or opt.params is None or src.text_of(opt.params) != f"{old.key}.parameters()":
        return []
    line = src.line_text(stmt.lineno)
    if not line.isascii() or line[:stmt.col_offset].strip() or line[stmt.end_col_offset:].strip()[:1] not in ("", "#"):
        return []
    ps = ctx.span(opt.params)
    text = line[stmt.col_offset:ps.col] + f"{new.key}.parameters()" + line[ps.end_col:stmt.end_col_offset]
    after = new.stmt
    a1 = after.end_lineno or after.lineno
    end_len = len(src.line_text(a1))
    nl = src.newline
    delete = Edit(Span(stmt.lineno, 0, stmt.lineno + 1, 0), "")
    insert = Edit(Span(a1, end_len, a1, end_len), nl + src.indent_of(after.lineno) + text)
    return [Fix(f"Build {opt.key or opt.short} on {new.key}.parameters() after the copy", False, (delete, insert),
                preferred=True)]


def _wraps(call, key: str) -> bool:
    return any(key_of(n) == key for n in ast.walk(call) if isinstance(n, (ast.Name, ast.Attribute)))


def _assignments(facts, key, scope):
    out = []
    for node in scope.walk():
        if isinstance(node, ast.Assign) and any(key_of(t) == key for t in node.targets):
            out.append(node)
            node.line = node.lineno  # type: ignore[attr-defined]
            node.scope = scope  # type: ignore[attr-defined]
    return out


def _move_after(ctx, stmt, after, opt) -> list[Fix]:
    src = ctx.src
    s0, s1 = stmt.lineno, stmt.end_lineno or stmt.lineno
    if src.line_text(s0)[:stmt.col_offset].strip() or src.line_text(s1)[stmt.end_col_offset:].strip().startswith(";"):
        return []
    lines = [src.line_text(i) for i in range(s0, s1 + 1)]
    old_indent = src.indent_of(s0)
    new_indent = src.indent_of(after.lineno)
    moved = []
    for ln in lines:
        moved.append(new_indent + ln[len(old_indent):] if ln.startswith(old_indent) else ln)
    a1 = after.end_lineno or after.lineno
    end_len = len(src.line_text(a1))
    nl = src.newline
    delete = Edit(Span(s0, 0, s1 + 1, 0), "")
    insert = Edit(Span(a1, end_len, a1, end_len), nl + nl.join(moved))
    return [Fix(f"Build {opt.key} after {after.targets[0].id if isinstance(after, ast.Assign) and isinstance(after.targets[0], ast.Name) else 'the rebinding'}",
                False, (delete, insert), preferred=True)]


def _empty_outcome(opt, every: bool, when: str = "") -> str:
    """What PyTorch does with the empty list: `ValueError` when it is the whole parameter argument;
    nothing at all when it sits inside a param-group dict (an empty group is accepted, and the
    parameters meant for it just never train)."""
    node = opt.params
    if isinstance(node, (ast.List, ast.Tuple)) and any(isinstance(e, ast.Dict) for e in node.elts):
        if every:
            return ("every parameter group is empty, and PyTorch raises no error for an empty group: "
                    "nothing trains, silently")
        return ("that parameter group is empty, and PyTorch raises no error for an empty group: the "
                "parameters meant for it never train")
    return "PyTorch raises ValueError: optimizer got an empty parameter list" + when


# -- GP107 ----------------------------------------------------------------------------------
@rule("GP107")
def all_frozen(ctx):
    facts = ctx.facts
    reported: set[int] = set()
    for opt in facts.optimizers:
        cov = facts.coverage(opt)
        if cov.unknown or not cov.parts or cov.modules:
            continue
        if not all(pt.kind == "grad-filter" for pt in cov.parts):
            continue
        models = {id(pt.model): pt.model for pt in cov.parts}
        all_frozen_ = True
        freezes = []
        for model in models.values():
            inv = facts.inventory_of(model)
            if inv is None or not inv.complete or not inv.params:
                all_frozen_ = False
                break
            if _changed_after_build(facts, model):
                all_frozen_ = False
                break
            frozen, uncertain = facts.frozen_names(model, before_line=opt.line, scope=opt.scope)
            covered = cov.names_of(model)
            if uncertain or not covered or (covered - frozen):
                all_frozen_ = False
                break
            visible = facts.visible_scopes(opt.scope)
            freezes += [fz for fz in facts.freezes() if not fz.value
                        and (facts.same_instance(fz.model, model)
                             or (fz.model.key == model.key and any(fz.scope is v for v in visible)))
                        and (fz.scope is not opt.scope or fz.line < opt.line)]
        if not all_frozen_ or not freezes:
            continue
        model = next(iter(models.values()))
        fz = freezes[0]
        msg = (f"{opt.short} gets only the parameters of {model.key} that require grad, but every one of them is "
               f"frozen (line {fz.line}): {_empty_outcome(opt, True)}")
        related = [Related(ctx.span(f.node), f"{f.model.key}{'.' + f.prefix if f.prefix else ''} is frozen here")
                   for f in freezes[:3]]
        reported.add(id(opt))
        yield ctx.finding("GP107", opt.params, msg, related=related, data=model_data(model, opt, []))
    # a model whose parameter list we cannot read (torchvision, torch.load, an unresolved import, a
    # function parameter): a blanket freeze of it right before the filter is enough
    for opt in facts.optimizers:
        if id(opt) in reported:
            continue
        hit = _blanket_frozen(ctx, opt)
        if hit is None:
            continue
        recv, fz = hit
        key = ctx.src.text_of(recv)
        msg = (f"{opt.short} gets only the parameters of {key} that require grad, but every one of them is "
               f"frozen (line {fz.lineno}): {_empty_outcome(opt, True)}")
        data = {"model": key_of(recv)} if key_of(recv) else {}
        data.update(model_data(None, opt, []))
        yield ctx.finding("GP107", opt.params, msg, related=[Related(ctx.span(fz), f"{key} is frozen here")],
                          data=data)


# A statement that may give a frozen model trainable parameters again sits between the freeze and
# the optimizer: anything we cannot see into is treated as such.
_KEEPS_FREEZE = frozenset({"to", "cuda", "cpu", "train", "eval", "float", "double", "half", "bfloat16",
                           "parameters", "named_parameters", "children", "named_children", "modules",
                           "named_modules", "buffers", "named_buffers", "state_dict", "load_state_dict",
                           "zero_grad", "forward", "__call__", "share_memory"})
_HARMLESS_FUNCS = frozenset({"print", "len", "isinstance", "type", "id", "repr", "str", "format", "hasattr"})


def _unwrap_iter(e):
    while isinstance(e, ast.Call) and isinstance(e.func, ast.Name) and e.func.id in ("list", "tuple", "iter") \
            and len(e.args) == 1 and not e.keywords:
        e = e.args[0]
    return e


def _params_iter(it) -> tuple[ast.AST, str] | None:
    """`X.parameters()` / `X.named_parameters()` with no arguments (or recurse=True): (X, method)."""
    if not (isinstance(it, ast.Call) and isinstance(it.func, ast.Attribute)
            and it.func.attr in ("parameters", "named_parameters") and not it.args):
        return None
    for kw in it.keywords:
        if not (kw.arg == "recurse" and const_value(kw.value) is True):
            return None
    return it.func.value, it.func.attr


def _loop_var(target, method: str) -> str | None:
    if method == "parameters" and isinstance(target, ast.Name):
        return target.id
    if method == "named_parameters" and isinstance(target, ast.Tuple) and len(target.elts) == 2 \
            and isinstance(target.elts[1], ast.Name):
        return target.elts[1].id
    return None


def _rg_test_on(test, var: str) -> bool:
    if not _is_requires_grad_test(test):
        return False
    node = test.left if isinstance(test, ast.Compare) else test
    return isinstance(node.value, ast.Name) and node.value.id == var


def _grad_filter_receiver(e):
    """`[p for p in X.parameters() if p.requires_grad]`, the generator and `named_parameters` forms,
    `filter(lambda p: p.requires_grad, X.parameters())`: X, else None."""
    e = _unwrap_iter(e)
    if isinstance(e, (ast.ListComp, ast.GeneratorExp, ast.SetComp)) and len(e.generators) == 1:
        gen = e.generators[0]
        src = _params_iter(gen.iter)
        if src is None or gen.is_async or not gen.ifs:
            return None
        var = _loop_var(gen.target, src[1])
        if var and all(_rg_test_on(c, var) for c in gen.ifs):
            return src[0]
        return None
    if isinstance(e, ast.Call) and isinstance(e.func, ast.Name) and e.func.id == "filter" and len(e.args) == 2 \
            and not e.keywords:
        pred, it = e.args
        src = _params_iter(it)
        if src is None or src[1] != "parameters" or not isinstance(pred, ast.Lambda):
            return None
        a = pred.args
        if len(a.args) == 1 and not (a.posonlyargs or a.kwonlyargs or a.vararg or a.kwarg) \
                and _rg_test_on(pred.body, a.args[0].arg):
            return src[0]
    return None


def _dominators(facts, stmt, scope) -> list[ast.stmt]:
    """Statements of `scope` that always run before `stmt` on the way to it: the earlier siblings of
    `stmt` and of each enclosing statement (closest first). Branch and handler bodies stop the climb
    at their own block."""
    out: list[ast.stmt] = []
    cur = stmt
    while cur is not None and cur is not scope.node:
        par = facts.parent(cur)
        if par is None:
            break
        block = None
        for name in ("body", "orelse", "finalbody"):
            lst = getattr(par, name, None)
            if isinstance(lst, list) and any(x is cur for x in lst):
                block = lst
                break
        if block is not None:
            i = next(i for i, x in enumerate(block) if x is cur)
            out.extend(reversed(block[:i]))
        if isinstance(par, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            break
        cur = par
    return out


def _is_local_def_call(facts, call) -> bool:
    f = call.func
    names = facts.ctx.memo("gp107.local_defs", lambda: {s.name for s in facts.scopes if s.kind == "function"})
    return isinstance(f, ast.Name) and f.id in names


def _single_def(facts, name: str, opt) -> ast.Assign | None:
    """The one plain assignment of `name` that always runs before the optimizer, with no other
    write, mutation or hand-off of the name in the scope; else None."""
    found = None
    for node in opt.scope.walk():
        if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == name for n0 in targets for t in ast.walk(n0)):
                if found is not None or not isinstance(node, ast.Assign) or len(node.targets) != 1 \
                        or not isinstance(node.targets[0], ast.Name):
                    return None
                found = node
        elif isinstance(node, (ast.For, ast.AsyncFor, ast.With, ast.comprehension, ast.NamedExpr)):
            tgt = getattr(node, "target", None)
            if tgt is not None and any(isinstance(t, ast.Name) and t.id == name for t in ast.walk(tgt)):
                return None
        elif isinstance(node, ast.Call) and node is not opt.call:
            if isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Name) \
                    and node.func.value.id == name:
                return None
            args = list(node.args) + [k.value for k in node.keywords]
            if any(isinstance(a, ast.Name) and a.id == name for a in args):
                return None
    if found is None or found.lineno >= opt.line:
        return None
    if not any(d is found for d in _dominators(facts, opt.stmt, opt.scope)):
        return None
    return found


def _blanket_freeze(ctx, stmt, parts: list[str], depth: int = 0) -> bool:
    """`for p in Y.parameters(): p.requires_grad = False` (every parameter, no exit from the loop)
    or `Y.requires_grad_(False)`, where Y is `parts` or a module that contains it."""
    def covers(y) -> bool:
        yp = path_parts(y)
        return bool(yp) and parts[:len(yp)] == yp
    if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call):
        call = stmt.value
        if isinstance(call.func, ast.Attribute) and call.func.attr == "requires_grad_" and covers(call.func.value):
            arg = call.args[0] if call.args else next((k.value for k in call.keywords if k.arg == "requires_grad"),
                                                      None)
            return arg is not None and const_value(arg) is False
        if isinstance(call.func, ast.Name) and depth == 0:
            return _helper_freezes(ctx, call, covers)
        return False
    if not isinstance(stmt, ast.For) or stmt.orelse:
        return False
    src = _params_iter(stmt.iter)
    if src is None or not covers(src[0]):
        return False
    var = _loop_var(stmt.target, src[1])
    if var is None:
        return False
    if not any(_param_rg_set(s, var) is False for s in stmt.body):
        return False
    for node in ast.walk(stmt):
        if isinstance(node, (ast.Break, ast.Continue, ast.Return, ast.Yield, ast.YieldFrom)):
            return False
        if _sets_requires_grad(node) not in (None, False):
            return False
    return True


def _helper_freezes(ctx, call, covers) -> bool:
    """`freeze(model)` where `def freeze(m): for p in m.parameters(): p.requires_grad = False` is a
    function of this file that freezes all of its argument on every path, and nothing after that."""
    facts = ctx.facts
    defs = [s for s in facts.scopes if s.kind == "function" and s.name == call.func.id]
    if len(defs) != 1 or any(isinstance(a, ast.Starred) for a in call.args):
        return False
    fn = defs[0].node
    if fn.args.vararg or fn.args.kwarg or fn.decorator_list:
        return False
    params = [a.arg for a in fn.args.posonlyargs + fn.args.args]
    names = [params[i] for i, a in enumerate(call.args) if i < len(params) and covers(a)]
    names += [k.arg for k in call.keywords if k.arg in params and covers(k.value)]
    for pname in names:
        for i, st in enumerate(fn.body):
            if _blanket_freeze(ctx, st, [pname], depth=1):
                before = [n for b in fn.body[:i] for n in ast.walk(b)]
                after = [n for b in fn.body[i + 1:] for n in ast.walk(b)]
                if any(isinstance(n, (ast.Return, ast.Yield, ast.YieldFrom)) for n in before):
                    return False
                if any(isinstance(n, ast.Name) and n.id == pname and isinstance(n.ctx, ast.Store) for n in before):
                    return False
                return not _may_unfreeze(ctx, after, [pname])
    return False


def _sets_requires_grad(node):
    """For a requires_grad write (`x.requires_grad = v`, `x.requires_grad_(v)`): v when it is a
    constant, "?" when it is not; None for any other node."""
    if isinstance(node, ast.Assign):
        for t in node.targets:
            if isinstance(t, ast.Attribute) and t.attr == "requires_grad":
                v = const_value(node.value)
                return v if isinstance(v, bool) else "?"
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "requires_grad_":
        arg = node.args[0] if node.args else next((k.value for k in node.keywords if k.arg == "requires_grad"), None)
        if arg is None:
            return True
        v = const_value(arg)
        return v if isinstance(v, bool) else "?"
    return None


def _may_unfreeze(ctx, nodes, parts: list[str]) -> bool:
    facts = ctx.facts

    def related(p) -> bool:
        return bool(p) and (p[:len(parts)] == parts or parts[:len(p)] == p)

    for node in nodes:
        if _sets_requires_grad(node) not in (None, False):
            return True
        if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign, ast.Delete)):
            targets = node.targets if isinstance(node, (ast.Assign, ast.Delete)) else [node.target]
            value = getattr(node, "value", None)
            for t in _flat_targets(targets):
                if not isinstance(t, (ast.Name, ast.Attribute, ast.Subscript)):
                    continue
                tp = path_parts(t)
                if tp is None:  # `model.layers[i] = ...`
                    root = t
                    while isinstance(root, (ast.Attribute, ast.Subscript)):
                        root = root.value
                    if isinstance(root, ast.Name) and root.id == parts[0]:
                        return True
                    continue
                if not related(tp):
                    # `head.fc = nn.Linear(...)` on something that may be part of the model
                    if isinstance(t, (ast.Attribute, ast.Subscript)) and tp[0] != "self" and value is not None \
                            and any(isinstance(c, ast.Call) for c in ast.walk(value)):
                        return True
                    continue
                # the model rebound: only `model = model.to(dev)` keeps the same (frozen) instance
                if isinstance(node, ast.Assign) and tp == parts and path_parts(_unwrap_same(value)) == parts:
                    continue
                return True
        elif isinstance(node, ast.Call):
            f = node.func
            fname = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
            if fname != "requires_grad_" and any(w in fname.lower() for w in ("freeze", "trainable", "requires_grad")):
                return True
            if isinstance(f, ast.Name) and fname in ("setattr", "delattr", "exec", "eval"):
                return True
            if _is_local_def_call(facts, node):
                return True
            if isinstance(f, ast.Attribute):
                rp = path_parts(f.value)
                if rp == ["self"] and parts[0] == "self":
                    return True  # self.setup(): a method that may change self.model
                if rp and related(rp) and f.attr not in _KEEPS_FREEZE:
                    return True
            for a in list(node.args) + [k.value for k in node.keywords]:
                a = a.value if isinstance(a, ast.Starred) else a
                ap = path_parts(a)
                if ap and related(ap) and not (isinstance(f, ast.Name) and f.id in _HARMLESS_FUNCS):
                    return True
    return False


def _flat_targets(targets):
    for t in targets:
        if isinstance(t, (ast.Tuple, ast.List)):
            yield from _flat_targets(t.elts)
        elif isinstance(t, ast.Starred):
            yield from _flat_targets([t.value])
        else:
            yield t


def _unwrap_same(value):
    cur = value
    while isinstance(cur, ast.Call) and isinstance(cur.func, ast.Attribute) and cur.func.attr in (
            "to", "cuda", "cpu", "float", "double", "half", "bfloat16", "train", "eval", "requires_grad_"):
        if cur.func.attr == "requires_grad_":
            return None
        cur = cur.func.value
    return cur


def _blanket_frozen(ctx, opt):
    """(X, the freeze statement) when the optimizer's params are a requires_grad filter over
    `X.parameters()` and every parameter of X was frozen on every path to it, with nothing in between
    that could make one trainable again."""
    facts = ctx.facts
    if opt.params is None or opt.stmt is None:
        return None
    e = _unwrap_iter(opt.params)
    at = opt.stmt
    if isinstance(e, ast.Name):
        d = _single_def(facts, e.id, opt)
        if d is None:
            return None
        e, at = d.value, d
    recv = _grad_filter_receiver(e)
    parts = path_parts(recv) if recv is not None else None
    if not parts:
        return None
    doms = _dominators(facts, at, opt.scope)
    fz = next((d for d in doms if _blanket_freeze(ctx, d, parts)), None)
    if fz is None:
        return None
    # everything that runs between the freeze and the optimizer (a loop around the optimizer that
    # starts after the freeze runs its whole body in between)
    lo, hi = fz.end_lineno or fz.lineno, opt.stmt.lineno
    between = [n for n in opt.scope.walk() if lo < getattr(n, "lineno", 0) < hi or (
        getattr(n, "lineno", 0) == hi and n is not opt.stmt and not _inside(facts, n, opt.stmt))]
    for anc in facts.ancestors(opt.stmt):
        if anc is opt.scope.node:
            break
        if isinstance(anc, (ast.For, ast.AsyncFor, ast.While)) and anc.lineno > lo:
            between += [n for b in anc.body for n in ast.walk(b)]
    if _may_unfreeze(ctx, between, parts):
        return None
    return recv, fz


def _inside(facts, node, container) -> bool:
    return any(a is container for a in facts.ancestors(node))


def _changed_after_build(facts, model) -> bool:
    """`model.fc = nn.Linear(...)` (a new, trainable head) anywhere after the model is built."""
    events = facts.ctx.memo("gp1.attr_assignments", lambda: _attr_assignments(facts))
    n = len(model.key.split("."))
    for parts, line in events:
        if len(parts) > n and ".".join(parts[:n]) == model.key and line > model.line:
            return True
    return False


def _attr_assignments(facts) -> list[tuple[list[str], int]]:
    out = []
    for node in facts.all_nodes():
        if isinstance(node, ast.Assign):
            for t in node.targets:
                parts = path_parts(t)
                if parts and len(parts) >= 2 and parts[-1] != "requires_grad":
                    out.append((parts, node.lineno))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                node.func.attr in ("add_module", "register_module", "register_parameter"):
            parts = path_parts(node.func.value)
            if parts:
                out.append((parts + ["?"], node.lineno))
    return out


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
