"""What a helper does to the training state, read from one function's AST alone.

`summarize(fn, literals)` lists the GP4 effects of a function on its parameters and on `self`
attributes: gradients cleared (`zero_grad`), optimizer steps (`step`), backwards (`backward`) and
mode switches (`train`/`eval`). A parameter iterated by a loop (`for m in models: m.eval()`) is
reported as `models[*]`: the effect applies to each element. Literal arguments prune branches:
`set_mode("eval", models)` with `if mode == "eval": ... else: ...` runs only the first branch.

Pure: no symbols, no imports resolved, nothing outside `fn`. The in-file loop flattening
(`loops.py`) uses `branch_taken` and `element_params` when it inlines a call; the project model
can call `summarize` on a function of another module and apply the effects at the call site.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass

from gradpath.analysis.symbols import walk_statements

EFFECT_METHODS = {"zero_grad": "zero_grad", "step": "step", "backward": "backward",
                  "manual_backward": "backward", "train": "train", "eval": "eval"}


@dataclass(frozen=True)
class Effect:
    kind: str  # zero_grad | step | backward | train | eval
    target: str  # `optimizer`, `self.model`, `models[*]` (each element), the backwarded value's key
    node: ast.AST  # the call inside the function
    conditional: bool  # under an `if`/`try` of the function that the literals did not settle


_NOTHING = object()


def _key(node) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return ".".join([node.id] + list(reversed(parts)))
    return None


def literal_of(node):
    """The Python value of a literal argument (str, number, bool, None), else a sentinel."""
    if isinstance(node, ast.Constant):
        return node.value
    return _NOTHING


def call_literals(call: ast.Call, fn, skip_first: bool = False, cache: dict | None = None) -> dict:
    """Parameter name -> literal value for the literal arguments of `call` to `fn`
    (`skip_first`: a method called through its instance, `self` is not in the call; `cache`: a
    dict the caller keeps for one analysis, where what is computed per `fn` is kept)."""
    a = fn.args
    params = [p.arg for p in a.posonlyargs + a.args]
    if skip_first:
        params = params[1:]
    out = {}
    for p, arg in zip(params, call.args):
        if isinstance(arg, ast.Starred):
            break
        v = literal_of(arg)
        if v is not _NOTHING:
            out[p] = v
    names = set(params) | {p.arg for p in a.kwonlyargs}
    for kw in call.keywords:
        if kw.arg in names:
            v = literal_of(kw.value)
            if v is not _NOTHING:
                out[kw.arg] = v
    _defaults_and_flags(call, fn, params, out, cache)
    return out


def _name_stores(fn) -> dict[str, int]:
    """How many times each name is stored to anywhere in `fn` (nested defs included)."""
    stores: dict[str, int] = {}
    for n in ast.walk(fn):
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
            stores[n.id] = stores.get(n.id, 0) + 1
    return stores


def _defaults_and_flags(call: ast.Call, fn, params: list[str], out: dict, cache: dict | None = None) -> None:
    """Parameters the call leaves out keep their literal defaults (`test()` calling
    `_train_or_test(model, loader)` with `optimizer=None`), and flags the function computes from them
    first thing (`is_train = optimizer is not None`) are decided too."""
    if any(isinstance(x, ast.Starred) for x in call.args) or any(kw.arg is None for kw in call.keywords):
        return  # *args / **kwargs: which parameters are given is not known
    a = fn.args
    given = set(params[:len(call.args)]) | {kw.arg for kw in call.keywords}
    pos = [p.arg for p in a.posonlyargs + a.args]
    defaults = dict(zip(pos[len(pos) - len(a.defaults):], a.defaults))
    defaults.update({p.arg: d for p, d in zip(a.kwonlyargs, a.kw_defaults) if d is not None})
    for name, d in defaults.items():
        v = literal_of(d)
        if name in params + [p.arg for p in a.kwonlyargs] and name not in given and name not in out \
                and v is not _NOTHING:
            out[name] = v
    if not out or not isinstance(fn.body, list):
        return
    if cache is None:
        stores = _name_stores(fn)
    else:
        ck = ("stores", id(fn))
        stores = cache.get(ck)
        if stores is None:
            stores = cache[ck] = _name_stores(fn)
    for st in fn.body:
        if isinstance(st, ast.Assign) and len(st.targets) == 1 and isinstance(st.targets[0], ast.Name):
            name = st.targets[0].id
            if stores.get(name) == 1 and name not in out:
                t = branch_taken(st.value, out)
                if t is not None:
                    out[name] = t
        elif not isinstance(st, (ast.Expr, ast.AnnAssign, ast.Assign)):
            break  # only the straight-line start of the function


def branch_taken(test: ast.AST, literals: dict) -> bool | None:
    """True/False when `test` is decided by the literal values of parameters, else None."""
    if isinstance(test, ast.Name) and test.id in literals:
        return bool(literals[test.id])
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        v = branch_taken(test.operand, literals)
        return None if v is None else not v
    if isinstance(test, ast.BoolOp):
        vals = [branch_taken(v, literals) for v in test.values]
        if isinstance(test.op, ast.And):
            if any(v is False for v in vals):
                return False
            return True if all(v is True for v in vals) else None
        if any(v is True for v in vals):
            return True
        return False if all(v is False for v in vals) else None
    if isinstance(test, ast.Compare) and len(test.ops) == 1:
        left, right, op = test.left, test.comparators[0], test.ops[0]
        if isinstance(right, ast.Name) and right.id in literals and isinstance(left, ast.Constant):
            left, right = right, left
        if not (isinstance(left, ast.Name) and left.id in literals):
            return None
        v = literals[left.id]
        if isinstance(op, (ast.Eq, ast.NotEq, ast.Is, ast.IsNot)) and isinstance(right, ast.Constant):
            same = v == right.value if isinstance(op, (ast.Eq, ast.NotEq)) else v is right.value
            return same if isinstance(op, (ast.Eq, ast.Is)) else not same
        if isinstance(op, (ast.In, ast.NotIn)) and isinstance(right, (ast.Tuple, ast.List, ast.Set)) and \
                all(isinstance(e, ast.Constant) for e in right.elts):
            inside = v in [e.value for e in right.elts]
            return inside if isinstance(op, ast.In) else not inside
    return None


def element_params(fn) -> dict[str, str]:
    """Loop variables of `fn` that run over one of its parameters: `for m in models:` -> {m: models}
    (also `for m in models.values()` and `for _, m in enumerate(models)`)."""
    a = fn.args
    params = {p.arg for p in a.posonlyargs + a.args + a.kwonlyargs}
    if a.vararg:
        params.add(a.vararg.arg)
    out = {}
    for n in walk_statements(fn):  # (loops are statements: the same ones, in ast.walk's order)
        if not isinstance(n, (ast.For, ast.AsyncFor)):
            continue
        it, tgt = n.iter, n.target
        if isinstance(it, ast.Call) and isinstance(it.func, ast.Name) and it.func.id == "enumerate" and it.args:
            it = it.args[0]
            if isinstance(tgt, ast.Tuple) and len(tgt.elts) == 2:
                tgt = tgt.elts[1]
        if isinstance(it, ast.Call) and isinstance(it.func, ast.Attribute) and it.func.attr == "values" \
                and not it.args:
            it = it.func.value
        if isinstance(it, ast.Name) and it.id in params and isinstance(tgt, ast.Name):
            out[tgt.id] = it.id
    return out


def summarize(fn, literals: dict | None = None) -> list[Effect]:
    """The GP4 effects of `fn` on its parameters and `self` attributes, in source order."""
    literals = literals or {}
    a = fn.args
    params = {p.arg for p in a.posonlyargs + a.args + a.kwonlyargs}
    elems = element_params(fn)
    out: list[Effect] = []

    def target_of(k: str | None) -> str | None:
        if not k:
            return None
        head, dot, rest = k.partition(".")
        if head in elems:
            return f"{elems[head]}[*]" + (dot + rest if rest else "")
        if head in params or head == "self":
            return k if k != "self" else None
        return None

    def visit_stmts(body, cond: bool):
        for st in body:
            visit(st, cond)

    def visit(st, cond: bool):
        if isinstance(st, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            return
        if isinstance(st, ast.If):
            taken = branch_taken(st.test, literals)
            exprs(st.test, cond)
            if taken is not False:
                visit_stmts(st.body, cond or taken is None)
            if taken is not True:
                visit_stmts(st.orelse, cond or taken is None)
            return
        if isinstance(st, (ast.For, ast.AsyncFor, ast.While)):
            exprs(st.iter if not isinstance(st, ast.While) else st.test, cond)
            # a loop over a parameter runs its body for each element (maybe none: an empty list)
            visit_stmts(st.body, cond)
            visit_stmts(st.orelse, cond)
            return
        if isinstance(st, (ast.With, ast.AsyncWith)):
            for item in st.items:
                exprs(item.context_expr, cond)
            visit_stmts(st.body, cond)
            return
        if isinstance(st, ast.Try) or type(st).__name__ == "TryStar":
            visit_stmts(st.body, cond)
            for h in st.handlers:
                visit_stmts(h.body, True)
            visit_stmts(st.orelse, cond)
            visit_stmts(st.finalbody, cond)
            return
        if isinstance(st, ast.Match):
            exprs(st.subject, cond)
            for c in st.cases:
                visit_stmts(c.body, True)
            return
        exprs(st, cond)

    def exprs(node, cond: bool):
        calls = [n for n in ast.walk(node) if isinstance(n, ast.Call)]
        calls.sort(key=lambda c: (c.end_lineno or 0, c.end_col_offset or 0))
        for c in calls:
            f = c.func
            if not isinstance(f, ast.Attribute) or f.attr not in EFFECT_METHODS:
                continue
            kind = EFFECT_METHODS[f.attr]
            rk = _key(f.value)
            if kind == "backward":
                if f.attr == "manual_backward" or (c.args and rk and rk.split(".")[-1].lower().startswith(
                        ("accelerator", "fabric"))):
                    tk = target_of(_key(c.args[0])) if c.args else None
                    out.append(Effect("backward", tk or "?", c, cond))
                elif rk:
                    out.append(Effect("backward", target_of(rk) or "?", c, cond))
                continue
            if kind == "train" and (c.args or c.keywords):
                arg = c.args[0] if c.args else c.keywords[0].value
                if isinstance(arg, ast.Constant) and arg.value is False:
                    kind = "eval"
            t = target_of(rk)
            if t is not None:
                out.append(Effect(kind, t, c, cond))

    visit_stmts(fn.body, False)
    return out
