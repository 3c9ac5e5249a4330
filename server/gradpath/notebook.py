"""Jupyter notebooks: code cells joined into one Python text, findings mapped back to cells.

`cells_to_source(cells)` takes cells as plain strings (code) or nbformat dicts (`cell_type`,
`source`); non-code cells contribute no lines. IPython syntax (`%magic`, `!shell`, `x = !ls`,
`obj?`, `%%cell magics`) is blanked to `pass` at the same indentation, so line numbers and the
columns of every other line stay the same. Each cell's lines are followed by one blank separator
line, so an unterminated statement cannot run into the next cell's.

`map_span(mapping, span) -> (cell_index, span_in_cell)`: index into the `cells` list given,
0-based; the span's lines 1-based within the cell, columns unchanged.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from gradpath.analysis.findings import Edit, Finding, Fix, Related, Span

# cell magics whose body is still Python
_PY_CELL_MAGICS = {"time", "timeit", "capture", "prun", "debug", "pypy", "python", "python3"}
_ASSIGN_MAGIC = re.compile(r"^\s*[\w.,\s\[\]()]*=\s*[%!]")
_HELP = re.compile(r"^\s*[\w.]+\?\??\s*$|^\s*\?\??[\w.]+\s*$")


@dataclass(frozen=True)
class CellRange:
    index: int  # position in the `cells` list given to cells_to_source
    start_line: int  # first line of the cell in the joined text, 1-based
    line_count: int


@dataclass
class NotebookMapping:
    cells: list[CellRange] = field(default_factory=list)
    blanked: set[int] = field(default_factory=set)  # joined-text lines that held IPython syntax
    # cells that do not parse on their own: cell index -> (message, span within the cell). Their
    # lines are left empty in the joined text, so one broken cell cannot hide the others' findings.
    syntax_errors: dict[int, tuple[str, Span]] = field(default_factory=dict)

    def locate(self, line: int) -> tuple[int, int] | None:
        """Joined-text line -> (cell index, line in cell), or None for a separator line."""
        for c in self.cells:
            if c.start_line <= line < c.start_line + c.line_count:
                return c.index, line - c.start_line + 1
        return None

    def cell_range(self, index: int) -> CellRange | None:
        for c in self.cells:
            if c.index == index:
                return c
        return None

    def to_joined_span(self, index: int, span: Span) -> Span:
        """A span in cell `index` -> the same span in the joined text (for an editor's positions)."""
        c = self.cell_range(index)
        if c is None:
            raise KeyError(index)
        off = c.start_line - 1
        return Span(span.line + off, span.col, span.end_line + off, span.end_col)


def cell_source(cell) -> tuple[str, bool]:
    """(source text, is code) for a string or an nbformat cell dict."""
    if isinstance(cell, str):
        return cell, True
    if isinstance(cell, dict):
        src = cell.get("source", "")
        if isinstance(src, list):
            src = "".join(src)
        return str(src), cell.get("cell_type", "code") == "code"
    return str(cell), True


def _blank(line: str) -> str:
    stripped = line.lstrip(" \t")
    return line[: len(line) - len(stripped)] + "pass"


def _is_ipython_line(stripped: str, line: str) -> bool:
    return (stripped.startswith(("%", "!")) or bool(_ASSIGN_MAGIC.match(line)) or bool(_HELP.match(line)))


def cells_to_source(cells) -> tuple[str, NotebookMapping]:
    """Join the code cells into one Python text; returns (text, mapping)."""
    out: list[str] = []
    mapping = NotebookMapping()
    for index, cell in enumerate(cells):
        text, is_code = cell_source(cell)
        if not is_code:
            continue
        lines = re.split(r"\r\n|\r|\n", text)
        if lines and lines[-1] == "" and len(lines) > 1:
            lines.pop()  # the final newline ends the last line; it is not a line of its own
        start = len(out) + 1
        first = lines[0].strip() if lines else ""
        cell_magic = first.startswith("%%")
        python_body = cell_magic and first[2:].split()[0:1] and first[2:].split()[0] in _PY_CELL_MAGICS
        in_continuation = False
        for i, line in enumerate(lines):
            stripped = line.strip()
            if cell_magic and (i == 0 or not python_body):
                out.append(_blank(line) if i == 0 else "")  # another language's body: empty lines
                mapping.blanked.add(len(out))
                continue
            if not in_continuation and _is_ipython_line(stripped, line):
                out.append(_blank(line))
                mapping.blanked.add(len(out))
                in_continuation = line.rstrip().endswith("\\")
                continue
            if in_continuation:  # a magic continued with a backslash
                out.append("")
                mapping.blanked.add(len(out))
                in_continuation = line.rstrip().endswith("\\")
                continue
            out.append(line)
        mapping.cells.append(CellRange(index, start, len(lines)))
        problem = _cell_syntax_error(out[start - 1:])
        if problem is not None:
            mapping.syntax_errors[index] = problem
            for k in range(start - 1, len(out)):
                out[k] = ""
        out.append("")  # separator
    return "\n".join(out) + ("\n" if out else ""), mapping


def _cell_syntax_error(lines: list[str]) -> tuple[str, Span] | None:
    import ast
    import warnings
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ast.parse("\n".join(lines))
        return None
    except SyntaxError as exc:
        ln = max(1, min(exc.lineno or 1, len(lines) or 1))
        line = lines[ln - 1] if lines else ""
        col = max(0, min((exc.offset or 1) - 1, len(line)))
        end = max(col, len(line.rstrip()))
        return f"SyntaxError: {exc.msg or 'invalid syntax'}", Span(ln, col, ln, end)
    except (ValueError, RecursionError, MemoryError) as exc:
        return f"cannot parse: {exc}", Span(1, 0, 1, 0)


def syntax_error_findings(mapping: NotebookMapping) -> list[Finding]:
    """One GP000 finding per cell that does not parse, in joined-text coordinates."""
    out = []
    for index, (message, span) in sorted(mapping.syntax_errors.items()):
        out.append(Finding("GP000", message, mapping.to_joined_span(index, span), "error"))
    return out


def analyze_cells(cells, path: str | None = None, options=None, resolver=None):
    """Analyse notebook cells: the joined text's AnalysisResult, with a GP000 finding for each
    cell that does not parse, and `result.notebook_mapping` set. Findings stay in joined-text
    coordinates; `map_finding(result.notebook_mapping, f)` moves one into its cell."""
    from gradpath.analysis.engine import analyze
    text, mapping = cells_to_source(cells)
    result = analyze(text, path, options, resolver)
    errors = syntax_error_findings(mapping)
    if errors:
        result.findings = sorted(result.findings + errors, key=Finding.sort_key)
    result.notebook_mapping = mapping
    return result


def map_span(mapping: NotebookMapping, span: Span) -> tuple[int, Span]:
    """A span of the joined text -> (cell index, span within that cell). A span that runs past
    its cell is cut at the cell's end; a span on a separator line goes to the cell before it."""
    loc = mapping.locate(span.line)
    if loc is None:
        prev = [c for c in mapping.cells if c.start_line <= span.line]
        c = prev[-1] if prev else mapping.cells[0]
        last = max(1, c.line_count)
        return c.index, Span(last, 0, last, 0)
    index, line = loc
    c = mapping.cell_range(index)
    end_loc = mapping.locate(span.end_line)
    if end_loc is not None and end_loc[0] == index:
        end_line, end_col = end_loc[1], span.end_col
    else:
        end_line, end_col = c.line_count, span.end_col if span.end_line == c.start_line + c.line_count - 1 else 10 ** 6
    return index, Span(line, span.col, end_line, end_col)


def map_finding(mapping: NotebookMapping, f: Finding) -> tuple[int, Finding]:
    """The finding with its span, related spans and fix edits moved into its cell's coordinates.
    Edits that fall in another cell are dropped together with their fix."""
    index, span = map_span(mapping, f.span)
    fixes = []
    for fx in f.fixes:
        edits = []
        for e in fx.edits:
            ei, es = map_span(mapping, e.span)
            if ei != index:
                edits = None
                break
            edits.append(Edit(es, e.new_text))
        if edits:
            fixes.append(Fix(fx.title, fx.safe, tuple(edits), fx.preferred))
    related = []
    for r in f.related:
        ri, rs = map_span(mapping, r.span)
        msg = r.message if ri == index else f"cell {ri + 1}: {r.message}"
        related.append(Related(rs, msg))
    return index, Finding(f.code, f.message, span, f.severity, fixes, related, dict(f.data))


# -- .ipynb files --------------------------------------------------------------------------------

class NotebookError(Exception):
    pass


@dataclass
class Notebook:
    path: Path
    data: dict
    newline_at_end: bool = True
    indent: int | None = 1

    @classmethod
    def read(cls, path) -> "Notebook":
        path = Path(path)
        raw = path.read_text(encoding="utf-8")
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise NotebookError(f"{path}: not a valid notebook (JSON error at line {exc.lineno}: {exc.msg})")
        if not isinstance(data, dict) or not isinstance(data.get("cells"), list):
            raise NotebookError(f"{path}: not a notebook (no \"cells\" list)")
        m = re.search(r"\n( +)\"", raw)
        indent = len(m.group(1)) if m else None
        return cls(path, data, raw.endswith("\n"), indent)

    @property
    def cells(self) -> list[dict]:
        return self.data["cells"]

    def is_python(self) -> bool:
        meta = self.data.get("metadata", {}) or {}
        lang = (meta.get("language_info") or {}).get("name") or (meta.get("kernelspec") or {}).get("language")
        return lang in (None, "python", "python3", "ipython")

    def source(self) -> tuple[str, NotebookMapping]:
        return cells_to_source(self.cells)

    def cell_text(self, index: int) -> str:
        return cell_source(self.cells[index])[0]

    def set_cell_text(self, index: int, text: str) -> None:
        cell = self.cells[index]
        if isinstance(cell.get("source"), list):
            cell["source"] = text.splitlines(keepends=True)
        else:
            cell["source"] = text

    def dumps(self) -> str:
        s = json.dumps(self.data, indent=self.indent, ensure_ascii=False)
        return s + ("\n" if self.newline_at_end else "")

    def write(self) -> None:
        self.path.write_text(self.dumps(), encoding="utf-8")
