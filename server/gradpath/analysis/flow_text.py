"""Source-text helpers the GP2/GP3 rules use beside the dataflow's values: how an expression is
written, what an import is called locally, whether a name appears in the file."""
from __future__ import annotations

import ast
import re


def module_alias(sym, qual: str) -> str | None:
    """The local name under which `qual` (e.g. "torch", "torch.nn.functional") is importable."""
    best = None
    for local, q in sym.aliases.items():
        if q == qual:
            return local
        if qual.startswith(q + ".") and (best is None or len(q) > len(best[1])):
            best = (local + qual[len(q):], q)
    return best[0] if best else None


_ATOMS = (ast.Name, ast.Attribute, ast.Call, ast.Subscript, ast.Constant)


def wrap(src, node: ast.AST) -> str:
    """Source text of `node`, parenthesised unless it is an atom (safe before `.method()`)."""
    t = src.text_of(node)
    return t if isinstance(node, _ATOMS) else f"({t})"


def is_parenthesised(src, node: ast.AST) -> bool:
    s = src.span_of(node)
    before = src.line_text(s.line)[:s.col].rstrip()
    after = src.line_text(s.end_line)[s.end_col:].lstrip()
    return before.endswith("(") and after.startswith(")") and not before[:-1].rstrip().endswith(
        tuple("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_0123456789)]"))


def name_in_file(tree: ast.AST, name: str, text: str | None = None) -> bool:
    # the text first: a whole-tree walk costs ~40 ms on a 2000-line file
    if text is not None and not re.search(rf"\b{re.escape(name)}\b", text):
        return False
    return any(isinstance(n, ast.Name) and n.id == name for n in ast.walk(tree))
