"""Runs every rule over one source text and returns its findings.

Data flows one way: text -> source -> symbols -> facts -> rules -> Findings. Rules never raise out
of here: a rule that fails is logged and skipped, so one bug cannot blank a file's diagnostics.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from gradpath.analysis import catalog
from gradpath.analysis.findings import Finding, Span
from gradpath.analysis.source import SourceFile
from gradpath.analysis.symbols import Symbols

log = logging.getLogger("gradpath.analysis")

DEFAULT_TIME_BUDGET_S = 5.0


@dataclass
class Options:
    select: list[str] = field(default_factory=lambda: ["GP"])
    ignore: list[str] = field(default_factory=list)
    severity: dict[str, str] = field(default_factory=dict)  # code or prefix -> error|warning|info
    time_budget_s: float = DEFAULT_TIME_BUDGET_S
    honour_suppressions: bool = True


class Context:
    """Everything a rule may read. Facts are computed once, on first use, and shared."""

    def __init__(self, src: SourceFile, path: str | None, resolver: Any = None,
                 deadline: float | None = None):
        self.src = src
        self.path = path
        self.tree = src.tree
        self.symbols = Symbols.build(src.tree)
        self.resolver = resolver  # optional: fills symbols.resolved_bases etc. for imported names
        self.deadline = deadline
        self._memo: dict[str, Any] = {}
        if resolver is not None:
            try:
                resolver.enrich(self)
            except Exception:  # pragma: no cover - resolver failures must not stop analysis
                log.exception("resolver failed for %s", path)

    def memo(self, key: str, factory: Callable[[], Any]) -> Any:
        if key not in self._memo:
            self._memo[key] = factory()
        return self._memo[key]

    @property
    def facts(self):
        from gradpath.analysis.facts import Facts
        return self.memo("facts", lambda: Facts.build(self))

    def span(self, node) -> Span:
        return self.src.span_of(node)

    def finding(self, code: str, node_or_span, message: str, *, severity: str | None = None,
                fixes=(), related=(), data: dict | None = None) -> Finding:
        span = node_or_span if isinstance(node_or_span, Span) else self.src.span_of(node_or_span)
        return Finding(code=code, message=message, span=span,
                       severity=severity or catalog.get(code).severity,
                       fixes=list(fixes), related=list(related), data=dict(data or {}))

    def out_of_time(self) -> bool:
        return self.deadline is not None and time.monotonic() > self.deadline


@dataclass
class AnalysisResult:
    findings: list[Finding]
    source: SourceFile
    timed_out: bool = False
    failed_rules: list[str] = field(default_factory=list)
    suppressed: list[tuple[Finding, str]] = field(default_factory=list)  # (finding, directive)
    unused_suppressions: list[tuple[int, str]] = field(default_factory=list)  # (line, code)


def analyze(text: str, path: str | None = None, options: Options | None = None,
            resolver: Any = None) -> AnalysisResult:
    """Analyse one Python source text. Never raises for any input text."""
    from gradpath.analysis import rules as rules_pkg

    options = options or Options()
    start = time.monotonic()
    try:
        src = SourceFile.parse(text, path)
    except Exception:  # pragma: no cover - parse() is defensive, this is the last line
        log.exception("could not parse %s", path)
        src = SourceFile(text=text, path=path)
        src.lines = text.splitlines() or [""]
        import ast
        src.tree = ast.Module(body=[], type_ignores=[])
    findings: list[Finding] = []
    failed: list[str] = []
    timed_out = False
    if src.syntax_error is not None:
        findings.append(Finding(catalog.SYNTAX_ERROR, src.syntax_error.message,
                                src.syntax_error.span, "error"))
    try:
        ctx = Context(src, path, resolver, deadline=start + options.time_budget_s)
    except RecursionError:
        log.warning("%s: too deeply nested to analyse", path)
        ctx = None
    if ctx is not None:
        for name, checker in rules_pkg.checkers():
            if ctx.out_of_time():
                timed_out = True
                log.warning("%s: analysis stopped after %.1fs (time budget); partial result",
                            path, time.monotonic() - start)
                break
            try:
                findings.extend(checker(ctx) or ())
            except RecursionError:
                failed.append(name)
                log.warning("%s: rule %s gave up (nesting too deep)", path, name)
            except Exception:
                failed.append(name)
                log.exception("%s: rule %s failed", path, name)
    findings = [f for f in findings if _selected(f.code, options)]
    for f in findings:
        sev = _severity_override(f.code, options)
        if sev:
            f.severity = sev
    findings = _dedupe(findings)
    result = AnalysisResult(findings=findings, source=src, timed_out=timed_out, failed_rules=failed)
    if options.honour_suppressions:
        from gradpath.analysis import suppressions
        suppressions.apply(result)
    result.findings.sort(key=Finding.sort_key)
    return result


def _selected(code: str, options: Options) -> bool:
    if code == catalog.SYNTAX_ERROR:
        return True
    if not catalog.matches(code, options.select):
        return False
    return not catalog.matches(code, options.ignore)


def _severity_override(code: str, options: Options) -> str | None:
    best = None
    for key, sev in options.severity.items():
        if catalog.matches(code, [key]) and (best is None or len(key) > len(best[0])):
            best = (key, sev)
    return best[1] if best else None


def _dedupe(findings: Iterable[Finding]) -> list[Finding]:
    seen, out = set(), []
    for f in findings:
        key = (f.code, f.span)
        if key not in seen:
            seen.add(key)
            out.append(f)
    return out
