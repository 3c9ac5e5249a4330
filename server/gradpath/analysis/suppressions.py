"""`# gradpath: ignore[GP102]`, `# noqa: GP102` and bare `# noqa` on a finding's line."""
from __future__ import annotations

import io
import re
import tokenize

_GRADPATH = re.compile(r"gradpath:\s*ignore(?:\[(?P<codes>[^\]]*)\])?", re.I)
_NOQA = re.compile(r"noqa(?::\s*(?P<codes>[A-Z]+[0-9]+(?:[\s,]+[A-Z]+[0-9]+)*))?", re.I)


def directives(text: str) -> dict[int, tuple[str, set[str] | None]]:
    """line -> (directive text, codes or None for 'all'). Only real comments count."""
    out: dict[int, tuple[str, set[str] | None]] = {}
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    except (tokenize.TokenError, IndentationError, SyntaxError, ValueError):
        tokens = []
        for i, line in enumerate(text.splitlines(), 1):
            if "#" in line:
                tokens.append(tokenize.TokenInfo(tokenize.COMMENT, line[line.index("#"):], (i, 0), (i, 0), line))
    for tok in tokens:
        if tok.type != tokenize.COMMENT:
            continue
        comment = tok.string
        m = _GRADPATH.search(comment)
        if m:
            codes = m.group("codes")
            out[tok.start[0]] = (m.group(0), _codes(codes) if codes else None)
            continue
        m = _NOQA.search(comment)
        if m and re.search(r"#\s*noqa", comment, re.I):
            codes = m.group("codes")
            out[tok.start[0]] = (m.group(0), _codes(codes) if codes else None)
    return out


def _codes(s: str) -> set[str]:
    return {c.strip().upper() for c in re.split(r"[\s,]+", s) if c.strip()}


def apply(result) -> None:
    """Drop suppressed findings from `result.findings`; record used and unused directives."""
    table = directives(result.source.text)
    if not table:
        return
    used: set[tuple[int, str]] = set()
    kept = []
    for f in result.findings:
        d = table.get(f.span.line)
        if d is not None and (d[1] is None or any(f.code.startswith(c) for c in d[1])):
            result.suppressed.append((f, d[0]))
            used.add((f.span.line, f.code if d[1] is None else next(c for c in d[1] if f.code.startswith(c))))
            continue
        kept.append(f)
    result.findings = kept
    for line, (text, codes) in table.items():
        if codes is None:
            continue  # a bare noqa may be meant for another tool
        for c in codes:
            if c.startswith("GP") and (line, c) not in used:
                result.unused_suppressions.append((line, c))
