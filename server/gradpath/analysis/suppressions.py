"""Suppression comments on a finding's start line.

Recognised, case-insensitively, only in real comments (never inside strings):
- `# gradpath: ignore[GP102]`, `# gradpath: ignore[GP102, GP4]` (codes, prefixes or slugs);
- `# gradpath: ignore` (bare: every Gradpath code on the line);
- `# noqa: GP102` / `# noqa:GP102,GP401` (codes of other tools, `E501`, are left to them);
- bare `# noqa` (every code on the line, as flake8 and ruff read it).
Several directives may share one comment (`# noqa: E501  # gradpath: ignore[GP401]`).

A suppression is *unused* when nothing it names was found on its line. Unused ones are reported
for the Gradpath codes they name and for a bare `# gradpath: ignore`; a bare `# noqa` and other
tools' codes are never reported (they may be meant for another linter).
"""
from __future__ import annotations

import io
import re
import tokenize
from dataclasses import dataclass, field

from gradpath.analysis.findings import Edit, Finding, Fix, Span

_GRADPATH = re.compile(r"gradpath\s*:\s*ignore(?:\s*\[(?P<codes>[^\]]*)\])?", re.I)
_NOQA = re.compile(r"#\s*noqa(?P<colon>\s*:\s*(?P<codes>[A-Za-z]+[0-9]+(?:\s*,\s*[A-Za-z]+[0-9]+|\s+[A-Za-z]+[0-9]+)*))?",
                   re.I)

UNUSED_CODE = "unused-suppression"


@dataclass
class Directive:
    line: int
    col: int  # start of the directive text within the line (characters)
    end_col: int
    kind: str  # "gradpath" | "noqa"
    codes: list[str] | None  # None: bare (everything)
    text: str
    used: set[str] = field(default_factory=set)  # codes (as written) that matched a finding

    def matches(self, code: str) -> str | None:
        """The entry of this directive that covers `code` ("*" for a bare directive)."""
        if self.codes is None:
            return "*"
        from gradpath.analysis import catalog
        for c in self.codes:
            if catalog.matches(code, [c]):
                return c
        return None


def _codes(s: str) -> list[str]:
    return [c.strip() for c in re.split(r"[\s,]+", s) if c.strip()]


_CANDIDATE = re.compile(r"noqa|gradpath", re.I)


def _comments(text: str) -> list[tuple[int, int, str]]:
    """(line, column in characters, comment text) of every comment that may hold a directive.

    Tokenizing a whole file costs far more than analysing it, so: no candidate word, no work; no
    triple-quoted string (the only way a `#` inside a string spans lines), a per-line scan."""
    if not _CANDIDATE.search(text):
        return []
    try:
        return _scan_comments(text)
    except Exception:  # pragma: no cover - the scanner is total; tokenize below is the fallback
        pass
    try:
        return [(t.start[0], t.start[1], t.string)
                for t in tokenize.generate_tokens(io.StringIO(text).readline) if t.type == tokenize.COMMENT]
    except (tokenize.TokenError, IndentationError, SyntaxError, ValueError):
        # The file does not tokenize (the user is typing): best effort, a `#` outside quotes.
        out = []
        for i, line in enumerate(re.split(r"\r\n|\r|\n", text), 1):
            pos = _comment_start(line)
            if pos is not None:
                out.append((i, pos, line[pos:]))
        return out


_LEX = re.compile(r"""\"\"\"|\'\'\'|\"|\'|#|\\\r\n|\\.|\r\n|\r|\n""", re.S)


def _scan_comments(text: str) -> list[tuple[int, int, str]]:
    """Comments of lines that contain a candidate word, found by a small quote-aware scanner that
    only visits quotes, `#`, escapes and newlines (tokenize visits every token and is ~20x slower)."""
    out = []
    line, line_start = 1, 0
    quote = None  # the open string's delimiter
    pos = 0
    n = len(text)
    while pos < n:
        m = _LEX.search(text, pos)
        if m is None:
            break
        tok = m.group(0)
        pos = m.end()
        if tok in ("\r\n", "\r", "\n"):
            line += 1
            line_start = pos
            if quote in ("'", '"'):
                quote = None  # an unterminated one-line string ends at the newline
            continue
        if tok[0] == "\\":
            if tok[1:] in ("\n", "\r", "\r\n"):  # a continuation line
                line += 1
                line_start = pos
            continue
        if quote is not None:
            if tok == quote:
                quote = None
            elif len(tok) == 3 and quote == tok[0]:
                quote = None  # a triple quote closes a one-char string and opens... keep it simple
                pos = m.start() + 1
            continue
        if tok == "#":
            eol = len(text)
            for sep in ("\n", "\r"):
                k = text.find(sep, pos)
                if k != -1:
                    eol = min(eol, k)
            comment = text[m.start():eol]
            if _CANDIDATE.search(comment):
                out.append((line, m.start() - line_start, comment))
            pos = eol
            continue
        quote = tok
    return out


def _comment_start(line: str) -> int | None:
    quote = None
    i = 0
    while i < len(line):
        ch = line[i]
        if quote:
            if ch == "\\":
                i += 2
                continue
            if ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch == "#":
            return i
        i += 1
    return None


def parse(text: str) -> list[Directive]:
    """Every suppression directive in `text`, in source order."""
    out: list[Directive] = []
    for line, col, comment in _comments(text):
        for m in _GRADPATH.finditer(comment):
            codes = m.group("codes")
            out.append(Directive(line, col + m.start(), col + m.end(), "gradpath",
                                 _codes(codes) if codes is not None else None, m.group(0)))
        for m in _NOQA.finditer(comment):
            codes = m.group("codes")
            start = m.start()
            out.append(Directive(line, col + start, col + m.end(), "noqa",
                                 _codes(codes) if codes else None, m.group(0)))
    return out


def directives(text: str) -> dict[int, list[Directive]]:
    """line -> the directives on it."""
    table: dict[int, list[Directive]] = {}
    for d in parse(text):
        table.setdefault(d.line, []).append(d)
    return table


def _suppressor(f: Finding, table: dict[int, list[Directive]]) -> tuple[Directive, str] | None:
    for d in table.get(f.span.line, ()):
        entry = d.matches(f.code)
        if entry is not None:
            return d, entry
    return None


def apply(result) -> None:
    """Drop suppressed findings from `result.findings`; record them in `result.suppressed` and the
    unused directive entries in `result.unused_suppressions` as (line, code); code is "*" for an
    unused bare `# gradpath: ignore`. The parsed directives are kept on `result.directives`."""
    table = directives(result.source.text)
    result.directives = [d for ds in table.values() for d in ds]
    if not table:
        return
    kept = []
    for f in result.findings:
        hit = _suppressor(f, table)
        if hit is not None:
            d, entry = hit
            d.used.add(entry)
            result.suppressed.append((f, d.text))
            continue
        kept.append(f)
    result.findings = kept
    for d in result.directives:
        for entry in _unused_entries(d):
            result.unused_suppressions.append((d.line, entry))


def _is_gradpath_code(c: str) -> bool:
    return c.upper().startswith("GP")


def _unused_entries(d: Directive) -> list[str]:
    if d.codes is None:
        # A bare `# noqa` may serve another linter; a bare `# gradpath: ignore` is ours.
        return ["*"] if d.kind == "gradpath" and not d.used else []
    out = []
    for c in d.codes:
        if c in d.used:
            continue
        if d.kind == "noqa" and not _is_gradpath_code(c):
            continue
        out.append(c)
    return out


def unused_findings(result, enabled=None) -> list[Finding]:
    """Unused suppressions as Findings (code `unused-suppression`, severity info) with a safe fix
    that removes the unused part of the directive. `enabled(code) -> bool` leaves out codes that
    are not selected in this run (their suppression is not known to be unused)."""
    from gradpath.analysis import catalog
    out: list[Finding] = []
    src = result.source
    for d in getattr(result, "directives", []):
        entries = _unused_entries(d)
        if not entries:
            continue
        reported = []
        for c in entries:
            if c == "*":
                reported.append(c)
                continue
            known = [code for code in catalog.RULES if catalog.matches(code, [c])]
            if not known:
                reported.append(c)  # unknown code: never matches anything
            elif enabled is None or any(enabled(code) for code in known):
                reported.append(c)
        if not reported:
            continue
        line_text = src.line_text(d.line)
        span = Span(d.line, d.col, d.line, d.end_col)
        if "*" in reported:
            msg = "unused suppression: no Gradpath finding on this line"
        else:
            unknown = [c for c in reported if not any(catalog.matches(code, [c]) for code in catalog.RULES)]
            names = ", ".join(reported)
            msg = f"unused suppression: no {names} finding on this line"
            if unknown:
                msg += f" ({', '.join(unknown)}: no such Gradpath rule)"
        keep = [c for c in (d.codes or []) if c not in reported]
        out.append(Finding(UNUSED_CODE, msg, span, "info",
                           fixes=[_removal_fix(d, keep, line_text)]))
    return out


def _removal_fix(d: Directive, keep: list[str], line_text: str) -> Fix:
    if keep:
        if d.kind == "gradpath":
            new = f"gradpath: ignore[{', '.join(keep)}]"
        else:
            new = f"# noqa: {', '.join(keep)}"
        return Fix("Remove the unused codes from the suppression", True,
                   (Edit(Span(d.line, d.col, d.line, d.end_col), new),), preferred=True)
    # Remove the whole directive; when it is all the comment holds, remove the comment too.
    start, end = d.col, d.end_col
    if d.kind == "gradpath":
        # include the '#' that introduces it, when it is the comment's own
        j = start - 1
        while j >= 0 and line_text[j] in " \t":
            j -= 1
        if j >= 0 and line_text[j] == "#":
            start = j
    rest = line_text[end:]
    before = line_text[:start]
    if not rest.strip():
        start = len(before.rstrip())
        end = len(line_text)
    else:
        # another directive or comment follows: keep it, drop ours and its spacing
        while end < len(line_text) and line_text[end] in " \t":
            end += 1
    return Fix("Remove the unused suppression", True, (Edit(Span(d.line, start, d.line, end), ""),),
               preferred=True)
