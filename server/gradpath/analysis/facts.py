"""Facts shared by the rules: scopes, which names hold models and optimizers, method-call events.

Rules read these instead of walking the raw tree again. Names are "keys": `model` for a plain
name, `self.model` for an attribute of `self` (a Trainer class), `a.b` for deeper chains.
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
        """Every node of this scope in source order, not descending into nested defs/classes/lambdas."""
        stack = list(reversed(self.body))
        while stack:
            node = stack.pop()
            yield node
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
                # decorators and defaults belong to the enclosing scope
                extra = list(getattr(node, "decorator_list", []))
                stack.extend(reversed(extra))
                continue
            stack.extend(reversed(list(ast.iter_child_nodes(node))))

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
        tree = ctx.tree
        for node in ast.walk(tree):
            for child in ast.iter_child_nodes(node):
                f.parents[id(child)] = node
        module_scope = Scope(tree, "module", "<module>")
        f.scopes.append(module_scope)
        f._collect_scopes(tree.body, module_scope, None)
        for scope in f.scopes:
            f._collect_bindings(scope)
        return f

    # -- scopes --------------------------------------------------------------------------------
    def _collect_scopes(self, body, parent: Scope, class_name: str | None) -> None:
        for node in body:
            for sub in ast.walk(node) if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) else [node]:
                if isinstance(sub, ast.ClassDef):
                    self._collect_scopes(sub.body, parent, sub.name)
                elif isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    kind = "method" if class_name else "function"
                    scope = Scope(sub, kind, sub.name, class_name, parent)
                    self.scopes.append(scope)
                    self._collect_scopes(sub.body, scope, None)

    def scope_of(self, node: ast.AST) -> Scope:
        """The innermost scope that contains `node`."""
        cur = node
        by_node = {id(s.node): s for s in self.scopes}
        while cur is not None:
            s = by_node.get(id(cur))
            if s is not None and cur is not node:
                return s
            cur = self.parents.get(id(cur))
        return self.scopes[0]

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
        sym = self.ctx.symbols
        qn = sym.qualname(call.func)
        if qn is None:
            return None
        if is_torch_module_qualname(qn):
            return canonical(qn)
        if sym.is_module_class(qn):
            return qn
        return None

    def _collect_bindings(self, scope: Scope) -> None:
        sym = self.ctx.symbols
        for node in scope.walk():
            if isinstance(node, (ast.Assign, ast.AnnAssign)):
                value = node.value
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                if value is None:
                    continue
                for t in targets:
                    key = key_of(t)
                    if key is None:
                        continue
                    mcls = self.module_class_of_call(value)
                    if mcls is None and isinstance(value, ast.Call):
                        # model.to(dev) / model.cuda() / copy.deepcopy(model) keep the class
                        mcls = self._derived_model_class(value, scope, node.lineno)
                    if mcls is not None:
                        self.models.append(ModelBinding(key, scope, value, mcls, node, node.lineno))
                    if isinstance(value, ast.Call) and is_optimizer_qualname(sym.qualname(value.func)):
                        self.optimizers.append(OptimizerBinding(
                            key, scope, value, canonical(sym.qualname(value.func)),
                            _params_arg(value), node, node.lineno))
            if isinstance(node, ast.Call):
                if isinstance(node.func, ast.Attribute):
                    rk = key_of(node.func.value)
                    if rk is not None:
                        self.calls.append(MethodCall(rk, node.func.attr, node, scope, node.lineno))
                if is_optimizer_qualname(sym.qualname(node.func)):
                    if not any(o.call is node for o in self.optimizers):
                        parent = self.parents.get(id(node))
                        if not isinstance(parent, (ast.Assign, ast.AnnAssign)):
                            self.optimizers.append(OptimizerBinding(
                                None, scope, node, canonical(sym.qualname(node.func)),
                                _params_arg(node), self.enclosing_stmt(node), node.lineno))

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
        out = [scope]
        if scope.class_name:
            out += [s for s in self.scopes if s.class_name == scope.class_name and s is not scope]
        if scope.kind != "module":
            out.append(self.scopes[0])
        return out

    def model_at(self, key: str, scope: Scope, line: int | None = None) -> ModelBinding | None:
        """The latest model binding of `key` visible from `scope` (before `line` when given)."""
        best = None
        for b in self.models:
            if b.key != key:
                continue
            if b.scope is scope and (line is None or b.line <= line):
                if best is None or b.line >= best.line:
                    best = b
        if best is not None:
            return best
        for s in self.visible_scopes(scope)[1:]:
            if key.startswith("self.") and s.class_name != scope.class_name:
                continue
            cands = [b for b in self.models if b.key == key and b.scope is s]
            if cands:
                return max(cands, key=lambda b: b.line)
        return None

    def models_in(self, scope: Scope) -> list[ModelBinding]:
        return [b for b in self.models if b.scope is scope]

    def optimizers_in(self, scope: Scope) -> list[OptimizerBinding]:
        return [o for o in self.optimizers if o.scope is scope]

    def optimizer_at(self, key: str, scope: Scope) -> OptimizerBinding | None:
        for s in self.visible_scopes(scope):
            cands = [o for o in self.optimizers if o.key == key and o.scope is s]
            if cands:
                return max(cands, key=lambda o: o.line)
        return None

    def calls_named(self, method: str, scope: Scope | None = None) -> list[MethodCall]:
        return [c for c in self.calls if c.method == method and (scope is None or c.scope is scope)]


def _params_arg(call: ast.Call) -> ast.AST | None:
    if call.args:
        return call.args[0]
    for kw in call.keywords:
        if kw.arg == "params":
            return kw.value
    return None
