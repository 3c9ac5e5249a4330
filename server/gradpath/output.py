"""Output formats of `gradpath check`: text, json, sarif, github; statistics; a progress bar.

Every formatter takes a list of `Item`s: one finding with its display path and, for a notebook,
its cell (0-based index into the notebook's cells; the finding's span is then within the cell).
"""
from __future__ import annotations

import json
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterable

from gradpath import __version__
from gradpath.analysis import catalog
from gradpath.analysis.findings import Finding, Span

FORMATS = ("text", "json", "sarif", "github")
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
INFORMATION_URI = "https://github.com/gradpath/gradpath"


@dataclass
class Item:
    path: str
    finding: Finding
    cell: int | None = None  # notebook cell index (0-based), None for a .py file

    @property
    def location(self) -> str:
        """`path:line:col` or, in a notebook, `path:cell N:line:col` (N 1-based)."""
        s = self.finding.span
        if self.cell is not None:
            return f"{self.path}:cell {self.cell + 1}:{s.line}:{s.col + 1}"
        return f"{self.path}:{s.line}:{s.col + 1}"


def _edit_json(e) -> dict:
    return {"line": e.span.line, "column": e.span.col + 1, "end_line": e.span.end_line,
            "end_column": e.span.end_col + 1, "new_text": e.new_text}


def finding_json(path: str, f: Finding, cell: int | None = None) -> dict:
    """The stable JSON shape: 1-based lines and columns, columns in characters. For a notebook
    finding (cell given) one more key, `"cell"`: the cell's 1-based number; lines are in the cell."""
    s = f.span
    out = {
        "path": path,
        "code": f.code,
        "severity": f.severity,
        "message": f.message,
        "line": s.line,
        "column": s.col + 1,
        "end_line": s.end_line,
        "end_column": s.end_col + 1,
        "fixes": [{"title": fx.title, "safe": fx.safe, "edits": [_edit_json(e) for e in fx.edits]}
                  for fx in f.fixes],
    }
    if cell is not None:
        out["cell"] = cell + 1
    return out


def format_text(items: list[Item], show_fixable: bool = False) -> str:
    lines = []
    for it in items:
        f = it.finding
        mark = " [*]" if show_fixable and any(fx.safe for fx in f.fixes) else ""
        lines.append(f"{it.location}: {f.code}{mark} {f.message}")
    return "".join(line + "\n" for line in lines)


def format_json(items: list[Item]) -> str:
    return json.dumps([finding_json(it.path, it.finding, it.cell) for it in items], indent=2,
                      ensure_ascii=False) + "\n"


# -- GitHub Actions workflow commands -------------------------------------------------------------

def _gh_data(s: str) -> str:
    return s.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _gh_prop(s: str) -> str:
    return _gh_data(s).replace(":", "%3A").replace(",", "%2C")


_GH_LEVEL = {"error": "error", "warning": "warning", "info": "notice"}


def format_github(items: list[Item]) -> str:
    out = []
    for it in items:
        f, s = it.finding, it.finding.span
        level = _GH_LEVEL.get(f.severity, "warning")
        title = f.code if it.cell is None else f"{f.code} (cell {it.cell + 1})"
        msg = f.message if it.cell is None else f"cell {it.cell + 1}, line {s.line}: {f.message}"
        out.append(f"::{level} file={_gh_prop(it.path)},line={s.line},col={s.col + 1},"
                   f"endLine={s.end_line},endColumn={s.end_col + 1},title={_gh_prop(title)}::{_gh_data(msg)}")
    return "".join(line + "\n" for line in out)


# -- SARIF 2.1.0 -----------------------------------------------------------------------------------

_SARIF_LEVEL = {"error": "error", "warning": "warning", "info": "note"}


def _region(span: Span) -> dict:
    # SARIF lines and columns are 1-based; the end column is exclusive, like ours (+1).
    r = {"startLine": span.line, "startColumn": span.col + 1}
    if (span.end_line, span.end_col) >= (span.line, span.col):
        r["endLine"] = span.end_line
        r["endColumn"] = span.end_col + 1
    return r


def _artifact(path: str, base: Path) -> dict:
    p = Path(os.path.abspath(path))
    try:
        rel = p.relative_to(base)
        return {"uri": rel.as_posix(), "uriBaseId": "%SRCROOT%"}
    except ValueError:
        return {"uri": p.as_uri()}


def _rule_descriptor(rule: catalog.Rule) -> dict:
    help_md = (f"**{rule.code} {rule.slug}** ({rule.severity})\n\n"
               f"What it catches: {rule.catches}\n\nWhat PyTorch does: {rule.behaviour}\n\n"
               f"Fix: {rule.fix}\n\n[Documentation]({rule.docs_url})")
    help_text = (f"{rule.code} {rule.slug}: {_plain(rule.catches)}. What PyTorch does: {_plain(rule.behaviour)}. "
                 f"Fix: {_plain(rule.fix)}. {rule.docs_url}")
    return {
        "id": rule.code,
        "name": "".join(w.capitalize() for w in rule.slug.split("-")),
        "shortDescription": {"text": rule.title},
        "fullDescription": {"text": _plain(rule.catches)},
        "helpUri": rule.docs_url,
        "help": {"text": help_text, "markdown": help_md},
        "defaultConfiguration": {"level": _SARIF_LEVEL.get(rule.severity, "warning")},
        "properties": {"tags": ["pytorch", rule.group] if rule.group else ["pytorch"],
                       "precision": "high" if rule.severity == "error" else "medium"},
    }


def _plain(s: str) -> str:
    return s.replace("`", "")


def sarif_log(items: list[Item], base: str | Path | None = None, invocation_ok: bool = True,
              notifications: Iterable[str] = ()) -> dict:
    """A SARIF 2.1.0 log with one run. Paths are relative to `base` (default: the working folder)
    under the `%SRCROOT%` base id."""
    base = Path(os.path.abspath(base or os.getcwd()))
    rule_codes = [c for c in catalog.RULES]
    index = {c: i for i, c in enumerate(rule_codes)}
    results = []
    for it in items:
        f = it.finding
        loc = {"physicalLocation": {"artifactLocation": _artifact(it.path, base), "region": _region(f.span)}}
        if it.cell is not None:
            loc["properties"] = {"cell": it.cell + 1}
        res = {
            "ruleId": f.code,
            "level": _SARIF_LEVEL.get(f.severity, "warning"),
            "message": {"text": f.message if it.cell is None else f"cell {it.cell + 1}: {f.message}"},
            "locations": [loc],
            "partialFingerprints": {"gradpath/v1": _fingerprint(it)},
        }
        if f.code in index:
            res["ruleIndex"] = index[f.code]
        if f.related:
            res["relatedLocations"] = [
                {"id": i + 1, "message": {"text": r.message},
                 "physicalLocation": {"artifactLocation": _artifact(it.path, base), "region": _region(r.span)}}
                for i, r in enumerate(f.related)]
        if f.fixes and it.cell is None:
            res["fixes"] = [{
                "description": {"text": fx.title + ("" if fx.safe else " (unsafe: review the change)")},
                "artifactChanges": [{
                    "artifactLocation": _artifact(it.path, base),
                    "replacements": [{"deletedRegion": _region(e.span), "insertedContent": {"text": e.new_text}}
                                     for e in fx.edits]}],
            } for fx in f.fixes if fx.edits]
            if not res["fixes"]:
                del res["fixes"]
        if f.code not in index:
            res.pop("ruleIndex", None)
        results.append(res)
    run = {
        "tool": {"driver": {
            "name": "gradpath",
            "version": __version__,
            "semanticVersion": __version__,
            "informationUri": INFORMATION_URI,
            "rules": [_rule_descriptor(catalog.RULES[c]) for c in rule_codes],
        }},
        "originalUriBaseIds": {"%SRCROOT%": {"uri": base.as_uri() + "/"}},
        "columnKind": "unicodeCodePoints",
        "results": results,
        "invocations": [{
            "executionSuccessful": bool(invocation_ok),
            "toolExecutionNotifications": [{"level": "error", "message": {"text": n}} for n in notifications],
        }],
    }
    return {"$schema": SARIF_SCHEMA, "version": "2.1.0", "runs": [run]}


def _fingerprint(it: Item) -> str:
    import hashlib
    f = it.finding
    key = f"{it.path}|{it.cell}|{f.code}|{f.message}"
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]


def format_sarif(items: list[Item], base=None, invocation_ok: bool = True, notifications=()) -> str:
    return json.dumps(sarif_log(items, base, invocation_ok, notifications), indent=2, ensure_ascii=False) + "\n"


# -- statistics ---------------------------------------------------------------------------------------

def statistics(items: list[Item]) -> list[dict]:
    counts: Counter = Counter(it.finding.code for it in items)
    fixable = {it.finding.code for it in items if any(fx.safe for fx in it.finding.fixes)}
    out = []
    for code, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        rule = catalog.RULES.get(code)
        out.append({"code": code, "name": rule.slug if rule else code, "count": n, "fixable": code in fixable})
    return out


def format_statistics(items: list[Item], fmt: str = "text") -> str:
    stats = statistics(items)
    if fmt == "json":
        return json.dumps(stats, indent=2) + "\n"
    if not stats:
        return ""
    width = max(len(str(s["count"])) for s in stats)
    return "".join(f"{s['count']:>{width}}\t{s['code']}\t{'[*] ' if s['fixable'] else '    '}{s['name']}\n"
                   for s in stats)


# -- progress -------------------------------------------------------------------------------------------

class Progress:
    """A one-line progress bar on stderr, shown only when stderr is a terminal and there are at
    least `threshold` files; silent otherwise (CI logs, pipes, editors)."""

    def __init__(self, total: int, stream: IO | None = None, threshold: int = 20, enabled: bool | None = None):
        self.total = total
        self.stream = stream if stream is not None else sys.stderr
        if enabled is None:
            try:
                tty = self.stream.isatty()
            except (AttributeError, ValueError):
                tty = False
            enabled = tty and total >= threshold and os.environ.get("TERM") != "dumb"
        self.enabled = enabled
        self.done = 0
        self._last = 0.0
        self._width = 0

    def step(self, label: str = "") -> None:
        self.done += 1
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last < 0.05 and self.done < self.total:
            return
        self._last = now
        frac = self.done / self.total if self.total else 1.0
        bar = "#" * int(frac * 30)
        line = f"\rgradpath [{bar:<30}] {self.done}/{self.total} files"
        self._width = max(self._width, len(line))
        self.stream.write(line)
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
