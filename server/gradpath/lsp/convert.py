"""Findings -> LSP diagnostics, and positions between character columns and the client's units.

The analysis counts columns in characters (code points). LSP counts them in UTF-16 code units
unless the client and server agreed on another `positionEncoding` (pygls picks the client's first
preference: Neovim offers utf-8 first), so every conversion here takes the negotiated encoding.
"""
from __future__ import annotations

from typing import Any

from lsprotocol import types

from gradpath.analysis import catalog
from gradpath.analysis.findings import Finding, Span
from gradpath.analysis.source import char_to_utf16, utf16_to_char

SOURCE = "gradpath"

SEVERITY = {
    "error": types.DiagnosticSeverity.Error,
    "warning": types.DiagnosticSeverity.Warning,
    "info": types.DiagnosticSeverity.Information,
    "hint": types.DiagnosticSeverity.Hint,
}


# -- columns ----------------------------------------------------------------------------------------
def to_units(line_text: str, col: int, encoding: str = "utf-16") -> int:
    """Character column -> client column units."""
    col = max(0, min(col, len(line_text)))
    if line_text.isascii() or encoding == "utf-32":
        return col
    if encoding == "utf-8":
        return len(line_text[:col].encode("utf-8"))
    return char_to_utf16(line_text, col)


def from_units(line_text: str, units: int, encoding: str = "utf-16") -> int:
    """Client column units -> character column."""
    if line_text.isascii() or encoding == "utf-32":
        return max(0, min(units, len(line_text)))
    if encoding == "utf-8":
        return len(line_text.encode("utf-8")[:max(0, units)].decode("utf-8", errors="ignore"))
    return utf16_to_char(line_text, max(0, units))


def lsp_range(span: Span, line_text, encoding: str = "utf-16") -> types.Range:
    """A span with 1-based lines in one document -> an LSP range; `line_text(line0)` gives the
    document's text of a 0-based line."""
    sl, el = span.line - 1, span.end_line - 1
    return types.Range(
        start=types.Position(line=max(0, sl), character=to_units(line_text(sl), span.col, encoding)),
        end=types.Position(line=max(0, el), character=to_units(line_text(el), span.end_col, encoding)),
    )


def _file_uri(path: str) -> str:
    from pygls.uris import from_fs_path
    return from_fs_path(path) or path


def _disk_line(path: str):
    """line0 -> that line's text in a file on disk (for UTF-16 columns of related information)."""
    def get(l0: int) -> str:
        try:
            from gradpath.files import read_source
            from pathlib import Path
            lines = read_source(Path(path)).splitlines()
            return lines[l0] if 0 <= l0 < len(lines) else ""
        except (OSError, UnicodeDecodeError):
            return ""
    return get


def range_dict(r: types.Range) -> dict:
    return {"start": {"line": r.start.line, "character": r.start.character},
            "end": {"line": r.end.line, "character": r.end.character}}


def range_from_dict(d: dict) -> types.Range:
    return types.Range(start=types.Position(line=int(d["start"]["line"]), character=int(d["start"]["character"])),
                       end=types.Position(line=int(d["end"]["line"]), character=int(d["end"]["character"])))


# -- verdicts -------------------------------------------------------------------------------------
def verdict_dict(v: Any) -> dict | None:
    """A live-step Verdict (object or dict) -> {verdict, mode, evidence, data}."""
    if v is None:
        return None
    if isinstance(v, dict):
        d = dict(v)
    else:
        d = {k: getattr(v, k, None) for k in ("verdict", "mode", "evidence", "data")}
    d.setdefault("verdict", "not-run")
    return d


def evidence_text(v: dict, limit: int = 600) -> str:
    ev = v.get("evidence")
    if ev is None:
        return ""
    if isinstance(ev, (list, tuple)):
        ev = "; ".join(str(e) for e in ev)
    ev = str(ev).strip()
    return ev if len(ev) <= limit else ev[: limit - 1] + "…"


def verdict_suffix(v: dict) -> str:
    from gradpath.live.verdict_words import headline  # "confirmed by forcing `p` to 0" for a forced edge
    mode = f", {v['mode']}" if v.get("mode") else ""
    ev = evidence_text(v, 160)
    first = ev.splitlines()[0] if ev else ""
    return f" [live step: {headline(v)}{mode}{': ' + first if first else ''}]"


# -- diagnostics ----------------------------------------------------------------------------------
def to_diagnostic(finding: Finding, snap, encoding: str = "utf-16",
                  verdict: Any = None) -> tuple[str, types.Diagnostic] | None:
    """One finding of `snap` (a Snapshot) -> (document uri, Diagnostic); None if unmappable."""
    mapped = snap.map_span(finding.span)
    if mapped is None:
        return None
    uri, span = mapped

    def text_of(uri_):
        return lambda l0: snap.doc_line_text(uri_, l0)

    rng = lsp_range(span, text_of(uri), encoding)
    rule = catalog.RULES.get(finding.code)
    related = []
    for r in finding.related:
        if getattr(r, "path", None):
            # the other end lies in another file of the project
            related.append(types.DiagnosticRelatedInformation(
                location=types.Location(uri=_file_uri(r.path), range=lsp_range(r.span, _disk_line(r.path), encoding)),
                message=r.message))
            continue
        m = snap.map_span(r.span)
        if m is None:
            continue
        ruri, rspan = m
        related.append(types.DiagnosticRelatedInformation(
            location=types.Location(uri=ruri, range=lsp_range(rspan, text_of(ruri), encoding)),
            message=r.message))
    fixes = []
    for fx in finding.fixes:
        edits = []
        for e in fx.edits:
            m = snap.map_span(e.span)
            if m is None or (snap.is_notebook and m[1].end_line - m[1].line != e.span.end_line - e.span.line):
                edits = None  # an edit outside the analysed documents, or across notebook cells
                break
            euri, espan = m
            edits.append({"uri": euri, "range": range_dict(lsp_range(espan, text_of(euri), encoding)),
                          "newText": e.new_text})
        if edits:
            fixes.append({"title": fx.title, "safe": fx.safe, "preferred": fx.preferred, "edits": edits})
    v = verdict_dict(verdict)
    message = finding.message
    if v is not None:
        message += verdict_suffix(v)
        ev = evidence_text(v)
        if ev:
            related.insert(0, types.DiagnosticRelatedInformation(
                location=types.Location(uri=uri, range=rng),
                message=f"live step ({v.get('mode') or 'run'}): {v.get('verdict')}: {ev}"))
    data = {"id": finding.id, "code": finding.code, "key": snap.key, "fixes": fixes,
            "data": finding.data}
    if v is not None:
        data["verdict"] = {"verdict": v.get("verdict"), "mode": v.get("mode"),
                           "evidence": evidence_text(v, 2000)}
    diag = types.Diagnostic(
        range=rng,
        message=message,
        severity=SEVERITY.get(finding.severity, types.DiagnosticSeverity.Warning),
        code=finding.code,
        source=SOURCE,
        code_description=types.CodeDescription(href=rule.docs_url) if rule else None,
        related_information=related or None,
        data=data,
    )
    return uri, diag


def diagnostics_by_uri(findings, snap, encoding: str = "utf-16",
                       verdicts: dict | None = None) -> dict[str, list[types.Diagnostic]]:
    """Every document of the snapshot -> its diagnostics (empty lists included, to clear)."""
    out: dict[str, list[types.Diagnostic]] = {u: [] for u in snap.uris()}
    for f in findings:
        r = to_diagnostic(f, snap, encoding, (verdicts or {}).get(f.id))
        if r is not None:
            out.setdefault(r[0], []).append(r[1])
    return out
