"""Grafting: the tree of an edited statement, parsed again, with every part the edit did not touch
taken from the statement's previous tree.

An edit that changes lines a..b and keeps the number of lines leaves every other line as it was, at
the same place. A node that lies wholly outside a..b, has the same type and the same span as the
node at that place in the previous tree, covers the same text and so parses to the same subtree:
the previous node object can stand in for it. What the analysis of the previous version recorded
against those objects (values by node, events, memo keys holding node ids) then still describes the
new tree; only the nodes on the edited lines, and the statements that contain them, are new
(flow_patch.py builds on this).
"""
from __future__ import annotations

import ast

_ExprCtx = ast.expr_context


def _span(n: ast.AST) -> tuple:
    return (n.lineno, n.col_offset, n.end_lineno, n.end_col_offset)


def graft(old: ast.AST, new: ast.AST, a: int, b: int, shared: set | None = None) -> ast.AST:
    """`new` (changed in place), its untouched parts replaced by the nodes of `old` at the same
    places. `old` is never changed. `shared` collects the ids of the old nodes put in (the roots of
    the shared subtrees)."""
    if type(old) is not type(new):
        return new
    for name in new._fields:
        nv = getattr(new, name, None)
        ov = getattr(old, name, None)
        if nv.__class__ is list:
            if ov.__class__ is not list:
                continue
            by_index = len(nv) == len(ov)
            by_start = None
            for i, x in enumerate(nv):
                if not isinstance(x, ast.AST) or isinstance(x, _ExprCtx):
                    continue
                o = ov[i] if by_index else None
                if o is None or type(o) is not type(x) or (hasattr(x, "lineno") and (
                        getattr(o, "lineno", None), getattr(o, "col_offset", None)) != (x.lineno, x.col_offset)):
                    if not hasattr(x, "lineno"):
                        continue
                    if by_start is None:
                        by_start = {(getattr(y, "lineno", None), getattr(y, "col_offset", None), type(y)): y
                                    for y in ov if isinstance(y, ast.AST)}
                    o = by_start.get((x.lineno, x.col_offset, type(x)))
                    if o is None:
                        continue
                nv[i] = _pick(o, x, a, b, shared)
        elif isinstance(nv, ast.AST) and not isinstance(nv, _ExprCtx) and isinstance(ov, ast.AST):
            setattr(new, name, _pick(ov, nv, a, b, shared))
    return new


def _pick(o: ast.AST, x: ast.AST, a: int, b: int, shared: set | None) -> ast.AST:
    if type(o) is not type(x):
        return x
    if hasattr(x, "lineno") and x.end_lineno is not None:
        if x.end_lineno < a or x.lineno > b:
            if _span(o) != _span(x):
                return x
            if shared is not None:
                shared.add(id(o))
            return o
        if (o.lineno, o.col_offset) != (x.lineno, x.col_offset):
            return x
    return graft(o, x, a, b, shared)


def subtree_ids(roots, stop: set | None = None, own: bool = False) -> dict:
    """id -> node for every node under `roots` (a faster ast.walk), not descending into nodes
    whose id is in `stop`; with `own`, not into the bodies of nested functions and classes."""
    out = {}
    stack = list(roots)
    Defs = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    while stack:
        n = stack.pop()
        if stop is not None and id(n) in stop:
            continue
        out[id(n)] = n
        if own and isinstance(n, Defs):
            stack.extend(n.decorator_list)
            if not isinstance(n, ast.ClassDef):
                stack.append(n.args)
            continue
        stack.extend(children(n))
    return out


def children(n: ast.AST) -> list:
    """The child nodes of `n` (ast.iter_child_nodes without its generators)."""
    out = []
    for name in n._fields:
        v = getattr(n, name, None)
        if v.__class__ is list:
            out.extend(c for c in v if isinstance(c, ast.AST))
        elif isinstance(v, ast.AST):
            out.append(v)
    return out
