"""Helpers for the live-step tests (imported by the test modules)."""
from __future__ import annotations

import textwrap
from pathlib import Path

from gradpath.analysis import analyze
from gradpath.analysis.findings import Finding, Span

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def write(dirpath: Path, name: str, code: str) -> tuple[Path, str]:
    text = textwrap.dedent(code).lstrip("\n")
    p = dirpath / name
    p.write_text(text, encoding="utf-8")
    return p, text


def finding(code: str, line: int, col: int = 0, end_line: int | None = None, end_col: int = 200,
            **data) -> Finding:
    """A finding as the analysis would hand it over (independent of the rules' current state)."""
    return Finding(code=code, message=f"{code} under test", span=Span(line, col, end_line or line, end_col),
                   severity="warning", data=data)


def line_of(text: str, needle: str) -> int:
    for i, line in enumerate(text.splitlines(), 1):
        if needle in line:
            return i
    raise AssertionError(f"{needle!r} not in text")


def span_of(text: str, needle: str, occurrence: int = 0) -> dict:
    """Character span of `needle` (on one line) as a Span dict, 0-based columns."""
    n = 0
    for i, line in enumerate(text.splitlines(), 1):
        start = 0
        while True:
            c = line.find(needle, start)
            if c < 0:
                break
            if n == occurrence:
                return {"line": i, "col": c, "end_line": i, "end_col": c + len(needle)}
            n += 1
            start = c + 1
    raise AssertionError(f"{needle!r} not in text")


def confirm_analyzed(live, path: Path, text: str, timeout_s: float | None = None):
    findings = analyze(text, str(path)).findings
    return findings, live.confirm(str(path), text, findings, timeout_s=timeout_s)
