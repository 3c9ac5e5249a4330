"""What the analysis sees of an open document: a Snapshot.

A text document is analysed as it is. A notebook is analysed as the concatenation of its Python
code cells (in order, IPython magics and shell escapes blanked so they do not read as syntax
errors); every analysed line maps back to one cell and a line in it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from gradpath.analysis.findings import Span
from gradpath.analysis.source import split_lines

_MAGIC = re.compile(r"^\s*(%|!|\?)")


@dataclass
class Cell:
    uri: str
    start: int  # 1-based line of the cell's first line in the analysed text
    lines: list[str]  # the cell's real text lines
    version: int | None = None

    @property
    def end(self) -> int:  # last analysed line belonging to the cell
        return self.start + len(self.lines) - 1


@dataclass
class Snapshot:
    """One unit of analysis: a text document or a whole notebook, at one version."""
    key: str  # the document's uri, or the notebook's uri
    version: object  # compared for equality only
    text: str  # what the analysis reads
    path: str | None  # file system path (None for unsaved documents)
    cells: list[Cell] | None = None  # notebooks only
    doc_version: int | None = None  # text documents: the LSP version to publish with
    _lines: list[str] = field(default_factory=list, repr=False)

    def __post_init__(self):
        if not self._lines:
            self._lines = split_lines(self.text)

    @property
    def is_notebook(self) -> bool:
        return self.cells is not None

    # -- mapping analysed lines <-> documents ----------------------------------------------------
    def uris(self) -> list[str]:
        return [c.uri for c in self.cells] if self.cells is not None else [self.key]

    def locate(self, line: int) -> tuple[str, int, str] | None:
        """Analysed 1-based line -> (document uri, 0-based line in it, that line's real text)."""
        if self.cells is None:
            text = self._lines[line - 1] if 1 <= line <= len(self._lines) else ""
            return self.key, line - 1, text
        for c in self.cells:
            if c.start <= line <= c.end:
                return c.uri, line - c.start, c.lines[line - c.start]
        return None

    def map_span(self, span: Span) -> tuple[str, Span] | None:
        """An analysed span -> (uri, the span with 1-based lines local to that document).

        A span that crosses a cell boundary is cut at the end of its first cell."""
        if self.cells is None:
            return self.key, span
        for c in self.cells:
            if c.start <= span.line <= c.end:
                end_line, end_col = span.end_line, span.end_col
                if end_line > c.end:
                    end_line, end_col = c.end, len(c.lines[-1])
                return c.uri, Span(span.line - c.start + 1, span.col, end_line - c.start + 1, end_col)
        return None

    def to_analysed(self, uri: str, line0: int) -> int | None:
        """0-based line in a document -> 1-based analysed line."""
        if self.cells is None:
            return line0 + 1 if uri == self.key else None
        for c in self.cells:
            if c.uri == uri:
                return c.start + line0
        return None

    def doc_line_text(self, uri: str, line0: int) -> str:
        if self.cells is None:
            return self._lines[line0] if 0 <= line0 < len(self._lines) else ""
        for c in self.cells:
            if c.uri == uri:
                return c.lines[line0] if 0 <= line0 < len(c.lines) else ""
        return ""

    def cell_version(self, uri: str) -> int | None:
        if self.cells is None:
            return self.doc_version
        for c in self.cells:
            if c.uri == uri:
                return c.version
        return None


def _blank_magics(lines: list[str]) -> list[str]:
    out = []
    cont = False
    for ln in lines:
        if cont or _MAGIC.match(ln):
            cont = ln.rstrip().endswith("\\")
            out.append("")
        else:
            out.append(ln)
    return out


def is_python_cell(cell, text_doc) -> bool:
    from lsprotocol import types
    if cell.kind != types.NotebookCellKind.Code:
        return False
    lang = getattr(text_doc, "language_id", None)
    return lang in (None, "", "python", "python3", "ipython")


def notebook_snapshot(notebook, text_docs: dict, path: str | None) -> Snapshot:
    """Concatenate a pygls notebook document's Python code cells."""
    from urllib.parse import unquote

    cells: list[Cell] = []
    parts: list[str] = []
    line = 1
    for cell in notebook.cells:
        doc = text_docs.get(unquote(cell.document))
        if doc is None or not is_python_cell(cell, doc):
            continue
        lines = split_lines(doc.source)
        if lines and lines[-1] == "" and len(lines) > 1:
            lines = lines[:-1]  # a trailing newline does not make a new line to map
        cells.append(Cell(cell.document, line, lines, doc.version))
        parts.append("\n".join(_blank_magics(lines)))
        line += len(lines)
    text = "\n".join(parts) + ("\n" if parts else "")
    version = (notebook.version, tuple((c.uri, c.version) for c in cells))
    return Snapshot(notebook.uri, version, text, path, cells=cells)
