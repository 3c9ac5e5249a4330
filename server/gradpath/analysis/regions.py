"""How the editor's incremental analysis cuts a file into regions, and which regions an edit reaches.

A region is one top-level statement with its decorators and the blank and comment lines after it:
the regions tile the file. What a region binds and reads at module level (`names_of`) depends only
on its text; a region depends on the regions that define a name it uses, and regions that share
module state (script_state.coupling) count as one (`dependents`, `closure`). Pure: stdlib `ast`.
"""
from __future__ import annotations

import ast
import bisect
import weakref
from dataclasses import dataclass, field

from gradpath.analysis.findings import Finding
from gradpath.analysis.script_state import StatementFacts, coupling, def_facts, statement_facts
from gradpath.analysis.source import SyntaxProblem

# Regions' names remembered by text (see make_region); cleared past this many.
MAX_NAMES_MEMO = 5000


@dataclass(eq=False)
class Region:
    start: int  # first line (1-based)
    end: int  # last line, inclusive
    stmts: list  # top-level ast statements, positioned for the current text
    kind: str  # "import" | "def" | "script" | "empty"
    defines: frozenset
    uses: frozenset
    error: SyntaxProblem | None = None  # a syntax error recovered inside this region
    findings: list = field(default_factory=list)  # raw findings that start in this region
    facts: StatementFacts | None = None  # what it binds, mutates and calls at module level

    @property
    def size(self) -> int:
        return self.end - self.start + 1



def first_line(st: ast.stmt) -> int:
    decos = getattr(st, "decorator_list", None)
    if decos:
        return min([st.lineno] + [d.lineno for d in decos])
    return st.lineno


def cut_regions(stmts: list, first: int, last: int, lines: list[str], recovered: bool = False,
             memo: dict | None = None) -> list[Region] | None:
    """Cut lines first..last into regions, one per top-level statement that starts a line at
    column 0 (statements sharing a line share a region). None if a statement does not start at
    column 0 of its own line (then the cut would not be safe), except in a tree recovered from a
    syntax error (`recovered`), where such statements (the body of a blanked `def`) join the
    region before them."""
    groups: list[tuple[int, list]] = []
    for st in stmts:
        ln = first_line(st)
        if groups and ln == groups[-1][0]:
            groups[-1][1].append(st)  # `a = 1; b = 2`
            continue
        text = lines[ln - 1] if 1 <= ln <= len(lines) else ""
        inside = groups and ln <= max(getattr(s, "end_lineno", None) or s.lineno for s in groups[-1][1])
        if inside or text[:1] in (" ", "\t", "\f"):
            if recovered and groups:
                groups[-1][1].append(st)
                continue
            if not (recovered and not groups):
                return None
        groups.append((ln, [st]))
    out: list[Region] = []
    if not groups:
        return [make_region(first, last, [])]
    if groups[0][0] > first:
        # leading comments and blank lines: their own region (nothing in it)
        out.append(make_region(first, groups[0][0] - 1, []))
    for i, (ln, sts) in enumerate(groups):
        end = groups[i + 1][0] - 1 if i + 1 < len(groups) else last
        out.append(make_region(ln, end, sts, lines, memo))
    return out


def make_region(start: int, end: int, stmts: list, lines: list[str] | None = None, memo: dict | None = None) -> Region:
    """A region of lines start..end holding `stmts`. What it binds, reads and does at module level
    depends only on its text: `memo` (text -> those) spares working them out again for the
    regions an edit did not touch (an editor's whole-file analysis rebuilds every region)."""
    key = None
    if memo is not None and lines is not None and stmts:
        key = "\n".join(lines[start - 1:end])
        hit = memo.get(key)
        if hit is not None:
            return Region(start, end, stmts, hit[0], hit[1], hit[2], facts=hit[3])
    kind, defines, uses = names_of(stmts, class_parts=memo is not None)
    if kind == "def":
        facts = def_facts(stmts[0].name)
    elif kind == "empty":
        facts = None
    else:
        facts = statement_facts(stmts)
    if key is not None:
        if len(memo) > MAX_NAMES_MEMO:
            memo.clear()
        memo[key] = (kind, defines, uses, facts)
    return Region(start, end, stmts, kind, defines, uses, facts=facts)


def names_of(stmts: list, class_parts: bool = False) -> tuple[str, frozenset, frozenset]:
    """(kind, names it binds at module level, names it reads from module level). With
    `class_parts` (an editor's analysis), what each statement of a class body binds and reads is
    kept while that statement's tree lives: an edit inside one method of a large class visits that
    method only (the others are the previous tree's objects)."""
    if not stmts:
        return "empty", frozenset(), frozenset()
    sc = _Scope(class_parts)
    for st in stmts:
        sc.visit(st)
    free = sc.free()
    if all(isinstance(s, (ast.Import, ast.ImportFrom)) for s in stmts):
        return "import", frozenset(sc.stores), frozenset(free)
    if len(stmts) == 1 and isinstance(stmts[0], (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) \
            and not sc.globals:
        return "def", frozenset({stmts[0].name}), frozenset(free)
    return "script", frozenset(sc.stores | sc.globals), frozenset(free | sc.globals)


# what each statement of a class body binds and reads (see _Scope.visit_class_statement), for as
# long as the statement's tree is alive
_CLASS_PARTS: "weakref.WeakKeyDictionary[ast.stmt, tuple]" = weakref.WeakKeyDictionary()


class _Scope:
    """Names one scope binds and reads; nested functions, lambdas, classes and comprehensions are
    scopes of their own whose free names count as reads here unless bound here. `global` names
    are module-level writes."""

    _NESTED = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef,
               ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)

    def __init__(self, class_parts: bool = False):
        self.loads: set[str] = set()
        self.stores: set[str] = set()
        self.nested: set[str] = set()
        self.globals: set[str] = set()
        self.class_parts = class_parts

    def visit_class_statement(self, st) -> None:
        """visit(st) for a statement of a class body: what a scope's visits add is the union of what
        each statement adds, so a statement's part is worked out once per statement object."""
        if not self.class_parts:
            self.visit(st)
            return
        hit = _CLASS_PARTS.get(st)
        if hit is None:
            part = _Scope(True)
            part.visit(st)
            hit = _CLASS_PARTS[st] = (frozenset(part.loads), frozenset(part.stores), frozenset(part.nested),
                                      frozenset(part.globals))
        self.loads |= hit[0]
        self.stores |= hit[1]
        self.nested |= hit[2]
        self.globals |= hit[3]

    def free(self) -> set[str]:
        return (self.loads | self.nested) - (self.stores - self.globals)

    def visit(self, node) -> None:
        todo = [node]
        while todo:
            n = todo.pop()
            t = type(n)
            if t is ast.Name:
                (self.loads if isinstance(n.ctx, ast.Load) else self.stores).add(n.id)
                continue
            if t in (ast.Global, ast.Nonlocal):
                if t is ast.Global:
                    self.globals.update(n.names)
                self.stores.update(n.names)
                continue
            if t in (ast.Import, ast.ImportFrom):
                for al in n.names:
                    if al.name != "*":
                        self.stores.add((al.asname or al.name).split(".")[0])
                continue
            if t in self._NESTED:
                self._nested_scope(n, todo)
                continue
            if t is ast.ExceptHandler and n.name:
                self.stores.add(n.name)
            elif t in (ast.MatchAs, ast.MatchStar) and getattr(n, "name", None):
                self.stores.add(n.name)
            elif t is ast.MatchMapping and n.rest:
                self.stores.add(n.rest)
            todo.extend(ast.iter_child_nodes(n))

    def _nested_scope(self, n, todo) -> None:
        inner = _Scope(self.class_parts)
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            self.stores.add(n.name)
            # decorators, defaults, annotations, bases: evaluated here
            todo.extend(n.decorator_list)
            if isinstance(n, ast.ClassDef):
                todo.extend(n.bases)
                todo.extend(k.value for k in n.keywords)
            else:
                a = n.args
                todo.extend(d for d in a.defaults + a.kw_defaults if d is not None)
                for arg in a.posonlyargs + a.args + a.kwonlyargs + [x for x in (a.vararg, a.kwarg) if x]:
                    inner.stores.add(arg.arg)
                    if arg.annotation is not None:
                        todo.append(arg.annotation)
                if n.returns is not None:
                    todo.append(n.returns)
            if isinstance(n, ast.ClassDef):
                for st in n.body:
                    inner.visit_class_statement(st)
            else:
                for st in n.body:
                    inner.visit(st)
        elif isinstance(n, ast.Lambda):
            a = n.args
            todo.extend(d for d in a.defaults + a.kw_defaults if d is not None)
            for arg in a.posonlyargs + a.args + a.kwonlyargs + [x for x in (a.vararg, a.kwarg) if x]:
                inner.stores.add(arg.arg)
            inner.visit(n.body)
        else:  # comprehension: the first iterable is evaluated here
            gens = n.generators
            if gens:
                todo.append(gens[0].iter)
            for i, g in enumerate(gens):
                inner.visit(g.target)
                if i:
                    inner.visit(g.iter)
                for c in g.ifs:
                    inner.visit(c)
            for part in ("elt", "key", "value"):
                v = getattr(n, part, None)
                if v is not None:
                    inner.visit(v)
            # comprehension targets are the comprehension's own
        self.nested |= inner.free()
        self.globals |= inner.globals


# Qualified names whose local spelling some rules look up in the whole import table rather than
# through a name a region reads: a fix or message spelled `nn.Parameter`, `F.softplus`, `chain(...)`
# (rules/_gp1.nn_prefix and torch_prefix, flow_text.module_alias, rules/params' itertools.chain), and
# whether anything comes from ignite (frameworks.engine_process_functions). An import edit that
# changes how one of these is bound changes findings anywhere.
FILE_WIDE_IMPORTS = frozenset({"torch", "torch.nn", "torch.nn.functional", "itertools", "itertools.chain"})
FILE_WIDE_PACKAGES = frozenset({"ignite"})


def import_bindings(stmts: list) -> dict[str, list] | None:
    """What the import statements among `stmts` bind at module level: local name -> what each
    binding of it imports, in order. None for a star import or a `__future__` import (they change
    what every name, or the parser, means)."""
    out: dict[str, list] = {}
    for st in stmts:
        if isinstance(st, ast.Import):
            for al in st.names:
                local = al.asname or al.name.split(".")[0]
                out.setdefault(local, []).append(("import", al.name, al.asname))
        elif isinstance(st, ast.ImportFrom):
            if st.module == "__future__":
                return None
            for al in st.names:
                if al.name == "*":
                    return None
                out.setdefault(al.asname or al.name, []).append(("from", st.level, st.module, al.name))
    return out


def _qualified(binding: tuple) -> str:
    if binding[0] == "import":
        return binding[1] if binding[2] else binding[1].split(".")[0]
    _kind, level, module, name = binding
    return ("." * level) + (f"{module}.{name}" if module else name)


def changed_imports(old_stmts: list, new_stmts: list, spelled: bool = False) -> frozenset | None:
    """The module-level names an edit of import statements binds differently (old statements ->
    new ones): the names whose readers can change. None when the edit can change more than its
    readers: a star or `__future__` import, or a binding of a name rules spell file-wide (unless
    `spelled`: a whole-file analysis, whose rules all run again, asks only what the dataflow reads)."""
    old, new = import_bindings(old_stmts), import_bindings(new_stmts)
    if old is None or new is None:
        return None
    changed = frozenset(n for n in old.keys() | new.keys() if old.get(n) != new.get(n))
    if spelled:
        return changed
    for n in changed:
        for b in old.get(n, []) + new.get(n, []):
            q = _qualified(b)
            if q in FILE_WIDE_IMPORTS or q.split(".")[0] in FILE_WIDE_PACKAGES:
                return None
    return changed


def index_at(regions: list[Region], line: int) -> int | None:
    starts = [r.start for r in regions]
    i = bisect.bisect_right(starts, line) - 1
    if 0 <= i < len(regions) and regions[i].start <= line <= regions[i].end:
        return i
    return None


def region_at(regions: list[Region], line: int) -> Region | None:
    i = index_at(regions, line)
    return regions[i] if i is not None else None


def assign_findings(regions: list[Region], findings: list[Finding]) -> None:
    """Give each finding to the region its span starts in (findings elsewhere are dropped: they
    belong to regions whose findings are kept from before)."""
    if not regions:
        return
    starts = [r.start for r in regions]
    for f in findings:
        i = bisect.bisect_right(starts, f.span.line) - 1
        if 0 <= i < len(regions) and regions[i].start <= f.span.line <= regions[i].end:
            regions[i].findings.append(f)


def dependents(regions: list[Region], fresh: list[Region], old: Region, cp=None,
               imports: frozenset = frozenset()) -> set[int]:
    """The fresh regions and every region that uses, transitively, a name they define or mutate (or
    the replaced region defined). Regions that share state (see `script_state.coupling`) count as
    one. Import regions among the old and fresh ones define only `imports`: the names the edit
    binds differently (`changed_imports`), not every name they bind."""
    cp = cp or coupling(list(regions) + [old])
    stateful, defines = cp.stateful, cp.defines
    redo = {id(r) for r in fresh}
    names = set(imports)
    group = id(old) in stateful or any(id(r) in stateful for r in fresh)
    for r in [old] + fresh:
        if r.kind != "import":
            names |= defines.get(id(r), r.defines)
    changed = True
    while changed:
        changed = False
        for r in regions:
            if id(r) in redo:
                continue
            if (group and id(r) in stateful) or (r.uses & names):
                redo.add(id(r))
                names |= defines.get(id(r), r.defines)
                if id(r) in stateful:
                    group = True
                changed = True
    return redo


def closure(regions: list[Region], seeds: set[int], cp=None) -> set[int]:
    """The seed regions and every region they depend on, transitively (a region defining or
    mutating a name a member uses; all regions that share state once one is in)."""
    out = set(seeds)
    cp = cp or coupling(regions)
    by_name: dict[str, list[Region]] = {}
    for r in regions:
        if r.kind in ("def", "script"):
            for n in cp.defines.get(id(r), r.defines):
                by_name.setdefault(n, []).append(r)
    stateful = cp.stateful
    todo = [r for r in regions if id(r) in out]
    group_in = False
    while todo:
        r = todo.pop()
        if id(r) in stateful and not group_in:
            group_in = True
            for q in regions:
                if id(q) in stateful and id(q) not in out:
                    out.add(id(q))
                    todo.append(q)
        for n in r.uses:
            for q in by_name.get(n, ()):
                if id(q) not in out:
                    out.add(id(q))
                    todo.append(q)
    return out
