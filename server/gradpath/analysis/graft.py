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
import copy
import warnings

from gradpath.analysis.source import collector_off

_ExprCtx = ast.expr_context


def _span(n: ast.AST) -> tuple:
    return (n.lineno, n.col_offset, n.end_lineno, n.end_col_offset)


def graft(old: ast.AST, new: ast.AST, a: int, b: int, shared: set | None = None,
          stale: set | None = None) -> ast.AST:
    """`new` (changed in place), its untouched parts replaced by the nodes of `old` at the same
    places. `old` is never changed. `shared` collects the ids of the old nodes put in (the roots of
    the shared subtrees). `stale`: ids of old nodes never put in (lines were added or removed: the
    old tree was moved where the new text has the lines after the edit, but its nodes on the old
    edited lines were not, and may sit where other nodes now are)."""
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
                nv[i] = _pick(o, x, a, b, shared, stale)
        elif isinstance(nv, ast.AST) and not isinstance(nv, _ExprCtx) and isinstance(ov, ast.AST):
            setattr(new, name, _pick(ov, nv, a, b, shared, stale))
    return new


def _pick(o: ast.AST, x: ast.AST, a: int, b: int, shared: set | None, stale: set | None = None) -> ast.AST:
    if type(o) is not type(x):
        return x
    if hasattr(x, "lineno") and x.end_lineno is not None:
        if x.end_lineno < a or x.lineno > b:
            if _span(o) != _span(x) or (stale is not None and id(o) in stale):
                return x
            if shared is not None:
                shared.add(id(o))
            return o
        if (o.lineno, o.col_offset) != (x.lineno, x.col_offset):
            return x
    return graft(o, x, a, b, shared, stale)


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


_DEFS = (ast.FunctionDef, ast.AsyncFunctionDef)


def method_reparsed(cls: ast.ClassDef, a: int, b: int, lines: list[str],
                    failed: list | None = None) -> ast.ClassDef | None:
    """The tree of class `cls` after lines a..b changed inside one of its methods' body (as many
    lines as before; `lines` the new text's), made by parsing that method alone, or None when the
    edit is not of that kind or the method alone does not parse to a method on the same lines.

    Parsed alone, inside a `class` header placed on the line before it, the method's lines give the
    nodes a parse of the whole class gives them: its lines start where a statement started (the
    tokenizer in the same state, the lines above unchanged) and, when the method parses to one
    statement ending on its old last line, end where the next statement starts, unchanged too. The
    other statements of the class are the previous tree's objects (as graft() would make them); the
    class node itself is a copy. A large class (a trainer of thousands of lines) is not parsed, nor
    its names worked out, again for each key typed in one of its methods. When the method's lines
    alone do not parse, what the parser raised is appended to `failed` (if given)."""
    body = cls.body
    i = next((k for k, st in enumerate(body) if isinstance(st, _DEFS) and st.body and st.body[0].lineno <= a
              and b <= st.end_lineno), None)
    end = None  # the method's last line: its old one, or b for lines typed after its last statement
    if i is None:
        # lines typed after the last statement of a method, before the class's next statement: the
        # method grows (when they parse as part of it)
        k = max((k for k, st in enumerate(body) if st.end_lineno < a), default=None)
        if k is None or not isinstance(body[k], _DEFS) or not body[k].body:
            return None
        i, end = k, b
    m = body[i]
    end = end or m.end_lineno
    lo = min([m.lineno] + [d.lineno for d in m.decorator_list])
    if lo <= cls.lineno or (i and body[i - 1].end_lineno >= lo) or not lines[lo - 1][:1].isspace():
        return None
    if i + 1 < len(body):
        nxt = body[i + 1]
        if min([nxt.lineno] + [d.lineno for d in getattr(nxt, "decorator_list", ())]) <= end:
            return None
    text = "\n" * (lo - 2) + "class _:\n" + "\n".join(lines[lo - 1:end])
    try:
        with collector_off(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        if failed is not None:
            failed.append(exc)
        return None
    if len(tree.body) != 1 or not isinstance(tree.body[0], ast.ClassDef) or len(tree.body[0].body) != 1:
        return None
    new = tree.body[0].body[0]
    if type(new) is not type(m) or new.name != m.name or _span(new)[:2] != _span(m)[:2] or new.end_lineno != end \
            or min([new.lineno] + [d.lineno for d in new.decorator_list]) != lo:
        return None
    out = copy.copy(cls)
    out.body = body[:i] + [new] + body[i + 1:]
    if i == len(body) - 1:
        out.end_lineno, out.end_col_offset = new.end_lineno, new.end_col_offset
    return out
