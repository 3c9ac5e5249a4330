"""Incremental re-analysis for the editor: after an edit, re-analyse only the top-level statements
it can affect, and keep the findings of the rest.

A file is cut into *regions*: one per top-level statement (its decorators and the blank and comment
lines after it included), so that the regions tile the file. An edit inside one region is parsed
on its own (a region that parses alone parses the same way inside the file: it starts at column 0
after a complete statement, and ends complete before the next one). Syntax errors stay inside their
region: the region is recovered the way `SourceFile` recovers a whole file (the bad line is
emptied) and the rest of the file keeps its tree. A line being typed mostly does not parse until it
is complete; recovered, the file's tree is then the tree of a text analysed a moment before the line
was begun, and that result is taken as it is (`_same_as_seen`).

Which findings can change? Those of the edited region and of every region that depends on it,
transitively: a region depends on the regions that define a name it uses (a function calling a
helper, a loop building a model class). Module-level code that is not a `def` or `class`
("script") is split into statements with their own def-use; those that share state (bind or
mutate objects the rules read, call functions with the script's values) are re-analysed together
with what reads those objects and what they reach, and a function with a `global` statement
belongs to them (see `script_state.py`: an argument parser's `add_argument` lines and a logger are
independent statements). A statement that mutates an object counts as defining its name. An edit
of import statements defines the names it binds differently (`regions.changed_imports`: `import
osq` defines `os` and `osq`), unless it can change findings anywhere (a star or `__future__`
import, a binding of a name some rules spell file-wide: `torch`, `torch.nn`, ...; then every
rule runs again, and the dataflow may still re-run only what reads the names). The
rules run on a tree made of those regions, of what they depend on, and of the imports; their
findings replace the old ones of those regions; every other region keeps its findings. When an
edit adds or removes lines, regions whose findings mention positions after the edit are redone
too (their messages and live-step data name lines), with what uses them (a function's findings
can depend on the values its callers pass). Whatever is not plainly safe (an edit across
regions, a change to the set of module-level names the rules read file-wide, an earlier result
that timed out, a subset that is most of the file) runs the whole analysis; its dataflow re-runs
only the edited function, the edited statement of the script, or the functions reading the names
an import edit changed, when it can (flow_patch.py), and its loop facts take over the events of the
functions the edit cannot reach (loop_reuse.py). Blank lines added or removed (the Enter key) leave
the tree as it was, moved: the last version's statements and its kept dataflow are moved in place
and nothing of the dataflow runs again (`_moved`); lines added or removed inside one function's
body move them the same way, and the dataflow re-runs that function (`shifted` in _incremental).

`tests/test_incremental.py` checks, over thousands of edits to real and generated files, that the
result equals a full `analyze()` of the same text.
"""
from __future__ import annotations

import ast
import logging
import threading
import time
import warnings
from dataclasses import dataclass, replace as dc_replace
from typing import Any

from gradpath.analysis import flow_patch
from gradpath.analysis.flow_bases import FlowBases
from gradpath.analysis.graft import method_reparsed
from gradpath.analysis.engine import AnalysisResult, Options, RawAnalysis, analyze_raw, finish
from gradpath.analysis.findings import Finding
from gradpath.analysis.modclass import text_signature
from gradpath.analysis.moved_lines import (
    blank_lines_moved, mentions_after, shift_from, shift_regions, unshift
)
from gradpath.analysis.regions import (
    Region, assign_findings, changed_imports, closure, cut_regions, dependents, index_at, region_at
)
from gradpath.analysis.script_state import coupling
from gradpath.analysis.source import (
    SourceFile, SyntaxProblem, bad_lines, blank_line, collector_off, normalize, opens_block, split_lines,
    syntax_problem
)

log = logging.getLogger("gradpath.incremental")

# Above this share of the file's lines, re-analysing the subset saves too little: run it all.
MAX_SUBSET_FRACTION = 0.6
# Results kept for texts seen a moment ago (see IncrementalAnalyzer._recent).
RECENT_VERSIONS = 4
# Versions without a syntax error kept for texts that do not parse (see IncrementalAnalyzer._same_as_seen)
CLEAN_VERSIONS = 8
# CPU seconds for recovering a whole text with several broken lines while a line is typed (past
# them the whole-file analysis runs, under its own budget)
MAX_RECOVERY_S = 0.25
# Names some rules look up across the whole file (`eps`, reused by GP3 fixes): an edit that adds
# or removes one changes findings anywhere, so it runs the whole analysis.
FILE_WIDE_NAMES = frozenset({"eps"})


@dataclass(eq=False)
class _Version:
    key: tuple
    text: str
    lines: list[str]
    regions: list[Region]
    raw: RawAnalysis  # the last analysis (timings, flags) for the result
    _coupling: Any = None

    def coupling(self):
        """script_state.coupling of its regions, worked out once (they do not change)."""
        if self._coupling is None:
            self._coupling = coupling(self.regions)
        return self._coupling


@dataclass
class Stats:
    """How the last analysis ran (for logs, tests and benchmarks)."""
    mode: str = "full"  # "full" | "incremental" | "same" | "cancelled"
    reason: str = ""
    regions: int = 0
    redone: int = 0  # regions whose findings were recomputed
    analysed_lines: int = 0  # lines of the tree the rules ran on
    seconds: float = 0.0
    flow: str = ""  # a whole-file analysis of a function-body edit: how its dataflow ran (flow_patch)


class IncrementalAnalyzer:
    """One per open document. Not thread-safe: the caller serialises calls for one document."""

    def __init__(self):
        self._prev: _Version | None = None
        self.stats = Stats()
        # the last few results by (key, text): typing a character and deleting it, or an undo,
        # returns to a text analysed a moment ago. Valid while no edit shifted the kept trees'
        # lines in place (an edit that adds or removes lines clears it).
        self._recent: dict[tuple, tuple[_Version, bool]] = {}  # -> (version, whether whole-file)
        # the last few versions without a syntax error, by (key, text), on the same terms as
        # _recent: what a line being typed is compared with once it does not parse (_same_as_seen)
        self._clean: dict[tuple, tuple[_Version, bool]] = {}
        self._names_memo: dict[str, tuple] = {}  # region text -> (kind, defines, uses, facts)
        # the dataflows of the last whole-file analyses (flow_bases.py)
        self._bases = FlowBases()
        self._cancel: threading.Event | None = None  # of the analysis running now
        self._first_error: SyntaxProblem | None = None
        self._failure: tuple | None = None

    def reset(self) -> None:
        self._prev = None
        self._recent.clear()
        self._clean.clear()
        self._bases.clear()

    def analyze(self, text: str, path: str | None = None, options: Options | None = None,
                resolver: Any = None, generation: Any = None,
                cancel: threading.Event | None = None) -> AnalysisResult | None:
        """The result for `text`. `cancel`, once set by another thread (a newer version of the
        document arrived), stops the analysis part way: then None, and the analyzer's state is
        what it was before the call (the next text is compared with the last one analysed)."""
        options = options or Options()
        self._cancel = cancel
        self._first_error = None  # set when the whole text was parsed (and failed) on the way
        self._failure = None  # (text, what ast.parse raised for it) then: not parsed again
        t0 = time.perf_counter()
        key = (path, _options_key(options), id(resolver), generation)
        text = normalize(text if isinstance(text, str) else str(text or ""))
        prev = self._prev
        try:
            if prev is None or prev.key != key:
                out = self._full(text, path, options, resolver, key, "first analysis" if prev is None
                                 else "options, resolver or workspace changed")
            elif text == prev.text:
                self.stats = Stats("same", "text unchanged", len(prev.regions), 0, 0)
                out = self._result(prev, options)
            elif (key, text) in self._recent:
                # (the last used last: a text the edits keep returning to, the one before a key
                # typed and deleted again, outlives the texts of the keys typed since)
                self._recent[(key, text)] = self._recent.pop((key, text))
                self._prev = self._recent[(key, text)][0]
                self._bases.touch(self._prev)
                self.stats = Stats("same", "text analysed a moment ago", len(self._prev.regions), 0, 0)
                out = self._result(self._prev, options)
            else:
                out = self._incremental(prev, text, path, options, resolver, key)
        except _Cancelled:
            out = None
        except Exception:  # never worse than a full analysis
            log.exception("%s: incremental analysis failed; analysing the whole file", path)
            try:
                out = self._full(text, path, options, resolver, key, "incremental step failed")
            except _Cancelled:
                out = None
        finally:
            self._cancel = None
            self._failure = None  # (its traceback holds the frames it was raised in)
        self.stats.seconds = time.perf_counter() - t0
        if out is None:
            self.stats = Stats("cancelled", "a newer version arrived", seconds=time.perf_counter() - t0)
            return None
        out.mode = self.stats.mode
        if out.mode == "same" and self._prev is not None and self._prev.text == text \
                and not self._recent.get((key, text), (None, True))[1]:
            # a result remembered from a partial re-analysis: the editor's whole-file check still applies
            out.mode = "incremental"
        return out

    def adopt(self, text: str, path: str | None, options: Options, resolver: Any, generation: Any,
              raw: RawAnalysis) -> None:
        """Take a whole-file analysis of `text` made elsewhere (the server's check after a pause)
        as the base for the next edit, if `text` is still the text this analyzer saw last."""
        text = normalize(text if isinstance(text, str) else str(text or ""))
        if self._prev is None or self._prev.text != text:
            return
        key = (path, _options_key(options), id(resolver), generation)
        self._install(text, key, raw)

    def _install(self, text: str, key: tuple, raw: RawAnalysis) -> list[Region] | None:
        src = raw.src
        lines = src.lines
        regions = None
        if not raw.timed_out and not src.prefix_only and "\r" not in text.replace("\r\n", ""):
            regions = cut_regions(src.tree.body, 1, len(lines), lines, recovered=src.syntax_error is not None,
                                  memo=self._names_memo)
            if regions is not None and src.syntax_error is not None:
                r = region_at(regions, src.syntax_error.span.line)
                if r is None:
                    regions = None
                else:
                    r.error = src.syntax_error
        if regions is not None:
            assign_findings(regions, raw.findings)
            self._prev = _Version(key, text, lines, regions, raw)
            self._remember(self._prev, True)
            self._bases.keep(key, raw)
        else:
            self._prev = None
        return regions

    def _remember(self, version: _Version, whole: bool) -> None:
        """Keep `version` for its text. Its regions are never changed afterwards (an edit makes
        new ones for what it redoes), except by an edit that moves lines, which clears these."""
        k = (version.key, version.text)
        self._recent.pop(k, None)
        self._recent[k] = (version, whole)
        while len(self._recent) > RECENT_VERSIONS:
            self._recent.pop(next(iter(self._recent)))
        if version.raw.src.syntax_error is None:
            self._remember_clean(version, whole)

    def _remember_clean(self, version: _Version, whole: bool = True) -> None:
        """Keep `version` (a text without a syntax error) for _same_as_seen."""
        k = (version.key, version.text)
        self._clean.pop(k, None)
        self._clean[k] = (version, whole)
        while len(self._clean) > CLEAN_VERSIONS:
            self._clean.pop(next(iter(self._clean)))

    # -- whole file ------------------------------------------------------------------------------
    def _full(self, text, path, options, resolver, key, reason: str) -> AnalysisResult:
        failure = self._failure[1] if self._failure is not None and self._failure[0] == text else None
        src, edit = self._bases.parse_like_a_base(text, path, key, options, failure)
        if src is None and failure is not None:
            src = SourceFile.parse(text, path, deadline=time.thread_time() + options.time_budget_s, failure=failure)
        raw = analyze_raw(text, path, options, resolver, src=src, cancel=self._cancel, flow_edit=edit,
                          keep_flow=True)
        if raw.cancelled:
            raise _Cancelled()
        regions = self._install(text, key, raw)
        if regions is not None and raw.src.recovered_lines is not None:
            self._keep_recovered(key, text, raw, regions)
        n = len(raw.src.lines)
        if edit is not None and not raw.flow_patched and regions is not None:
            self._recent[(key, text)] = (self._prev, False)  # (an analysis in part: see _whole)
            self.stats = Stats("incremental", _patched_reason(edit), len(regions),
                               len(regions), n, flow=edit.patched_text())
        else:
            self.stats = Stats("full", reason, len(regions or ()), len(regions or ()), n,
                               flow=edit.outcome if edit is not None else "")
        return finish(raw, options)

    # -- one region changed ----------------------------------------------------------------------
    def _incremental(self, prev: _Version, text, path, options, resolver, key) -> AnalysisResult:
        def full(reason):
            return self._full(text, path, options, resolver, key, reason)

        if "\r" in text.replace("\r\n", ""):
            return full("lone carriage returns")
        old, new = prev.lines, split_lines(text)
        n_old, n_new = len(old), len(new)
        p = 0
        lim = min(n_old, n_new)
        while p < lim and old[p] == new[p]:
            p += 1
        s = 0
        while s < lim - p and old[n_old - 1 - s] == new[n_new - 1 - s]:
            s += 1
        a, b = p + 1, n_old - s  # changed old lines a..b (b < a: lines inserted after line p)
        delta = n_new - n_old
        regions = prev.regions
        k = index_at(regions, a if b >= a else max(p, 1))
        if k is None:
            return full("edit outside the regions")
        reg = regions[k]
        if b >= a and b > reg.end:
            return full("edit across top-level statements")
        if delta and reg.error is None and prev.raw.src.syntax_error is None:
            moved = self._moved(prev, k, a, b, delta, text, new, path, options, resolver, key)
            if moved is not None:
                return moved
        if not delta and b >= a and reg.error is None and _comment_only(old, new, a, b):
            same = self._same_tree(prev, text, new, reg, a, b, path, key, options)
            if same is not None:
                return same
        # the whole file is analysed for these, on a tree made of the kept statements and the edited
        # statement parsed alone (`_whole`): the same tree a parse of the whole text gives
        whole = None
        if reg.kind == "def" and not delta and b >= a > reg.start and reg.error is None:
            # an edit inside a function's body leaves what it binds as it was and rarely what it
            # reads: when what the function as it was would reach is most of the file, the whole
            # analysis runs at once (working out the same with its new text costs a parse)
            cp = prev.coupling()
            est = closure(regions, dependents(regions, [reg], reg, cp), cp)
            est_lines = sum(r.size for r in regions if id(r) in est or r.kind == "import")
            if est_lines > MAX_SUBSET_FRACTION * max(1, len(new)):
                whole = f"the edit reaches {est_lines} of {len(new)} lines"
        start, end = reg.start, reg.end + delta
        if end < start:
            return full("region removed")
        chunk_lines = new[start - 1:end]
        first = next((ln for ln in chunk_lines if ln.strip() and not ln.lstrip().startswith("#")), None)
        if first is not None and first[:1] in (" ", "\t", "\f"):
            return full("indented first line")
        chunk = "\n".join(chunk_lines)
        if "__future__" in chunk:
            return full("__future__ import")
        error, tree = None, None
        method_failed: list = []
        if not delta and b >= a and reg.kind == "def" and reg.error is None and len(reg.stmts) == 1 \
                and isinstance(reg.stmts[0], ast.ClassDef):
            # inside one method of a class: that method parsed alone, the rest of the class kept
            cls = method_reparsed(reg.stmts[0], a, b, new, method_failed)
            if cls is not None:
                tree = ast.Module(body=[cls], type_ignores=[])
        # parsed after as many empty lines as precede it: its nodes, and a syntax error's line,
        # get the file's line numbers from the parser (moving a large statement's tree afterwards
        # walks every node)
        placed = "\n" * (start - 1) + chunk
        with collector_off(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                if tree is None and not (method_failed and whole is not None):
                    # (a method that does not parse alone mostly leaves its class unparsable too;
                    # when the whole file is analysed anyway, the class is not parsed to find out:
                    # what follows parses the whole text, which decides)
                    tree = ast.parse(placed)
            except (SyntaxError, ValueError, RecursionError, MemoryError):
                tree = None
            if tree is None and whole is not None and (delta or not self._may_match(key, new, reg, a, b)):
                return full(whole)  # the whole text is parsed (and recovered) there: once
            if tree is None:
                try:
                    ast.parse(text)
                    return full("statement boundaries changed")
                except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
                    # the error a whole-file analysis reports (its parse fails the same way first)
                    self._first_error = syntax_problem(exc, new)
                    self._failure = (text, exc)
                    first_failure = exc
                if not delta:
                    # a line being typed that does not parse yet: recovered, the text may be one
                    # analysed a moment ago, before the line was begun
                    same = self._same_as_seen(first_failure, text, new, a, b, path, options, resolver, key)
                    if same is not None:
                        return same
                if whole is not None:
                    return full(whole)
        if tree is None:
            local = SourceFile.parse(placed)
            if local.prefix_only or local.syntax_error is None:
                return full("syntax error not recoverable in its statement")
            tree, error = local.tree, local.syntax_error
        fresh = cut_regions(tree.body, start, end, new, recovered=error is not None, memo=self._names_memo)
        if fresh is None:
            return full("statements not at column 0")
        if error is not None:
            r = region_at(fresh, error.span.line) or fresh[-1]
            r.error = error
        imports = frozenset()
        if whole is None and (reg.kind == "import" or any(r.kind == "import" for r in fresh)):
            # what the edit binds differently: the regions reading those names are redone
            old_imps = [st for r in [reg] if r.kind == "import" for st in r.stmts]
            new_imps = [st for r in fresh if r.kind == "import" for st in r.stmts]
            changed = changed_imports(old_imps, new_imps)
            if changed is None:
                whole = "edit in the imports" if reg.kind == "import" else "imports added"
                # (the whole file's rules run again: its dataflow can still re-run the readers)
                changed = changed_imports(old_imps, new_imps, spelled=True)
            imports = changed or frozenset()
        if self._cancel is not None and self._cancel.is_set():
            raise _Cancelled()
        # other regions keep their trees: shift the ones after the edit
        before, after = regions[:k], regions[k + 1:]
        shifted, moved = None, []  # (base, edited function, its nodes on the old lines), what moved
        if delta:
            self._recent.clear()  # their trees move: the results remembered no longer match them
            self._clean.clear()
            if error is None and reg.error is None and prev.raw.src.syntax_error is None and len(fresh) == 1 \
                    and fresh[0].kind == reg.kind == "def" and len(reg.stmts) == len(fresh[0].stmts) == 1 \
                    and not any("global" in ln or "nonlocal" in ln for ln in old[a - 1:b]):
                # lines added or removed inside one function's body: the kept dataflow of exactly
                # the last version, its tree moved where the lines after the edit are now, is
                # where the edited function re-runs from (its old statements on the edited lines
                # are the only nodes not where the new text has them: the patch takes them out)
                base = self._bases.exactly(key, [st for r in regions for st in r.stmts], old)
                if base is not None:
                    # (the edited function, and its nodes on the edited lines, found where they were)
                    top = reg.stmts[0]
                    shifted = (base, flow_patch.function_at(top, a, b),
                               {id(n) for n in flow_patch.touching(top, a, b)})
            self._bases.clear()
            shift_regions(after, delta)
            if shifted is not None:
                shift_from(reg.stmts, b + 1, delta, strings=False, record=moved)
                flow_patch.rebase_moved(shifted[0], b + 1, delta, new)
        try:
            return self._after_shift(prev, regions, reg, fresh, before, after, a, b, delta, whole, text, new,
                                     path, options, resolver, key, imports, shifted=shifted)
        except _Cancelled:
            if delta:  # the kept trees go back where the previous text (still the base) has them
                shift_regions(after, -delta)
                unshift(moved, delta)
            raise

    def _moved(self, prev: _Version, k: int, a: int, b: int, delta: int, text: str, new: list[str], path,
               options, resolver, key) -> AnalysisResult | None:
        """Blank lines added or removed (the Enter key that opens a line, a blank line deleted):
        outside strings and continued lines they are nothing to the parser, so the new text's tree
        is the last version's, moved. When a dataflow of exactly that version is kept, its
        statements are kept and moved in place, and so is that dataflow (nothing of it runs again,
        flow_patch.prepare_moved); every rule runs again (findings name positions). None when the
        lines are not blank only, a string spans them, or no such dataflow is kept."""
        regions, reg, old = prev.regions, prev.regions[k], prev.lines
        first = blank_lines_moved(old, new, a, b, delta)
        if first is None or reg.end + delta < reg.start:
            return None
        body = [st for r in regions for st in r.stmts]
        base = self._bases.exactly(key, body, old)
        if base is None or not shift_from(reg.stmts, first, delta):
            return None
        self._recent.clear()  # (the trees move: see _incremental)
        self._clean.clear()
        self._bases.moved(key, base, first, delta, new)
        before, after = regions[:k], regions[k + 1:]
        shift_regions(after, delta)
        fresh = [dc_replace(reg, end=reg.end + delta)]
        try:
            return self._after_shift(prev, regions, reg, fresh, before, after, a, b, delta, None, text, new,
                                     path, options, resolver, key, frozenset(), base)
        except _Cancelled:
            shift_regions(after, -delta)
            shift_from(reg.stmts, first + delta, -delta, strings=False)
            self._bases.clear()  # (the one kept was moved with the trees)
            raise

    def _after_shift(self, prev, regions, reg, fresh, before, after, a, b, delta, whole, text, new, path,
                     options, resolver, key, imports=frozenset(), moved_base=None, shifted=None) -> AnalysisResult:
        def full(reason):
            return self._full(text, path, options, resolver, key, reason)

        all_regions = before + fresh + after

        def whole_file(reason):
            edit = None
            if moved_base is not None:
                edit = flow_patch.prepare_moved(moved_base, a, b)
            elif shifted is not None:
                # (the old lines a..b are now the new lines a..b+delta)
                # (what a class's attributes hold is compared on the old tree, part of it not moved:
                # no attribute assigned on the edited lines)
                edit = flow_patch.prepare(shifted[0], reg.stmts[0], fresh[0].stmts[0], a, b, stores_ok=False,
                                          new_b=b + delta, moved=shifted[1:])
            elif not delta and len(fresh) == 1 and fresh[0].kind == reg.kind != "import" \
                    and fresh[0].error is None and len(reg.stmts) == len(fresh[0].stmts) == 1:
                edit = self._bases.edit_in_function(key, all_regions, len(before), reg, fresh[0].stmts[0], new)
                if edit is None and reg.kind == "script":
                    edit = self._bases.edit_in_script(key, all_regions, len(before), reg, fresh[0].stmts[0], new)
            elif imports and not delta and len(fresh) == 1 and fresh[0].kind == reg.kind == "import" \
                    and fresh[0].error is None and len(reg.stmts) == len(fresh[0].stmts):
                edit = self._bases.edit_in_imports(key, all_regions, len(before), reg, imports, new)
            return self._whole(all_regions, text, new, path, options, resolver, key, reason, edit)

        if whole is not None:
            return whole_file(whole)
        if moved_base is not None:
            # the tree and the dataflow are the last version's, moved: every rule runs again on them
            return whole_file("lines moved")
        # names the rules look up in the whole file (as ast.Name)
        for name in FILE_WIDE_NAMES:
            was = any(name in r.uses for r in regions)
            now = any(name in r.uses for r in all_regions)
            if was != now:
                return full(f"`{name}` appeared or disappeared")
        # what GP113/GP114 read from the whole text (attributes named anywhere, classes built,
        # training present): when it changes, findings of regions the edit does not reach change
        if text_signature(prev.text) != text_signature(text):
            return full("module attributes or classes used file-wide changed")
        redo = dependents(all_regions, fresh, reg, imports=imports)
        if delta:
            # findings that name positions after the edit (their messages and live-step data name
            # lines): redo them, with what uses them (a function's findings can depend on the values
            # its callers pass). Before the first changed line, old and new numbering agree.
            moved = [r for r in all_regions if r.findings and id(r) not in redo and mentions_after(r.findings, a - 1)]
            if moved:
                redo |= dependents(all_regions, moved, moved[0])
        subset = closure(all_regions, redo)
        total = max(1, len(new))
        sub_lines = sum(r.size for r in all_regions if id(r) in subset or r.kind == "import")
        if sub_lines > MAX_SUBSET_FRACTION * total:
            return whole_file(f"the edit reaches {sub_lines} of {total} lines")
        body = [st for r in all_regions if id(r) in subset or r.kind == "import" for st in r.stmts]
        src = SourceFile(text=text, path=path, tree=ast.Module(body=body, type_ignores=[]), lines=new)
        memo = {"file-has-eps": any(n in r.uses for r in all_regions for n in FILE_WIDE_NAMES)}
        edit = None
        if not delta and len(fresh) == 1 and fresh[0].kind == reg.kind == "def" and fresh[0].error is None \
                and len(reg.stmts) == len(fresh[0].stmts) == 1:
            # an edit inside one function's body, analysed with the same part of the file as before
            # (a line typed into a method of a large class): the dataflow of that part re-runs
            # that function only
            stmt = fresh[0].stmts[0]
            i = next((j for j, st in enumerate(body) if st is stmt), None)
            if i is not None:
                edit = self._bases.edit_in_part(key, body, i, reg, stmt, new)
        raw = analyze_raw(text, path, options, resolver, src=src, memo=memo, cancel=self._cancel,
                          flow_edit=edit, keep_flow=True)
        if raw.cancelled:
            raise _Cancelled()
        if raw.timed_out:
            return full("the re-analysis ran out of time")
        self._bases.keep(key, raw, partial=True)
        # redone regions are new objects (a remembered version keeps its own regions and findings)
        redone, kept = [], []
        for r in all_regions:
            if id(r) in redo:
                r = dc_replace(r, findings=[])
                redone.append(r)
            kept.append(r)
        all_regions = kept
        assign_findings(redone, raw.findings)
        findings = [f for r in all_regions for f in r.findings]
        errors = [r.error for r in all_regions if r.error is not None]
        full_src = SourceFile(text=text, path=path, tree=ast.Module(
            body=[st for r in all_regions for st in r.stmts], type_ignores=[]), lines=new,
            syntax_error=(self._first_error or errors[0]) if errors else None)
        raw_all = RawAnalysis(src=full_src, findings=findings, timed_out=False, failed=list(raw.failed),
                              timings=raw.timings)
        self._prev = _Version(key, text, new, all_regions, raw_all)
        self._remember(self._prev, False)
        self.stats = Stats("incremental", "", len(all_regions), len(redone), sub_lines,
                           flow=edit.patched_text() if edit is not None and not raw.flow_patched else "")
        return finish(raw_all, options)

    def _whole(self, all_regions: list[Region], text: str, new: list[str], path, options, resolver, key,
               reason: str, edit: flow_patch.FlowEdit | None = None) -> AnalysisResult:
        """The whole-file analysis of `text` on the tree of `all_regions`: the kept statements (moved
        already when the edit added or removed lines) and the edited one parsed alone, which is the
        tree a parse of the whole text gives, without that parse. A syntax error anywhere: the whole
        text is parsed again (its recovery decides what the tree is)."""
        if any(r.error is not None for r in all_regions):
            return self._full(text, path, options, resolver, key, reason)
        body = [st for r in all_regions for st in r.stmts]
        tree = edit.base.tree if edit is not None and edit.moved else None
        if tree is None or tree.type_ignores or len(tree.body) != len(body) or any(
                x is not y for x, y in zip(tree.body, body)):
            tree = ast.Module(body=body, type_ignores=[])
        # (else the kept version's module node itself: what was made of it, the script's loop
        # events, is taken over too)
        src = SourceFile(text=text, path=path, lines=new, tree=tree)
        raw = analyze_raw(text, path, options, resolver, src=src, cancel=self._cancel, flow_edit=edit,
                          keep_flow=True)
        if raw.cancelled:
            raise _Cancelled()
        if raw.timed_out:
            return self._full(text, path, options, resolver, key, reason)
        # every region redone: new objects (a remembered version keeps its own regions and findings)
        regions = [dc_replace(r, findings=[]) for r in all_regions]
        assign_findings(regions, raw.findings)
        self._prev = _Version(key, text, new, regions, raw)
        self._bases.keep(key, raw)
        patched = edit is not None and not raw.flow_patched
        # a patched dataflow is an analysis in part: the editor's whole-file check still follows
        self._remember(self._prev, not patched)
        if patched:
            self.stats = Stats("incremental", _patched_reason(edit), len(regions),
                               len(regions), len(new), flow=edit.patched_text())
        else:
            self.stats = Stats("full", reason, len(regions), len(regions), len(new),
                               flow=edit.outcome if edit is not None else "")
        return finish(raw, options)

    def _same_tree(self, prev: _Version, text: str, new: list[str], reg: Region, a: int, b: int, path,
                   key, options) -> AnalysisResult | None:
        """An edit inside comments (or trailing blanks) of lines a..b that leaves the statement's
        tree as it was, positions included, and that no finding's ranges, fixes or data touch:
        every finding stays as it is (suppression comments are read again by `finish`)."""
        placed = "\n" * (reg.start - 1) + "\n".join(new[reg.start - 1:reg.end])  # (see _incremental)
        with collector_off(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                tree = ast.parse(placed)
            except (SyntaxError, ValueError, RecursionError, MemoryError):
                return None
        if len(tree.body) != len(reg.stmts) or not all(_trees_equal(x, y) for x, y in zip(tree.body, reg.stmts)):
            return None
        for r in prev.regions:
            if _touches(r.findings, a, b):
                return None
        if text_signature(prev.text) != text_signature(text):
            return None  # GP113/GP114 read attribute names anywhere in the text, comments included
        raw = prev.raw
        src = SourceFile(text=text, path=path, tree=raw.src.tree, lines=new, syntax_error=raw.src.syntax_error)
        raw_all = RawAnalysis(src=src, findings=[f for r in prev.regions for f in r.findings], timed_out=False,
                              failed=list(raw.failed), timings=raw.timings)
        self._prev = _Version(key, text, new, prev.regions, raw_all)
        self._remember(self._prev, self._recent.get((key, prev.text), (None, False))[1])
        self.stats = Stats("same", "only comments changed", len(prev.regions), 0, 0)
        return finish(raw_all, options)

    def _keep_recovered(self, key: tuple, text: str, raw: RawAnalysis, regions: list[Region]) -> None:
        """A whole-file analysis of a text that does not parse analysed the text its recovery made:
        kept as that text's result, for _same_as_seen (a line still being typed when the resolver's
        answers or the project changed, and every earlier result stopped counting). Not when the
        two texts name different attributes (GP113/GP114 read them from the text)."""
        lines = raw.src.recovered_lines
        rtext = "\n".join(lines)
        if raw.timed_out or text_signature(rtext) != text_signature(text):
            return
        src = SourceFile(text=rtext, path=raw.src.path, tree=raw.src.tree, lines=list(lines))
        clean = RawAnalysis(src=src, findings=list(raw.findings), timed_out=False, failed=list(raw.failed),
                            timings=raw.timings)
        kept = [dc_replace(r, findings=list(r.findings), error=None) for r in regions]
        self._remember_clean(_Version(key, rtext, list(lines), kept, clean))

    def _may_match(self, key: tuple, new: list[str], reg: Region, a: int, b: int) -> bool:
        """Whether a version kept for _same_as_seen has the lines of `new` outside the edited
        statement and nothing but blanks on the edited lines: cheap, it decides whether the whole
        text is worth parsing (for _same_as_seen) before the whole file is analysed anyway."""
        for (vkey, _text), (v, _whole) in self._clean.items():
            if vkey != key or len(v.lines) != len(new) or any(v.lines[i - 1].strip() for i in range(a, b + 1)):
                continue
            if v.lines[:reg.start - 1] == new[:reg.start - 1] and v.lines[reg.end:] == new[reg.end:]:
                return True
        return False

    def _same_as_seen(self, failure: BaseException, text: str, new: list[str], a: int, b: int, path, options,
                      resolver, key) -> AnalysisResult | None:
        """A text that does not parse, whose recovery gives the text of a version analysed a moment
        ago (no line added or removed since): that version's findings are the findings of `text`.
        The first step of SourceFile's recovery is taken here on the whole text's first failure
        (what a whole-file analysis does first); when its result is, line for line, a text kept
        without a syntax error, that text parses, so the recovery stops there and the tree is that
        version's tree. When another line is broken too and came first, the whole recovery runs
        (once a kept text differs from that step's result on the edited lines alone). Every rule
        reads the tree; what some read from the text (attribute names anywhere) is compared, and
        suppression comments are read again by `finish`. Not when a finding's ranges, fixes or data
        touch the edited or blanked lines (their text may be quoted), or when the project's
        summaries hold either text (cross-module links apply to that text alone)."""
        bad = bad_lines(failure)
        if not bad or not self._clean:
            return None
        lines = list(new)
        for ln in bad:
            if not 1 <= ln <= len(lines):
                return None
            lines[ln - 1] = blank_line(lines[ln - 1], opens_block(lines, ln))
        error = self._first_error
        cands = [(k, vw) for k, vw in reversed(list(self._clean.items())) if k[0] == key]
        if not any(vw[0].lines == lines for _k, vw in cands) and any(
                len(v.lines) == len(lines) and all(x == y or a <= i + 1 <= b for i, (x, y) in enumerate(zip(v.lines, lines)))
                for _k, (v, _w) in cands):
            # another error came first (a line left broken elsewhere): the whole recovery, then
            src = SourceFile.parse(text, path, deadline=time.thread_time() + MAX_RECOVERY_S, failure=failure)
            if src.recovered_lines is None or src.prefix_only:
                return None
            lines, error = src.recovered_lines, src.syntax_error
            bad = sorted(src.blanked_lines)
        for (vkey, vtext), (v, whole) in cands:
            if v.lines != lines:
                continue
            project = getattr(resolver, "project", None)
            if project is not None and path and (project.holds(path, vtext) or project.holds(path, text)):
                return None
            findings = [f for r in v.regions for f in r.findings]
            if _touches(findings, a, b) or any(_touches(findings, ln, ln) for ln in bad) \
                    or text_signature(vtext) != text_signature(text):
                return None
            regions = [dc_replace(r, findings=list(r.findings)) for r in v.regions]
            r = region_at(regions, error.span.line) or regions[-1]
            r.error = error
            src = SourceFile(text=text, path=path, lines=new, syntax_error=error,
                             tree=ast.Module(body=[st for r in regions for st in r.stmts], type_ignores=[]))
            raw = RawAnalysis(src=src, findings=findings, timed_out=False, failed=list(v.raw.failed),
                              timings=v.raw.timings)
            self._prev = _Version(key, text, new, regions, raw)
            self._remember(self._prev, whole)
            self._clean[(vkey, vtext)] = self._clean.pop((vkey, vtext))  # kept while the line is typed
            self._bases.touch(v)
            self.stats = Stats("same", "recovered, the text of a version analysed a moment ago", len(regions), 0, 0)
            return finish(raw, options)
        return None

    def _result(self, prev: _Version, options) -> AnalysisResult:
        raw = prev.raw
        return finish(RawAnalysis(src=raw.src, findings=[f for r in prev.regions for f in r.findings],
                                  timed_out=False, failed=list(raw.failed), timings=raw.timings), options)


def _patched_reason(edit: flow_patch.FlowEdit) -> str:
    """Stats.reason of an analysis whose dataflow was patched."""
    if edit.moved:
        return "lines moved: the dataflow kept as it was"
    return f"dataflow: {_rerun_names(edit)} re-run, the rest kept"


def _rerun_names(edit: flow_patch.FlowEdit) -> str:
    """The functions a patched dataflow re-ran first: the edited one, or an import edit's readers."""
    if edit.imports:
        return ", ".join(f"`{fn.name}`" for fn in edit.readers)
    return f"`{edit.new_fn.name}`" if edit.new_fn is not None else "a statement of the script"


def _trees_equal(x: ast.AST, y: ast.AST) -> bool:
    """Two trees with the same nodes, fields and positions (what `ast.dump(include_attributes=True)`
    compares, without writing either out)."""
    todo = [(x, y)]
    AST = ast.AST
    while todo:
        p, q = todo.pop()
        if p.__class__ is not q.__class__:
            return False
        for name in p._fields:
            u, v = getattr(p, name, None), getattr(q, name, None)
            if isinstance(u, AST):
                if not isinstance(v, AST):
                    return False
                todo.append((u, v))
            elif u.__class__ is list:
                if v.__class__ is not list or len(u) != len(v):
                    return False
                for e, f in zip(u, v):
                    if isinstance(e, AST):
                        if not isinstance(f, AST):
                            return False
                        todo.append((e, f))
                    elif e.__class__ is not f.__class__ or e != f:
                        return False
            elif u.__class__ is not v.__class__ or u != v:
                return False
        for name in p._attributes:
            if getattr(p, name, None) != getattr(q, name, None):
                return False
    return True


class _Cancelled(Exception):
    """The analysis was cancelled (a newer version of the document arrived)."""


# -- regions ---------------------------------------------------------------------------------------
def _comment_only(old: list[str], new: list[str], a: int, b: int) -> bool:
    """Lines a..b (same count in both texts) differ only after a `#` both have at the same place,
    or in trailing blanks: a cheap guess that only comments changed (the trees decide)."""
    for ln in range(a, b + 1):
        o, n = old[ln - 1], new[ln - 1]
        if o.rstrip() == n.rstrip():
            continue
        i = next((k for k, (x, y) in enumerate(zip(o, n)) if x != y), min(len(o), len(n)))
        h = o.find("#")
        if h < 0 or h >= i or n.find("#") != h:
            return False
    return True


def _touches(findings: list[Finding], a: int, b: int) -> bool:
    """Whether any finding's range, related ranges, fix edits or data name a line in a..b."""
    def hit(sp) -> bool:
        return sp.line <= b and sp.end_line >= a
    for f in findings:
        if hit(f.span) or any(hit(r.span) for r in f.related) \
                or any(hit(e.span) for fx in f.fixes for e in fx.edits):
            return True
        if _ints_in(f.data, a, b):
            return True
    return False


def _ints_in(obj, a: int, b: int) -> bool:
    if isinstance(obj, bool):
        return False
    if isinstance(obj, int):
        return a <= obj <= b
    if isinstance(obj, dict):
        return any(_ints_in(v, a, b) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return any(_ints_in(v, a, b) for v in obj)
    return False


def _options_key(options: Options) -> tuple:
    return (tuple(options.select), tuple(options.ignore), tuple(sorted(options.severity.items())),
            options.time_budget_s, options.honour_suppressions)
