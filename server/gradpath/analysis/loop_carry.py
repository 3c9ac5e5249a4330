"""Loops without loop-carried values (see dataflow.py): when no value computed in one iteration is
read in a later one, one pass over the body gives what two passes would. Pure: stdlib `ast`."""
from __future__ import annotations

import ast

from gradpath.analysis.facts import key_of


# -- loops without loop-carried values ----------------------------------------------------------
_MUTATORS = {"append", "extend", "add", "insert", "requires_grad_", "detach_"}


def _chain_key(node) -> str | None:
    """`a.b.c` -> "a.b.c"; `a.b[i]` -> "a.b"; else None."""
    while isinstance(node, ast.Subscript):
        node = node.value
    return key_of(node)


def _touches(stored: set, exposed: set) -> bool:
    for e in exposed:
        for k in stored:
            if e == k or e.startswith(k + ".") or k.startswith(e + "."):
                return True
    return False


def _scan_stmt(s, stored: set, loads: set) -> bool:
    """Reads (`loads`, as full attribute keys) and writes (`stored`) of one statement; True when
    it has something this does not model."""
    todo = [s]
    while todo:
        x = todo.pop()
        if isinstance(x, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and x is not s:
            continue
        if isinstance(x, ast.AugAssign):  # `total += v` reads `total`
            loads.add(_chain_key(x.target) or "?")
        if isinstance(x, ast.Name):
            (loads if isinstance(x.ctx, ast.Load) else stored).add(x.id)
            continue
        if isinstance(x, ast.Attribute):
            k = key_of(x)
            if k is not None:
                (loads if isinstance(x.ctx, ast.Load) else stored).add(k)
                continue  # the rest of the chain is this key
        if isinstance(x, ast.Subscript) and not isinstance(x.ctx, ast.Load):
            stored.add(_chain_key(x) or "?")
            todo.append(x.slice)
            if _chain_key(x) is None:
                todo.append(x.value)
            continue
        if isinstance(x, ast.Call):
            f = x.func
            name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else None
            if name == "set_grad_enabled":
                return True
            if name in _MUTATORS and isinstance(f, ast.Attribute):
                rk = _chain_key(f.value)
                stored.add(rk or "?")
                if rk is not None:
                    # `errors.append(v)`: a write, not a read of what earlier iterations appended
                    todo.extend(x.args)
                    todo.extend(kw.value for kw in x.keywords)
                    if isinstance(f.value, ast.Subscript):
                        todo.append(f.value.slice)
                    continue
        todo.extend(ast.iter_child_nodes(x))
    return False


def _plain_names(t) -> set:
    if isinstance(t, ast.Name):
        return {t.id}
    if isinstance(t, (ast.Tuple, ast.List)) and all(isinstance(e, ast.Name) for e in t.elts):
        return {e.id for e in t.elts}
    return set()


def _scan_body(body, stored: set, exposed: set, killed: set) -> bool:
    """Keys read before any write in an iteration (`exposed`) and keys written (`stored`); True
    when the body has something this does not model (a def, an import, global...)."""
    for s in body:
        if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Import, ast.ImportFrom,
                          ast.Global, ast.Nonlocal)):
            return True
        if isinstance(s, (ast.With, ast.AsyncWith)):  # the body always runs: its writes kill
            loads: set = set()
            for item in s.items:
                if _scan_stmt(item, stored, loads):
                    return True
            exposed |= {k for k in loads if k.split(".", 1)[0] not in killed}
            if _scan_body(s.body, stored, exposed, killed):
                return True
            continue
        loads = set()
        if _scan_stmt(s, stored, loads):
            return True
        exposed |= {k for k in loads if k.split(".", 1)[0] not in killed}
        if isinstance(s, ast.Assign):
            for t in s.targets:
                killed |= _plain_names(t)
    return False


def loop_carries(st) -> bool:
    """Conservative: may one iteration read a value an earlier iteration wrote? When not, one pass
    over the body gives what the usual two (a warm-up, then the recorded one) give."""
    stored: set = set()
    exposed: set = set()
    killed = set() if isinstance(st, ast.While) else _plain_names(st.target)
    if _scan_stmt(st.test if isinstance(st, ast.While) else st.iter, stored, exposed):
        return True
    if _scan_body(list(st.body), stored, exposed, killed):
        return True
    return _touches(stored, exposed)
