"""The dataflows the editor keeps for later edits (flow_patch.FlowBase), and which of them an edit
can start from.

The trees of a file's versions share every statement an edit did not touch (the incremental
analysis keeps them, graft.py keeps the untouched parts of an edited one). An edit inside one
function's body can then start from any kept dataflow whose tree has every other top-level
statement of the new tree, or differs from it in statements of the script that can be re-run on
their own (flow_patch.script_statement_ok) and in functions edited since
(flow_patch.function_edit_ok): the dataflow re-runs that function (and those statements and
functions) and keeps the rest. An edit of import statements starts from one the same way
(`edit_in_imports`), re-running the functions that read the names it binds differently. The least
recently used is dropped first, so a text the edits keep returning to (an edit undone, the text
before a line being typed) keeps its dataflow.
"""
from __future__ import annotations

import ast
import threading
import time
import weakref
from collections import OrderedDict

from gradpath.analysis import flow_patch
from gradpath.analysis.graft import subtree_ids
from gradpath.analysis.regions import changed_imports, first_line, names_of
from gradpath.analysis.source import SourceFile, split_lines
from gradpath.analysis.symbols import walk_statements

# Dataflows of whole-file analyses kept (4-12 MB each on files of 1,500-5,000 lines)
MAX_FLOW_BASES = 3
# At most this many statements of the script edited since a kept dataflow are re-run with a function
MAX_SCRIPT_EDITS = 8
# Documents that keep dataflows (the ones analysed last)
MAX_DOCUMENTS = 4

_IN_USE_LOCK = threading.Lock()
_IN_USE: "OrderedDict[int, weakref.ref]" = OrderedDict()  # id(FlowBases) -> it, the last used last


def _used(bases: "FlowBases") -> None:
    """`bases` just kept a dataflow: past MAX_DOCUMENTS, the least recently used documents drop
    theirs."""
    drop = []
    with _IN_USE_LOCK:
        _IN_USE.pop(id(bases), None)
        _IN_USE[id(bases)] = weakref.ref(bases)
        while len(_IN_USE) > MAX_DOCUMENTS:
            _k, ref = _IN_USE.popitem(last=False)
            other = ref()
            if other is not None and other is not bases:
                drop.append(other)
    for other in drop:  # (outside the registry's lock: clear() takes the document's own)
        other.clear()


class FlowBases:
    """(analyzer key, FlowBase) of the last whole-file analyses of one document, the last used last.

    Only the documents edited last keep theirs (MAX_DOCUMENTS): an editor holding many files open
    keeps no dataflow for those merely open. Another document's analysis may drop this one's (from
    its own thread), hence the lock around the list."""

    def __init__(self):
        self._list: list[tuple] = []
        # the same for the analyses of a part of the file (the regions an edit reaches): their
        # trees are made of those regions' statements only
        self._partial: list[tuple] = []
        self._lock = threading.Lock()

    def clear(self) -> None:
        with self._lock:
            self._list.clear()
            self._partial.clear()

    def __len__(self) -> int:
        return len(self._list)

    def _snapshot(self, partial: bool = False) -> list[tuple]:
        with self._lock:
            return list(self._partial if partial else self._list)

    def _to_end(self, entry: tuple) -> None:
        with self._lock:
            for lst in (self._list, self._partial):
                if entry in lst:
                    lst.remove(entry)
                    lst.append(entry)

    def touch(self, version) -> None:
        """The kept dataflow of `version`'s tree (if any) counts as just used: an edit undone
        returns to a text whose dataflow the next edits will start from."""
        if version is None or len(self._list) < 2:
            return
        body = [st for r in version.regions for st in r.stmts]
        for entry in reversed(self._snapshot()):
            bkey, base = entry
            if bkey == version.key and len(base.body) == len(body) and all(
                    x is y for x, y in zip(base.body, body)):
                self._to_end(entry)
                return

    def exactly(self, key: tuple, body: list, lines: list) -> "flow_patch.FlowBase | None":
        """The kept whole-file dataflow of exactly the tree of `body` (top-level statements, the same
        objects) parsed from `lines`, or None."""
        for bkey, base in reversed(self._snapshot()):
            if bkey == key and len(base.body) == len(body) and all(x is y for x, y in zip(base.body, body)) \
                    and base.lines == lines:
                return base
        return None

    def moved(self, key: tuple, base, first: int, delta: int, new_lines: list) -> None:
        """Blank lines were added or removed and `base`'s tree (exactly()) moved in place, every
        line from `first` on by `delta`: `base` moves with it (flow_patch.rebase_moved, its lines
        now `new_lines`) and stays the one kept; every other kept dataflow is dropped (their trees
        share statements that moved)."""
        with self._lock:
            self._list.clear()
            self._partial.clear()
            self._list.append((key, base))
        flow_patch.rebase_moved(base, first, delta, new_lines)

    def keep(self, key: tuple, raw, partial: bool = False) -> None:
        if raw.flow_base is not None:
            with self._lock:
                lst = self._partial if partial else self._list
                lst.append((key, raw.flow_base))
                del lst[:-MAX_FLOW_BASES]
            raw.flow_base = None  # (the versions remembered hold their RawAnalysis)
            _used(self)

    def parse_like_a_base(self, text: str, path, key, options, failure: BaseException | None = None) -> tuple:
        """For a whole-file analysis: when the text (recovered, if it does not parse) differs from
        the tree of a kept dataflow inside one function's body only (a keyword being typed, a line
        pasted into a function), (its SourceFile with the kept tree's statements in place of the
        ones parsed again, a FlowEdit); else (None, None) and the analysis parses the text itself.
        `failure`: what ast.parse raised for `text`, when the caller tried it already."""
        lines = split_lines(text)
        cands = [b for k, b in reversed(self._snapshot()) if k == key and len(b.lines) == len(lines)]
        if not cands:
            return None, None
        src = SourceFile.parse(text, path, deadline=time.thread_time() + options.time_budget_s, failure=failure)
        if src.prefix_only:
            return src, None
        got = src.recovered_lines if src.recovered_lines is not None else src.lines
        body = src.tree.body
        for base in cands:
            if len(base.lines) != len(got):
                continue
            if len(base.body) == len(body) + 1:  # an import line emptied by the recovery?
                edit = _imports_like_a_base(base, body, got)
                if edit is not None:
                    return src, edit
                continue
            if len(base.body) != len(body):
                continue
            differ = [j for j, (x, y) in enumerate(zip(base.body, body))
                      if not _same_statement(x, y, base.lines, got)]
            if differ and all(isinstance(base.body[j], _IMPORTS) and isinstance(body[j], _IMPORTS) for j in differ):
                edit = _imports_like_a_base(base, body, got)
                if edit is not None:
                    return src, edit
                continue
            if len(differ) != 1:
                continue
            i = differ[0]
            x, y = base.body[i], body[i]
            if type(x) is not type(y) or not isinstance(x, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) \
                    or (first_line(x), x.end_lineno) != (first_line(y), y.end_lineno):
                continue
            lo, hi = first_line(x), x.end_lineno
            a = next(n for n in range(lo, hi + 1) if base.lines[n - 1] != got[n - 1])
            b = next(n for n in range(hi, lo - 1, -1) if base.lines[n - 1] != got[n - 1])
            edit = flow_patch.prepare(base, x, y, a, b)
            if edit is not None:
                body[:] = [y if j == i else st for j, st in enumerate(base.body)]
                return src, edit
        return src, None

    def edit_in_function(self, key, all_regions: list, k: int, reg, stmt: ast.stmt,
                   new: list[str]) -> flow_patch.FlowEdit | None:
        """An edit inside one function's body (the statement of region `k`, now `stmt`): the kept
        dataflow whose tree has every other statement of the new tree, for the dataflow to re-run
        that function only."""
        body = [st for r in all_regions for st in r.stmts]
        i = sum(len(r.stmts) for r in all_regions[:k])
        return self._edit_in_function(key, body, i, reg, stmt, new, False)

    def edit_in_part(self, key, body: list, i: int, reg, stmt: ast.stmt,
                     new: list[str]) -> flow_patch.FlowEdit | None:
        """The same for the analysis of a part of the file: `body` the statements of the regions
        the edit reaches (and the imports), `stmt` (its i-th) the edited one; the kept dataflow of
        an analysis of the same part (its other statements the same), as the edits typed into one
        method of a large class analyse again and again."""
        return self._edit_in_function(key, body, i, reg, stmt, new, True)

    def _edit_in_function(self, key, body: list, i: int, reg, stmt: ast.stmt, new: list[str],
                          partial: bool) -> flow_patch.FlowEdit | None:
        for entry in reversed(self._snapshot(partial)):
            bkey, base = entry
            if bkey != key or len(base.body) != len(body) or len(base.lines) != len(new):
                continue
            since = _edited_since(base, body, {i}, functions=True)
            if since is None:
                continue
            others, fns, stores = since
            span = _changed(base.lines, new, reg, [body[j] for j in others])
            edit = flow_patch.prepare(base, base.body[i], stmt, *span) if span is not None else None
            if edit is not None:
                edit.fn_edits = [(base.body[j], body[j]) for j in fns]
                for j in fns:
                    edit.gone.update(subtree_ids([base.body[j]]))
                    edit.fresh.update(subtree_ids([body[j]]))
                edit.stores |= stores
                edit.module_edits = [(j, base.body[j], body[j]) for j in others if j not in fns]
                # the least recently used goes first: a base the edits keep starting from (the text
                # they are undone to, the text before a line being typed) stays
                self._to_end(entry)
                return edit
        return None

    def edit_in_script(self, key, all_regions: list, k: int, reg, stmt: ast.stmt,
                       new: list[str]) -> flow_patch.FlowEdit | None:
        """An edit of one statement of the script (region `k`, now `stmt`, as many lines as before):
        the kept dataflow whose tree has every other statement of the new tree (statements of the
        script edited since re-run with it), for the dataflow to re-run that statement alone."""
        body = [st for r in all_regions for st in r.stmts]
        i = sum(len(r.stmts) for r in all_regions[:k])
        for entry in reversed(self._snapshot()):
            bkey, base = entry
            if bkey != key or len(base.body) != len(body) or len(base.lines) != len(new):
                continue
            if not _same_place(base.body[i], stmt):
                continue
            since = _edited_since(base, body, {i}, functions=False)
            if since is None:
                continue
            others = since[0]
            span = _changed(base.lines, new, reg, [body[j] for j in others])
            edit = flow_patch.prepare_script(base, base.body[i], stmt, *span) if span is not None else None
            if edit is not None:
                edit.module_edits = [(i, base.body[i], stmt)] + [(j, base.body[j], body[j]) for j in others]
                self._to_end(entry)
                return edit
        return None

    def edit_in_imports(self, key, all_regions: list, k: int, reg, names: frozenset,
                        new: list[str]) -> flow_patch.FlowEdit | None:
        """An edit of the import statements of region `k` (as many lines as before, `reg` the region
        it replaced) that binds `names` differently, when every other top-level statement is the
        kept dataflow's and every one that reads a name of `names` is a function: the kept dataflow
        for those functions to run again."""
        fresh = all_regions[k]
        found = _readers([(r.kind, r.stmts) for r in all_regions if r is not fresh and r.uses & names], names, new)
        if found is None:
            return None
        readers, stores = found
        body = [st for r in all_regions for st in r.stmts]
        i = sum(len(r.stmts) for r in all_regions[:k])
        n = len(fresh.stmts)
        for entry in reversed(self._snapshot()):
            bkey, base = entry
            if bkey != key or len(base.body) != len(body) or len(base.lines) != len(new):
                continue
            since = _edited_since(base, body, set(range(i, i + n)), functions=False)
            if since is None:
                continue
            others = since[0]
            span = _changed(base.lines, new, reg, [body[j] for j in others])
            if span is None:
                continue
            edit = flow_patch.prepare_imports(base, base.body[i:i + n], fresh.stmts, *span, names, readers, stores)
            if edit is not None:
                edit.module_edits = [(j, base.body[j], body[j]) for j in others]
                self._to_end(entry)
                return edit
        return None


def _edited_since(base, body: list, edited: set, functions: bool) -> tuple | None:
    """The top-level statements of `body` other than `edited` (indexes) that are not the kept
    dataflow's: edited since (analysed in part, so with no kept dataflow of their own), each at its
    old place. (their indexes, those that are functions, the attributes those assign) when the
    statements of the script can each be re-run on their own (flow_patch.script_statement_ok) and,
    with `functions`, the functions with the edited one (flow_patch.function_edit_ok); else None."""
    others = [j for j, (x, y) in enumerate(zip(base.body, body)) if j not in edited and x is not y]
    if len(others) > MAX_SCRIPT_EDITS or not all(_same_place(base.body[j], body[j]) for j in others):
        return None
    fns, stores = [], set()
    for j in others:
        x, y = base.body[j], body[j]
        if functions and isinstance(x, (ast.FunctionDef, ast.AsyncFunctionDef)):
            got = flow_patch.function_edit_ok(base, x, y)
            if got is None:
                return None
            fns.append(j)
            stores |= got
        elif not flow_patch.script_statement_ok(base, x, y):
            return None
    return others, fns, stores


_IMPORTS = (ast.Import, ast.ImportFrom)


def _imports_like_a_base(base, body: list, got: list[str]) -> flow_patch.FlowEdit | None:
    """A text (recovered, if it does not parse) that differs from a kept dataflow's tree in import
    statements only, as many lines: the same statements, or one import statement fewer (a line that
    does not parse, emptied: `importq os`). The FlowEdit for the functions reading the names they
    bind differently (see FlowBases.edit_in_imports), `body` then made of the kept statements."""
    imports = _IMPORTS
    old, new, kept = [], [], []
    j = 0
    for x in base.body:
        y = body[j] if j < len(body) else None
        if y is not None and _same_statement(x, y, base.lines, got):
            kept.append(x)
            j += 1
        elif y is not None and isinstance(x, imports) and isinstance(y, imports) \
                and len(base.body) == len(body) and (first_line(x), x.end_lineno) == (first_line(y), y.end_lineno):
            old.append(x)
            new.append(y)
            kept.append(y)
            j += 1
        elif isinstance(x, imports) and len(base.body) == len(body) + 1 and not old:
            old.append(x)  # its line emptied (the only difference)
        else:
            return None
    if j != len(body) or not old:
        return None
    names = changed_imports(old, new, spelled=True)  # (a whole-file analysis: every rule runs again)
    if not names:
        return None
    regions = []
    for st in kept:
        if isinstance(st, imports) or not _mentions(got, st, names):
            continue
        kind, _defines, uses = names_of([st], class_parts=True)
        if uses & names:
            regions.append((kind, [st]))
    found = _readers(regions, names, got)
    if found is None:
        return None
    lo, hi = first_line(old[0]), max(st.end_lineno for st in old)
    edit = flow_patch.prepare_imports(base, old, new, lo, hi, names, *found)
    if edit is not None:
        body[:] = kept
    return edit


def _mentions(lines: list[str], st: ast.AST, names: frozenset) -> bool:
    """Whether the lines of `st` hold one of `names` as text (a cheap test before its names are
    worked out: every name it reads is in its text)."""
    text = "\n".join(lines[first_line(st) - 1:st.end_lineno])
    return any(n in text for n in names)


def _self_stores(fn) -> set:
    """The attributes `self.<attr>` a method assigns (what bounds.AttrFacts and
    modelling.default_module read of a class: the assignments of its methods' statements)."""
    out = set()
    for n in walk_statements(fn):
        if isinstance(n, ast.Assign):
            targets = n.targets
        elif isinstance(n, (ast.AugAssign, ast.AnnAssign)):
            targets = [n.target]
        else:
            continue
        for t in targets:
            for e in (t.elts if isinstance(t, (ast.Tuple, ast.List)) else [t]):
                if isinstance(e, ast.Attribute) and isinstance(e.value, ast.Name) and e.value.id == "self":
                    out.add(e.attr)
    return out


def _readers(regions: list, names: frozenset, lines: list[str]) -> tuple[list, set] | None:
    """The functions of `regions` ((kind, statements) of the regions that read one of `names`,
    regions.names_of's kinds) that read them:
    a top-level function, or the methods of a class that read them when nothing else of the class
    does (its bases, decorators, keywords and the statements of its body that are not methods are
    run by the script, which is kept); with the attributes those methods assign on `self`. None
    when another statement of the script reads one."""
    out, stores = [], set()
    for kind, stmts in regions:
        if kind not in ("def", "script") or len(stmts) != 1:
            return None
        st = stmts[0]
        if isinstance(st, (ast.FunctionDef, ast.AsyncFunctionDef)):
            # (a function with a `global` statement is a region of the script: re-run the same way,
            # see flow_patch's docstring on `global`)
            out.append(st)
            continue
        if kind != "def" or not isinstance(st, ast.ClassDef):
            return None
        outside = st.bases + [kw.value for kw in st.keywords] + st.decorator_list
        if any(isinstance(n, ast.Name) and n.id in names for e in outside for n in ast.walk(e)):
            return None
        for m in st.body:
            if not _mentions(lines, m, names) or not names_of([m], class_parts=True)[2] & names:
                continue
            if not isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef)):
                return None
            out.append(m)
            stores |= _self_stores(m)
    return (out, stores) if out else None


def _same_statement(x: ast.stmt, y: ast.stmt, xlines: list[str], ylines: list[str]) -> bool:
    """Two top-level statements of the same type at the same place, their lines the same text
    (so the same tree)."""
    if type(x) is not type(y) or x.col_offset != y.col_offset:
        return False
    lo, hi = first_line(x), x.end_lineno
    return (lo, hi) == (first_line(y), y.end_lineno) and xlines[lo - 1:hi] == ylines[lo - 1:hi]


def _changed(old: list[str], new: list[str], reg, others: list = ()) -> tuple[int, int] | None:
    """The first and last line (1-based) of `reg` that differ between `old` and `new` (as many
    lines), when some do and every other line that differs lies in one of the statements `others`."""
    if len(old) != len(new):
        return None
    a = reg.start
    while a <= reg.end and old[a - 1] == new[a - 1]:
        a += 1
    b = reg.end
    while b >= a and old[b - 1] == new[b - 1]:
        b -= 1
    if b < a:
        return None
    if not others:
        if old[:reg.start - 1] != new[:reg.start - 1] or old[reg.end:] != new[reg.end:]:
            return None
        return a, b
    allowed = sorted((first_line(st), st.end_lineno) for st in others)
    lo = 1
    for s_lo, s_hi in sorted(allowed + [(reg.start, reg.end)]):
        if old[lo - 1:s_lo - 1] != new[lo - 1:s_lo - 1]:
            return None
        lo = max(lo, s_hi + 1)
    if old[lo - 1:] != new[lo - 1:]:
        return None
    return a, b


def _same_place(x: ast.stmt, y: ast.stmt) -> bool:
    return type(x) is type(y) and (first_line(x), x.end_lineno, x.col_offset) == (first_line(y), y.end_lineno, y.col_offset)
