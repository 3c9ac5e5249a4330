"""Facts queries attached to `Facts` (see facts.py): which models' outputs flow into a
backwarded value, which models escape their scope, which optimizers hold a model, and whether a
model is only ever in eval mode."""
from __future__ import annotations

import ast

from gradpath.analysis.symbols import canonical
from gradpath.analysis.coverage import _cache, roots_of
from gradpath.analysis.facts import _binds_locally, key_of, ModelBinding, OptimizerBinding, Scope
from gradpath.analysis.param_facts import Backward, _CUT_METHODS, NON_FORWARD


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
        # one pass, recording. (A second pass without recording ran here "so that values defined
        # late in a loop reach earlier uses"; it recorded nothing and `env` is not read after the
        # run, so it changed no result: it is gone. Making it record is a rule change, not made.)
        self.block(self.scope.body, self.f._scope_no_grad(self.scope))

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
                whole = f.attr == "forward"
                if model is None:
                    model, whole = self._model_call(f, None, e), True
                out = recv | args
                if model is not None:
                    self._note_call(model, e, no_grad, record, out, whole)
                return out
            qn = canonical(self.f.ctx.symbols.qualname(f) or "")
            if qn == "torch.autograd.backward":
                if record:
                    self.backwards.append(Backward(self.scope, e, e.lineno, args))
                return set()
            model = self._model_call(f, None, e)
            out = set(args)
            if model is not None:
                self._note_call(model, e, no_grad, record, out, True)
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

    def _note_call(self, model: str, e, no_grad: bool, record: bool, out: set, forward: bool) -> None:
        """A call of `model` (its forward when `forward`): its output joins `out`, unless it runs
        under no_grad or the forward detaches what it returns (a teacher, a target network)."""
        if not no_grad and forward:
            b = self.f.model_at(model, self.scope, e.lineno)
            no_grad = b is not None and forward_is_cut(self.f, b)
        if no_grad:
            if record:
                self.no_grad_calls.setdefault(model, []).append(e)
        else:
            out.add(model)
        if record:
            self.calls.setdefault(model, []).append(e)

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


_CUT_RETURN_METHODS = frozenset({"detach", "item", "tolist", "numpy"})


def forward_is_cut(self, model: ModelBinding) -> bool:
    """The model's class has a forward that returns only values cut from the graph (`return
    self.fc(x).detach()`), in this file or, through the project model, in another module: its
    output carries no graph back to its parameters."""
    def build():
        return {}
    memo = _cache(self, "forward-cut", build)
    if model.cls in memo:
        return memo[model.cls]
    memo[model.cls] = False  # (a class whose forward asks about itself)
    memo[model.cls] = _forward_is_cut(self, model)
    return memo[model.cls]


def _forward_is_cut(self, model: ModelBinding) -> bool:
    sym = self.ctx.symbols
    if model.cls in sym.classes:
        return _local_forward_cut(sym, model.cls, 0)
    from gradpath.analysis.project import linked_summary
    linked = linked_summary(self.ctx)
    if linked is None:
        return False
    _project, path, lk, _sm = linked
    targets = [t for t in lk.resolve(model.cls, path) if isinstance(t, tuple) and t and t[0] == "cls"]
    return len(targets) == 1 and _linked_forward_cut(lk, targets[0][1], targets[0][2], 0)


def _local_forward_cut(sym, cls: str, depth: int) -> bool:
    """A class of this file whose forward returns only cut values, or only the output of a
    submodule (`return self.encoder(x)`) built in __init__ from such a class."""
    from gradpath.analysis.modclass import resolve_method
    found = resolve_method(sym, cls, "forward")
    if found is None or depth > 3:
        return False
    rets = [n for n in _own_nodes(found[1]) if isinstance(n, ast.Return)]
    if not rets:
        return False
    if all(_is_cut_expr(r.value) for r in rets):
        return True
    attrs = {_self_call_attr(r.value) for r in rets}
    if len(attrs) != 1 or None in attrs:
        return False
    init = resolve_method(sym, cls, "__init__")
    if init is None:
        return False
    (attr,) = attrs
    built = [n.value for n in _own_nodes(init[1]) if isinstance(n, ast.Assign) and len(n.targets) == 1
             and key_of(n.targets[0]) == f"self.{attr}"]
    if len(built) != 1 or not isinstance(built[0], ast.Call) or not isinstance(built[0].func, ast.Name):
        return False
    sub = built[0].func.id
    return sub in sym.classes and _local_forward_cut(sym, sub, depth + 1)


def _linked_forward_cut(lk, path: str, cls: str, depth: int) -> bool:
    """The same through the project model, for a class of another module."""
    owner = lk.find_method(path, cls, "forward")
    if owner is None or depth > 3:
        return False
    summ = lk.summary(owner[0])
    fn = summ["functions"].get(owner[1]) if summ else None
    if not fn:
        return False
    cut = fn.get("ret_cut")
    if cut:
        return not cut.get("live")
    sub = fn.get("ret_sub")
    if not sub:
        return False
    targets = [t for t in lk.attr_of(owner[0], owner[1].rsplit(".", 1)[0], sub[0])
               if isinstance(t, tuple) and t and t[0] in ("cls", "inst")]  # an instance of the class
    return len(targets) == 1 and _linked_forward_cut(lk, targets[0][1], targets[0][2], depth + 1)


def _self_call_attr(e) -> str | None:
    if isinstance(e, ast.Call) and isinstance(e.func, ast.Attribute) and isinstance(e.func.value, ast.Name) \
            and e.func.value.id == "self":
        return e.func.attr
    return None


def _own_nodes(fn):
    """The nodes of a function's own body (not of functions, classes or lambdas defined in it)."""
    todo = list(fn.body)
    while todo:
        n = todo.pop()
        yield n
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            continue
        todo.extend(ast.iter_child_nodes(n))


def _is_cut_expr(e) -> bool:
    return isinstance(e, ast.Call) and isinstance(e.func, ast.Attribute) and e.func.attr in _CUT_RETURN_METHODS
