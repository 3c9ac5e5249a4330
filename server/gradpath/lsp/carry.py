"""Findings carried across an edit: positions of one text moved onto the next.

While the user types, the project's summary of the edited file describes the text before the edit,
so the cross-module rules say nothing (they only answer against a summary of the text they see).
Their findings from the last linked analysis are kept instead, moved with the edit the way the
incremental analysis moves the findings of regions it did not redo. The edit between two texts is
their differing middle (common prefix and suffix); a finding whose range, or a range in this file of
its related information, meets it is dropped (the edit touched what it is about). A fix whose edit
meets it loses that fix only.

Positions: 1-based lines, 0-based character columns (see analysis/findings.py); lines end at
\\r\\n, \\r or \\n as for the analysis.
"""
from __future__ import annotations

import bisect
import re
from dataclasses import replace

from gradpath.analysis.findings import Edit, Finding, Fix, Related, Span

_EOL = re.compile(r"\r\n|\r|\n")


def line_starts(text: str) -> list[int]:
    return [0] + [m.end() for m in _EOL.finditer(text)]


def common_prefix(a: str, b: str) -> int:
    """Length of the common prefix (slice comparisons: C speed on long texts)."""
    lo, hi = 0, min(len(a), len(b))
    if a[:hi] == b[:hi]:
        return hi
    while lo < hi:  # a[:lo] == b[:lo] holds; a[:hi] != b[:hi]
        mid = (lo + hi + 1) // 2
        if a[lo:mid] == b[lo:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def common_suffix(a: str, b: str, limit: int) -> int:
    """Length of the common suffix, at most `limit`."""
    lo, hi = 0, min(len(a), len(b), limit)
    if hi == 0 or a[len(a) - hi:] == b[len(b) - hi:]:
        return hi
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[len(a) - mid:len(a) - lo] == b[len(b) - mid:len(b) - lo]:
            lo = mid
        else:
            hi = mid - 1
    return lo


class Move:
    """The edit from `old` to `new`: old[p:old_end] became new[p:new_end].

    Positions are compared and moved as (line, column) pairs, found by counting newlines up to the
    edit (no table of every line: a keystroke in a long file stays cheap); a text with a lone \r
    line break takes character offsets and tables of line starts instead."""

    def __init__(self, old: str, new: str):
        self.same = old == new
        p = common_prefix(old, new)
        s = common_suffix(old, new, min(len(old), len(new)) - p)
        self.p, self.old_end, self.new_end = p, len(old) - s, len(new) - s
        self.delta = self.new_end - self.old_end
        self.inserted = new[p:self.new_end]
        self._lines = old.count("\r") == old.count("\r\n") and new.count("\r") == new.count("\r\n")
        if self._lines:
            self._n_old = old.count("\n") + 1
            self.P = self._pos(old, self.p)
            self.E = self._pos(old, self.old_end)
            self.N = self._pos(new, self.new_end)
        else:
            self._old_starts = line_starts(old)
            self._new_starts = line_starts(new)
            self._old_len = len(old)
            self.P, self.E = self.p, self.old_end

    @staticmethod
    def _pos(text: str, off: int) -> tuple[int, int]:
        return text.count("\n", 0, off) + 1, off - (text.rfind("\n", 0, off) + 1)

    def _key(self, line: int, col: int):
        if self._lines:
            return None if line < 1 or line > self._n_old else (line, col)
        if line < 1 or line > len(self._old_starts):
            return None
        return min(self._old_starts[line - 1] + col, self._old_len)

    def _moved(self, x) -> tuple[int, int]:
        """An old position at or after the edit's end, on the new text."""
        if self._lines:
            if x[0] == self.E[0]:
                return self.N[0], self.N[1] + x[1] - self.E[1]
            return x[0] + self.N[0] - self.E[0], x[1]
        off = x + self.delta
        i = bisect.bisect_right(self._new_starts, off) - 1
        return i + 1, off - self._new_starts[i]

    def _kept(self, x) -> tuple[int, int]:
        """An old position before the edit, on the new text (unchanged)."""
        if self._lines:
            return x
        i = bisect.bisect_right(self._old_starts, x) - 1
        return i + 1, x - self._old_starts[i]

    def touches(self, span: Span) -> bool:
        a, b = self._key(span.line, span.col), self._key(span.end_line, span.end_col)
        if a is None or b is None:
            return True
        P, E = self.P, self.E
        if self.old_end > self.p:  # something removed or replaced: any overlap
            return a < E and P < b or (a == b and P <= a < E)
        # a pure insertion: inside the range, or right after its end continuing the expression
        if a < P < b:
            return True
        if not self.inserted or a == b:
            return False
        if P == b and (self.inserted[0].isalnum() or self.inserted[0] in "_.(["):
            return True
        return P == a and (self.inserted[-1].isalnum() or self.inserted[-1] in "_.")

    def span(self, span: Span) -> Span | None:
        """The span moved onto the new text; None when the edit touches it."""
        if self.same:
            return span
        if self.touches(span):
            return None
        a, b = self._key(span.line, span.col), self._key(span.end_line, span.end_col)
        # text inserted right where the range starts goes before it; right where it ends, after it
        a2 = self._kept(a) if a < self.P else self._moved(a)
        b2 = a2 if a == b else (self._kept(b) if b <= self.P else self._moved(b))
        return Span(a2[0], a2[1], b2[0], b2[1])

    def finding(self, f: Finding) -> Finding | None:
        """The finding moved onto the new text; None when the edit touches its range or the range
        of its related information in this file."""
        if self.same:
            return f
        sp = self.span(f.span)
        if sp is None:
            return None
        related = []
        for r in f.related:
            if r.path:  # another file: not moved by this edit
                related.append(r)
                continue
            rs = self.span(r.span)
            if rs is None:
                return None
            related.append(Related(rs, r.message, r.path))
        fixes = []
        for fx in f.fixes:
            edits = []
            for e in fx.edits:
                es = self.span(e.span)
                if es is None:
                    edits = None
                    break
                edits.append(Edit(es, e.new_text))
            if edits:
                fixes.append(Fix(fx.title, fx.safe, tuple(edits), fx.preferred))
        return replace(f, span=sp, related=related, fixes=fixes)


def move_findings(findings: list[Finding], old: str, new: str) -> list[Finding]:
    if old == new or not findings:
        return list(findings)
    mv = Move(old, new)
    out = []
    for f in findings:
        g = mv.finding(f)
        if g is not None:
            out.append(g)
    return out


def finding_key(f: Finding) -> tuple:
    return (f.code, f.span)


def is_marked_cross_module(f: Finding) -> bool:
    """Findings that say they were made with the project: marked by the cross-module rules, or with
    their other end in another file."""
    return bool(f.data.get("cross_module")) or any(getattr(r, "path", None) for r in f.related)
