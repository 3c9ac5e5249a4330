"""Runs every rule over one source text and returns its findings.

Data flows one way: text -> source -> symbols -> facts -> rules -> Findings. Rules never raise out
of here: a rule that fails is logged and skipped, so one bug cannot blank a file's diagnostics.
"""
from __future__ import annotations

import ctypes
import gc
import logging
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from gradpath.analysis import catalog
from gradpath.analysis.findings import Finding, Span
from gradpath.analysis.source import SourceFile
from gradpath.analysis.symbols import Symbols

log = logging.getLogger("gradpath.analysis")

# The time limit counts the CPU time of the thread that analyses (time.thread_time()), never the
# wall clock: on a busy machine a file gets the same findings as on a quiet one. It is there for
# pathological inputs only, so it is generous; a result cut by it carries a GP000 finding ("analysis
# stopped after N s: results for this file are incomplete") and the CLI exits with status 2.
DEFAULT_TIME_BUDGET_S = 30.0
# GRADPATH_TIME_LIMIT_S (CPU seconds per file) replaces the default, for every Options made after.
TIME_LIMIT_ENV = "GRADPATH_TIME_LIMIT_S"
# Past the budget the rules are asked to stop (ctx.out_of_time(), checked between rules and between
# functions: the cooperative stop). Only an analysis that does not return by budget *
# HARD_STOP_FACTOR + HARD_STOP_SLACK_S CPU seconds is interrupted by the watchdog (see _Watchdog).
HARD_STOP_FACTOR = 1.0
HARD_STOP_SLACK_S = 0.5
# An interruption that was swallowed (it landed in a garbage-collection callback or a __del__, where
# Python can only report it as "unraisable", or in a bare `except BaseException`) is raised again
# after this many more CPU seconds: a deadline is never lost.
RETRY_S = 0.25
# Without per-thread CPU clocks (pthread_getcpuclockid: not on macOS or Windows) the watchdog falls
# back to the wall clock, with this much more room (a loaded machine stretches wall time).
WALL_FALLBACK_FACTOR = 4.0
# An analysis given a `cancel` event is interrupted within about this many seconds of the event being
# set (a keystroke makes a background analysis give way), not only at its cooperative checks.
CANCEL_POLL_S = 0.005


class AnalysisTimeout(BaseException):
    """Raised asynchronously in a thread whose analysis ran past its hard deadline. A BaseException
    so that a rule's `except Exception:` cannot swallow it; never escapes `analyze()`."""


def _thread_clock(ident: int):
    """A function returning the CPU seconds used so far by thread `ident` (readable from any
    thread), or None where the platform has no per-thread CPU clock."""
    try:
        clk = time.pthread_getcpuclockid(ident)
        time.clock_gettime(clk)
    except (AttributeError, OSError, OverflowError, ValueError):
        return None
    return lambda: time.clock_gettime(clk)


class _Watch:
    __slots__ = ("ident", "clock", "deadline", "fired", "cancel")

    def __init__(self, ident: int, clock, deadline: float, cancel: threading.Event | None = None):
        self.ident, self.clock, self.deadline, self.fired = ident, clock, deadline, 0
        self.cancel = cancel

    def now(self) -> float:
        return self.clock() if self.clock is not None else time.monotonic()


class _Watchdog:
    """One daemon thread that interrupts analyses running past their hard deadline: the last resort
    behind the cooperative checks (Context.out_of_time()).

    `arm(cpu_s)` registers the calling thread; once that thread has used `cpu_s` more seconds of
    CPU (its own clock, read from the watchdog's thread) and has not called `disarm()`, the watchdog
    raises AnalysisTimeout in it (CPython's PyThreadState_SetAsyncExc: delivered at the next bytecode
    boundary, so a long C call such as ast.parse finishes first). An asynchronous exception can land
    anywhere, also where Python cannot raise it (a garbage-collection callback, a finalizer): it is
    then reported to sys.unraisablehook, which `_unraisable` intercepts, and the watchdog raises it
    again; and as long as the thread stays armed it is raised again every RETRY_S CPU seconds.
    `disarm()` absorbs a pending, undelivered exception, so none can leak out of `analyze()`.
    """

    def __init__(self):
        # (reentrant: `_locked` asks whether this thread holds it)
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._armed: dict[int, _Watch] = {}  # token -> watch
        self._next = 0
        self._thread: threading.Thread | None = None
        self.swallowed = 0  # interruptions that landed where they could not be raised (then raised again)

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="gradpath-analysis-watchdog",
                                            daemon=True)
            self._thread.start()

    def _locked(self, fn):
        """fn() with the lock held, in an analysis thread. Not `with self._cond:`: an interruption
        delivered in Condition.__enter__ once the lock is taken (a Python frame: it checks for
        pending exceptions on its way out) leaves the lock taken for good, and every analysis and
        the watchdog then wait for it (seen: a server that never published again). Here the lock is
        taken inside the `try`, and released whenever this thread holds it; while it does, the
        watchdog (which fires with the lock held) cannot set another interruption."""
        lock = self._lock
        try:
            lock.acquire()
            return fn()
        finally:
            if lock._is_owned():
                lock.release()

    def arm(self, cpu_s: float, cancel: threading.Event | None = None) -> int:
        _install_unraisable_hook()
        ident = threading.get_ident()
        clock = _thread_clock(ident)
        if clock is None:
            cpu_s = cpu_s * WALL_FALLBACK_FACTOR + 1.0

        def register() -> int:
            self._next += 1
            token = self._next
            w = _Watch(ident, clock, 0.0, cancel)
            w.deadline = w.now() + cpu_s
            self._armed[token] = w
            self._ensure_thread()
            self._cond.notify()
            return token
        return self._locked(register)

    def disarm(self, token: int) -> bool:
        """Stop watching this analysis; True when the watchdog fired for it. An interruption that
        was set but not delivered yet is delivered and absorbed here, never later. (It is not
        cleared with PyThreadState_SetAsyncExc(tid, NULL): in CPython that leaves the eval
        breaker signalled for good, which slows the whole process down and can hang a profiler.)"""
        fired = False
        for _ in range(3):
            try:
                w = self._locked(lambda: self._armed.pop(token, None))
                fired = bool(w is not None and w.fired) or fired
                if fired:
                    for _ in range(1000):  # backward jumps: the pending exception lands here
                        pass
                return fired
            except AnalysisTimeout:
                fired = True
        return fired

    def lost(self, ident: int) -> None:
        """An AnalysisTimeout raised in thread `ident` was swallowed: raise it again at once."""
        def again() -> None:
            for w in self._armed.values():
                if w.ident == ident and w.fired:
                    self.swallowed += 1
                    w.deadline = w.now()
                    self._cond.notify()
        self._locked(again)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._armed:
                    self._cond.wait()
                wait = 1.0
                for token, w in list(self._armed.items()):
                    if w.cancel is not None:
                        if w.cancel.is_set() and not w.fired:
                            w.deadline = 0.0  # cancelled by another thread: interrupt it now
                        wait = min(wait, CANCEL_POLL_S)
                    try:
                        left = w.deadline - w.now()
                    except OSError:  # the thread is gone (it cannot be: disarm() runs first)
                        self._armed.pop(token, None)
                        continue
                    if left <= 0:
                        n = ctypes.pythonapi.PyThreadState_SetAsyncExc(
                            ctypes.c_ulong(w.ident), ctypes.py_object(AnalysisTimeout))
                        if n == 1:
                            if w.fired:
                                log.info("analysis thread %d: the interruption did not stop it; raised again",
                                         w.ident)
                            w.fired += 1
                        w.deadline = w.now() + RETRY_S
                        left = RETRY_S
                    # a thread uses at most one CPU second per wall second: sleeping `left` never
                    # oversleeps its deadline
                    wait = min(wait, left)
                self._cond.wait(max(0.002, wait))


_HOOK_LOCK = threading.Lock()


def _unraisable(unraisable) -> None:
    """sys.unraisablehook: an AnalysisTimeout that landed where it could not be raised is not an
    error to report: the watchdog raises it again. Everything else goes to the previous hook."""
    if isinstance(getattr(unraisable, "exc_value", None), AnalysisTimeout) \
            or getattr(unraisable, "exc_type", None) is AnalysisTimeout:
        _WATCHDOG.lost(threading.get_ident())
        return
    prev = _unraisable.prev or sys.__unraisablehook__
    prev(unraisable)


_unraisable.prev = None


def _install_unraisable_hook() -> None:
    if sys.unraisablehook is _unraisable:
        return
    with _HOOK_LOCK:
        if sys.unraisablehook is not _unraisable:
            _unraisable.prev = sys.unraisablehook
            sys.unraisablehook = _unraisable


_WATCHDOG = _Watchdog()


def default_time_budget() -> float:
    """CPU seconds one file's analysis may use: GRADPATH_TIME_LIMIT_S, else DEFAULT_TIME_BUDGET_S."""
    raw = os.environ.get(TIME_LIMIT_ENV, "").strip()
    if raw:
        try:
            value = float(raw)
            if value >= 0 and value == value:
                return value
        except ValueError:
            pass
        log.warning("%s=%r is not a number of seconds; using %gs", TIME_LIMIT_ENV, raw, DEFAULT_TIME_BUDGET_S)
    return DEFAULT_TIME_BUDGET_S


@dataclass
class Options:
    select: list[str] = field(default_factory=lambda: ["GP"])
    ignore: list[str] = field(default_factory=list)
    severity: dict[str, str] = field(default_factory=dict)  # code or prefix -> error|warning|info
    time_budget_s: float = field(default_factory=lambda: default_time_budget())
    honour_suppressions: bool = True


class Context:
    """Everything a rule may read. Facts are computed once, on first use, and shared."""

    def __init__(self, src: SourceFile, path: str | None, resolver: Any = None,
                 deadline: float | None = None, cancel: threading.Event | None = None,
                 flow_edit: Any = None):
        self.src = src
        # an edit inside one function of the version a kept dataflow was made for (flow_patch.py):
        # facts take over that version's scopes, the dataflow re-runs only the edited function
        self.flow_edit = flow_edit
        self.scope_reuse = flow_edit.scope_reuse() if flow_edit is not None else None
        self.cancel = cancel  # set by another thread: stop as if out of time (see analyze_raw)
        self.path = path
        self.tree = src.tree
        t0 = time.thread_time()
        self.symbols = Symbols.build(src.tree)
        t_sym = time.thread_time() - t0
        self.resolver = resolver  # optional: fills symbols.resolved_bases etc. for imported names
        self.deadline = deadline  # time.thread_time() of the analysing thread (CPU seconds), or None
        self._memo: dict[str, Any] = {}
        # CPU seconds (this thread) per phase ("symbols", "resolver", "memo:<key>" exclusive of nested memos,
        # "rule:<name>" exclusive of the memos it triggered): for benchmarks/profile_engine.py
        self.timings: dict[str, float] = {}
        self._nested: list[float] = []
        self.timings["symbols"] = t_sym
        if resolver is not None:
            t0 = time.thread_time()
            try:
                resolver.enrich(self)
            except Exception:  # pragma: no cover - resolver failures must not stop analysis
                log.exception("resolver failed for %s", path)
            self.timings["resolver"] = time.thread_time() - t0

    def memo(self, key: str, factory: Callable[[], Any]) -> Any:
        if key not in self._memo:
            t0 = time.thread_time()
            self._nested.append(0.0)
            try:
                self._memo[key] = factory()
            finally:
                inner = self._nested.pop()
                total = time.thread_time() - t0
                name = "memo:" + str(key)
                self.timings[name] = self.timings.get(name, 0.0) + total - inner
                if self._nested:
                    self._nested[-1] += total
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
        """The cooperative stop: True once the analysing thread has used its CPU budget, or when
        another thread cancelled the analysis. Checked between rules and between functions."""
        if self.cancel is not None and self.cancel.is_set():
            return True
        return self.deadline is not None and time.thread_time() > self.deadline


@dataclass
class AnalysisResult:
    findings: list[Finding]
    source: SourceFile
    timed_out: bool = False
    failed_rules: list[str] = field(default_factory=list)
    suppressed: list[tuple[Finding, str]] = field(default_factory=list)  # (finding, directive)
    unused_suppressions: list[tuple[int, str]] = field(default_factory=list)  # (line, code)
    # seconds per phase: "parse", "symbols", "memo:<key>", "rule:<name>", "post" (see Context)
    timings: dict[str, float] = field(default_factory=dict)
    # "full", or "incremental" / "same" when IncrementalAnalyzer re-used earlier findings
    mode: str = "full"


def analyze(text: str, path: str | None = None, options: Options | None = None,
            resolver: Any = None) -> AnalysisResult:
    """Analyse one Python source text. Never raises for any input text, and uses about
    `options.time_budget_s` seconds of this thread's CPU time at most (plus the time of one
    `ast.parse`): past the budget the rules still to run are skipped, and a rule that does not
    return is interrupted; the result then has `timed_out=True`, holds what was found until then
    and a GP000 finding saying that the results for this file are incomplete. How busy the machine
    is changes nothing: the budget counts CPU time, not the wall clock."""
    options = options or Options()
    return finish(analyze_raw(text, path, options, resolver), options)


@dataclass
class RawAnalysis:
    """What the rules found, before selection, severity overrides, dedupe and suppressions."""
    src: SourceFile
    findings: list[Finding]
    timed_out: bool = False
    failed: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    cancelled: bool = False  # stopped early by `cancel`: partial, to be thrown away
    cpu_s: float = 0.0  # CPU seconds this analysis used (parse included)
    flow_base: Any = None  # with keep_flow: the dataflow, for the next edit to patch (flow_patch.FlowBase)
    flow_patched: str = ""  # with flow_edit: "" when the dataflow was patched, else why it ran whole


def analyze_raw(text: str, path: str | None, options: Options, resolver: Any = None,
                src: SourceFile | None = None, memo: dict | None = None,
                cancel: threading.Event | None = None, flow_edit: Any = None,
                keep_flow: bool = False) -> RawAnalysis:
    """Parse (unless `src` is given: a tree built elsewhere, e.g. by incremental re-analysis) and
    run every rule under the time budget and the watchdog. `memo` pre-seeds Context.memo.

    `cancel`, when another thread sets it, makes the analysis stop at the next point where it
    checks its time (between rules, between functions in the dataflow and loop facts): the
    server's whole-file check after a pause gives way to the next keystroke this way instead of
    holding the GIL for a whole analysis. The result then has `cancelled=True`.

    `keep_flow` keeps the dataflow in the result (`flow_base`) for the next version's analysis;
    `flow_edit` (flow_patch.FlowEdit: `src`'s tree is that base's tree with one function's body
    edited) lets this analysis re-run only that function in the dataflow."""
    from gradpath.analysis import rules as rules_pkg

    if not isinstance(text, str):
        text = str(text or "")
    checkers = list(rules_pkg.checkers())  # imports the rule modules outside the guarded region
    _gc_hold()
    try:
        return _analyze_raw(text, path, options, resolver, src, memo, cancel, checkers, flow_edit, keep_flow)
    finally:
        _gc_release()


# The cyclic garbage collector is off while analyses run: an analysis builds tens of thousands of
# objects that live until it ends (trees, facts, values), and the collector, left on, runs over
# them again and again (about a quarter of an analysis's CPU time on real files). When the last
# running analysis ends, one collection of the youngest generation frees what they left in cycles
# (only if the collector was on: `gradpath serve` turns it off and collects in the pauses between
# keystrokes instead, lsp/collector.py).
_GC_LOCK = threading.Lock()
_GC_HOLDS = 0
_GC_WAS_ON = False


def _gc_hold() -> None:
    global _GC_HOLDS, _GC_WAS_ON
    with _GC_LOCK:
        if _GC_HOLDS == 0:
            _GC_WAS_ON = gc.isenabled()
            gc.disable()
        _GC_HOLDS += 1


def _gc_release() -> None:
    global _GC_HOLDS
    with _GC_LOCK:
        _GC_HOLDS -= 1
        if _GC_HOLDS or not _GC_WAS_ON:
            return
        gc.enable()
    gc.collect(0)


def _analyze_raw(text, path, options, resolver, src, memo, cancel, checkers, flow_edit=None,
                 keep_flow=False) -> RawAnalysis:
    start = time.thread_time()
    state = _State()
    state.src = src
    budget = max(0.0, options.time_budget_s)
    token = _WATCHDOG.arm(budget * HARD_STOP_FACTOR + HARD_STOP_SLACK_S, cancel)
    interrupted = False
    try:
        try:
            _run(text, path, options, resolver, start, budget, checkers, state, memo, cancel, flow_edit)
        finally:
            interrupted = _WATCHDOG.disarm(token)
    except AnalysisTimeout:
        interrupted = _WATCHDOG.disarm(token) or True
    if interrupted and cancel is not None and cancel.is_set():
        state.timed_out = True  # cancelled: thrown away by the caller, nothing to report
        log.debug("%s: analysis cancelled after %.1fs of CPU time (in %s)", path or "<text>",
                  time.thread_time() - start, state.current_rule or state.phase)
    elif interrupted:
        state.timed_out = True
        if state.current_rule:
            state.failed.append(state.current_rule)
        log.warning("%s: analysis interrupted after %.1fs of CPU time (limit %gs, in %s); partial result",
                    path or "<text>", time.thread_time() - start, budget, state.current_rule or state.phase)
    src = state.src
    if src is None:
        src = _empty_source(text, path)
    timings = dict(state.timings)
    flow_base, patched = None, ""
    if state.ctx is not None:
        timings.update(state.ctx.timings)
        if flow_edit is not None:
            patched = flow_edit.outcome
        if keep_flow and not state.timed_out and not (cancel is not None and cancel.is_set()):
            from gradpath.analysis import flow_patch
            flow_base = flow_patch.keep(state.ctx)
        # the facts hold the context that holds them: without this, every analysis would stay in
        # memory until a full garbage collection (tens of ms in an editor holding a project)
        state.ctx._memo.clear()
        state.ctx = None
    cancelled = cancel is not None and cancel.is_set()
    return RawAnalysis(src=src, findings=list(state.findings), timed_out=state.timed_out or cancelled,
                       failed=list(state.failed), timings=timings, cancelled=cancelled,
                       cpu_s=time.thread_time() - start, flow_base=flow_base, flow_patched=patched)


def finish(raw: RawAnalysis, options: Options) -> AnalysisResult:
    """Selection, severity overrides, the syntax-error finding, dedupe, suppressions, order."""
    src = raw.src
    findings = list(raw.findings)
    if src.syntax_error is not None and not any(f.code == catalog.SYNTAX_ERROR for f in findings):
        findings.insert(0, Finding(catalog.SYNTAX_ERROR, src.syntax_error.message,
                                   src.syntax_error.span, "error"))
    findings = [f for f in findings if _selected(f.code, options) and _span_ok(f, src)]
    for f in findings:
        sev = _severity_override(f.code, options)
        if sev:
            f.severity = sev
    findings = _dedupe(findings)
    result = AnalysisResult(findings=findings, source=src, timed_out=raw.timed_out,
                            failed_rules=list(raw.failed), timings=dict(raw.timings))
    if options.honour_suppressions and _may_suppress(src.text):
        from gradpath.analysis import suppressions
        try:
            suppressions.apply(result)
        except Exception:  # pragma: no cover - suppressions must not blank a file
            log.exception("%s: suppression comments could not be read", src.path)
    result.findings.sort(key=Finding.sort_key)
    if raw.timed_out and not raw.cancelled:
        # never a partial result that looks complete; not subject to selection or suppressions
        result.findings.insert(0, incomplete_finding(src, options.time_budget_s))
    return result


INCOMPLETE_PREFIX = "analysis stopped after"


def incomplete_finding(src: SourceFile, budget_s: float) -> Finding:
    """The GP000 error of a result cut by the time limit (at the start of the file)."""
    first = src.lines[0] if src.lines else ""
    return Finding(catalog.SYNTAX_ERROR,
                   f"{INCOMPLETE_PREFIX} {budget_s:g} s of CPU time: results for this file are incomplete",
                   Span(1, 0, 1, len(first.rstrip("\r\n"))), "error", data={"incomplete": True})


def is_incomplete(result) -> bool:
    """True for a result cut by the time limit (not for one cancelled by a newer version)."""
    return any(f.code == catalog.SYNTAX_ERROR and f.data.get("incomplete") for f in result.findings)


def _may_suppress(text: str) -> bool:
    """Cheap pre-check: suppression comments need `noqa` or `gradpath` in the text (tokenizing a
    large file to find none costs more than the rules)."""
    low = text.lower()
    return "noqa" in low or "gradpath" in low


class _State:
    def __init__(self):
        self.src: SourceFile | None = None
        self.findings: list[Finding] = []
        self.failed: list[str] = []
        self.timed_out = False
        self.phase = "parse"
        self.current_rule: str | None = None
        self.timings: dict[str, float] = {}
        self.ctx: Context | None = None


def _empty_source(text: str, path: str | None) -> SourceFile:
    import ast
    from gradpath.analysis.source import split_lines
    src = SourceFile(text=text, path=path)
    src.lines = split_lines(text)
    src.tree = ast.Module(body=[], type_ignores=[])
    return src


def _run(text, path, options, resolver, start, budget, checkers, state: _State, memo=None,
         cancel=None, flow_edit=None) -> None:
    t0 = time.thread_time()
    try:
        if state.src is None:
            state.src = SourceFile.parse(text, path, deadline=start + budget)  # CPU seconds
    except AnalysisTimeout:
        raise
    except BaseException as exc:  # noqa: BLE001 - MemoryError and friends included
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        log.exception("could not parse %s", path)
        state.src = _empty_source(text, path)
    src = state.src
    state.timings["parse"] = time.thread_time() - t0
    state.phase = "symbols"
    try:
        ctx = Context(src, path, resolver, deadline=start + budget, cancel=cancel, flow_edit=flow_edit)
        if memo:
            ctx._memo.update(memo)
        state.ctx = ctx
    except (RecursionError, MemoryError):
        log.warning("%s: too deeply nested to analyse", path)
        return
    except Exception:
        log.exception("%s: could not build the symbol table", path)
        return
    state.phase = "rules"
    for name, checker in checkers:
        if cancel is not None and cancel.is_set():
            state.timed_out = True
            break
        if ctx.out_of_time():
            state.timed_out = True
            if not (cancel is not None and cancel.is_set()):  # (cancelled: thrown away, nothing to report)
                log.warning("%s: analysis stopped after %.1fs of CPU time (limit %gs); partial result",
                            path or "<text>", time.thread_time() - start, budget)
            break
        state.current_rule = name
        got: list[Finding] = []
        t_rule = time.thread_time()
        ctx._nested.append(0.0)
        try:
            for f in checker(ctx) or ():
                got.append(f)
        except RecursionError:
            state.failed.append(name)
            log.warning("%s: rule %s gave up (nesting too deep)", path, name)
        except Exception:
            state.failed.append(name)
            log.exception("%s: rule %s failed", path, name)
        finally:
            inner = ctx._nested.pop() if ctx._nested else 0.0
            ctx.timings["rule:" + name] = time.thread_time() - t_rule - inner
        state.findings.extend(f for f in got if isinstance(f, Finding))
        state.current_rule = None
    if not state.timed_out and ctx.out_of_time():
        state.timed_out = True  # the last rules may have stopped early on their own checks


def _span_ok(f: Finding, src: SourceFile) -> bool:
    """A finding whose span lies outside the text would put a squiggle nowhere (or crash a
    client): drop it, with a log line naming the rule's code."""
    s = f.span
    n = len(src.lines)
    ok = (isinstance(s, Span) and 1 <= s.line <= n and 1 <= s.end_line <= n
          and (s.line, s.col) <= (s.end_line, s.end_col) and s.col >= 0
          and s.col <= len(src.lines[s.line - 1]) and s.end_col <= len(src.lines[s.end_line - 1]))
    if not ok:
        log.warning("dropping %s: span %s outside the text", f.code, s)
        return False
    good = [fx for fx in f.fixes if all(_edit_ok(e, src) for e in getattr(fx, "edits", ()))]
    if len(good) != len(f.fixes):
        log.warning("%s at %s: dropping a fix whose edit lies outside the text", f.code, s)
        f.fixes = good
    return True


def _edit_ok(e, src: SourceFile) -> bool:
    s = getattr(e, "span", None)
    n = len(src.lines)
    return (isinstance(s, Span) and 1 <= s.line <= n and 1 <= s.end_line <= n
            and (s.line, s.col) <= (s.end_line, s.end_col) and s.col >= 0
            and s.col <= len(src.lines[s.line - 1]) and s.end_col <= len(src.lines[s.end_line - 1])
            and isinstance(e.new_text, str))


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
