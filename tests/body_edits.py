"""One-character edits at random lines of function bodies (a digit changed, a letter typed after a
name), as the patched-flow and loop-reuse tests replay them."""
from __future__ import annotations

import ast
import re


def body_lines(text: str) -> list[int]:
    """The 1-based non-blank lines of the bodies of the top-level functions and methods."""
    lines = text.split("\n")
    out = []
    for st in ast.parse(text).body:
        fns = [st] if isinstance(st, ast.FunctionDef) else [
            m for m in st.body if isinstance(m, ast.FunctionDef)] if isinstance(st, ast.ClassDef) else []
        for fn in fns:
            out += [k for k in range(fn.body[0].lineno, fn.end_lineno + 1) if lines[k - 1].strip()]
    return out


def random_body_edits(text: str, r, tries: int):
    """Up to `tries` edits, each on the text the one before made; yields each new text that
    parses."""
    body = body_lines(text)
    if not body:
        return
    lines = text.split("\n")
    for _ in range(tries):
        k = r.choice(body)
        line = lines[k - 1]
        digits = [m.start() for m in re.finditer(r"\d", line)]
        ends = [m.end() for m in re.finditer(r"[A-Za-z_]\w*", line)]
        if digits and r.random() < 0.5:
            c = r.choice(digits)
            new = line[:c] + str((int(line[c]) + 1) % 10) + line[c + 1:]
        elif ends:
            c = r.choice(ends)
            new = line[:c] + "q" + line[c:]
        else:
            continue
        cur = lines[:k - 1] + [new] + lines[k:]
        try:
            ast.parse("\n".join(cur))
        except SyntaxError:
            continue
        lines = cur
        yield "\n".join(lines)
