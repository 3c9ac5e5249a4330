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
  facts.model_calls(key), facts.escapes(binding), facts.same_instance(a, b), facts.all_nodes()
Model bindings have `origin`: "new" (constructor), "derived" (model.to(dev): same instance),
"copy" (copy.deepcopy), "param" (a function parameter that receives a model at every call site).
"""
from __future__ import annotations

import ast
from dataclasses import dataclass, field
from typing import Iterator

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
class Scope:
    node: ast.AST  # ast.Module, FunctionDef, AsyncFunctionDef
    kind: str  # "module" | "function" | "method"
    name: str
    class_name: str | None = None
    parent: "Scope | None" = None

    @property
    def body(self) -> list[ast.stmt]:
        return getattr(self.node, "body", [])

    def walk(self) -> Iterator[ast.AST]:
        """Every node of this scope in source order, not descending into nested defs/classes/lambdas
        (the shared Load/Store/Del context singletons are left out).

        Facts.build records these lists in its single pass over the tree; a scope made elsewhere
        computes its list on the first call. Either way later calls reuse the list."""
        nodes = self.__dict__.get("_nodes")
        if nodes is None:
            nodes = list(self._walk_uncached())
            self.__dict__["_nodes"] = nodes
        return iter(nodes)

    def _walk_uncached(self) -> Iterator[ast.AST]:
        stack = list(reversed(self.body))
        while stack:
            node = stack.pop()
            yield node
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
                # decorators and defaults belong to the enclosing scope
                extra = list(getattr(node, "decorator_list", []))
                stack.extend(reversed(extra))
                continue
            stack.extend(reversed([c for c in ast.iter_child_nodes(node) if not isinstance(c, ast.expr_context)]))

    def __repr__(self) -> str:
        return f"Scope({self.kind} {self.class_name + '.' if self.class_name else ''}{self.name})"


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
        f._single_pass(ctx.tree)
        for scope in f.scopes:
            f._collect_bindings(scope)
        try:
            f._collect_param_bindings()
            f._collect_late_copies()
        except RecursionError:  # pragma: no cover
            pass
        return f

    def _single_pass(self, tree: ast.AST) -> None:
        """One walk over the tree, in source order, recording: each node's parent, every call,
        every node, the scopes (functions and methods, nested ones after their parent), each
        scope's own node list (what Scope.walk yields) and each node's innermost scope."""
        parents = self.parents
        calls: list[ast.Call] = []
        nodes: list[ast.AST] = [tree]
        module_scope = Scope(tree, "module", "<module>")
        module_scope.__dict__["_nodes"] = []
        self.scopes.append(module_scope)
        scope_ids: dict[int, Scope] = {id(tree): module_scope}
        node_scope: dict[int, Scope] = {}  # id(node) -> innermost scope strictly containing it
        iter_fields = ast.iter_fields
        AST, Call = ast.AST, ast.Call
        Defs = (ast.FunctionDef, ast.AsyncFunctionDef)
        ClassDef, Lambda = ast.ClassDef, ast.Lambda
        # stack entries: (node, owner list or None, enclosing scope, class name for direct defs)
        stack: list = []
        own = module_scope.__dict__["_nodes"]
        for child in reversed(tree.body):
            parents[id(child)] = tree
            stack.append((child, own, module_scope, None))
        # nodes of the module that are not in its body (type_ignores) keep the old handling
        for child in getattr(tree, "type_ignores", ()):
            parents[id(child)] = tree
        pending: list = []
        push = stack.append
        # Load/Store/Del are shared singletons (no parent of their own): not recorded
        ExprCtx = ast.expr_context
        while stack:
            node, owner, enclosing, class_name = stack.pop()
            nodes.append(node)
            node_scope[id(node)] = enclosing
            if owner is not None:
                owner.append(node)
            if isinstance(node, Call):
                calls.append(node)
            if isinstance(node, Defs):
                kind = "method" if class_name else "function"
                scope = Scope(node, kind, node.name, class_name, enclosing)
                scope.__dict__["_nodes"] = []
                self.scopes.append(scope)
                scope_ids[id(node)] = scope
                sub_own = scope.__dict__["_nodes"]
                # children: body -> the new scope; decorators -> the enclosing walk; the rest
                # (arguments, defaults, returns) -> no walk, innermost scope = the function
                pending.clear()
                for name, value in iter_fields(node):
                    if name == "body":
                        for c in value:
                            pending.append((c, sub_own, scope, None))
                    elif name == "decorator_list":
                        # in the enclosing walk; scope_of() keeps naming the function (as before)
                        for c in value:
                            pending.append((c, owner, scope, None))
                    elif isinstance(value, AST):
                        pending.append((value, None, scope, None))
                    elif isinstance(value, list):
                        for c in value:
                            if isinstance(c, AST):
                                pending.append((c, None, scope, None))
            elif isinstance(node, ClassDef):
                pending.clear()
                for name, value in iter_fields(node):
                    if name == "body":
                        for c in value:
                            pending.append((c, None, enclosing, node.name))
                    elif name == "decorator_list":
                        for c in value:
                            pending.append((c, owner, enclosing, None))
                    elif isinstance(value, AST):
                        pending.append((value, None, enclosing, None))
                    elif isinstance(value, list):
                        for c in value:
                            if isinstance(c, AST):
                                pending.append((c, None, enclosing, None))
            else:
                if node.__class__ is Lambda:
                    sub, cn = None, None
                else:
                    # a def reached through an if/try/with inside a class body is still a method
                    sub, cn = owner, (class_name if owner is None else None)
                kids = []
                for name in node._fields:
                    value = getattr(node, name, None)
                    if value.__class__ is list:
                        for c in value:
                            if isinstance(c, AST):
                                kids.append(c)
                    elif isinstance(value, AST) and not isinstance(value, ExprCtx):
                        kids.append(value)
                nid = node
                for c in reversed(kids):
                    parents[id(c)] = nid
                    push((c, sub, enclosing, cn))
                continue
            for entry in reversed(pending):
                parents[id(entry[0])] = node
                push(entry)
        self.__dict__["_all_calls"] = calls
        self.__dict__["_all_nodes"] = nodes
        self.__dict__["_node_scope"] = node_scope
        self.__dict__["_by_node"] = (len(self.scopes), scope_ids)

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

    def scope_of(self, node: ast.AST) -> Scope:
        """The innermost scope that contains `node`."""
        ns = self.__dict__.get("_node_scope")
        if ns is not None and len(self.scopes) == self.__dict__["_by_node"][0]:
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


# ---------------------------------------------------------------------------------------------
# Deeper facts for the GP1 rules: inventories, optimizer coverage, freezes, flow to backward().
# Everything below is computed lazily and cached on the Facts object.
# ---------------------------------------------------------------------------------------------
from gradpath.analysis import layers as _layers  # noqa: E402

UNKNOWN = _layers.UNKNOWN

# Methods of a module that are not forward passes (calling them produces no model output).
NON_FORWARD = frozenset({
    "parameters", "named_parameters", "buffers", "named_buffers", "children", "named_children",
    "modules", "named_modules", "state_dict", "load_state_dict", "eval", "train", "to", "cuda", "cpu",
    "float", "double", "half", "bfloat16", "zero_grad", "requires_grad_", "apply", "register_buffer",
    "register_parameter", "add_module", "register_forward_hook", "register_full_backward_hook",
    "register_forward_pre_hook", "get_submodule", "get_parameter", "share_memory", "type",
})
_CUT_METHODS = frozenset({"detach", "detach_", "item", "tolist", "numpy"})
_NO_GRAD = frozenset({"torch.no_grad", "torch.inference_mode", "torch.enable_grad"})
_TENSOR_FACTORIES = frozenset({
    "torch.randn", "torch.rand", "torch.zeros", "torch.ones", "torch.empty", "torch.full",
    "torch.tensor", "torch.eye", "torch.arange", "torch.linspace", "torch.normal", "torch.randint",
    "torch.zeros_like", "torch.ones_like", "torch.randn_like", "torch.rand_like", "torch.empty_like",
    "torch.Tensor", "torch.FloatTensor",
})


@dataclass
class ParamEntry:
    name: str
    shape: tuple | None = None
    node: ast.AST | None = None  # where it is created (the layer construction, nn.Parameter(...))
    path: str | None = None  # the file it is created in when not this one


@dataclass
class ClassSource:
    """A module class definition with the symbols of the file it lives in."""
    node: ast.ClassDef
    symbols: object
    path: str | None = None


@dataclass
class Inventory:
    """The parameters of one module instance (or class)."""
    cls: str
    params: list[ParamEntry] = field(default_factory=list)
    complete: bool = True  # False: some parts could not be read (there may be more parameters)
    maybe_more: bool = False  # an opaque part that does have (unknown) parameters
    frozen: set[str] = field(default_factory=set)  # frozen in the class's own __init__
    frozen_unknown: bool = False  # a conditional freeze in the class's own __init__
    used: set[str] | None = None  # top-level attributes read outside __init__; None = unknown/all
    submodules: dict[str, str] = field(default_factory=dict)  # attribute -> class
    path: str | None = None
    opaque: set[str] = field(default_factory=set)  # attributes built by a factory the analysis cannot read

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.params]

    def under(self, prefix: str) -> list[ParamEntry]:
        if not prefix:
            return list(self.params)
        return [p for p in self.params if p.name == prefix or p.name.startswith(prefix + ".")]

    def is_prefix(self, path: str) -> bool:
        return any(p.name.startswith(path + ".") for p in self.params) or path in self.submodules

    @property
    def has_params(self) -> bool:
        return bool(self.params) or self.maybe_more

    def prefixed(self, prefix: str) -> "Inventory":
        inv = Inventory(self.cls, [ParamEntry(f"{prefix}.{p.name}", p.shape, p.node, p.path) for p in self.params],
                        self.complete, self.maybe_more, {f"{prefix}.{n}" for n in self.frozen},
                        self.frozen_unknown, None, {}, self.path)
        return inv


@dataclass
class CoverPart:
    model: ModelBinding | None
    names: set[str]  # the model's parameter names this part gives the optimizer
    kind: str  # "all" | "submodule" | "tensor" | "grad-filter" | "name-filter"
    node: ast.AST
    prefix: str = ""
    complete: bool = True  # False when the model's inventory is incomplete


@dataclass
class Coverage:
    parts: list[CoverPart] = field(default_factory=list)
    unknown: bool = False  # something we cannot read: it may hold anything
    groups: bool = False  # param-group dicts
    empty: bool = False  # literally an empty list/tuple
    fresh: list[tuple[ast.Call, str]] = field(default_factory=list)  # (Net() call, class) GP108
    bound_methods: list[tuple[ast.Attribute, ModelBinding | None]] = field(default_factory=list)  # GP109
    modules: list[tuple[ast.AST, ModelBinding, str]] = field(default_factory=list)  # GP110 (node, model, path)
    fresh_modules: list[tuple[ast.Call, str]] = field(default_factory=list)  # GP110: Adam(Net())
    sources: list[ast.AST] = field(default_factory=list)  # names followed to their assignments

    def merge(self, other: "Coverage") -> None:
        self.parts += other.parts
        self.unknown = self.unknown or other.unknown
        self.groups = self.groups or other.groups
        self.fresh += other.fresh
        self.bound_methods += other.bound_methods
        self.modules += other.modules
        self.fresh_modules += other.fresh_modules
        self.sources += other.sources

    def models(self) -> dict[str, ModelBinding]:
        return {p.model.key: p.model for p in self.parts if p.model is not None}

    def names_of(self, model: ModelBinding) -> set[str]:
        out: set[str] = set()
        for p in self.parts:
            if p.model is model:
                out |= p.names
        return out

    def deliberate(self, model: ModelBinding) -> bool:
        return any(p.model is model and p.kind == "name-filter" for p in self.parts)


@dataclass
class Freeze:
    model: ModelBinding
    prefix: str  # "" = the whole model
    names: set[str] | None  # None: every parameter under prefix
    value: bool  # requires_grad value set
    conditional: bool
    node: ast.AST
    scope: Scope
    line: int


@dataclass
class Backward:
    scope: Scope
    node: ast.Call
    line: int
    deps: set[str]  # keys of the models whose output reaches the backwarded value


def const_value(node: ast.AST | None, env: dict | None = None):
    """A Python constant for simple expressions, else UNKNOWN."""
    env = env or {}
    if node is None:
        return UNKNOWN
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return env.get(node.id, UNKNOWN)
    if isinstance(node, (ast.Tuple, ast.List)):
        vals = tuple(const_value(e, env) for e in node.elts)
        return UNKNOWN if any(v is UNKNOWN for v in vals) else vals
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        v = const_value(node.operand, env)
        return -v if isinstance(v, (int, float)) and not isinstance(v, bool) else UNKNOWN
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub, ast.Mult, ast.FloorDiv)):
        a, b = const_value(node.left, env), const_value(node.right, env)
        if isinstance(a, int) and isinstance(b, int) and not isinstance(a, bool) and not isinstance(b, bool):
            try:
                return {ast.Add: a + b, ast.Sub: a - b, ast.Mult: a * b}.get(type(node.op), a // b if b else UNKNOWN)
            except Exception:
                return UNKNOWN
    return UNKNOWN


def path_parts(expr: ast.AST) -> list[str] | None:
    """`model.layers[0].fc` -> ["model", "layers", "0", "fc"]; None for anything else."""
    parts: list[str] = []
    node = expr
    while True:
        if isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        elif isinstance(node, ast.Subscript):
            idx = node.slice
            if isinstance(idx, ast.Constant) and isinstance(idx.value, (int, str)) and not isinstance(idx.value, bool):
                parts.append(str(idx.value))
                node = node.value
            else:
                return None
        elif isinstance(node, ast.Name):
            parts.append(node.id)
            return list(reversed(parts))
        else:
            return None


def _self_attr(node: ast.AST) -> str | None:
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self":
        return node.attr
    return None


class InventoryBuilder:
    """Parameter inventories of module constructions and module classes."""

    def __init__(self, ctx):
        self.ctx = ctx
        self._stack: set[int] = set()
        self._cache: dict = {}

    # -- classes -----------------------------------------------------------------------------
    def class_source(self, name: str, symbols) -> ClassSource | None:
        info = symbols.classes.get(name)
        if info is not None:
            return ClassSource(info.node, symbols, getattr(symbols, "path", None))
        imported = getattr(symbols, "imported_classes", None) or {}
        return imported.get(name)

    def is_module_class(self, name: str, symbols) -> bool:
        if symbols.is_module_class(name):
            return True
        src = self.class_source(name, symbols)
        if src is None or src.symbols is symbols:
            return False
        return self.is_module_source(src)

    def is_module_source(self, src: ClassSource, depth: int = 0) -> bool:
        if depth > 8:
            return False
        for b in src.node.bases:
            bq = src.symbols.qualname(b)
            if bq and is_torch_module_qualname(bq):
                return True
            if bq:
                sub = self.class_source(bq, src.symbols)
                if sub is not None and self.is_module_source(sub, depth + 1):
                    return True
        return False

    # -- expressions -------------------------------------------------------------------------
    def of_call(self, node: ast.AST, env: dict | None = None, symbols=None) -> Inventory | None:
        """Inventory of a module-constructing expression, or None when it constructs no module."""
        symbols = symbols or self.ctx.symbols
        env = env or {}
        if not isinstance(node, ast.Call):
            return None
        qn = symbols.qualname(node.func)
        if qn is None:
            return None
        qn = canonical(qn)
        if any(isinstance(a, ast.Starred) for a in node.args) or any(k.arg is None for k in node.keywords):
            args, kwargs, exact = [], {}, False
        else:
            args = [const_value(a, env) for a in node.args]
            kwargs = {k.arg: const_value(k.value, env) for k in node.keywords}
            exact = True
        if qn in ("torch.nn.Sequential", "torch.nn.ModuleList", "torch.nn.ModuleDict"):
            return self._container(qn, node, env, symbols)
        if qn.startswith("torch.nn.") and qn.rsplit(".", 1)[-1] in ("DataParallel", "DistributedDataParallel"):
            inner = self._wrapped(node, env, symbols)
            if inner is not None:  # `model.module` is the wrapped model: its names start with "module."
                inv = Inventory(qn, [], inner.complete, inner.maybe_more)
                inv.submodules["module"] = inner.cls
                self._merge(inv, inner, "module")
                return inv
        if qn.startswith("torch.nn.") and is_torch_module_qualname(qn):
            ps = _layers.layer_params(qn, args, kwargs) if exact else None
            if ps is None:
                hp = _layers.has_parameters(qn)
                if hp is False:
                    return Inventory(qn, [], True)
                return Inventory(qn, [], False, maybe_more=hp is not False)
            return Inventory(qn, [ParamEntry(p.name, p.shape, node, getattr(symbols, "path", None)) for p in ps])
        src = self.class_source(qn, symbols)
        if src is not None and (self.is_module_source(src) or symbols.is_module_class(qn)):
            return self.of_class(src, node, env, symbols)
        if is_torch_module_qualname(qn) or symbols.is_module_class(qn):
            return Inventory(qn, [], False, maybe_more=True)
        return None

    def _wrapped(self, node: ast.Call, env: dict, symbols) -> Inventory | None:
        """The inventory of the module a DataParallel/DDP wraps: a construction, or a name bound to one."""
        a = node.args[0] if node.args else next((k.value for k in node.keywords if k.arg == "module"), None)
        if isinstance(a, ast.Call):
            return self.of_call(a, env, symbols)
        k = key_of(a) if a is not None else None
        if k and symbols is self.ctx.symbols:
            facts = self.ctx.facts
            b = facts.model_at(k, facts.scope_of(node), node.lineno)
            if b is not None and b.value is not node and isinstance(b.value, ast.Call):
                return self.of_call(b.value, env, symbols)
        return None

    def _container(self, qn: str, node: ast.Call, env: dict, symbols) -> Inventory:
        inv = Inventory(qn)
        items: list[tuple[str, ast.AST]] = []
        if qn == "torch.nn.Sequential":
            if len(node.args) == 1 and isinstance(node.args[0], ast.Call) and \
                    (symbols.qualname(node.args[0].func) or "").endswith("OrderedDict"):
                od = node.args[0]
                if od.args and isinstance(od.args[0], (ast.List, ast.Tuple)):
                    for elt in od.args[0].elts:
                        if isinstance(elt, ast.Tuple) and len(elt.elts) == 2 and isinstance(elt.elts[0], ast.Constant):
                            items.append((str(elt.elts[0].value), elt.elts[1]))
                        else:
                            inv.complete = False
                else:
                    inv.complete = False
            else:
                for i, a in enumerate(node.args):
                    if isinstance(a, ast.Starred):
                        inv.complete = False
                        inv.maybe_more = True
                        break
                    items.append((str(i), a))
        elif qn == "torch.nn.ModuleList":
            arg = node.args[0] if node.args else None
            if isinstance(arg, (ast.List, ast.Tuple)):
                items = [(str(i), e) for i, e in enumerate(arg.elts)]
            elif arg is not None:
                inv.complete = False
                inv.maybe_more = True
        else:
            arg = node.args[0] if node.args else None
            if isinstance(arg, ast.Dict):
                for k, v in zip(arg.keys, arg.values):
                    if isinstance(k, ast.Constant):
                        items.append((str(k.value), v))
                    else:
                        inv.complete = False
            elif arg is not None:
                inv.complete = False
                inv.maybe_more = True
        for name, e in items:
            sub = self.of_call(e, env, symbols)
            if sub is None:
                if isinstance(e, ast.Call) or isinstance(e, ast.Name):
                    inv.complete = False
                continue
            inv.submodules[name] = sub.cls
            self._merge(inv, sub, name)
        return inv

    @staticmethod
    def _merge(inv: Inventory, sub: Inventory, prefix: str) -> None:
        p = sub.prefixed(prefix) if prefix else sub
        inv.params += p.params
        inv.complete = inv.complete and sub.complete
        inv.maybe_more = inv.maybe_more or sub.maybe_more
        inv.frozen |= p.frozen
        inv.frozen_unknown = inv.frozen_unknown or sub.frozen_unknown

    def of_class(self, src: ClassSource, call: ast.Call | None, env_outer: dict, symbols=None) -> Inventory:
        init = next((n for n in src.node.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
                     and n.name == "__init__"), None)
        env = {}
        if init is not None:
            params = [a.arg for a in init.args.posonlyargs + init.args.args][1:]
            defaults = init.args.defaults
            for name, d in zip(params[len(params) - len(defaults):], defaults):
                env[name] = const_value(d)
            for name, d in zip([a.arg for a in init.args.kwonlyargs], init.args.kw_defaults):
                if d is not None:
                    env[name] = const_value(d)
            if call is not None:
                for name, a in zip(params, call.args):
                    env[name] = UNKNOWN if isinstance(a, ast.Starred) else const_value(a, env_outer)
                for k in call.keywords:
                    if k.arg:
                        env[k.arg] = const_value(k.value, env_outer)
        key = (id(src.node), tuple(sorted((k, repr(v)) for k, v in env.items())))
        if key in self._cache:
            return self._cache[key]
        if id(src.node) in self._stack:
            return Inventory(src.node.name, [], False)
        self._stack.add(id(src.node))
        try:
            inv = self._build_class(src, init, env)
        finally:
            self._stack.discard(id(src.node))
        self._cache[key] = inv
        return inv

    def _build_class(self, src: ClassSource, init, env: dict) -> Inventory:
        sym = src.symbols
        inv = Inventory(src.node.name, path=src.path)
        base_used: set[str] | None = set()
        for b in src.node.bases:
            bq = sym.qualname(b)
            if bq is None:
                continue
            bq = canonical(bq)
            if bq == "torch.nn.Module":
                continue
            bsrc = self.class_source(bq, sym)
            if bsrc is not None:
                binv = self.of_class(bsrc, None, {}, bsrc.symbols)
                self._merge(inv, binv, "")
                if binv.used is None or base_used is None:
                    base_used = None
                else:
                    base_used |= binv.used
            elif is_torch_module_qualname(bq):
                ps = _layers.layer_params(bq, [], {})
                if ps:
                    inv.params += [ParamEntry(p.name, None, b, src.path) for p in ps]
                inv.complete = False
                base_used = None
            else:
                base_used = None
        locals_: dict[str, Inventory] = {}
        if init is not None:
            for stmt, in_loop, in_if in _flat_stmts(init.body):
                self._init_stmt(inv, stmt, env, sym, src, locals_, in_loop, in_if)
        # attributes the rest of the class reads
        used: set[str] | None = set()
        methods = [n for n in src.node.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
                   and n.name != "__init__"]
        if not methods:
            used = None
        for m in methods:
            call_args = {id(a) for c in ast.walk(m) if isinstance(c, ast.Call) for a in c.args}
            for n, no_grad in _walk_grad_mode(m, sym):
                a = _self_attr(n)
                if a is not None:
                    if a in ("children", "modules", "parameters", "named_parameters", "named_children",
                             "named_modules", "__dict__", "_modules", "state_dict"):
                        used = None
                        break
                    if used is not None and not no_grad:
                        used.add(a)
                if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in ("getattr", "vars") \
                        and n.args and isinstance(n.args[0], ast.Name) and n.args[0].id == "self":
                    used = None
                    break
                if isinstance(n, ast.Name) and n.id == "self" and id(n) in call_args:
                    # self passed to a function (a helper may read any attribute)
                    used = None
                    break
            if used is None:
                break
        if used is not None and base_used is not None:
            inv.used = used | base_used
        else:
            inv.used = None
        return inv

    @staticmethod
    def _parent_call(root, target):
        for n in ast.walk(root):
            if isinstance(n, ast.Call) and any(a is target for a in n.args):
                return n
        return None

    def _init_stmt(self, inv, stmt, env, sym, src, locals_, in_loop, in_if) -> None:
        if isinstance(stmt, (ast.Assign, ast.AnnAssign)) and stmt.value is not None:
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
            for t in targets:
                if isinstance(t, ast.Name):
                    sub = self.of_call(stmt.value, env, sym)
                    if sub is not None:
                        locals_[t.id] = sub
                    continue
                attr = _self_attr(t)
                if attr is None:
                    if isinstance(t, (ast.Attribute, ast.Subscript)) and path_parts(t) and path_parts(t)[0] == "self":
                        inv.complete = False  # self.a.b = ... : changes a submodule
                    continue
                self._add_attr(inv, attr, stmt.value, env, sym, src, locals_, in_loop)
        elif isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call):
            call = stmt.value
            f = call.func
            if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and f.value.id == "self" \
                    and f.attr in ("register_parameter", "add_module", "register_module") and len(call.args) >= 2:
                name = const_value(call.args[0], env)
                if not isinstance(name, str):
                    inv.complete = False
                    inv.maybe_more = True
                    return
                self._add_attr(inv, name, call.args[1], env, sym, src, locals_, in_loop)
            elif isinstance(f, ast.Name) and f.id == "setattr" and call.args and \
                    isinstance(call.args[0], ast.Name) and call.args[0].id == "self":
                inv.complete = False
                inv.maybe_more = True
            elif isinstance(f, ast.Attribute) and f.attr in ("append", "extend", "update", "insert") and \
                    path_parts(f.value) and path_parts(f.value)[0] == "self":
                attr = path_parts(f.value)[1] if len(path_parts(f.value)) > 1 else None
                if attr in inv.submodules:
                    inv.complete = False
                    inv.maybe_more = True
        for fz in freeze_statements(stmt, in_if):
            parts, names, value, cond, node = fz
            if not parts or parts[0] != "self":
                continue
            prefix = ".".join(parts[1:])
            hit = {p.name for p in inv.under(prefix)} if names is None else {f"{prefix}.{n}" if prefix else n for n in names}
            if cond or not hit:
                inv.frozen_unknown = inv.frozen_unknown or (cond and not value) or not hit
            elif value is False:
                inv.frozen |= hit
            else:
                inv.frozen -= hit

    def _add_attr(self, inv, attr, value, env, sym, src, locals_, in_loop) -> None:
        if in_loop:
            inv.complete = False
        sub = None
        if isinstance(value, ast.Name) and value.id in locals_:
            sub = locals_[value.id]
        else:
            sub = self.of_call(value, env, sym)
        if sub is not None:
            inv.params = [p for p in inv.params if not (p.name == attr or p.name.startswith(attr + "."))]
            inv.submodules[attr] = sub.cls
            self._merge(inv, sub, attr)
            return
        if isinstance(value, ast.Call):
            qn = canonical(sym.qualname(value.func) or "")
            if qn in ("torch.nn.Parameter", "torch.nn.parameter.Parameter"):
                shape = None
                inner = value.args[0] if value.args else None
                if isinstance(inner, ast.Call) and canonical(sym.qualname(inner.func) or "") in _TENSOR_FACTORIES:
                    dims = [const_value(a, env) for a in inner.args]
                    if len(dims) == 1 and isinstance(dims[0], tuple):
                        dims = list(dims[0])
                    if canonical(sym.qualname(inner.func) or "") not in ("torch.tensor", "torch.Tensor", "torch.arange",
                                                                          "torch.linspace", "torch.normal", "torch.randint") \
                            and not any(d is UNKNOWN or not isinstance(d, int) for d in dims):
                        shape = tuple(dims)
                    elif not dims or all(d is UNKNOWN for d in dims):
                        shape = None
                    else:
                        shape = tuple(d if isinstance(d, int) else None for d in dims) \
                            if canonical(sym.qualname(inner.func) or "") not in ("torch.tensor",) else None
                inv.params = [p for p in inv.params if p.name != attr]
                inv.params.append(ParamEntry(attr, shape, value, src.path))
                return
            if qn in _TENSOR_FACTORIES or qn.startswith(("torch.", "math.", "numpy.", "np.")):
                return
            if isinstance(value.func, ast.Attribute) and path_parts(value.func.value) and \
                    path_parts(value.func.value)[0] == "self":
                return  # self.x.something(...): not a new module we can see
            # an unknown factory: may build a module
            inv.complete = False
            inv.opaque.add(attr)
            return
        if isinstance(value, ast.Name) and env.get(value.id, UNKNOWN) is UNKNOWN and value.id not in ("None", "True", "False"):
            # a constructor argument stored as an attribute: may be a module passed in
            inv.complete = False


def _walk_grad_mode(fn, sym):
    """(node, under no_grad) for every node of a function; a `with torch.no_grad():` body, and
    the receiver of `.detach()`, count as no_grad."""
    def is_ng(w):
        for item in w.items:
            ce = item.context_expr
            if isinstance(ce, ast.Call):
                qn = canonical(sym.qualname(ce.func) or "")
                if qn in ("torch.no_grad", "torch.inference_mode"):
                    return True
                if qn == "torch.set_grad_enabled" and ce.args and const_value(ce.args[0]) is False:
                    return True
        return False
    decorated = any(canonical(sym.qualname(d.func if isinstance(d, ast.Call) else d) or "") in
                    ("torch.no_grad", "torch.inference_mode") for d in getattr(fn, "decorator_list", []))
    stack = [(c, decorated) for c in reversed(list(ast.iter_child_nodes(fn)))]
    while stack:
        node, ng = stack.pop()
        yield node, ng
        if isinstance(node, (ast.With, ast.AsyncWith)) and is_ng(node):
            kids = [(c, ng) for c in node.items] + [(c, True) for c in node.body]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                node.func.attr in ("detach", "detach_"):
            kids = [(node.func, True)] + [(c, ng) for c in node.args]
        else:
            kids = [(c, ng) for c in ast.iter_child_nodes(node)]
        stack.extend(reversed(kids))


def _flat_stmts(body, in_loop=False, in_if=False):
    """Statements of a function body, entering if/for/while/with/try, not nested defs."""
    for stmt in body:
        yield stmt, in_loop, in_if
        if isinstance(stmt, (ast.For, ast.AsyncFor, ast.While)):
            yield from _flat_stmts(stmt.body, True, in_if)
            yield from _flat_stmts(stmt.orelse, True, in_if)
        elif isinstance(stmt, ast.If):
            yield from _flat_stmts(stmt.body, in_loop, True)
            yield from _flat_stmts(stmt.orelse, in_loop, True)
        elif isinstance(stmt, (ast.With, ast.AsyncWith)):
            yield from _flat_stmts(stmt.body, in_loop, in_if)
        elif isinstance(stmt, ast.Try):
            for b in (stmt.body, stmt.orelse, stmt.finalbody):
                yield from _flat_stmts(b, in_loop, in_if)
            for h in stmt.handlers:
                yield from _flat_stmts(h.body, in_loop, True)


def _rg_value(node: ast.AST) -> bool | None:
    v = const_value(node)
    return v if isinstance(v, bool) else None


def freeze_statements(stmt: ast.stmt, in_if: bool = False):
    """(receiver path parts, names or None, requires_grad value, conditional, node) for freezes in
    one statement: `for p in X.parameters(): p.requires_grad = False`, `X.requires_grad_(False)`,
    `X.weight.requires_grad = False`. Loops are only recognised at their `for` statement."""
    out = []
    if isinstance(stmt, ast.For) and isinstance(stmt.iter, ast.Call) and isinstance(stmt.iter.func, ast.Attribute) \
            and stmt.iter.func.attr in ("parameters", "named_parameters"):
        parts = path_parts(stmt.iter.func.value)
        tgt = stmt.target
        pname = None
        if isinstance(tgt, ast.Name):
            pname = tgt.id
        elif isinstance(tgt, ast.Tuple) and len(tgt.elts) == 2 and isinstance(tgt.elts[1], ast.Name):
            pname = tgt.elts[1].id
        if parts and pname:
            for sub, _loop, cond in _flat_stmts(stmt.body):
                v = _param_rg_set(sub, pname)
                if v is not None:
                    out.append((parts, None, v, in_if or cond, stmt))
        return out
    if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call):
        call = stmt.value
        if isinstance(call.func, ast.Attribute) and call.func.attr == "requires_grad_":
            parts = path_parts(call.func.value)
            arg = call.args[0] if call.args else next((k.value for k in call.keywords if k.arg == "requires_grad"), None)
            v = True if arg is None else _rg_value(arg)
            if parts and v is not None:
                out.append((parts, None, v, in_if, stmt))
    elif isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
        t = stmt.targets[0]
        if isinstance(t, ast.Attribute) and t.attr == "requires_grad":
            parts = path_parts(t.value)
            v = _rg_value(stmt.value)
            if parts and v is not None:
                out.append((parts, None, v, in_if, stmt))
    return out


def _param_rg_set(stmt, pname: str) -> bool | None:
    if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
        t = stmt.targets[0]
        if isinstance(t, ast.Attribute) and t.attr == "requires_grad" and isinstance(t.value, ast.Name) \
                and t.value.id == pname:
            return _rg_value(stmt.value)
    if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call):
        f = stmt.value.func
        if isinstance(f, ast.Attribute) and f.attr == "requires_grad_" and isinstance(f.value, ast.Name) \
                and f.value.id == pname:
            return True if not stmt.value.args else _rg_value(stmt.value.args[0])
    return None


# -- Facts queries built on the above ---------------------------------------------------------
def all_nodes(self) -> list:
    """Every node of the tree (one list, built with the parents map)."""
    nodes = self.__dict__.get("_all_nodes")
    if nodes is None:
        nodes = list(ast.walk(self.ctx.tree))
        self.__dict__["_all_nodes"] = nodes
    return nodes


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


def _framework_loss(ctx, scope, stmt):
    """The loss node of `return ...` in a function whose returned loss a framework backwards."""
    from gradpath.analysis import frameworks
    body = frameworks.body_of(ctx, scope.node)
    if body is None or body.role != frameworks.LOSS_BODY:
        return None
    return frameworks.returned_loss(stmt.value)


class _Flow:
    """Which models' outputs each name holds, statement by statement, in one scope."""

    def __init__(self, facts, scope: Scope):
        self.f = facts
        self.scope = scope
        self.env: dict[str, set[str]] = {}
        self.backwards: list[Backward] = []
        self.calls: dict[str, list[ast.Call]] = {}
        self.no_grad_calls: dict[str, list[ast.Call]] = {}
        self.detached: dict[str, list[ast.AST]] = {}

    def run(self) -> None:
        self.block(self.scope.body, self.f._scope_no_grad(self.scope))
        # loops: a second pass lets values defined late in the body reach earlier uses
        self.block(self.scope.body, self.f._scope_no_grad(self.scope), record=False)

    def block(self, body, no_grad: bool, record: bool = True) -> None:
        for stmt in body:
            self.stmt(stmt, no_grad, record)

    def stmt(self, stmt, no_grad, record) -> None:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            return
        if isinstance(stmt, (ast.With, ast.AsyncWith)):
            ng = no_grad or self.f.is_no_grad_with(stmt)
            for item in stmt.items:
                self.expr(item.context_expr, no_grad, record)
            self.block(stmt.body, ng, record)
            return
        if isinstance(stmt, (ast.For, ast.AsyncFor, ast.While)):
            if isinstance(stmt, (ast.For, ast.AsyncFor)):
                d = self.expr(stmt.iter, no_grad, record)
                self.assign(stmt.target, d)
            else:
                self.expr(stmt.test, no_grad, record)
            self.block(stmt.body, no_grad, record)
            self.block(stmt.orelse, no_grad, record)
            return
        if isinstance(stmt, ast.If):
            self.expr(stmt.test, no_grad, record)
            self.block(stmt.body, no_grad, record)
            self.block(stmt.orelse, no_grad, record)
            return
        if isinstance(stmt, ast.Try):
            for b in (stmt.body, stmt.orelse, stmt.finalbody):
                self.block(b, no_grad, record)
            for h in stmt.handlers:
                self.block(h.body, no_grad, record)
            return
        if isinstance(stmt, ast.Return) and stmt.value is not None:
            loss = _framework_loss(self.f.ctx, self.scope, stmt)
            if loss is not None:
                # Lightning / a Trainer backwards the loss training_step / compute_loss returns
                deps = self.expr(stmt.value, no_grad, record)
                if record and not no_grad:
                    self.backwards.append(Backward(self.scope, loss, loss.lineno, deps))
                return
        if isinstance(stmt, (ast.Assign, ast.AnnAssign)):
            if stmt.value is None:
                return
            d = self.expr(stmt.value, no_grad, record)
            if no_grad:
                d = set()
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
            for t in targets:
                self.assign(t, d)
            return
        if isinstance(stmt, ast.AugAssign):
            d = self.expr(stmt.value, no_grad, record)
            k = key_of(stmt.target)
            if k is not None and not no_grad:
                self.env[k] = self.env.get(k, set()) | d
            return
        for child in ast.iter_child_nodes(stmt):
            if isinstance(child, ast.expr):
                self.expr(child, no_grad, record)

    def assign(self, target, d: set[str]) -> None:
        if isinstance(target, (ast.Tuple, ast.List)):
            for t in target.elts:
                self.assign(t.value if isinstance(t, ast.Starred) else t, d)
            return
        k = key_of(target)
        if k is not None:
            self.env[k] = set(d)
        elif isinstance(target, ast.Subscript):
            k = key_of(target.value)
            if k is not None:
                self.env[k] = self.env.get(k, set()) | d

    def expr(self, e, no_grad: bool, record: bool) -> set[str]:
        if e is None:
            return set()
        if isinstance(e, ast.Name):
            return set(self.env.get(e.id, ()))
        if isinstance(e, ast.Attribute):
            if e.attr == "data":
                self.expr(e.value, no_grad, record)
                return set()
            k = key_of(e)
            if k is not None and k in self.env:
                return set(self.env[k])
            return self.expr(e.value, no_grad, record)
        if isinstance(e, ast.Lambda):
            return set()
        if isinstance(e, ast.Call):
            f = e.func
            out: set[str] = set()
            args = set()
            for a in e.args:
                args |= self.expr(a.value if isinstance(a, ast.Starred) else a, no_grad, record)
            for kw in e.keywords:
                args |= self.expr(kw.value, no_grad, record)
            if isinstance(f, ast.Attribute):
                recv = self.expr(f.value, no_grad, record)
                if f.attr in _CUT_METHODS:
                    if record:
                        for m in recv:
                            self.detached.setdefault(m, []).append(e)
                    return set()
                if f.attr in ("backward", "manual_backward"):  # also self.manual_backward(loss) (Lightning)
                    deps = recv | args
                    if record:
                        self.backwards.append(Backward(self.scope, e, e.lineno, deps))
                    return set()
                model = self._model_call(f.value, f.attr, e) if f.attr not in NON_FORWARD else None
                if model is None:
                    model = self._model_call(f, None, e)
                out = recv | args
                if model is not None:
                    if no_grad:
                        if record:
                            self.no_grad_calls.setdefault(model, []).append(e)
                    else:
                        out.add(model)
                    if record:
                        self.calls.setdefault(model, []).append(e)
                return out
            qn = canonical(self.f.ctx.symbols.qualname(f) or "")
            if qn == "torch.autograd.backward":
                if record:
                    self.backwards.append(Backward(self.scope, e, e.lineno, args))
                return set()
            model = self._model_call(f, None, e)
            out = set(args)
            if model is not None:
                if no_grad:
                    if record:
                        self.no_grad_calls.setdefault(model, []).append(e)
                else:
                    out.add(model)
                if record:
                    self.calls.setdefault(model, []).append(e)
            else:
                self.expr(f, no_grad, record)
            return out
        out = set()
        for child in ast.iter_child_nodes(e):
            if isinstance(child, ast.expr):
                out |= self.expr(child, no_grad, record)
            elif isinstance(child, ast.comprehension):
                d = self.expr(child.iter, no_grad, record)
                self.assign(child.target, d)
                for c in child.ifs:
                    self.expr(c, no_grad, record)
        return out

    def _model_call(self, f, method, call) -> str | None:
        key = key_of(f)
        if key is None:
            return None
        b = self.f.model_at(key, self.scope, call.lineno)
        return b.key if b is not None else None


def flows(self) -> list[_Flow]:
    def build():
        out = []
        for s in self.scopes:
            fl = _Flow(self, s)
            try:
                fl.run()
            except RecursionError:
                continue
            out.append(fl)
        return out
    return _cache(self, "flows", build)


def backwards(self) -> list[Backward]:
    return [b for fl in self.flows() for b in fl.backwards]


def model_calls(self, key: str) -> list[ast.Call]:
    return [c for fl in self.flows() for c in fl.calls.get(key, [])]


def reaches_backward(self, model: ModelBinding) -> list[Backward]:
    out = []
    for b in self.backwards():
        if model.key in b.deps:
            cur = self.model_at(model.key, b.scope, b.line)
            if cur is model or (cur is not None and cur.origin == "derived" and cur.source_key == model.key) \
                    or (cur is not None and model.origin == "derived" and model.source_key == cur.key):
                out.append(b)
    return out


def escapes(self, model: ModelBinding) -> bool:
    """True when the model is handed to something that may own it (another module's constructor,
    an attribute of another object, a container) where that name is this model: in its own scope,
    a scope that sees it (its class's methods, module level), or, for a global, a function that
    does not bind the name itself. A namesake in an unrelated function is another object."""
    if any(self.escapes(r) for r in roots_of(self, model)):
        return True
    where = _escaping_keys(self).get(model.key)
    if not where:
        return False
    ms = model.scope
    if ms is None:
        return True
    visible = self.visible_scopes(ms)
    for s in where:
        if s is ms or any(s is v for v in visible):
            return True
        if ms.kind == "module" and not _binds_locally(s, model.key):
            return True
    return False


def _escaping_keys(self) -> dict[str, list]:
    """key -> the scopes where a value of that name is handed over."""
    def build():
        out: dict[str, list] = {}

        def add(k, node):
            if k:
                out.setdefault(k, []).append(self.scope_of(node))

        opt_calls = {id(o.call) for o in self.optimizers}
        classes = self.ctx.symbols.classes
        for node in self.all_nodes():
            if isinstance(node, ast.Call):
                is_ctor = (isinstance(node.func, ast.Attribute) and node.func.attr in
                           ("add_module", "append", "register_module")) or \
                    (self.ctx.symbols.qualname(node.func) or "") in classes or \
                    self.module_class_of_call(node) is not None
                if is_ctor:
                    for v in list(node.args) + [k.value for k in node.keywords]:
                        k = key_of(v)
                        if k:
                            add(k, node)
                        elif isinstance(v, (ast.List, ast.Tuple)):
                            for x in v.elts:
                                add(key_of(x), node)
            elif isinstance(node, ast.Assign):
                k = key_of(node.value)
                if k and any(isinstance(t, (ast.Attribute, ast.Subscript)) for t in node.targets):
                    add(k, node)
            elif isinstance(node, (ast.List, ast.Tuple, ast.Dict)):
                if not isinstance(node, ast.Dict) and isinstance(node.ctx, ast.Store):
                    continue  # `encoder, decoder = ...`: unpacking targets hold nothing
                parent = self.parents.get(id(node))
                if isinstance(parent, ast.Call) and id(parent) in opt_calls:
                    continue
                vals = node.values if isinstance(node, ast.Dict) else node.elts
                for v in vals:
                    add(key_of(v), node)
        return out
    return _cache(self, "escaping", build)



def optimizers_holding(self, model: ModelBinding) -> list[OptimizerBinding]:
    out = []
    for o in self.optimizers:
        cov = self.coverage(o)
        if any(p.model is model or (p.model is not None and p.model.key == model.key) for p in cov.parts) or \
                any(m is model for _n, m, _p in cov.modules):
            out.append(o)
    return out


def in_eval_only(self, model: ModelBinding) -> bool:
    """`.eval()` is called on the model and `.train()` never is."""
    ev = [c for c in self.calls if c.receiver == model.key and c.method == "eval"]
    tr = [c for c in self.calls if c.receiver == model.key and c.method == "train"]
    return bool(ev) and not tr


for _fn in (_inventories, inventory_of, resolve_receiver, is_model_key, coverage, cover_expr, _filtered,
            _cover_group, _cover_params_call, _follow_name, freezes, frozen_names, _scope_no_grad,
            roots_of, same_instance, all_nodes,
            is_no_grad_with, flows, backwards, model_calls, reaches_backward, escapes, optimizers_holding,
            in_eval_only):
    setattr(Facts, _fn.__name__, _fn)
Facts.inventories = property(_inventories)
