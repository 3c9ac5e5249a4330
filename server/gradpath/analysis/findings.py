"""Plain dataclasses for what the analysis reports.

Positions: lines are 1-based, columns are 0-based offsets in *characters* (Python str indices,
i.e. code points) into the line. The CLI prints columns 1-based; the LSP layer converts to UTF-16.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass, field, asdict
from typing import Any


@dataclass(frozen=True, order=True)
class Span:
    line: int
    col: int
    end_line: int
    end_col: int

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Span":
        return cls(d["line"], d["col"], d["end_line"], d["end_col"])

    def contains(self, line: int, col: int) -> bool:
        if (line, col) < (self.line, self.col):
            return False
        return (line, col) <= (self.end_line, self.end_col)


@dataclass(frozen=True)
class Edit:
    span: Span
    new_text: str

    def to_dict(self) -> dict:
        return {"span": self.span.to_dict(), "new_text": self.new_text}

    @classmethod
    def from_dict(cls, d: dict) -> "Edit":
        return cls(Span.from_dict(d["span"]), d["new_text"])


@dataclass(frozen=True)
class Fix:
    title: str
    safe: bool
    edits: tuple[Edit, ...]
    preferred: bool = False

    def to_dict(self) -> dict:
        return {"title": self.title, "safe": self.safe, "preferred": self.preferred,
                "edits": [e.to_dict() for e in self.edits]}

    @classmethod
    def from_dict(cls, d: dict) -> "Fix":
        return cls(d["title"], bool(d["safe"]), tuple(Edit.from_dict(e) for e in d["edits"]),
                   bool(d.get("preferred", False)))


@dataclass(frozen=True)
class Related:
    span: Span
    message: str
    path: str | None = None  # another file of the project (the other end of a cross-module finding)

    def to_dict(self) -> dict:
        d = {"span": self.span.to_dict(), "message": self.message}
        if self.path:
            d["path"] = self.path
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Related":
        return cls(Span.from_dict(d["span"]), d["message"], d.get("path"))


@dataclass
class Finding:
    code: str
    message: str
    span: Span
    severity: str  # "error" | "warning" | "info"
    fixes: list[Fix] = field(default_factory=list)
    related: list[Related] = field(default_factory=list)
    # Extra facts for the live step and the hover (names of the model, optimizer, probe targets...).
    # Must stay JSON-serialisable.
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        """Stable within one text: code and start position."""
        return f"{self.code}:{self.span.line}:{self.span.col}"

    def sort_key(self):
        return (self.span.line, self.span.col, self.code)

    def to_dict(self) -> dict:
        return {
            "id": self.id, "code": self.code, "message": self.message, "severity": self.severity,
            "span": self.span.to_dict(), "fixes": [f.to_dict() for f in self.fixes],
            "related": [r.to_dict() for r in self.related], "data": self.data,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Finding":
        return cls(d["code"], d["message"], Span.from_dict(d["span"]), d["severity"],
                   [Fix.from_dict(f) for f in d.get("fixes", [])],
                   [Related.from_dict(r) for r in d.get("related", [])], dict(d.get("data", {})))


def node_span(src, node: ast.AST) -> Span:
    """Character-based span of an ast node (ast columns are UTF-8 byte offsets)."""
    return src.span_of(node)
