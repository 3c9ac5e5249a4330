"""Facts queries for the GP1 rules, attached to `Facts` (see facts.py): which parameters an
optimizer's params expression covers, which models' parameters are frozen and where, which
bindings are the same instance, and whether a scope runs under no_grad."""
from __future__ import annotations

import ast

from gradpath.analysis.symbols import canonical
from gradpath.analysis.facts import key_of, ModelBinding, OptimizerBinding, Scope
from gradpath.analysis.param_facts import (
    const_value, Coverage, CoverPart, _flat_stmts, Freeze, freeze_statements, Inventory,
    InventoryBuilder, path_parts)


# -- Facts queries built on the above ---------------------------------------------------------
def all_nodes(self) -> list:
    """Every node of the tree (one list, built with the parents map)."""
    nodes = self.__dict__.get("_all_nodes")
    if nodes is None:
        nodes = list(ast.walk(self.ctx.tree))
        self.__dict__["_all_nodes"] = nodes
    return nodes


def all_calls(self) -> list:
    """Every call of the tree, in source order (the single pass's list)."""
    calls = self.__dict__.get("_all_calls")
    if calls is None:
        calls = [n for n in all_nodes(self) if n.__class__ is ast.Call]
        self.__dict__["_all_calls"] = calls
    return calls


def _cache(self, name, factory):
    store = self.__dict__.setdefault("_lazy", {})
    if name not in store:
        store[name] = factory()
    return store[name]


def _inventories(self) -> InventoryBuilder:
    return _cache(self, "inv_builder", lambda: InventoryBuilder(self.ctx))


def inventory_of(self, model: ModelBinding) -> Inventory | None:
    """The parameters of the instance a binding holds (None when it cannot be known)."""
    def build():
        if model.origin == "param":
            invs = [self.inventory_of(b) for b in getattr(model, "alias_of", [])]
            return invs[0] if invs and all(i is not None for i in invs) else None
        if model.origin in ("derived", "copy") and model.source_key:
            src = self.model_at(model.source_key, model.scope, model.line - 1 if model.origin == "copy" else model.line - 1)
            if src is not None and src is not model:
                return self.inventory_of(src)
            return None
        return _inventories(self).of_call(model.value)
    return _cache(self, ("inv", id(model)), build)


def resolve_receiver(self, expr: ast.AST, scope: Scope, line: int):
    """`model.encoder.fc` -> (binding of model, "encoder.fc"); None when no model is at its root."""
    parts = path_parts(expr)
    if not parts:
        return None
    for i in range(len(parts), 0, -1):
        key = ".".join(parts[:i])
        b = self.model_at(key, scope, line)
        if b is not None:
            return b, ".".join(parts[i:])
    return None


def is_model_key(self, key: str, scope: Scope, line: int | None = None) -> bool:
    return self.model_at(key, scope, line) is not None


def coverage(self, opt: OptimizerBinding) -> Coverage:
    return _cache(self, ("cov", id(opt)), lambda: self.cover_expr(opt.params, opt.scope, opt.line, top=True))


def cover_expr(self, e: ast.AST | None, scope: Scope, line: int, top: bool = False, depth: int = 0) -> Coverage:
    cov = Coverage()
    if e is None or depth > 6:
        cov.unknown = True
        return cov
    sym = self.ctx.symbols
    if isinstance(e, (ast.List, ast.Tuple, ast.Set)):
        if not e.elts and top:
            cov.empty = True
        for elt in e.elts:
            if isinstance(elt, ast.Starred):
                cov.merge(self.cover_expr(elt.value, scope, line, depth=depth + 1))
            elif isinstance(elt, ast.Dict):
                cov.groups = True
                cov.merge(self._cover_group(elt, scope, line, depth))
            else:
                cov.merge(self.cover_expr(elt, scope, line, depth=depth + 1))
        return cov
    if isinstance(e, ast.Dict):
        cov.groups = True
        cov.merge(self._cover_group(e, scope, line, depth))
        return cov
    if isinstance(e, ast.BinOp) and isinstance(e.op, ast.Add):
        cov.merge(self.cover_expr(e.left, scope, line, depth=depth + 1))
        cov.merge(self.cover_expr(e.right, scope, line, depth=depth + 1))
        return cov
    if isinstance(e, (ast.ListComp, ast.GeneratorExp, ast.SetComp)) and len(e.generators) == 1:
        gen = e.generators[0]
        inner = self.cover_expr(gen.iter, scope, line, depth=depth + 1)
        if isinstance(e.elt, ast.Dict):
            inner.groups = True
        kind = None
        if gen.ifs:
            kind = "grad-filter" if all(_is_requires_grad_test(c) for c in gen.ifs) else "name-filter"
        return self._filtered(inner, kind)
    if isinstance(e, ast.Call):
        f = e.func
        qn = canonical(sym.qualname(f) or "") if sym.qualname(f) else None
        fname = f.id if isinstance(f, ast.Name) else None
        if isinstance(f, ast.Attribute) and f.attr in ("parameters", "named_parameters"):
            return self._cover_params_call(e, f.value, scope, line, depth)
        if fname == "filter" and len(e.args) == 2:
            inner = self.cover_expr(e.args[1], scope, line, depth=depth + 1)
            pred = e.args[0]
            kind = "grad-filter" if isinstance(pred, ast.Lambda) and _is_requires_grad_test(pred.body) else "name-filter"
            return self._filtered(inner, kind)
        if fname in ("list", "tuple", "iter", "set") and len(e.args) == 1:
            return self.cover_expr(e.args[0], scope, line, depth=depth + 1)
        if qn in ("itertools.chain",) or (isinstance(f, ast.Attribute) and f.attr == "from_iterable"
                                          and (sym.qualname(f.value) or "").endswith("chain")):
            for a in e.args:
                if isinstance(f, ast.Attribute) and f.attr == "from_iterable":
                    if isinstance(a, (ast.List, ast.Tuple)):
                        for x in a.elts:
                            cov.merge(self.cover_expr(x, scope, line, depth=depth + 1))
                    else:
                        cov.unknown = True
                else:
                    cov.merge(self.cover_expr(a, scope, line, depth=depth + 1))
            return cov
        mcls = self.module_class_of_call(e)
        if mcls is not None:
            # Adam(Net()): the module itself, freshly built
            cov.unknown = True
            cov.fresh_modules.append((e, mcls))
            return cov
        cov.unknown = True
        return cov
    if isinstance(e, (ast.Name, ast.Attribute, ast.Subscript)):
        if isinstance(e, ast.Attribute) and e.attr in ("parameters", "named_parameters"):
            r = self.resolve_receiver(e.value, scope, line)
            cov.bound_methods.append((e, r[0] if r else None))
            if r is not None:
                inner = self._cover_params_call(None, e.value, scope, line, depth)
                cov.merge(inner)
            else:
                cov.unknown = True
            return cov
        r = self.resolve_receiver(e, scope, line)
        if r is not None:
            model, path = r
            inv = self.inventory_of(model)
            if path == "" or (inv is not None and inv.is_prefix(path) and not any(p.name == path for p in inv.params)):
                cov.modules.append((e, model, path))
                return cov
            if inv is not None and any(p.name == path for p in inv.params):
                cov.parts.append(CoverPart(model, {path}, "tensor", e, path, inv.complete))
                return cov
            if inv is None or not inv.complete:
                cov.unknown = True
                return cov
            cov.unknown = True
            return cov
        key = key_of(e)
        if key is not None:
            followed = self._follow_name(key, scope, line, depth)
            if followed is not None:
                return followed
        cov.unknown = True
        return cov
    cov.unknown = True
    return cov


def _is_requires_grad_test(node) -> bool:
    """`p.requires_grad`, also spelled `p.requires_grad is True` / `== True` / `is not False`."""
    if isinstance(node, ast.Compare) and len(node.ops) == 1 and len(node.comparators) == 1:
        c = node.comparators[0]
        if isinstance(c, ast.Constant) and isinstance(c.value, bool):
            op = node.ops[0]
            if not ((isinstance(op, (ast.Is, ast.Eq)) and c.value is True)
                    or (isinstance(op, (ast.IsNot, ast.NotEq)) and c.value is False)):
                return False
            node = node.left
    return isinstance(node, ast.Attribute) and node.attr == "requires_grad"


def _filtered(self, inner: Coverage, kind: str | None) -> Coverage:
    if kind is None:
        return inner
    for p in inner.parts:
        if kind == "name-filter":
            p.kind = "name-filter"
        elif p.kind != "name-filter":
            p.kind = "grad-filter"
    return inner


def _cover_group(self, d: ast.Dict, scope, line, depth) -> Coverage:
    for k, v in zip(d.keys, d.values):
        if isinstance(k, ast.Constant) and k.value == "params":
            return self.cover_expr(v, scope, line, depth=depth + 1)
    cov = Coverage()
    cov.unknown = True
    return cov


def _cover_params_call(self, call, receiver, scope, line, depth) -> Coverage:
    cov = Coverage()
    if isinstance(receiver, ast.Call):
        mcls = self.module_class_of_call(receiver)
        if mcls is not None:
            cov.fresh.append((receiver, mcls))
            cov.unknown = True
            return cov
    r = self.resolve_receiver(receiver, scope, line)
    if r is None:
        cov.unknown = True
        return cov
    model, path = r
    inv = self.inventory_of(model)
    if inv is None:
        cov.parts.append(CoverPart(model, set(), "all" if not path else "submodule", receiver, path, False))
        cov.unknown = cov.unknown or bool(path)
        return cov
    names = {p.name for p in inv.under(path)}
    top = path.split(".")[0] if path else ""
    if path and not names and not inv.complete and top not in inv.submodules and top not in inv.opaque:
        # (a known submodule whose own parameters cannot be read, a torchvision backbone: the part
        # covers that prefix; the known submodules outside every covered prefix are still left out)
        cov.unknown = True
    cov.parts.append(CoverPart(model, names, "all" if not path else "submodule", receiver, path,
                               inv.complete))
    return cov


def _follow_name(self, key: str, scope: Scope, line: int, depth: int) -> Coverage | None:
    """`params = [...]; params += ...; Adam(params)`: the union of what the name was given."""
    found = None
    for s in self.visible_scopes(scope):
        cands = []
        for node in s.walk():
            ln = getattr(node, "lineno", 0)
            if s is scope and ln > line:
                continue
            if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                if any(key_of(t) == key for t in targets) and node.value is not None:
                    cands.append(node)
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                    node.func.attr in ("append", "extend", "add_param_group") and key_of(node.func.value) == key:
                cands.append(node)
        if cands:
            found = cands
            break
    if not found:
        return None
    cov = Coverage()
    last_assign = max((i for i, n in enumerate(found) if isinstance(n, (ast.Assign, ast.AnnAssign))), default=None)
    if last_assign is None:
        cov.unknown = True
    for n in found[last_assign or 0:]:
        if isinstance(n, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            if isinstance(n, ast.Assign) and len(n.targets) == 1 and isinstance(n.targets[0], ast.Tuple):
                cov.unknown = True
                continue
            cov.merge(self.cover_expr(n.value, scope, line, depth=depth + 1))
        else:
            for a in n.args:
                if n.func.attr == "append":
                    cov.merge(self.cover_expr(ast.List(elts=[a], ctx=ast.Load()), scope, line, depth=depth + 1))
                else:
                    cov.merge(self.cover_expr(a, scope, line, depth=depth + 1))
        cov.sources.append(n)
    # a loop that fills the list (for m in models: params += ...) may add more
    for n in found:
        for anc in self.ancestors(n):
            if isinstance(anc, (ast.For, ast.While, ast.comprehension)):
                cov.unknown = True
    return cov


def freezes(self) -> list[Freeze]:
    def build():
        out = []
        for scope in self.scopes:
            for stmt, _loop, in_if in _flat_stmts(scope.body):
                for parts, names, value, cond, node in freeze_statements(stmt, in_if):
                    if parts and parts[0] == "self" and scope.name == "__init__" and (
                            scope.class_name is None or self.ctx.symbols.is_module_class(scope.class_name)):
                        continue  # a module's own __init__: part of the class inventory
                    # (a Trainer's __init__ freezing self.model.backbone is a freeze of self.model)
                    r = None
                    for i in range(len(parts), 0, -1):
                        b = self.model_at(".".join(parts[:i]), scope, node.lineno)
                        if b is not None:
                            r = (b, ".".join(parts[i:]))
                            break
                    if r is None:
                        continue
                    model, path = r
                    inv = self.inventory_of(model)
                    tensor = inv is not None and any(p.name == path for p in inv.params)
                    out.append(Freeze(model, "" if tensor else path, {path} if tensor else None, value,
                                      cond, node, scope, node.lineno))
        return out
    return _cache(self, "freezes", build)


def frozen_names(self, model: ModelBinding, before_line: int | None = None, scope: Scope | None = None):
    """(names frozen, uncertain) for a model: class-level and explicit freezes, in order.
    `uncertain` is True when some freeze is conditional or cannot be mapped to names."""
    inv = self.inventory_of(model)
    names: set[str] = set(inv.frozen) if inv else set()
    uncertain = bool(inv.frozen_unknown) if inv else False
    related = [model] + roots_of(self, model)
    if model.origin in ("derived",) and model.source_key:
        src = self.model_at(model.source_key, model.scope, model.line - 1)
        if src is not None and src is not model:
            related.append(src)
    for fz in sorted(self.freezes(), key=lambda f: f.line):
        if fz.model.origin == "param" and any(r is model or r in related for r in roots_of(self, fz.model)):
            # frozen inside a helper function that receives this model
            if inv is None:
                uncertain = True
                continue
            hit = {p.name for p in inv.under(fz.prefix)} if fz.names is None else set(fz.names)
            if fz.conditional:
                uncertain = uncertain or not fz.value
            elif fz.value is False:
                names |= hit
            else:
                names -= hit
            continue
        if fz.model not in related and fz.model.key != model.key:
            continue
        if fz.model.key == model.key and fz.model is not model and fz.model not in related:
            # a freeze of the same name: counts if it happens after this binding
            if fz.scope is model.scope and fz.line < model.line:
                continue
            if self.model_at(model.key, fz.scope, fz.line) is not model:
                continue
        if before_line is not None and scope is not None and fz.scope is scope and fz.line > before_line:
            continue
        if inv is None:
            uncertain = True
            continue
        hit = {p.name for p in inv.under(fz.prefix)} if fz.names is None else set(fz.names)
        if fz.conditional:
            uncertain = uncertain or not fz.value
            continue
        if fz.value is False:
            names |= hit
        else:
            names -= hit
    if _passed_to_freezer(self, model):
        uncertain = True
    return names, uncertain


_FREEZER_WORDS = ("freeze", "requires_grad", "trainable", "unfreeze")


def _passed_to_freezer(self, model: ModelBinding) -> bool:
    """`freeze_backbone(model)` / `set_requires_grad(model.encoder, False)`: a helper we cannot see
    may freeze it."""
    return _cache(self, ("freezer", id(model)), lambda: _passed_to_freezer_uncached(self, model))


def _freezer_calls(self) -> list[ast.Call]:
    def build():
        out = []
        for node in self.all_nodes():
            if isinstance(node, ast.Call):
                f = node.func
                name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
                if any(w in name.lower() for w in _FREEZER_WORDS) and name != "requires_grad_":
                    out.append(node)
        return out
    return _cache(self, "freezer_calls", build)


def _passed_to_freezer_uncached(self, model: ModelBinding) -> bool:
    keys = {model.key} | {r.key for r in roots_of(self, model)}
    for node in _freezer_calls(self):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
        if not any(w in name.lower() for w in _FREEZER_WORDS) or name == "requires_grad_":
            continue
        for a in list(node.args) + [k.value for k in node.keywords]:
            parts = path_parts(a)
            if parts and any(".".join(parts[:len(k.split("."))]) == k for k in keys):
                return True
    return False


def roots_of(self, model: ModelBinding) -> list[ModelBinding]:
    """The caller-side bindings a function parameter stands for (transitively), else []."""
    out, todo = [], list(getattr(model, "alias_of", []))
    while todo:
        b = todo.pop()
        if b in out:
            continue
        out.append(b)
        todo += getattr(b, "alias_of", [])
    return out


def same_instance(self, a: ModelBinding, b: ModelBinding) -> bool:
    """a and b name the same module object (a parameter and its argument, model and model.to())."""
    if a is b:
        return True
    memo = self.__dict__.get("_same")
    if memo is None:
        memo = self.__dict__["_same"] = {}
    k = (id(a), id(b))
    hit = memo.get(k)
    if hit is None:
        hit = memo[k] = _same_instance(self, a, b)
    return hit


def _same_instance(self, a: ModelBinding, b: ModelBinding) -> bool:
    ga = {id(x) for x in [a] + roots_of(self, a)}
    gb = {id(x) for x in [b] + roots_of(self, b)}
    if ga & gb:
        return True
    for x, y in ((a, b), (b, a)):
        if x.origin == "derived" and x.source_key == y.key:
            src = self.model_at(x.source_key, x.scope, x.line - 1)
            if src is y or (src is not None and id(src) in ({id(y)} | {id(r) for r in roots_of(self, y)})):
                return True
    return False


def _scope_no_grad(self, scope: Scope) -> bool:
    node = scope.node
    for d in getattr(node, "decorator_list", []):
        target = d.func if isinstance(d, ast.Call) else d
        if canonical(self.ctx.symbols.qualname(target) or "") in ("torch.no_grad", "torch.inference_mode"):
            return True
    return False


def is_no_grad_with(self, w: ast.With) -> bool:
    for item in w.items:
        ce = item.context_expr
        if isinstance(ce, ast.Call):
            qn = canonical(self.ctx.symbols.qualname(ce.func) or "")
            if qn in ("torch.no_grad", "torch.inference_mode"):
                return True
            if qn == "torch.set_grad_enabled" and ce.args and const_value(ce.args[0]) is False:
                return True
    return False
