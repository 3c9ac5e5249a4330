"""GP405: a loss (or anything holding its graph) accumulated across iterations, so every
iteration's graph stays in memory."""
from __future__ import annotations

import ast

from gradpath.analysis.facts import key_of
from gradpath.analysis.findings import Edit, Fix, Related, Span
from gradpath.analysis.loop_guards import (
    backwarded_in_loop, in_module_forward, numpy_accumulator, rebound_in, returns_plain_value,
    training_or_eval_loop)
from gradpath.analysis.loops import loop_facts, loop_header_span
from gradpath.analysis.rules import rule
from gradpath.analysis.rules._loop_common import _data, _short


# -- GP405 --------------------------------------------------------------------------------------------

_DETACHING = {"item", "detach", "tolist", "numpy", "detach_"}
# results that carry no graph (integer, boolean or non-differentiable outputs)
_NO_GRAD_RESULT = {"argmax", "argmin", "argsort", "eq", "ne", "gt", "lt", "ge", "le", "long", "int", "bool",
                   "sign", "round", "floor", "ceil", "nonzero", "numel", "size", "dim", "isnan", "isinf",
                   "isfinite", "all", "any", "equal", "allclose", "count_nonzero", "bincount", "multinomial",
                   "randint", "randn_like", "rand_like", "zeros_like", "ones_like"}
_PLAIN = {"float", "int", "len", "round", "str", "bool", "abs", "max", "min"}


class _Graph:
    """Which names hold a tensor that carries an autograd graph at a given statement."""

    def __init__(self, ctx, lf, scope, backwarded: set[str]):
        self.ctx, self.lf, self.scope = ctx, lf, scope
        self.backwarded = backwarded
        self.state: dict[str, str] = {}

    def name(self, n: str) -> bool:
        st = self.state.get(n, "unknown")
        return st == "graph" or (st == "unknown" and n in self.backwarded)

    def expr(self, e) -> bool:
        if isinstance(e, ast.Name):
            return self.name(e.id)
        if isinstance(e, ast.Call):
            f = e.func
            qn = self.ctx.symbols.qualname(f)
            if isinstance(f, ast.Attribute) and (f.attr in _DETACHING or f.attr in _NO_GRAD_RESULT):
                return False
            if isinstance(f, ast.Name) and f.id in _PLAIN and f.id not in self.ctx.symbols.functions:
                return False
            if isinstance(f, ast.Name) and returns_plain_value(self.ctx.symbols.functions.get(f.id)):
                return False  # a helper of this file annotated `-> float` (a numpy reference value)
            if qn and (qn.startswith(("math.", "numpy.", "np.")) or qn in ("torch.tensor", "torch.as_tensor")
                       or (qn.startswith("torch.") and qn.rsplit(".", 1)[-1] in _NO_GRAD_RESULT)):
                return False
            fk = key_of(f)
            if fk and not isinstance(f, ast.Attribute) or (fk and fk.startswith("self.") and fk.count(".") == 1):
                b = self.ctx.facts.model_at(fk, self.scope)
                if b is not None and not b.cls.endswith("Loss"):
                    return True
            args = list(e.args) + [k.value for k in e.keywords]
            if isinstance(f, ast.Attribute) and self.expr(f.value):
                return True
            return any(self.expr(a) for a in args)
        if isinstance(e, ast.BinOp):
            return self.expr(e.left) or self.expr(e.right)
        if isinstance(e, ast.UnaryOp):
            return self.expr(e.operand)
        if isinstance(e, ast.Subscript):
            return self.expr(e.value)
        if isinstance(e, ast.Attribute):
            return e.attr not in ("data", "grad", "shape", "dtype", "device") and self.expr(e.value)
        if isinstance(e, ast.IfExp):
            return self.expr(e.body) or self.expr(e.orelse)
        if isinstance(e, (ast.Tuple, ast.List)):
            return any(self.expr(x) for x in e.elts)
        return False

    def assign(self, target: str, value, nograd: bool) -> None:
        base = value
        while isinstance(base, (ast.Attribute, ast.Subscript)):
            base = base.value
        if nograd or (isinstance(base, ast.Name) and base is not value and self.state.get(base.id) == "detached"):
            # `loss = outputs.loss` where `outputs` came from a forward under no_grad
            self.state[target] = "detached"
        elif self.expr(value):
            self.state[target] = "graph"
        elif isinstance(value, ast.Constant) or (isinstance(value, ast.Call) and (
                isinstance(value.func, ast.Attribute) and value.func.attr in _DETACHING
                or isinstance(value.func, ast.Name) and value.func.id in _PLAIN)):
            self.state[target] = "detached"
        else:
            self.state[target] = "unknown"


def _under_nograd(ctx, lf, node, scope) -> bool:
    for a in ctx.facts.ancestors(node):
        if isinstance(a, (ast.With, ast.AsyncWith)) and any(lf._is_nograd_ctx(i.context_expr) for i in a.items):
            return True
        if a is scope.node:
            return any(lf._is_nograd_ctx(d) for d in getattr(a, "decorator_list", []))
    return False


def _innermost_loop(ctx, node, scope):
    for a in ctx.facts.ancestors(node):
        if a is scope.node:
            return None
        if isinstance(a, (ast.For, ast.AsyncFor, ast.While)):
            return a
    return None


def _names_in(node) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


@rule("GP405")
def loss_accumulated_with_graph(ctx):
    lf = loop_facts(ctx)
    for unit in lf.units:
        if ctx.out_of_time():
            return  # the units not flattened yet would be flattened here (see loops.Unit)
        scope = unit.scope
        stmts = lf.scope_stmts(scope)
        if not any(_accumulation(st) is not None for st in stmts) or not unit.loops:
            continue
        if in_module_forward(ctx, scope):
            continue  # `sp = sp + spx[i]` in a forward is the architecture, not a loop holding graphs
        backwarded = {e.key for e in unit.events if e.kind == "backward" and e.key and "." not in e.key
                      and not e.via_call}
        # names backwarded as `name.backward()` with no gradient argument: one-element tensors
        scalars = {e.key for e in unit.events if e.kind == "backward" and e.key in backwarded
                   and isinstance(e.node, ast.Call) and isinstance(e.node.func, ast.Attribute)
                   and e.node.func.attr == "backward" and key_of(e.node.func.value) == e.key
                   and not e.node.args and not any(k.arg == "gradient" for k in e.node.keywords)}
        assigns = []  # (statement, target name, value), one per name bound
        for n in stmts:
            if isinstance(n, ast.Assign):
                for t in n.targets:
                    assigns += _bound(n, t, n.value)
            elif isinstance(n, ast.AnnAssign) and n.value is not None:
                assigns += _bound(n, n.target, n.value)
        assigns.sort(key=lambda a: (a[0].lineno, a[0].col_offset))
        # (statement, key, value) for `self.total = ...` / `stats["loss"] = ...`
        key_assigns = [(n, k[0], n.value) for n in stmts if isinstance(n, ast.Assign)
                       for t in n.targets if not isinstance(t, ast.Name) for k in [_acc_key(t)] if k]
        cands = []
        for st in stmts:
            acc = _accumulation(st)
            if acc is None or not any(isinstance(n, ast.Name) for n in ast.walk(acc[1])):
                continue
            target, container = acc[0], acc[3]
            loop = _innermost_loop(ctx, st, scope)
            if loop is None or _under_nograd(ctx, lf, st, scope) or not training_or_eval_loop(ctx, lf, unit, loop):
                continue
            # the accumulator lives across iterations: set before the loop (an attribute of self
            # lives on the object), not reset inside it
            head = (container or target).split(".")[0]
            if head != "self" and not any(a[1] == head and a[0].lineno < loop.lineno for a in assigns):
                continue
            if head != "self" and numpy_accumulator(ctx, [a for a in assigns if a[1] == head
                                                         and a[0].lineno < loop.lineno][-1][2]):
                continue  # `acc = np.zeros(...)`: numpy holds no autograd graph
            # reset on every iteration (not under a condition): nothing carries over
            resets = [a for a in assigns + key_assigns
                      if a[1] in (target, container) or (a[1] == head and head != "self")]
            if any(_unconditional_in(ctx, a[0], loop) and target not in _refs(a[2]) for a in resets):
                continue
            cands.append((st, acc, loop))
        if not cands:
            continue
        cands.sort(key=lambda c: (c[0].lineno, c[0].col_offset))
        nodes: list = []  # every node of the scope, walked only when a candidate needs it
        g = _Graph(ctx, lf, scope, backwarded)
        ai = 0
        for st, (target, value, kind, container, tnode), loop in cands:
            while ai < len(assigns) and (assigns[ai][0].lineno, assigns[ai][0].col_offset) < (st.lineno, st.col_offset):
                node, nm, val = assigns[ai]
                g.assign(nm, val, _under_nograd(ctx, lf, node, scope))
                ai += 1
            # a value bound before the loop is the same graph on every iteration: nothing piles up
            carriers = [n for n in ast.walk(value) if isinstance(n, ast.Name) and g.name(n.id)
                        and _not_detached_on_path(ctx, n, value) and rebound_in(loop, n.id)]
            if not carriers or not g.expr(value):
                continue
            if not nodes:
                nodes = list(scope.walk())
            if _consumed_later(ctx, nodes, assigns, target, st, container) and \
                    not backwarded_in_loop(ctx, loop, {c.id for c in carriers}):
                continue
            scalar = all(c.id in scalars for c in carriers)
            yield _gp405(ctx, st, _short(ctx, tnode, target), value, kind, carriers, loop, scalar)


def _bound(stmt, target, value) -> list[tuple]:
    if isinstance(target, ast.Name):
        return [(stmt, target.id, value)]
    if isinstance(target, (ast.Tuple, ast.List)):
        if isinstance(value, (ast.Tuple, ast.List)) and len(value.elts) == len(target.elts) and \
                not any(isinstance(e, ast.Starred) for e in target.elts):
            out = []
            for t, v in zip(target.elts, value.elts):
                out += _bound(stmt, t, v)
            return out
        # `a, b = f(x)`: each name gets "something from f(x)"
        return [(stmt, n.id, value) for n in ast.walk(target) if isinstance(n, ast.Name)]
    return []


def _unconditional_in(ctx, node, loop) -> bool:
    """`node` runs on every iteration of `loop`: inside it, under no if/loop/try handler of its own."""
    for a in ctx.facts.ancestors(node):
        if a is loop:
            return True
        if isinstance(a, (ast.If, ast.For, ast.AsyncFor, ast.While, ast.ExceptHandler, ast.Match,
                          ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            return False
    return False


def _not_detached_on_path(ctx, name_node, root) -> bool:
    cur = name_node
    while cur is not None and cur is not root:
        p = ctx.facts.parent(cur)
        if isinstance(p, ast.Attribute) and p.attr in ("data", "grad"):
            return False
        if isinstance(p, ast.Attribute) and isinstance(ctx.facts.parent(p), ast.Call) and \
                ctx.facts.parent(p).func is p and p.attr in _DETACHING:
            return False
        if isinstance(p, ast.Call) and isinstance(p.func, ast.Name) and p.func.id in _PLAIN:
            return False
        cur = p
    return True


def _acc_key(t):
    """(key, container key) of an accumulator: `total` -> ("total", None), `self.total` ->
    ("self.total", None), `stats["loss"]` -> ('stats["loss"]', "stats"); None for anything else."""
    if isinstance(t, ast.Name):
        return t.id, None
    if isinstance(t, ast.Attribute):
        k = key_of(t)
        return (k, None) if k else None
    if isinstance(t, ast.Subscript) and isinstance(t.slice, ast.Constant) and \
            isinstance(t.slice.value, (str, int)):
        ck = key_of(t.value)
        if ck:
            return f"{ck}[{t.slice.value!r}]", ck
    return None


def _accumulation(st):
    """(accumulator key, added value, "aug"|"assign"|"append", container key, accumulator node)
    for `t += v`, `t = t + v`, `t.append(v)`; t a name, an attribute (`self.total`) or a constant
    subscript (`stats["loss"]`)."""
    if isinstance(st, ast.AugAssign) and isinstance(st.op, (ast.Add, ast.Sub)):
        k = _acc_key(st.target)
        if k:
            return k[0], st.value, "aug", k[1], st.target
    if isinstance(st, ast.Assign) and len(st.targets) == 1 and \
            isinstance(st.value, ast.BinOp) and isinstance(st.value.op, ast.Add):
        k = _acc_key(st.targets[0])
        if k and _acc_key(st.value.left) == k and type(st.value.left) is type(st.targets[0]):
            return k[0], st.value.right, "assign", k[1], st.targets[0]
    if isinstance(st, ast.Expr) and isinstance(st.value, ast.Call):
        c = st.value
        if isinstance(c.func, ast.Attribute) and c.func.attr == "append" and \
                isinstance(c.func.value, (ast.Name, ast.Attribute)) and len(c.args) == 1 and not c.keywords:
            k = _acc_key(c.func.value)
            if k:
                return k[0], c.args[0], "append", k[1], c.func.value
    return None


def _refs(node) -> set[str]:
    """Names, attribute keys (`self.total`) and constant-subscript keys (`stats["loss"]`) in node."""
    out = set()
    for n in ast.walk(node):
        if isinstance(n, (ast.Name, ast.Attribute, ast.Subscript)):
            k = _acc_key(n)
            if k:
                out.add(k[0])
    return out


def _consumed_later(ctx, nodes, assigns, target, st, container=None) -> bool:
    """The accumulated value is meant to carry its graph: later backwarded or returned."""
    derived = {target} | ({container} if container else set())
    for node, name, val in assigns:
        if node.lineno > st.lineno and _refs(val) & derived:
            derived.add(name)
    for n in nodes:
        if isinstance(n, (ast.Return, ast.Yield, ast.YieldFrom)) and n.value is not None and \
                _refs(n.value) & derived:
            return True
        if isinstance(n, ast.Call):
            f = n.func
            is_back = (isinstance(f, ast.Attribute) and f.attr in ("backward", "manual_backward")) or \
                ctx.symbols.qualname(f) in ("torch.autograd.backward", "torch.autograd.grad")
            if is_back and _refs(n) & derived:
                return True
    return False


def _gp405(ctx, st, target, value, kind, carriers, loop, scalar: bool):
    name = carriers[0].id
    vtext = _short(ctx, value, name)
    if kind == "append":
        stmt_text = f"{target}.append({vtext})"
    elif kind == "aug":
        stmt_text = f"{target} += {vtext}"
    else:
        stmt_text = f"{target} = {target} + {vtext}"
    if kind == "append":
        msg = (f"{stmt_text} keeps every iteration's autograd graph of {name} alive: memory grows every "
               f"iteration; append {name}.item() or {name}.detach()")
    else:
        msg = (f"{stmt_text} keeps the autograd graph of {name} alive across iterations: {target} chains "
               f"every iteration's graph and memory grows with it; accumulate {name}.item() or {name}.detach()")
    fixes = []
    # `.item()` needs a one-element tensor: known when the name is backwarded without a gradient
    # argument (PyTorch requires a scalar there); `.detach()` keeps the value exactly as it was.
    for suffix, safe, pref in ((".item()", scalar, scalar), (".detach()", True, not scalar)):
        edits = tuple(Edit(Span(s.end_line, s.end_col, s.end_line, s.end_col), suffix)
                      for s in (ctx.span(c) for c in carriers))
        fixes.append(Fix(f"Accumulate {name}{suffix}", safe, edits, preferred=pref))
    span = ctx.span(st.value if kind == "append" else st)
    return ctx.finding("GP405", span, msg, fixes=fixes,
                       related=[Related(loop_header_span(ctx.src, loop), "the loop whose iterations pile up graphs")],
                       data=_data(loop_line=loop.lineno, needs_iterations=2, accumulator=target, value=name))
