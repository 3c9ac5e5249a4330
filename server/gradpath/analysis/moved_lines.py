"""Lines added or removed by an edit (incremental.py): moving the kept trees where the new text has
them, whether the lines were blank ones only (the tree is then the old one, moved), and which
findings name positions after the edit. Pure: stdlib `ast`."""
from __future__ import annotations

import ast
import re

from gradpath.analysis.findings import Finding, Span
from gradpath.analysis.regions import Region
from gradpath.analysis.source import SyntaxProblem


_LINE_IN_MESSAGE = re.compile(r"((?:detected at|on) line )(\d+)")


def blank_lines_moved(old: list[str], new: list[str], a: int, b: int, delta: int) -> int | None:
    """When the only lines that differ (old a..b, new a..b+delta; lines added or removed) are blank
    (whitespace only) and the line above them does not go on past its end (a backslash): the
    first old line after them, from which every line moves `delta` lines. Blank lines are nothing
    to the parser outside strings (the trees then decide)."""
    if not delta:
        return None
    for ln in range(a, b + 1):
        if old[ln - 1].strip():
            return None
    for ln in range(a, b + delta + 1):
        if new[ln - 1].strip():
            return None
    if a >= 2 and old[a - 2].rstrip(" \t\f").endswith("\\"):
        return None
    return b + 1


def shift_from(stmts: list, first: int, delta: int, strings: bool = True, record: list | None = None) -> bool:
    """Move every position of `stmts` from line `first` on by `delta` lines, in place (a node that
    starts before `first` and ends after it: its end only). False, and nothing moved, when a string
    starts before `first` and ends after it (the lines added or removed are inside it), unless
    `strings` is False. `record` collects what moved, for unshift()."""
    stack = list(stmts)
    pop, push = stack.pop, stack.extend
    spanned = False
    Constant, JoinedStr = ast.Constant, ast.JoinedStr
    for x in iter(lambda: pop() if stack else None, None):
        d = x.__dict__
        ln = d.get("lineno")
        if ln is not None:
            end = d.get("end_lineno")
            if ln >= first:
                x.lineno = ln + delta
                if record is not None:
                    record.append((x, True))
            elif strings and end is not None and end >= first and (x.__class__ is JoinedStr or x.__class__ is Constant and (
                    x.value.__class__ is str or x.value.__class__ is bytes)):
                spanned = True
            if end is not None and end >= first:
                x.end_lineno = end + delta
                if record is not None:
                    record.append((x, False))
        for name in x._fields:
            v = d.get(name)
            if v.__class__ is list:
                push([c for c in v if isinstance(c, ast.AST)])
            elif isinstance(v, ast.AST) and not isinstance(v, ast.expr_context):
                stack.append(v)
    if spanned:
        shift_from(stmts, first + delta, -delta, strings=False)
        return False
    return True


def unshift(record: list, delta: int) -> None:
    """Undo what shift_from moved (and recorded)."""
    for x, start in record:
        if start:
            x.lineno -= delta
        else:
            x.end_lineno -= delta


def shift_message(message: str, off: int) -> str:
    """A syntax error's message with the line numbers it names ("detected at line 3", "on line 2")
    moved `off` lines, as its region is."""
    return _LINE_IN_MESSAGE.sub(lambda m: f"{m.group(1)}{int(m.group(2)) + off}", message) if off else message


def shift_regions(regions: list[Region], delta: int) -> None:
    """Move regions (their trees and recovered syntax errors) down by `delta` lines."""
    for r in regions:
        r.start += delta
        r.end += delta
        shift_from(r.stmts, 1, delta, strings=False)  # (every line)
        if r.error is not None:
            sp = r.error.span
            r.error = SyntaxProblem(shift_message(r.error.message, delta),
                                    Span(sp.line + delta, sp.col, sp.end_line + delta, sp.end_col))


def mentions_after(findings: list[Finding], line: int) -> bool:
    """Whether any finding names a position after `line` (spans, related, fixes, data, or a
    number in its message that could be a line)."""
    for f in findings:
        if f.span.end_line > line:
            return True
        if any(r.span.end_line > line for r in f.related):
            return True
        if any(e.span.end_line > line for fx in f.fixes for e in fx.edits):
            return True
        if _max_int(f.data) > line:
            return True
        if any(int(m) > line for m in _digits(f.message)):
            return True
    return False


def _digits(s: str) -> list[str]:
    import re
    return re.findall(r"\d+", s)


def _max_int(obj) -> int:
    if isinstance(obj, bool):
        return 0
    if isinstance(obj, int):
        return obj
    if isinstance(obj, dict):
        return max((_max_int(v) for v in obj.values()), default=0)
    if isinstance(obj, (list, tuple)):
        return max((_max_int(v) for v in obj), default=0)
    return 0
