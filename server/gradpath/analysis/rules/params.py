"""GP1: parameters that never reach the optimizer (GP101-GP112).

Every rule reads `ctx.facts` (model bindings and their inventories, what each optimizer's params
expression covers, freezes, which models' outputs reach a backwarded loss). When a fact is not
known (an unknown factory, a params list built in a loop, a conditional freeze) the rule says
nothing.
"""
from __future__ import annotations

import ast

from gradpath.analysis.facts import (
    _TENSOR_FACTORIES, ModelBinding, _flat_stmts, const_value, key_of, path_parts,
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
            # every optimizer that touches this model (a split across optimizers is fine)
            union: set[str] = set()
            if any_unknown:
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


# -- GP103 ----------------------------------------------------------------------------------
def _held(facts, model) -> bool:
    for o in facts.optimizers:
        cov = facts.coverage(o)
        for pt in cov.parts:
            if pt.model is None:
                continue
            if facts.same_instance(pt.model, model) or pt.model.key == model.key:
                return True
            if model.origin == "derived" and pt.model.key == model.source_key:
                return True
        if any(facts.same_instance(m, model) or m.key == model.key for _n, m, _p in cov.modules):
            return True
    return False


@rule("GP103")
def model_not_optimized(ctx):
    facts = ctx.facts
    if not facts.optimizers or any(facts.coverage(o).unknown for o in facts.optimizers):
        return
    done: set[tuple[str, int]] = set()
    for bw in sorted(facts.backwards(), key=lambda b: b.line):
        deps = [facts.model_at(k, bw.scope, bw.line) for k in sorted(bw.deps)]
        deps = [m for m in deps if m is not None]
        held = [m for m in deps if _held(facts, m)]
        if not held:
            continue
        for model in deps:
            if model in held or model.origin == "copy":
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
                if src is not None and (facts.escapes(src) or _held(facts, src)):
                    continue
            # the optimizer that trains the other model(s) of this loss
            cands = [o for o in sorted(facts.optimizers, key=lambda o: o.line)
                     if any(pt.model is not None and any(facts.same_instance(pt.model, h) or pt.model.key == h.key
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
                        if a:
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
                   f"parameters are missing from {cname}.parameters(), state_dict() and .to(), and no optimizer "
                   f"sees them")
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
    return out


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
    for cname, cls in _module_classes(ctx):
        methods = _methods(cls)
        init = next((m for m in methods if m.name == "__init__"), None)
        attrs = {a for m in methods for n in ast.walk(m) for a in [_self_attr_name(n)] if a}
        for m in methods:
            if m.name != "forward":
                continue
            parents = ctx.facts.parents
            for n in _walk_no_defs(m):
                if not isinstance(n, ast.Call) or not _is_module_ctor(ctx, n):
                    continue
                inv = ctx.facts.inventories.of_call(n)
                if inv is None or not inv.has_params:
                    continue
                par = parents.get(id(n))
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
                       f"forward(): every call creates a fresh {pnames} that {cname} does not register, so no "
                       f"optimizer trains them")
                fixes = _gp112_fix(ctx, n, init, target_name, attrs, par, self_target)
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
            if not steps or not used:
                continue
            what = "a copy" if new.origin == "copy" else f"a new {short(new.cls)}"
            msg = (f"{new.key} is rebound to {what} after {opt.short} took the parameters of the previous instance "
                   f"(line {opt.line}): {opt.short} keeps updating the old tensors and the new {new.key} never changes")
            related = [Related(ctx.span(opt.call), f"{opt.short} takes the parameters of the old {old.key} here"),
                       Related(ctx.span(steps[0].call), f"{opt.key}.step() updates the old instance here")]
            fixes = _move_after(ctx, opt.stmt, new.stmt, opt)
            yield ctx.finding("GP106", new.stmt, msg, fixes=fixes, related=related,
                              data=model_data(new, opt))
            break


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


# -- GP107 ----------------------------------------------------------------------------------
@rule("GP107")
def all_frozen(ctx):
    facts = ctx.facts
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
            freezes += [fz for fz in facts.freezes() if fz.model.key == model.key and not fz.value
                        and (fz.scope is not opt.scope or fz.line < opt.line)]
        if not all_frozen_ or not freezes:
            continue
        model = next(iter(models.values()))
        fz = freezes[0]
        msg = (f"{opt.short} gets only the parameters of {model.key} that require grad, but every one of them is "
               f"frozen (line {fz.line}): PyTorch raises ValueError: optimizer got an empty parameter list")
        related = [Related(ctx.span(f.node), f"{f.model.key}{'.' + f.prefix if f.prefix else ''} is frozen here")
                   for f in freezes[:3]]
        yield ctx.finding("GP107", opt.params, msg, related=related, data=model_data(model, opt, []))


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
        if par is opt_call:
            continue
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
