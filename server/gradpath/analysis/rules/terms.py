"""GP205: a dead loss term. A term with no path to any parameter (`aux.item()`, `reg.detach()`,
`torch.tensor(acc)`, an argmax) added into a loss that is backwarded: it moves the loss value and
what is logged, but contributes no gradient. Also a local loss helper whose returned term is cut
from the prediction it was given (`pred.argmax(1)` inside a dice loss).

The terms are the top-level `+`/`-` operands of the backwarded value, followed through the names
it is built from in the same function (`loss = ce + aux`, `loss += w * kl.item()`); a cut deeper
inside a term (`(q - target.detach()) ** 2`, a straight-through `x + (q - x).detach()` fed to a
model) is not a dead term and is left alone. The term's value comes from the dataflow; whether what
was cut had a graph comes from the dataflow too, or, where the model is a parameter the analysis
cannot see into, from the term's own code: the cut value is computed from a call of something that
is not torch (`out = model(x)`).
"""
from __future__ import annotations

import ast

from gradpath.analysis.dataflow import G, N, flow
from gradpath.analysis.findings import Edit, Fix, Related
from gradpath.analysis.rules import rule
from gradpath.analysis.symbols import canonical

_CUT_ATTRS = {"item": ".item()", "detach": ".detach()", "numpy": ".numpy()", "tolist": ".tolist()",
              "argmax": ".argmax()", "argmin": ".argmin()", "round": ".round()", "long": ".long()",
              "int": ".int()", "bool": ".bool()", "sign": ".sign()", "floor": ".floor()", "ceil": ".ceil()"}
_CUT_FUNCS = {"torch.argmax", "torch.argmin", "torch.round", "torch.sign", "torch.floor", "torch.ceil",
              "torch.tensor", "torch.as_tensor", "torch.from_numpy", "torch.Tensor", "torch.FloatTensor",
              "numpy.array", "numpy.asarray"}
_CUT_BUILTINS = {"float", "int", "round", "bool"}
_MAX_DEPTH = 3


def _clip(text: str, limit: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _line(n) -> int:
    return getattr(n, "lineno", 0)


def _flatten(expr) -> list[ast.AST]:
    """The operands of a `+`/`-` chain (`a + b - c` -> a, b, c); `expr` itself when it is not one."""
    if isinstance(expr, ast.BinOp) and isinstance(expr.op, (ast.Add, ast.Sub)):
        return _flatten(expr.left) + _flatten(expr.right)
    return [expr]


class _Defs:
    """Assignments to plain names in one function, by name, in source order."""

    def __init__(self, scope):
        self.by_name: dict[str, list[ast.stmt]] = {}
        for n in scope.walk():
            if isinstance(n, ast.Assign) and len(n.targets) == 1 and isinstance(n.targets[0], ast.Name):
                self.by_name.setdefault(n.targets[0].id, []).append(n)
            elif isinstance(n, (ast.AugAssign, ast.AnnAssign)) and isinstance(n.target, ast.Name) \
                    and getattr(n, "value", None) is not None:
                self.by_name.setdefault(n.target.id, []).append(n)

    def before(self, name: str, node) -> list[ast.stmt]:
        line = _line(node)
        return [d for d in self.by_name.get(name, []) if _line(d) <= line and d is not node]


class GP205:
    def __init__(self, ctx):
        self.ctx = ctx
        self.fl = flow(ctx)
        self.last = self.fl._last_ev  # the value each node had when last evaluated
        self.sym = ctx.symbols
        self._defs: dict = {}
        self._g: dict = {}

    def defs(self, scope) -> _Defs:
        d = self._defs.get(id(scope))
        if d is None:
            d = self._defs[id(scope)] = _Defs(scope)
        return d

    def val(self, node):
        return self.last.get(id(node))

    # -- terms ------------------------------------------------------------------------------
    def terms(self, expr, scope, at, depth=0, via=None):
        """(term node, the statement or expression that adds it) for the `+`/`-` terms `expr` is built from."""
        parts = _flatten(expr)
        if len(parts) > 1:
            for p in parts:
                if isinstance(p, ast.Name) and depth < _MAX_DEPTH:
                    yield from self._name_terms(p, scope, at, depth + 1)
                else:
                    yield p, (via or expr)
            return
        if isinstance(expr, ast.Name) and depth < _MAX_DEPTH:
            yield from self._name_terms(expr, scope, at, depth + 1)

    def _name_terms(self, name: ast.Name, scope, at, depth):
        for d in self.defs(scope).before(name.id, at):
            if isinstance(d, ast.AugAssign):
                if isinstance(d.op, (ast.Add, ast.Sub)):
                    for p in _flatten(d.value):
                        if isinstance(p, ast.Name) and depth < _MAX_DEPTH:
                            yield from self._name_terms(p, scope, d, depth + 1)
                        else:
                            yield p, d
            elif isinstance(d.value, ast.BinOp) and isinstance(d.value.op, (ast.Add, ast.Sub)):
                yield from self.terms(d.value, scope, d, depth, via=d.value)
            else:
                yield d.value, d

    # -- is a term cut from a graph? ----------------------------------------------------------
    def cut_in(self, term):
        """The cut that makes `term` graph-less: (cut node, receiver) with a receiver that had a graph."""
        for n in _walk(term):
            recv = self._cut_receiver(n)
            if recv is not None and self.graphish(recv, 0):
                return n, recv
        return None

    def _cut_receiver(self, n):
        if isinstance(n, ast.Call):
            f = n.func
            if isinstance(f, ast.Attribute) and f.attr in _CUT_ATTRS and not self.sym.qualname(f):
                return f.value
            if isinstance(f, ast.Name) and f.id in _CUT_BUILTINS and f.id not in self.sym.functions and n.args:
                return n.args[0]
            qn = self.sym.qualname(f)
            if qn and canonical(qn) in _CUT_FUNCS and n.args and not isinstance(n.args[0], ast.Constant):
                return n.args[0]
        elif isinstance(n, ast.Attribute) and n.attr == "data" and isinstance(n.ctx, ast.Load):
            return n.value
        return None

    def graphish(self, node, depth) -> bool:
        """`node` carried a graph: the dataflow says so, or (the model being a parameter the analysis
        cannot see into) it is computed from a call of something that is not torch."""
        k = id(node)
        if k in self._g:
            return self._g[k]
        self._g[k] = False  # a cycle through a name's own definition
        r = self._g[k] = self._graphish(node, depth)
        return r

    def _graphish(self, node, depth) -> bool:
        v = self.val(node)
        if v is not None and v.grad == G:
            return True
        if v is not None and v.grad == N and (v.cuts or v.const is not None or v.kind in ("number", "str", "bool")):
            return False
        if depth > 9:
            return False
        if isinstance(node, ast.Name):
            scope = self.ctx.facts.scope_of(node)
            return any(not isinstance(d, ast.AugAssign) and self.graphish(d.value, depth + 1)
                       for d in self.defs(scope).before(node.id, node)[-2:])
        if isinstance(node, ast.Call):
            f = node.func
            qn = self.sym.qualname(f)
            if qn is None and isinstance(f, ast.Attribute):
                # a tensor method (out.pow(2).mean()) keeps what its receiver is; a call on a model
                # attribute (self.head(h), model.encode(x)) is a forward
                if isinstance(f.value, (ast.Call, ast.Subscript, ast.BinOp)):
                    return self.graphish(f.value, depth + 1)
                return self.graphish(f.value, depth + 1) if f.attr in _TENSOR_METHODS else True
            if qn is None and isinstance(f, ast.Name):
                return f.id not in _BUILTIN_NAMES  # model(x), a local loss helper
            if qn and qn.startswith("torch"):
                return any(self.graphish(a, depth + 1) for a in node.args[:3])
            return False
        if isinstance(node, ast.BinOp):
            return self.graphish(node.left, depth + 1) or self.graphish(node.right, depth + 1)
        if isinstance(node, ast.UnaryOp):
            return self.graphish(node.operand, depth + 1)
        if isinstance(node, (ast.Subscript, ast.Starred)):
            return self.graphish(node.value, depth + 1)
        if isinstance(node, ast.Attribute):
            return node.attr not in ("data", "shape") and isinstance(node.value, ast.Name) and \
                self.graphish(node.value, depth + 1)
        return False

    def helper_cut(self, term):
        """A call of a local function whose returned value is cut from its first argument (the
        prediction): (the helper, the cut node inside it)."""
        if not isinstance(term, ast.Call) or not isinstance(term.func, ast.Name) or not term.args:
            return None
        fn = self.sym.functions.get(term.func.id)
        if fn is None:
            return None
        params = [a.arg for a in fn.args.posonlyargs + fn.args.args]
        if not params:
            return None
        pred = params[0]
        tainted = {pred}
        body = [n for n in ast.walk(fn) if isinstance(n, ast.stmt)]
        for st in sorted(body, key=_line):
            if isinstance(st, ast.Assign) and len(st.targets) == 1 and isinstance(st.targets[0], ast.Name):
                names = {x.id for x in ast.walk(st.value) if isinstance(x, ast.Name)}
                if names & tainted:
                    tainted.add(st.targets[0].id)
        for n in ast.walk(fn):
            recv = self._cut_receiver(n)
            if recv is None:
                continue
            if {x.id for x in ast.walk(recv) if isinstance(x, ast.Name)} & tainted:
                # the cut must be on every path to the return: every returned value is computed from it
                return fn, n, recv
        return None


_TENSOR_METHODS = frozenset({"pow", "mean", "sum", "abs", "norm", "sqrt", "exp", "log", "view", "reshape",
                             "squeeze", "unsqueeze", "float", "double", "to", "cpu", "cuda", "clamp", "max",
                             "min", "std", "var", "softmax", "log_softmax", "sigmoid", "tanh", "t", "mm",
                             "matmul", "neg", "gather", "flatten", "contiguous", "permute", "transpose"})
_BUILTIN_NAMES = frozenset({"len", "range", "float", "int", "round", "abs", "sum", "min", "max", "list", "tuple",
                            "dict", "set", "str", "enumerate", "zip", "map", "sorted", "next", "iter", "bool",
                            "print", "isinstance", "getattr", "open"})


def _walk(term):
    """Nodes of a term, outermost first, not into lambdas or comprehensions' own scopes."""
    stack = [term]
    while stack:
        n = stack.pop(0)
        yield n
        if isinstance(n, (ast.Lambda,)):
            continue
        stack.extend(ast.iter_child_nodes(n))


def _unused_fixes(ctx, term, cut, recv, adder) -> list[Fix]:
    fixes = []
    src = ctx.src
    bare = isinstance(cut, ast.Call) and isinstance(cut.func, ast.Attribute) and cut.func.attr in (
        "detach", "item") and not cut.args or isinstance(cut, ast.Attribute)
    if bare and recv is not None:
        fixes.append(Fix(f"Remove the cut: `{_clip(src.text_of(cut))}` -> `{_clip(src.text_of(recv))}`", False,
                         (Edit(ctx.span(cut), src.text_of(recv)),)))
    if isinstance(adder, ast.BinOp) and adder.right is term and isinstance(adder.op, (ast.Add, ast.Sub)):
        fixes.append(Fix(f"Drop the term `{_clip(src.text_of(term))}`", False,
                         (Edit(ctx.span(adder), src.text_of(adder.left)),)))
    elif isinstance(adder, ast.BinOp) and adder.left is term and isinstance(adder.op, ast.Add):
        fixes.append(Fix(f"Drop the term `{_clip(src.text_of(term))}`", False,
                         (Edit(ctx.span(adder), src.text_of(adder.right)),)))
    return fixes


def _adder_of(adder, term):
    """The BinOp that adds `term` directly (for the drop-the-term fix)."""
    top = adder.value if isinstance(adder, (ast.Assign, ast.AugAssign)) else adder
    for n in ast.walk(top):
        if isinstance(n, ast.BinOp) and (n.left is term or n.right is term):
            return n
    return adder


@rule("GP205")
def dead_loss_term(ctx):
    g = GP205(ctx)
    seen: set = set()
    for e in g.fl.events_of("backward"):
        v = e.vals.get("value")
        if v is None or v.grad == N:
            continue  # GP201's business: the whole value has no graph
        value_node = e.nodes.get("value") or e.node
        terms = list(g.terms(value_node, e.scope, e.node))
        if len(terms) < 2:
            continue
        live = [t for t, _ in terms if (g.val(t) is not None and g.val(t).grad == G) or g.graphish(t, 1)]
        for term, adder in terms:
            if id(term) in seen:
                continue
            tv = g.val(term)
            if tv is None or tv.grad != N:
                continue
            if not [t for t in live if t is not term]:
                continue
            hit = g.cut_in(term)
            helper = None if hit else g.helper_cut(term)
            if hit is None and helper is None:
                c = tv.primary_cut()  # a cut made in an earlier statement (`labels = p.long()`)
                if c is not None and c.had_graph and c.receiver is not None:
                    hit = (c.node, c.receiver)
            if hit is None and helper is None:
                continue
            seen.add(id(term))
            loss_name = ctx.src.text_of(value_node)
            bw = e.node
            tt = _clip(ctx.src.text_of(term))
            if hit is not None and isinstance(term, ast.Call) and not any(n is hit[0] for n in ast.walk(term)):
                cut, recv = hit  # a loss module's forward / a method that cuts what it was given
                ct = _clip(ctx.src.text_of(cut))
                why = f"`{tt}` returns a term cut from its input (`{ct}` at line {_line(cut)} has no grad_fn)"
                rel = [Related(ctx.span(cut), f"the graph is cut here: `{ct}`")]
            elif hit is not None:
                cut, recv = hit
                ct = _clip(ctx.src.text_of(cut))
                at = "" if any(n is cut for n in ast.walk(term)) else f" at line {_line(cut)}"
                why = (f"`{tt}` has no graph" + (f" (`{ct}`{at} cuts it from `{_clip(ctx.src.text_of(recv))}`)"
                                                 if ct != tt else f" (`{ct}` cuts it from its graph)"))
                rel = [Related(ctx.span(cut), f"the graph is cut here: `{ct}`")]
            else:
                fn, cut, recv = helper
                ct = _clip(ctx.src.text_of(cut))
                why = (f"`{tt}` returns a term cut from its prediction `{fn.args.args[0].arg}` "
                       f"(`{ct}` at line {_line(cut)} has no grad_fn)")
                rel = [Related(ctx.span(cut), f"{fn.name}() cuts its prediction here: `{ct}`")]
            msg = (f"{why}, yet it is added into `{_clip(loss_name, 40)}`, which `{_clip(ctx.src.text_of(bw), 40)}` "
                   f"(line {_line(bw)}) backwards: it shifts the loss value but contributes no gradient, so this "
                   f"part of the objective is never optimized")
            rel.append(Related(ctx.span(bw), f"`{_clip(loss_name, 40)}` is backwarded here"))
            fixes = _unused_fixes(ctx, term, cut, recv, _adder_of(adder, term)) if hit is not None else []
            yield ctx.finding("GP205", term, msg, related=rel, fixes=fixes,
                              data={"probe": {"what": "dead-term", "span": ctx.span(term).to_dict(),
                                              "expr": ctx.src.text_of(term)},
                                    "backward_line": _line(bw), "loss": loss_name})
