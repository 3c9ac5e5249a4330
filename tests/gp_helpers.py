"""Shared helpers for the GP2/GP3 tests: run the analysis on a text, apply a fix's edits."""
from __future__ import annotations

import textwrap

from gradpath.analysis import analyze
from gradpath.analysis.findings import Finding
from gradpath.analysis.source import split_lines


def run(text: str, prefix: str = "GP") -> list[Finding]:
    text = textwrap.dedent(text)
    res = analyze(text, "prog.py")
    assert not res.failed_rules, res.failed_rules
    return [f for f in res.findings if f.code.startswith(prefix)]


def codes(text: str, prefix: str = "GP") -> list[tuple[int, str]]:
    return [(f.span.line, f.code) for f in run(text, prefix)]


def span_text(text: str, span) -> str:
    lines = split_lines(textwrap.dedent(text))
    if span.line == span.end_line:
        return lines[span.line - 1][span.col:span.end_col]
    parts = [lines[span.line - 1][span.col:]] + lines[span.line:span.end_line - 1] + \
        [lines[span.end_line - 1][:span.end_col]]
    return "\n".join(parts)


def apply_fix(text: str, fix) -> str:
    """Apply a Fix's edits (character positions) to `text`."""
    text = textwrap.dedent(text)
    lines = text.split("\n")
    offsets = [0]
    for ln in lines:
        offsets.append(offsets[-1] + len(ln) + 1)

    def pos(line, col):
        return offsets[line - 1] + col

    out = text
    for e in sorted(fix.edits, key=lambda e: (e.span.line, e.span.col), reverse=True):
        a, b = pos(e.span.line, e.span.col), pos(e.span.end_line, e.span.end_col)
        out = out[:a] + e.new_text + out[b:]
    return out
