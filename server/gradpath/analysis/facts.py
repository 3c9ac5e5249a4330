"""Facts shared by the rules: scopes, which names hold models and optimizers, method-call events.

Rules read these instead of walking the raw tree again. Names are "keys": `model` for a plain
name, `self.model` for an attribute of `self` (a Trainer class), `a.b` for deeper chains.

Beyond models/optimizers/calls (see Facts), the GP1 layer adds, all lazy and cached:
  facts.inventory_of(binding) -> Inventory | None   parameters (name, shape, where created) of the
                                                      instance; `.complete`, `.used`, `.frozen`
  facts.coverage(opt) -> Coverage                      what an optimizer's params expression holds:
                                                      `.parts` (model, names, kind), `.unknown`,
                                                      `.groups`, `.fresh`, `.bound_methods`, `.modules`
  facts.freezes(), facts.frozen_names(binding)         requires_grad=False loops / requires_grad_(False)
  facts.backwards(), facts.reaches_backward(binding)   which models' outputs reach a backwarded value
  facts.model_calls(key), facts.escapes(binding), facts.same_instance(a, b), facts.all_nodes(),
  facts.all_calls()
Model bindings have `origin`: "new" (constructor), "derived" (model.to(dev): same instance),
"copy" (copy.deepcopy), "param" (a function parameter that receives a model at every call site).
"""
from __future__ import annotations

import ast
from dataclasses import dataclass, field
from typing import Iterator

from gradpath.analysis.facts_walk import (  # noqa: F401 - Scope and scope_place are imported from here
    _facts_base, Scope, scope_place, single_pass, walk_statement)
from gradpath.analysis.symbols import is_optimizer_qualname, is_torch_module_qualname, canonical


def key_of(expr: ast.AST | None) -> str | None:
    """`model` -> "model"; `self.model` -> "self.model"; `a.b.c` -> "a.b.c"; else None."""
    parts = []
    node = expr
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


@dataclass(eq=False)
class ModelBinding:
    key: str
    scope: Scope
    value: ast.Call
    cls: str  # canonical qualname (torch.nn.Linear) or local/imported class name (Net)
    stmt: ast.stmt
    line: int
    # "new": a constructor call; "derived": model.to(dev)/.cuda()/.train() (same instance);
    # "copy": copy.deepcopy(other) (a new instance with the same class)
    origin: str = "new"
    source_key: str | None = None  # for derived/copy: the key it came from


@dataclass(eq=False)
class OptimizerBinding:
    key: str | None  # None for an optimizer that is never stored in a name
    scope: Scope
    call: ast.Call
    cls: str  # "torch.optim.Adam"
    params: ast.AST | None  # first positional argument or params=
    stmt: ast.stmt | None
    line: int

    @property
    def short(self) -> str:
        return self.cls.rsplit(".", 1)[-1]


@dataclass(eq=False)
class MethodCall:
    receiver: str  # key of the receiver (`opt` in `opt.step()`)
    method: str
    call: ast.Call
    scope: Scope
    line: int


@dataclass
class Facts:
    ctx: object
    scopes: list[Scope] = field(default_factory=list)
    models: list[ModelBinding] = field(default_factory=list)
    optimizers: list[OptimizerBinding] = field(default_factory=list)
    calls: list[MethodCall] = field(default_factory=list)
    parents: dict[int, ast.AST] = field(default_factory=dict)  # id(node) -> parent node

    @classmethod
    def build(cls, ctx) -> "Facts":
        f = cls(ctx)
        base = _facts_base(ctx)
        f._single_pass(ctx.tree, base)
        # a scope whose statement was taken over from the base (see _single_pass) binds what it
        # bound there, unless a statement of the script or an import changed too (what its names
        # resolve to may)
        edit = getattr(ctx, "flow_edit", None)
        taken = f.__dict__.get("_taken", ()) if base is not None and not edit.module_edits and not edit.imports \
            else ()
        old_slices = base.__dict__.get("_bind_slices", {}) if taken else {}
        slices = {}
        models, opts, calls = f.models, f.optimizers, f.calls
        for scope in f.scopes:
            m0, o0, c0 = len(models), len(opts), len(calls)
            old = old_slices.get(id(scope)) if id(scope) in taken else None
            if old is not None:
                models.extend(base.models[old[0]:old[1]])
                opts.extend(base.optimizers[old[2]:old[3]])
                calls.extend(base.calls[old[4]:old[5]])
            else:
                f._collect_bindings(scope)
            slices[id(scope)] = (m0, len(models), o0, len(opts), c0, len(calls))
        f.__dict__["_bind_slices"] = slices
        try:
            f._collect_param_bindings()
            f._collect_late_copies()
        except RecursionError:  # pragma: no cover
            pass
        return f

    _single_pass = single_pass  # (facts_walk.py)
    _walk_statement = walk_statement

    def _scope(self, node, kind: str, name: str, class_name: str | None = None, parent: Scope | None = None
               ) -> Scope:
        """A Scope for `node`: the previous version's scope at the same place when there is one
        (its node, parent and cached lists brought up to date), else a new one."""
        key = scope_place(node, kind, class_name)
        s = self.ctx.scope_reuse.pop(key, None)
        if s is None:
            return Scope(node, kind, name, class_name, parent)
        if s.node is not node:
            for k in [k for k in s.__dict__ if k.startswith("_")]:
                del s.__dict__[k]
        s.node, s.kind, s.name, s.class_name, s.parent = node, kind, name, class_name, parent
        return s

    def _collect_param_bindings(self) -> None:
        """A function's parameter that receives a model at every call site in this file is a model
        binding of the function (origin "param", `alias_of` the caller's bindings)."""
        funcs = {s.name: s for s in self.scopes if s.kind == "function"}
        # a plain (non-module) class: Trainer(model, ...) binds __init__'s parameters
        sym = self.ctx.symbols
        for s in self.scopes:
            if s.kind == "method" and s.name == "__init__" and s.class_name in sym.classes \
                    and not sym.is_module_class(s.class_name) and s.class_name not in funcs:
                funcs[s.class_name] = s
        if not funcs:
            return
        sites: dict[str, list[ast.Call]] = {}
        for node in self.__dict__.get("_all_calls") or [n for n in ast.walk(self.ctx.tree) if isinstance(n, ast.Call)]:
            if isinstance(node.func, ast.Name) and node.func.id in funcs:
                sites.setdefault(node.func.id, []).append(node)
        for _round in range(2):
            for name, calls in sites.items():
                scope = funcs[name]
                fn = scope.node
                params = [a for a in fn.args.posonlyargs + fn.args.args]
                if scope.kind == "method":
                    params = params[1:]  # self
                for i, arg in enumerate(params):
                    if any(b.scope is scope and b.key == arg.arg for b in self.models):
                        continue
                    found = []
                    for call in calls:
                        val = call.args[i] if i < len(call.args) and not any(
                            isinstance(a, ast.Starred) for a in call.args[:i + 1]) else next(
                            (k.value for k in call.keywords if k.arg == arg.arg), None)
                        key = key_of(val) if val is not None else None
                        b = self.model_at(key, self.scope_of(call), call.lineno) if key else None
                        if b is None and isinstance(val, ast.Call) and self.module_class_of_call(val):
                            # Trainer(Net()): an instance built right in the call
                            b = ModelBinding(f"{arg.arg}", self.scope_of(call), val, self.module_class_of_call(val),
                                             self.enclosing_stmt(call) or call, call.lineno, "new", None)
                        if b is None:
                            found = []
                            break
                        found.append(b)
                    if not found or len({b.cls for b in found}) != 1:
                        continue
                    mb = ModelBinding(arg.arg, scope, found[0].value, found[0].cls, arg, fn.lineno, "param", None)
                    mb.alias_of = found
                    self.models.append(mb)
                    if scope.kind == "method":
                        # self.model = model in Trainer.__init__: the attribute holds the same instance
                        for node in scope.walk():
                            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Name) \
                                    and node.value.id == arg.arg:
                                for t in node.targets:
                                    k = key_of(t)
                                    if k and k.startswith("self.") and k.count(".") == 1:
                                        ab = ModelBinding(k, scope, found[0].value, found[0].cls, node, node.lineno,
                                                          "param", None)
                                        ab.alias_of = [mb]
                                        self.models.append(ab)

    def _collect_late_copies(self) -> None:
        """`model = copy.deepcopy(base)` where `base` is a function parameter bound to a model: a copy
        binding. The first pass over the assignments ran before the parameter bindings existed."""
        param_scopes = {id(b.scope) for b in self.models if b.origin == "param"}
        if not param_scopes:
            return
        for scope in self.scopes:
            if id(scope) not in param_scopes:
                continue
            for node in scope.walk():
                if not isinstance(node, ast.Assign) or len(node.targets) != 1:
                    continue
                key = key_of(node.targets[0])
                v = node.value
                if key is None or not isinstance(v, ast.Call) or len(v.args) != 1 or v.keywords:
                    continue
                if self._qualname(v.func) != "copy.deepcopy":
                    continue
                if any(b.stmt is node for b in self._models_by_key().get(key, ())):
                    continue
                src = key_of(v.args[0])
                b = self.model_at(src, scope, node.lineno) if src else None
                if b is None or b.origin != "param" or b.scope is not scope:
                    continue
                self.models.append(ModelBinding(key, scope, v, b.cls, node, node.lineno, "copy", src))

    # -- scopes --------------------------------------------------------------------------------
    def _collect_scopes(self, body, parent: Scope, class_name: str | None) -> None:
        """Every function and method, once, in source order (nested ones inside their parent)."""
        stack = list(reversed(body))
        while stack:
            sub = stack.pop()
            if isinstance(sub, ast.ClassDef):
                self._collect_scopes(sub.body, parent, sub.name)
            elif isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef)):
                kind = "method" if class_name else "function"
                scope = Scope(sub, kind, sub.name, class_name, parent)
                self.scopes.append(scope)
                self._collect_scopes(sub.body, scope, None)
            elif isinstance(sub, ast.Lambda):
                continue
            else:
                stack.extend(reversed(list(ast.iter_child_nodes(sub))))

    def node_scopes(self) -> dict | None:
        """id(node) -> the innermost scope strictly containing it, for every node of the single pass
        (None when scopes were added since, or there was no single pass)."""
        ns = self.__dict__.get("_node_scope")
        if ns is None or len(self.scopes) != self.__dict__["_by_node"][0]:
            return None
        return ns

    def scope_of(self, node: ast.AST) -> Scope:
        """The innermost scope that contains `node`."""
        ns = self.node_scopes()
        if ns is not None:
            s = ns.get(id(node))
            if s is not None:
                return s
        cur = node
        cached = self.__dict__.get("_by_node")
        if cached is None or cached[0] != len(self.scopes):
            cached = (len(self.scopes), {id(s.node): s for s in self.scopes})
            self.__dict__["_by_node"] = cached
        by_node = cached[1]
        while cur is not None:
            s = by_node.get(id(cur))
            if s is not None and cur is not node:
                return s
            cur = self.parents.get(id(cur))
        return self.scopes[0]

    def scope_for(self, def_node: ast.AST) -> Scope | None:
        """The scope of a FunctionDef/AsyncFunctionDef node (None for anything else)."""
        by = self.__dict__.get("_by_node")
        if by is None or by[0] != len(self.scopes):
            by = (len(self.scopes), {id(s.node): s for s in self.scopes})
            self.__dict__["_by_node"] = by
        return by[1].get(id(def_node))

    def parent(self, node: ast.AST) -> ast.AST | None:
        return self.parents.get(id(node))

    def enclosing_stmt(self, node: ast.AST) -> ast.stmt | None:
        cur = node
        while cur is not None and not isinstance(cur, ast.stmt):
            cur = self.parents.get(id(cur))
        return cur

    def ancestors(self, node: ast.AST) -> Iterator[ast.AST]:
        cur = self.parents.get(id(node))
        while cur is not None:
            yield cur
            cur = self.parents.get(id(cur))

    # -- bindings ------------------------------------------------------------------------------
    def module_class_of_call(self, call: ast.AST) -> str | None:
        """If `call` constructs an nn.Module (torch layer, local or resolved subclass), its class."""
        if not isinstance(call, ast.Call):
            return None
        qn = self._qualname(call.func)
        if qn is None:
            return None
        sym = self.ctx.symbols
        if is_torch_module_qualname(qn):
            return canonical(qn)
        if sym.is_module_class(qn):
            return qn
        return None

    def _qualname(self, func: ast.AST) -> str | None:
        """symbols.qualname, computed once per node."""
        cache = self.__dict__.get("_qn")
        if cache is None:
            cache = self.__dict__["_qn"] = {}
        k = id(func)
        if k in cache:
            return cache[k]
        qn = cache[k] = self.ctx.symbols.qualname(func)
        return qn

    def _collect_bindings(self, scope: Scope) -> None:
        qualname = self._qualname
        Assigns, Call, Attribute = (ast.Assign, ast.AnnAssign), ast.Call, ast.Attribute
        opt_calls = self.__dict__.get("_opt_calls")
        if opt_calls is None:
            opt_calls = self.__dict__["_opt_calls"] = set()
        for node in scope.walk():
            if isinstance(node, Assigns):
                if node.value is None:
                    continue
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for t, value in _target_pairs(targets, node.value):
                    key = key_of(t)
                    if key is None:
                        continue
                    mcls = self.module_class_of_call(value)
                    origin, source_key = "new", None
                    inner = unwrap_same_instance(value)
                    if mcls is None and inner is not value and self.module_class_of_call(inner) is not None:
                        # Net().to(device) / Net().cuda().train(): a new instance, built by the inner call
                        mcls = self.module_class_of_call(inner)
                        value = inner
                    elif mcls is None and isinstance(value, ast.Call):
                        # model.to(dev) / model.cuda() / copy.deepcopy(model) keep the class;
                        # copy.deepcopy(model).to(dev) is the copy
                        if isinstance(inner, ast.Call) and inner is not value:
                            value = inner
                        mcls = self._derived_model_class(value, scope, node.lineno)
                        origin, source_key = _derivation(value, self.ctx.symbols)
                    if mcls is not None:
                        self.models.append(ModelBinding(key, scope, value, mcls, node, node.lineno,
                                                        origin, source_key))
                    if isinstance(value, Call) and is_optimizer_qualname(qualname(value.func)):
                        self.optimizers.append(OptimizerBinding(
                            key, scope, value, canonical(qualname(value.func)),
                            _params_arg(value), node, node.lineno))
                        opt_calls.add(id(value))
            elif isinstance(node, Call):
                func = node.func
                if isinstance(func, Attribute):
                    rk = key_of(func.value)
                    if rk is not None:
                        self.calls.append(MethodCall(rk, func.attr, node, scope, node.lineno))
                if id(node) not in opt_calls and is_optimizer_qualname(qualname(func)):
                    parent = self.parents.get(id(node))
                    if not isinstance(parent, Assigns):
                        self.optimizers.append(OptimizerBinding(
                            None, scope, node, canonical(qualname(func)),
                            _params_arg(node), self.enclosing_stmt(node), node.lineno))
                        opt_calls.add(id(node))

    def _derived_model_class(self, call: ast.Call, scope: Scope, line: int) -> str | None:
        func = call.func
        if isinstance(func, ast.Attribute) and func.attr in ("to", "cuda", "cpu", "float", "double",
                                                              "half", "train", "eval", "requires_grad_"):
            src = key_of(func.value)
            b = self.model_at(src, scope, line) if src else None
            return b.cls if b else None
        qn = self.ctx.symbols.qualname(func)
        if qn in ("copy.deepcopy", "copy.copy") and call.args:
            src = key_of(call.args[0])
            b = self.model_at(src, scope, line) if src else None
            return b.cls if b else None
        return None

    # -- queries -------------------------------------------------------------------------------
    def visible_scopes(self, scope: Scope) -> list[Scope]:
        """The scope itself, and for `self.` keys in methods, every method of the same class;
        module level is visible from functions (globals)."""
        cache = self.__dict__.setdefault("_visible", {})
        hit = cache.get(id(scope))
        if hit is not None and hit[0] == len(self.scopes):
            return list(hit[1])
        out = [scope]
        if scope.class_name:
            out += [s for s in self.scopes if s.class_name == scope.class_name and s is not scope]
        if scope.kind != "module":
            out.append(self.scopes[0])
        cache[id(scope)] = (len(self.scopes), out)
        return list(out)

    def _models_by_key(self) -> dict:
        # self.models only grows (appended while bindings are collected): index the new ones
        idx = self.__dict__.get("_mkey")
        n = len(self.models)
        if idx is None or idx[0] > n or (n and idx[0] and self.models[idx[0] - 1] is not idx[2]):
            idx = (0, {}, None)
        if idx[0] != n:
            by = idx[1]
            for b in self.models[idx[0]:]:
                by.setdefault(b.key, []).append(b)
            idx = (n, by, self.models[-1] if n else None)
            self.__dict__["_mkey"] = idx
        return idx[1]

    def model_at(self, key: str, scope: Scope, line: int | None = None) -> ModelBinding | None:
        """The latest model binding of `key` visible from `scope` (before `line` when given)."""
        same = self._models_by_key().get(key)
        if not same:
            return None
        best = None
        for b in same:
            if b.scope is scope and (line is None or b.line <= line):
                if best is None or b.line >= best.line:
                    best = b
        if best is not None:
            return best
        for s in self.visible_scopes(scope)[1:]:
            if key.startswith("self.") and s.class_name != scope.class_name:
                continue
            cands = [b for b in same if b.scope is s]
            if cands:
                return max(cands, key=lambda b: b.line)
        return None

    def models_in(self, scope: Scope) -> list[ModelBinding]:
        return [b for b in self.models if b.scope is scope]

    def optimizers_in(self, scope: Scope) -> list[OptimizerBinding]:
        return [o for o in self.optimizers if o.scope is scope]

    def optimizer_at(self, key: str, scope: Scope) -> OptimizerBinding | None:
        for s in self.visible_scopes(scope):
            if s is not scope and s.kind == "module" and _binds_locally(scope, key):
                return None  # a parameter or local of the function shadows the global
            cands = [o for o in self.optimizers if o.key == key and o.scope is s]
            if cands:
                return max(cands, key=lambda o: o.line)
        return None

    def calls_named(self, method: str, scope: Scope | None = None) -> list[MethodCall]:
        return [c for c in self.calls if c.method == method and (scope is None or c.scope is scope)]


def _binds_locally(scope: Scope, key: str) -> bool:
    """Does a function scope bind the head name of `key` (a parameter, or an assignment without
    `global`)? Then the module-level name of the same spelling is another object there."""
    if scope.kind == "module" or not key or key.startswith("self."):
        return False
    head = key.split(".")[0]
    node = scope.node
    a = getattr(node, "args", None)
    if a is not None and any(x.arg == head for x in a.posonlyargs + a.args + a.kwonlyargs
                             + [y for y in (a.vararg, a.kwarg) if y]):
        return True
    sets = scope.__dict__.get("_binding_sets")
    if sets is None:
        # one walk per scope (nested defs included, as before): names declared global, names stored
        declared, stored = set(), set()
        for n in ast.walk(node):
            if isinstance(n, ast.Global):
                declared.update(n.names)
            elif isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
                stored.add(n.id)
        sets = scope.__dict__["_binding_sets"] = (declared, stored)
    return head not in sets[0] and head in sets[1]


def _target_pairs(targets, value) -> list[tuple[ast.AST, ast.AST]]:
    """(target, value) pairs of an assignment: `a = b = v` gives (a, v), (b, v); `a, b = x, y`
    (same length, nothing starred) gives (a, x), (b, y); any other unpacking gives the target
    tuple itself (which has no key)."""
    out = []
    for t in targets:
        if isinstance(t, (ast.Tuple, ast.List)) and isinstance(value, (ast.Tuple, ast.List)) \
                and len(t.elts) == len(value.elts) \
                and not any(isinstance(e, ast.Starred) for e in t.elts + value.elts):
            for sub_t, sub_v in zip(t.elts, value.elts):
                out += _target_pairs([sub_t], sub_v)
        else:
            out.append((t, value))
    return out


def _params_arg(call: ast.Call) -> ast.AST | None:
    if call.args:
        return call.args[0]
    for kw in call.keywords:
        if kw.arg == "params":
            return kw.value
    return None


_SAME_INSTANCE = ("to", "cuda", "cpu", "float", "double", "half", "bfloat16", "train", "eval",
                  "requires_grad_", "share_memory", "to_empty")


def unwrap_same_instance(value: ast.AST) -> ast.AST:
    """`Net().to(dev).train()` -> the `Net()` call (these methods return the same module)."""
    cur = value
    while isinstance(cur, ast.Call) and isinstance(cur.func, ast.Attribute) and cur.func.attr in _SAME_INSTANCE:
        cur = cur.func.value
    return cur


def _derivation(call: ast.Call, sym) -> tuple[str, str | None]:
    func = call.func
    if sym.qualname(func) in ("copy.deepcopy", "copy.copy"):
        return "copy", key_of(call.args[0]) if call.args else None
    if isinstance(func, ast.Attribute):
        return "derived", key_of(func.value)
    if call.args:
        return "copy", key_of(call.args[0])
    return "copy", None


# The deeper facts for the GP1 rules live in param_facts.py, coverage.py and model_flows.py (they import
# the names above); their queries become methods of Facts here.
from gradpath.analysis.param_facts import (  # noqa: E402,F401 - names other modules import from here
    ClassSource, InventoryBuilder, _TENSOR_FACTORIES, _param_rg_set, const_value, path_parts)
from gradpath.analysis.coverage import (  # noqa: E402,F401 - after the names they use; one other module imports the first
    _is_requires_grad_test, all_calls, all_nodes, cover_expr, _cover_group, _cover_params_call, coverage,
    _filtered, _follow_name, freezes, frozen_names, _inventories, inventory_of, is_model_key,
    is_no_grad_with, resolve_receiver, roots_of, same_instance, _scope_no_grad)
from gradpath.analysis.model_flows import (  # noqa: E402 - imported after the names they use
    backwards, escapes, flows, in_eval_only, model_calls, optimizers_holding, reaches_backward)
for _fn in (_inventories, inventory_of, resolve_receiver, is_model_key, coverage, cover_expr, _filtered,
            _cover_group, _cover_params_call, _follow_name, freezes, frozen_names, _scope_no_grad,
            roots_of, same_instance, all_calls, all_nodes,
            is_no_grad_with, flows, backwards, model_calls, reaches_backward, escapes, optimizers_holding,
            in_eval_only):
    setattr(Facts, _fn.__name__, _fn)
Facts.inventories = property(_inventories)
