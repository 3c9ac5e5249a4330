"""Parsing with recovery, a line index, and column conversions.

`ast` gives columns as UTF-8 byte offsets; everything else in Gradpath uses character offsets
(code points), and the LSP layer converts those to UTF-16 code units.
"""
from __future__ import annotations

import ast
import gc
import re
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field

from gradpath.analysis.findings import Span

# Parses of the whole text at most while recovering (one per separate error; the CPU deadline of
# the analysis stops it sooner): then the longest prefix that parses.
MAX_RECOVERY_ATTEMPTS = 60


@dataclass
class SyntaxProblem:
    message: str
    span: Span


def split_lines(text: str) -> list[str]:
    """Lines without their terminators; handles \n, \r\n and \r like Python's tokenizer."""
    return re.split(r"\r\n|\r|\n", text)


@contextmanager
def collector_off():
    """The cyclic garbage collector off for a parse (recovery included), as it was if someone else
    had it off. The parser allocates tens of thousands of nodes, none of them garbage: the
    collector, left on, runs over and over (and over the whole heap) while it does, which doubles
    the time of a parse."""
    was_on = gc.isenabled()
    if was_on:
        gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()


@dataclass
class SourceFile:
    text: str
    path: str | None = None
    tree: ast.Module | None = None
    syntax_error: SyntaxProblem | None = None
    blanked_lines: set[int] = field(default_factory=set)
    lines: list[str] = field(default_factory=list)

    @classmethod
    def parse(cls, text: str, path: str | None = None, deadline: float | None = None,
              failure: BaseException | None = None) -> "SourceFile":
        """Parse `text`; never raises. Past `deadline` (time.thread_time() of this thread: CPU
        seconds), error recovery stops and the tree is the longest prefix that parsed so far (or
        empty). `failure`: what `ast.parse` raised for this very text when the caller tried it
        already (recovery starts from it instead of parsing the text again)."""
        text = normalize(text)
        src = cls(text=text, path=path, lines=split_lines(text))
        src._deadline = deadline
        src._parse(failure)
        return src

    _deadline = None  # set by parse(); not a dataclass field
    # True when error recovery gave up and the tree is only the longest prefix that parses
    prefix_only = False
    # the lines whose parse is `tree`, when error recovery made them (bad lines blanked)
    recovered_lines: list[str] | None = None

    def _late(self) -> bool:
        return self._deadline is not None and time.thread_time() > self._deadline

    # -- parsing with recovery -----------------------------------------------------------------
    def _parse(self, failure: BaseException | None = None) -> None:
        with collector_off(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._parse_recovering(failure)

    def _parse_lines(self, lines: list[str]) -> BaseException | None:
        """Parse the recovered `lines`: None once they parse (the tree is theirs), else the failure."""
        try:
            self.tree = ast.parse("\n".join(lines))
        except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
            return exc
        self.recovered_lines = lines
        return None

    def _parse_recovering(self, failure: BaseException | None = None) -> None:
        text = self.text
        if failure is None:
            try:
                # no file name: with one, Python reads the line it reports from the file on disk (whose
                # text is not the editor's), and the error's column comes out of that line
                self.tree = ast.parse(text)
                return
            except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
                failure = exc
        self.syntax_error = syntax_problem(failure, self.lines)
        lines = list(self.lines)
        extents = None  # line -> (first, last) line of its statement, once line blanking did not do
        # A bad line keeps only its indentation (a blank line to the parser): the recovered text is
        # then the text the editor analysed a moment before the line was typed, and so is its tree
        # (incremental.py reuses that result). A line that was a block's only statement needs `pass`
        # instead: when a parse says a block is empty, the emptied line nearest above gets it.
        emptied: dict[int, str] = {}
        for attempt in range(MAX_RECOVERY_ATTEMPTS):
            if self._late():
                break
            # the lines the last failed parse names (parsing the same text again would fail the same way)
            bad = bad_lines(failure)
            if not bad:
                break
            progress = False
            if attempt:
                # a line of a statement spread over several lines (a call's arguments): blanking it
                # alone leaves the brackets around it broken; the whole statement goes instead (its
                # first line as below, the others emptied)
                if extents is None:
                    extents = _statement_extents(self.lines)
                wide = {extents[ln] for ln in bad if ln in extents}
                for first, last in wide:
                    for x in range(first + 1, last + 1):
                        if lines[x - 1].strip():
                            lines[x - 1] = ""
                            progress = True
                        self.blanked_lines.add(x)
                    opens = opens_block(lines, last, own=lines[first - 1])
                    new = blank_line(lines[first - 1], opens)
                    progress = progress or new != lines[first - 1]
                    if not new.strip() and lines[first - 1].strip():
                        emptied[first] = blank_line(lines[first - 1], opens, empty=False)
                    lines[first - 1] = new
                    self.blanked_lines.add(first)
                bad = [ln for ln in bad if ln not in extents]
            for ln in bad:
                if 1 <= ln <= len(lines):
                    opens = opens_block(lines, ln)
                    new = blank_line(lines[ln - 1], opens)
                    if new == lines[ln - 1] and ln in self.blanked_lines:
                        # already `pass` and still wrong (unexpected indent): drop the indent
                        new = new.lstrip(" \t") if new.strip() else new
                    if new != lines[ln - 1]:
                        progress = True
                    if not new.strip() and lines[ln - 1].strip():
                        emptied[ln] = blank_line(lines[ln - 1], opens, empty=False)
                    lines[ln - 1] = new
                    self.blanked_lines.add(ln)
            if not progress:
                break
            failure = self._parse_lines(lines)
            if failure is None:
                return
            while emptied and _empty_block(failure):
                # the block that lost its only statement ends right above the line the parser names:
                # the nearest emptied line above it gets `pass`
                above = [ln for ln in emptied if ln < (failure.lineno or 0)]
                if not above:
                    break
                ln = max(above)
                lines[ln - 1] = emptied.pop(ln)
                failure = self._parse_lines(lines)
                if failure is None:
                    return
        # Last resort: the longest prefix that parses (binary search on line count).
        self.prefix_only = True
        lo, hi, best = 0, len(self.lines), None
        while lo <= hi and not (best is not None and self._late()):
            mid = (lo + hi) // 2
            try:
                best = ast.parse("\n".join(self.lines[:mid]))
                lo = mid + 1
            except (SyntaxError, ValueError, RecursionError, MemoryError):
                hi = mid - 1
        self.tree = best or ast.Module(body=[], type_ignores=[])

    # -- positions -----------------------------------------------------------------------------
    def line_text(self, line: int) -> str:
        if 1 <= line <= len(self.lines):
            return self.lines[line - 1]
        return ""

    def char_col(self, line: int, byte_col: int) -> int:
        """Convert an ast (UTF-8 byte) column on a 1-based line to a character column."""
        s = self.line_text(line)
        if s.isascii():
            return byte_col
        return len(s.encode("utf-8")[:byte_col].decode("utf-8", errors="ignore"))

    def span_of(self, node: ast.AST) -> Span:
        line = getattr(node, "lineno", 1)
        end_line = getattr(node, "end_lineno", None) or line
        col = self.char_col(line, getattr(node, "col_offset", 0))
        end_col = getattr(node, "end_col_offset", None)
        end_col = self.char_col(end_line, end_col) if end_col is not None else len(self.line_text(end_line))
        return Span(line, col, end_line, end_col)

    def text_of(self, node: ast.AST) -> str:
        return self.text_in(self.span_of(node))

    def text_in(self, span: Span) -> str:
        if span.line == span.end_line:
            return self.line_text(span.line)[span.col:span.end_col]
        parts = [self.line_text(span.line)[span.col:]]
        for ln in range(span.line + 1, span.end_line):
            parts.append(self.line_text(ln))
        parts.append(self.line_text(span.end_line)[:span.end_col])
        return "\n".join(parts)

    def indent_of(self, line: int) -> str:
        s = self.line_text(line)
        return s[: len(s) - len(s.lstrip(" \t"))]

    def line_span(self, line: int) -> Span:
        """Span of a line's non-blank text."""
        s = self.line_text(line)
        start = len(s) - len(s.lstrip())
        return Span(line, start, line, len(s.rstrip()))

    @property
    def newline(self) -> str:
        if "\r\n" in self.text:
            return "\r\n"
        return "\n"


_SURROGATES = re.compile("[\ud800-\udfff]")


def normalize(text: str) -> str:
    """The text the parser sees: NUL as a space (ast refuses it; positions stay), no BOM, lone
    surrogates (from a bad UTF-16 buffer, which the parser cannot encode) replaced one for one."""
    text = text.replace("\x00", " ")
    if text.startswith("\ufeff"):
        text = text[1:]
    if _has_surrogates(text):
        text = _SURROGATES.sub("\ufffd", text)
    return text


def _has_surrogates(text: str) -> bool:
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
        return False
    except UnicodeEncodeError:
        return True


def syntax_problem(exc: BaseException, lines: list[str]) -> SyntaxProblem:
    """The GP000 problem of a failed parse of the text whose lines are `lines`."""
    if isinstance(exc, SyntaxError) and exc.lineno:
        ln = max(1, min(exc.lineno, len(lines)))
        line = lines[ln - 1] if lines else ""
        # SyntaxError.offset is 1-based in characters for str input.
        col = max(0, min((exc.offset or 1) - 1, len(line)))
        end = len(line) if col >= len(line.rstrip()) else max(col + 1, len(line.rstrip()))
        if col >= end:
            col = 0
        msg = exc.msg or "invalid syntax"
        return SyntaxProblem(f"SyntaxError: {msg}", Span(ln, col, ln, max(end, col)))
    if isinstance(exc, RecursionError):
        return SyntaxProblem("the file is nested too deeply to analyse", Span(1, 0, 1, 0))
    return SyntaxProblem(f"cannot parse: {exc}", Span(1, 0, 1, 0))


def bad_lines(exc: BaseException) -> list[int]:
    """The lines a failed parse blames: the error's line, and the lines up to its end when it
    spans a few (an unclosed bracket is reported where it opens). The first step of recovery
    blanks them."""
    if not isinstance(exc, SyntaxError):
        return []  # null bytes, nesting too deep, memory: no line to blank
    ln = exc.lineno or 0
    out = [ln]
    end = getattr(exc, "end_lineno", None)
    if end and end != ln and end - ln < 50:
        out.extend(range(ln + 1, end + 1))
    return [x for x in out if x > 0]


def blank_line(line: str, opens_block: bool = False, empty: bool = True) -> str:
    """What a bad statement line becomes: its indentation alone (`empty`: what Enter leaves before
    the user types), or `pass` at the same indentation (for a block that would be left without a
    statement). A line that opens a block (a `for`/`if`/`with`/`def` header being typed) becomes
    `if True:`, so that its body stays a block and the rest of the file still parses (otherwise
    every line of the body is an unexpected indent, blanked one parse at a time, and a long body
    ends in the prefix fallback)."""
    stripped = line.lstrip(" \t")
    if not stripped:
        return line
    indent = line[: len(line) - len(stripped)]
    if opens_block:
        return indent + "if True:"
    return indent if empty else indent + "pass"


def _empty_block(exc: BaseException) -> bool:
    """The parse failed because a block has no statement (its only line was emptied)."""
    return isinstance(exc, IndentationError) and "expected an indented block" in (exc.msg or "")


def _statement_extents(lines: list[str]) -> dict[int, tuple[int, int]]:
    """For each line of a statement written over several lines (2 to 50): the statement's first
    and last line. From the tokenizer, which reads brackets and strings right where the parser
    fails (an unbalanced bracket stops it: the lines after that are left out)."""
    import io
    import tokenize
    out: dict[int, tuple[int, int]] = {}
    skip = (tokenize.NL, tokenize.COMMENT, tokenize.INDENT, tokenize.DEDENT, tokenize.ENCODING)
    first = None
    try:
        for tok in tokenize.generate_tokens(io.StringIO("\n".join(lines) + "\n").readline):
            if first is None:
                if tok.type in skip or tok.type == tokenize.ENDMARKER:
                    continue
                first = tok.start[0]
            if tok.type == tokenize.NEWLINE:
                last = tok.end[0]
                if 1 < last - first + 1 <= 50:
                    for ln in range(first, last + 1):
                        out[ln] = (first, last)
                first = None
    except (tokenize.TokenError, SyntaxError, ValueError):
        pass
    return out


def _indent_of(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


def opens_block(lines: list[str], ln: int, own: str | None = None) -> bool:
    """Line `ln` (1-based) is followed, after blank and comment lines, by a line more indented than
    it (or than `own`)."""
    own = _indent_of(lines[ln - 1] if own is None else own)
    for nxt in lines[ln:]:
        st = nxt.strip()
        if not st or st.startswith("#"):
            continue
        return _indent_of(nxt) > own
    return False


def utf16_len(s: str) -> int:
    if s.isascii():
        return len(s)
    return len(s.encode("utf-16-le")) // 2


def char_to_utf16(line_text: str, col: int) -> int:
    return utf16_len(line_text[:col])


def utf16_to_char(line_text: str, col16: int) -> int:
    if line_text.isascii():
        return min(col16, len(line_text))
    units = 0
    for i, ch in enumerate(line_text):
        if units >= col16:
            return i
        units += 2 if ord(ch) > 0xFFFF else 1
    return len(line_text)
