"""The dataflow of an edited file, made from the previous version's by re-running some functions.

The interpreter (dataflow.py) runs every function on its own and again with each caller's values;
a training script's `main()` reaches every helper, so an edit inside any function body used to
re-run the whole file. For an edit inside one function's body (lines added or removed too: the
kept tree is moved first, see `prepare` and incremental.py), this module re-runs that function's
executions, each with the values it was called with before
(`Flow.runs` records them, in order, each with the run that called it and, per call it made, what
the call returned and the run it made), on a copy of the previous flow's state: the re-run
functions' events, node values and memo entries are taken out, and their runs run again in order.

Then it checks what the rest of the file saw, and when something changed there, the functions
concerned run again too, in another round (at most MAX_ROUNDS rounds and MAX_SCOPES functions, and
no more CPU than half of what the whole flow cost):
- a run called by a function not re-run returns another value (field by field, nodes by
  identity): its caller runs again (when the caller is a statement of the script: no patch);
- a call a re-run function makes of a function not re-run must pass values equal (field by field)
  to the ones the call at that place passed before, get what it got before without running the
  callee (from the memo, or what it returned before: a memo key holds ids of values made during a
  run, and leaves some fields out), and pass no value that mentions a node of the edited lines
  (before or now): else the callee runs again; a run such a call made before stands only if the
  same call (node) makes it now, else its function runs again;
- a run that stays and took a re-run function's value from the memo, where the run that made the
  entry was itself inside a re-run one (superseded), or that ran a re-run function from inside a
  re-run region, makes its own function run again.
A run of a re-run function made from inside another re-run function runs again there, as the
caller runs; the others run again where they ran, with their recorded values.

What the rest of the analysis reads beyond the flow must be as it was: the model and optimizer
bindings of the whole file, the framework bodies, the imports and what the classes' attributes hold
(`self.eps = 1e-6` read from another method); the edit is not inside a function or class the edited
one defines, constructs no class of the file, adds no layer to a Sequential (`.append`,
`.add_module`, `.extend`: the flow reads those in the function that builds it); an attribute it
assigns (in `__init__` too) gets the same module as before from a constructor's default
(`def __init__(self, loss=nn.MSELoss()): self.loss = loss`, modelling.default_module). A `global`
statement changes nothing here: the flow keeps a function's assignments in its own frame, and the
facts' bindings are compared.

An edit of import statements (as many lines as before) that binds some names differently, where
every top-level statement reading one of them is a function whose decorators do not
(`prepare_imports`), re-runs those functions, and the ones nested in them, the same way: the
import statements bind nothing in the flow's environments (the symbols resolve those names), the
names' qualified names are worked out again (`_qns`), and the facts bind every scope's names
again. The model and optimizer bindings and framework bodies are compared as above; the rounds
that follow are the same.

Top-level functions edited since the kept flow (analysed in part then, by regions: no dataflow of
that text was kept) re-run with the edited one (`FlowEdit.fn_edits`, `function_edit_ok`): same
signature and decorators (names, no calls), no definitions, imports, constructions of the file's
classes or layers added in them; their decorators, which the script evaluated, get the values the
old ones got.

Statements of the script edited since the kept flow (an argument parser's line: analysed in part,
so with no whole flow of their own) are re-run first, each from the environment the kept flow had
before it (`Flow.module_envs`): each must leave the same environment and make the same calls.

The rest of the previous state (events, values by node, the module environment, the memo) stands
for the new text as it is: the tree shares every node the edit did not touch with the previous
tree (graft.py), and the facts take over the previous version's Scope objects, so what the flow
recorded against those objects is still about the new tree. The re-run functions' events come
after the others (the rules do not depend on their order). When a check fails the whole flow runs,
within the same analysis; `FlowEdit.outcome` says why.

A kept flow is never changed: the same base serves every version made from its tree (a line typed
key by key, recovered to the text before it while it does not parse). Its Scope objects are shared
with those versions, each analysis's facts pointing them at its own tree. A flow patched by
re-running more than the edited function is not kept as a base (its runs are not in the order the
whole flow would run them).
"""
from __future__ import annotations

import ast
import time
from dataclasses import dataclass, field
from typing import Any

from gradpath.analysis import bounds, frameworks, loop_reuse, modelling
from gradpath.analysis.dataflow import Flow
from gradpath.analysis.facts import ModelBinding, scope_place
from gradpath.analysis.flow_values import mentions, Run, same_value, Val, _Frame
from gradpath.analysis.graft import children, graft, subtree_ids
from gradpath.analysis.regions import first_line

_DEFS = (ast.FunctionDef, ast.AsyncFunctionDef)
# methods that add a layer to a Sequential after it is built (modelling.sequential_layers reads them)
_LAYER_ADDS = frozenset({"add_module", "append", "extend"})
# a patch re-runs the edited function and then, round after round, the functions it reaches
MAX_ROUNDS = 4
MAX_SCOPES = 8
MAX_COST_SHARE = 0.5
_NOT_SCRIPT = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Import, ast.ImportFrom, ast.Global,
               ast.Nonlocal)
# the per-node caches of a Flow (id(node) -> what it computed once)
_NODE_CACHES = ("_keys", "_carries", "_qns", "_dumps", "_consts")


@dataclass(eq=False)
class FlowBase:
    """A finished analysis's dataflow, kept for later versions of the file. Never changed: a patch
    works on copies. Its Scope objects are shared with the versions made from it (each analysis's
    facts point them at its own tree), so where each scope was is kept apart."""
    flow: Flow
    places: list  # scope_place() of each of flow.facts.scopes, in this version
    frameworks: tuple
    body: list  # the top-level statements of its tree
    lines: list  # the lines that tree was parsed from (a recovered text's, when it did not parse)
    loops: Any = None  # the loop facts of the same analysis, when it made them (see loop_reuse.py)
    tree: Any = None  # its tree's module node (a version with the very same statements may use it again)


@dataclass(eq=False)
class FlowEdit:
    """An edit inside `new_fn`'s body (lines a..b, as many lines as before), `old_fn` its tree in
    the version `base` was made for. `outcome`: "" once the flow was patched, else why not."""
    base: FlowBase
    old_top: ast.AST
    old_fn: ast.AST | None  # (None: an edit of a statement of the script, module_edits[0])
    new_fn: ast.AST | None
    a: int
    b: int
    outcome: str = "not tried"
    gone: dict = field(default_factory=dict)  # id -> node: the old tree's nodes the new one lacks
    fresh: dict = field(default_factory=dict)  # id -> node: the new function's nodes the old tree lacks
    stores: set = field(default_factory=set)  # attributes assigned on the edited lines (`self.x = ...`)
    # statements of the script that differ from the base's too (edits analysed in part since):
    # (index among the top-level statements, old statement, new statement)
    module_edits: list = field(default_factory=list)
    # top-level functions edited since the kept flow too (analysed in part then, so with no kept
    # dataflow of their own): (old def, new def), re-run with the edited one
    fn_edits: list = field(default_factory=list)
    also: list = field(default_factory=list)  # once patched: the other functions re-run, by name
    # an edit of import statements (see prepare_imports): the names it binds differently, and the
    # top-level functions that read them (their functions, nested ones too, re-run)
    imports: frozenset = frozenset()
    readers: list = field(default_factory=list)
    own_before: set | None = None  # ids of old_fn's own body's nodes (own_body_ids)
    facts_changed: str | None = None  # (facts_changed, once worked out)
    moved: bool = False  # blank lines added or removed, the tree the base's (see prepare_moved)

    def patched_text(self) -> str:
        also = ", ".join(f"`{n}`" for n in self.also)
        if self.imports:
            return "patched imports: " + ", ".join(f"`{fn.name}`" for fn in self.readers) + (
                f" re-run (with {also})" if also else " re-run")
        if self.moved:
            return "lines moved: nothing re-run"
        if self.new_fn is None:
            return "patched a statement of the script"
        return f"patched `{self.new_fn.name}`" + (f" (with {also})" if also else "")

    def scope_reuse(self) -> dict:
        return dict(zip(self.base.places, self.base.flow.facts.scopes))


class _NoPatch(Exception):
    pass


def keep(ctx) -> FlowBase | None:
    """The dataflow of a finished analysis, if it ran to the end."""
    fl = ctx._memo.get("dataflow")
    if type(fl) is not Flow or fl._stopped or fl.cascaded:
        return None
    try:
        places = [scope_place(s.node, s.kind, s.class_name) for s in fl.facts.scopes]
        src = ctx.src
        return FlowBase(fl, places, _frameworks_sig(ctx), list(ctx.tree.body),
                        list(src.recovered_lines if src.recovered_lines is not None else src.lines),
                        loop_reuse.kept(ctx._memo.get("gp4.loops")), ctx.tree)
    except Exception:  # pragma: no cover - a base is an optimisation only
        return None


def prepare(base: FlowBase | None, old_top: ast.stmt, new_top: ast.stmt, a: int, b: int,
            stores_ok: bool = True, new_b: int | None = None, moved: tuple | None = None) -> FlowEdit | None:
    """A FlowEdit when lines a..b changed (no line added or removed) inside the body of one
    function: `old_top`/`new_top` a top-level def (or a class, the function then one of its
    methods) before and after. Grafts `new_top` (see graft.py). None when the edit is not of that
    kind. With `stores_ok` False, None too when the edited lines assign an attribute.

    Lines added or removed (incremental.py): the old lines a..b are the new lines a..new_b, and
    `old_top` has been moved where the new text has the lines after them; `moved` = (the edited
    function found in `old_top` before it moved, the ids of its nodes on the old lines a..b and of
    those holding them: not moved, never grafted, see graft())."""
    if base is None:
        return None
    nb = b if new_b is None else new_b
    old_fn = function_at(old_top, a, b) if moved is None else moved[0]
    # (lines only removed: the function holding the line above them, or the one now in their place)
    new_fn = function_at(new_top, a, nb) if nb >= a else (
        function_at(new_top, a - 1, a - 1) or function_at(new_top, a, a))
    if old_fn is None and new_fn is not None:
        old_fn = _function_before(old_top, a, b)  # lines typed after its last statement
    if old_fn is None or new_fn is None or (old_fn.name, old_fn.lineno, old_fn.col_offset) != (
            new_fn.name, new_fn.lineno, new_fn.col_offset):
        return None
    classes = base.flow.sym.classes
    stores: set = set()
    for fn, hi in ((old_fn, b), (new_fn, nb)):
        for n in touching(fn, a, hi):
            if n is fn:
                continue
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                return None  # an edit inside a function or class the function defines
            if isinstance(n, (ast.Import, ast.ImportFrom)):
                return None  # the symbols read imports anywhere
            if isinstance(n, ast.Attribute) and isinstance(n.ctx, ast.Store):
                # the classes' attribute facts and a module attribute's default read these:
                # compared in _patch
                if not stores_ok:
                    return None
                stores.add(n.attr)
            if isinstance(n, ast.Call) and (isinstance(n.func, ast.Name) and n.func.id in classes or isinstance(
                    n.func, ast.Attribute) and n.func.attr in _LAYER_ADDS):
                # a construction of a class of the file (which arguments its constructions pass
                # decides a module attribute's default), or a layer added to a Sequential
                return None
    # (no refusal past this point: the graft puts old nodes into `new_top`, and grafting it again
    # onto another tree would change those)
    shared: set = set()
    graft(old_top, new_top, a, nb, shared, moved[1] if moved is not None else None)
    b = max(b, nb)
    gone = subtree_ids([old_fn], shared)
    fresh = subtree_ids(new_fn.body, shared)
    gone[id(old_top)] = old_top
    edit = FlowEdit(base, old_top, old_fn, new_fn, a, b)
    edit.gone, edit.fresh, edit.stores = gone, fresh, stores
    return edit


def rebase_moved(base: FlowBase, first: int, delta: int, lines: list) -> None:
    """`base`'s tree has just been moved in place: every node from line `first` on is `delta` lines
    further (blank lines added or removed before it, incremental.py); what the base holds of
    positions follows: its lines become `lines` (the new text's), the places of its scopes and its
    framework bodies' lines move, and so do the lines of its facts' bindings (a later analysis takes
    them over as they are, see Facts.build). Its dataflow holds nodes, not positions."""
    def at(ln):
        return ln + delta if ln >= first else ln

    base.lines = list(lines)
    base.places = [p if len(p) < 5 else p[:3] + (at(p[3]),) + p[4:] for p in base.places]
    base.frameworks = tuple(sorted((at(f[0]),) + tuple(f[1:]) for f in base.frameworks))
    facts = base.flow.facts
    seen = set()
    for b in list(facts.models) + list(facts.optimizers) + list(facts.calls):
        if id(b) not in seen:
            seen.add(id(b))
            b.line = at(b.line)


def prepare_moved(base: FlowBase | None, a: int, b: int) -> FlowEdit | None:
    """A FlowEdit for a text whose tree is `base`'s own, moved (rebase_moved): the Enter key that
    opens a line, a blank line deleted. Nothing runs again: the patched flow is the base's."""
    if base is None:
        return None
    edit = FlowEdit(base, None, None, None, a, b)
    edit.moved = True
    return edit


def prepare_imports(base: FlowBase | None, old_stmts: list, new_stmts: list, a: int, b: int,
                    names: frozenset, readers: list, stores: set) -> FlowEdit | None:
    """A FlowEdit for an edit of import statements (lines a..b, as many lines as before; `new_stmts`
    empty for an import statement whose line a syntax error's recovery emptied) that binds
    `names` differently (regions.changed_imports), where every top-level statement reading one of
    them is a function in `readers`, or a class whose methods in `readers` are all of it that reads
    them: those functions (and the ones nested in them) run again, every node that reads a name
    taking what it names from the new imports. None when a reader's decorators read one of the
    names (the script evaluates them, and it is kept). `stores`: the attributes the readers that are
    methods assign on `self`."""
    if base is None or not names or not readers or not old_stmts:
        return None
    for fn in readers:
        if not isinstance(fn, _DEFS):
            return None
        for d in fn.decorator_list:
            if any(isinstance(n, ast.Name) and n.id in names for n in ast.walk(d)):
                return None
    edit = FlowEdit(base, old_stmts[0], readers[0], readers[0], a, b)
    edit.gone = subtree_ids(old_stmts)
    edit.fresh = subtree_ids(new_stmts)
    edit.imports, edit.readers = frozenset(names), list(readers)
    # `stores`: the attributes re-run methods assign on `self` (what classes' attributes hold is
    # compared, _patch)
    edit.stores = set(stores)
    return edit


def prepare_script(base: FlowBase | None, old: ast.stmt, new: ast.stmt, a: int, b: int) -> FlowEdit | None:
    """A FlowEdit for an edit of one statement of the script (lines a..b, as many lines as before)
    that can be re-run on its own (script_statement_ok): `check_min_version("0.10.0")` with another
    version, a logging call, a constant's text. The patch re-runs it from the environment the kept
    flow had before it (as for a statement edited since, `module_edits`): it must leave the same
    environment and make the same calls, and every function's runs stand. None when it cannot."""
    if base is None or not script_statement_ok(base, old, new):
        return None
    edit = FlowEdit(base, old, None, None, a, b)
    edit.gone = subtree_ids([old])
    edit.fresh = subtree_ids([new])
    return edit


def function_edit_ok(base: FlowBase, old: ast.stmt, new: ast.stmt) -> set | None:
    """Whether a top-level function edited since the kept flow (every line of it may differ) can be
    re-run with the edited one: the attributes it assigns (old or new), or None when it defines a
    function or class, imports, constructs a class of the file or adds a layer to a Sequential
    (what `prepare` refuses on an edited line)."""
    if not isinstance(old, _DEFS) or not isinstance(new, _DEFS) or old.name != new.name:
        return None
    classes = base.flow.sym.classes
    stores: set = set()
    for fn in (old, new):
        for n in subtree_ids([fn]).values():
            if n is fn:
                continue
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Import, ast.ImportFrom,
                              ast.Lambda)):
                return None
            if isinstance(n, ast.Attribute) and isinstance(n.ctx, ast.Store):
                stores.add(n.attr)
            if isinstance(n, ast.Call) and (isinstance(n.func, ast.Name) and n.func.id in classes or isinstance(
                    n.func, ast.Attribute) and n.func.attr in _LAYER_ADDS):
                return None
        for d in fn.decorator_list:
            # a name or attribute: its value is all the script's evaluation left (a call could have
            # left events on the old nodes)
            if not isinstance(d, (ast.Name, ast.Attribute)) or any(isinstance(x, ast.Call) for x in ast.walk(d)):
                return None
    if ast.dump(old.args) != ast.dump(new.args) or len(old.decorator_list) != len(new.decorator_list) or any(
            ast.dump(x) != ast.dump(y) for x, y in zip(old.decorator_list, new.decorator_list)):
        return None  # its signature or decorators (evaluated by the script, which is kept)
    return stores


def script_statement_ok(base: FlowBase, old: ast.stmt, new: ast.stmt) -> bool:
    """Whether a statement of the script that differs from the base's can be re-run on its own
    (see _rerun_statement): no definitions, imports or constructions of the file's classes in it
    (the symbols and a module attribute's default read those), no layer added to a Sequential."""
    if isinstance(old, _NOT_SCRIPT) or isinstance(new, _NOT_SCRIPT):
        return False
    classes = base.flow.sym.classes
    for st in (old, new):
        for n in subtree_ids([st]).values():
            if isinstance(n, _NOT_SCRIPT) or isinstance(n, ast.Lambda):
                return False
            if isinstance(n, ast.Call) and (isinstance(n.func, ast.Name) and n.func.id in classes or isinstance(
                    n.func, ast.Attribute) and n.func.attr in _LAYER_ADDS):
                return False
    return True


def touching(fn, a: int, b: int) -> list:
    """The nodes of `fn` with a line in a..b (and those without positions on the way to them)."""
    out, stack = [], [fn]
    while stack:
        n = stack.pop()
        ln = getattr(n, "lineno", None)
        if ln is not None and (n.end_lineno < a or ln > b):
            continue
        out.append(n)
        stack.extend(children(n))
    return out


def function_at(top: ast.stmt, a: int, b: int):
    fn = top
    if isinstance(top, ast.ClassDef):
        fn = next((st for st in top.body if isinstance(st, _DEFS) and st.lineno <= a and b <= st.end_lineno), None)
    if not isinstance(fn, _DEFS) or not fn.body:
        return None
    return fn if fn.body[0].lineno <= a and b <= fn.end_lineno else None


def _function_before(top: ast.stmt, a: int, b: int):
    """The function of `top` (`top` itself, or a method of a class) that ends before line `a`, with
    nothing of `top` from there to line `b`: lines typed after its last statement, where the new
    tree's function holds them (a line added at the end of a function's body)."""
    fn = top
    if isinstance(top, ast.ClassDef):
        i = max((k for k, st in enumerate(top.body) if st.end_lineno < a), default=None)
        if i is None or any(first_line(st) <= b for st in top.body[i + 1:]):
            return None
        fn = top.body[i]
    if not isinstance(fn, _DEFS) or not fn.body or fn.end_lineno >= a:
        return None
    return fn


def patched(ctx, edit: FlowEdit) -> Flow | None:
    """The flow of `ctx` made from the edit's base, or None (see the module's docstring)."""
    try:
        fl = _patch(ctx, edit)
    except _NoPatch as why:
        edit.outcome = str(why)
        return None
    finally:
        edit.own_before = None  # (the analysis keeps its edit: the ids are not needed past the patch)
    edit.outcome = ""
    return fl


def _patch(ctx, edit: FlowEdit) -> Flow:
    base = edit.base.flow
    facts = ctx.facts
    if len(facts.scopes) != len(base.facts.scopes) or any(
            x is not y for x, y in zip(facts.scopes, base.facts.scopes)):
        raise _NoPatch("the file's functions changed")
    scope = next((s for s in facts.scopes if s.node is edit.new_fn), None) if edit.new_fn is not None else None
    if scope is None and edit.new_fn is not None:
        raise _NoPatch("the edited function has no scope")
    changed = facts_changed(ctx, edit)
    if changed:
        raise _NoPatch(changed)
    if edit.stores:
        before, now = bounds.AttrFacts(base.sym), bounds.attr_facts(ctx)
        if any(before.of(c, attr) != now.of(c, attr) for c in ctx.symbols.classes for attr in edit.stores):
            raise _NoPatch("what a class's attributes hold changed")
        old_tree, c0, c1 = ast.Module(body=edit.base.body, type_ignores=[]), {}, {}
        for c in ctx.symbols.classes:
            for attr in edit.stores:
                d0 = modelling.default_module(base.sym, old_tree, c, attr, c0)
                d1 = modelling.default_module(ctx.symbols, ctx.tree, c, attr, c1)
                if (d0 is None) != (d1 is None) or d0 is not None and (d0[0] is not d1[0] or d0[1] != d1[1]):
                    raise _NoPatch("the module a class's attribute gets from a default changed")
    if scope is None:
        # an edit of a statement of the script: that statement runs again from the environment the
        # kept flow had before it, and must leave the same one and make the same calls
        fl, _grow = _attempt(ctx, edit, [], None)
        fl.cost = base.cost
        return fl
    # the functions to re-run: the edited one, and those the re-runs find they reach (a callee
    # passed other values, a caller that gets another value back); each round starts again
    scopes = [scope]
    for _old, new in edit.fn_edits:
        s = next((x for x in facts.scopes if x.node is new), None)
        if s is None:
            raise _NoPatch("a function edited since has no scope")
        scopes.append(s)
    first = 1
    if edit.imports:
        # an import edit: every function of the readers, nested ones too
        tops = {id(fn) for fn in edit.readers}
        for s in facts.scopes[1:]:
            top = s
            while top.parent is not None and top.parent is not facts.scopes[0]:
                top = top.parent
            if id(top.node) in tops and s is not scope:
                scopes.append(s)
        first = len(scopes)
        if first > MAX_SCOPES:
            raise _NoPatch(f"the edit reaches more than {MAX_SCOPES} functions")
    # a patch that re-runs more and more functions gives up when it has cost more than a share of
    # what the whole flow cost (then built in its place), or 5 ms on a small file
    limit = time.thread_time() + max(MAX_COST_SHARE * base.cost, 0.005)
    for _round in range(MAX_ROUNDS):
        fl, grow = _attempt(ctx, edit, scopes, limit if _round else None)
        if not grow:
            edit.also = [s.name for s in scopes[first:]]
            fl.cost = base.cost
            if len(scopes) > 1 or edit.imports:
                fl.cascaded = True  # (its runs are not kept in order: no base for later versions)
            else:
                # the edited function's own nodes now, for the next edit of it made from this flow
                fl.own_body = (edit.new_fn, (edit.own_before - edit.gone.keys()) | edit.fresh.keys())
            return fl
        for s in grow:
            if s is facts.scopes[0]:
                raise _NoPatch("what the script gets changed")
            if s not in scopes:
                scopes.append(s)
        if len(scopes) > MAX_SCOPES:
            raise _NoPatch(f"the edit reaches more than {MAX_SCOPES} functions")
    raise _NoPatch(f"the edit reaches functions beyond {MAX_ROUNDS} rounds")


def facts_changed(ctx, edit: FlowEdit) -> str:
    """What of the facts both the dataflow and the loop facts read differs from the kept
    version's: the model and optimizer bindings, or the framework bodies ("" when neither). Worked
    out once per edit (the loop facts ask first, see loop_reuse.py)."""
    if edit.facts_changed is None:
        if not _same_bindings(edit.base.flow.facts, ctx.facts):
            edit.facts_changed = "model or optimizer bindings changed"
        elif _frameworks_sig(ctx) != edit.base.frameworks:
            edit.facts_changed = "framework bodies changed"
        else:
            edit.facts_changed = ""
    return edit.facts_changed


def own_body_ids(base: Flow, fn) -> set:
    """The ids of the nodes of `fn`'s own body (subtree_ids(fn.body, own=True)): from `base`'s note
    when `base` is the patched flow of an edit of `fn` (a line typed key by key re-runs the same
    function again and again: its nodes are those before the edit, less the ones it took out, and
    the ones it made), else walked."""
    got = base.own_body
    if got is not None and got[0] is fn:
        return set(got[1])
    return set(subtree_ids(fn.body, own=True))


def _attempt(ctx, edit: FlowEdit, scopes: list, limit: float | None) -> tuple:
    """The patched flow re-running `scopes` (the edited function first), and the scopes of other
    functions it found must be re-run too (empty: the flow is the patched flow). `limit`: the CPU
    clock past which it gives up."""
    base = edit.base.flow
    facts = ctx.facts
    rerun = {id(s) for s in scopes}
    old_fn = edit.old_fn
    # nodes of the previous tree that the new one no longer has (the edited lines, the statements
    # holding them, the function and class nodes themselves), and the new tree's own
    gone, fresh = edit.gone, edit.fresh
    # what the re-run functions' own frames evaluated before (their values by node go: the runs
    # again write those they evaluate now)
    if edit.own_before is None:
        edit.own_before = own_body_ids(base, old_fn) if old_fn is not None else set()
    old_body = set(edit.own_before)
    for s in scopes[1:]:
        old_body.update(subtree_ids(s.node.body, own=True))
    for o, _n in edit.fn_edits:  # (their scopes point at the new trees: the old ones' nodes too)
        old_body.update(subtree_ids(o.body, own=True))

    module_scope = facts.scopes[0]
    spans = [(first_line(o), o.end_lineno) for _j, o, _n in edit.module_edits]
    fl = Flow(ctx)
    fl.events = [e for e in base.events if id(e.scope) not in rerun and not (
        spans and e.scope is module_scope and any(lo <= getattr(e.node, "lineno", 0) <= hi for lo, hi in spans))]
    fl.module_env = base.module_env
    fl.module_envs = base.module_envs
    fl.module_runs = list(base.module_runs)
    for _j, o, _n in edit.module_edits:  # the old statements' nodes go (the new ones are all new)
        for k in subtree_ids([o]):
            gone.setdefault(k, None)
            old_body.add(k)
    last = dict(base._last_ev)
    for k in old_body:
        last.pop(k, None)
    for k in gone:
        last.pop(k, None)
    for o, n in edit.fn_edits:
        # a function edited since was parsed again: its decorators (the script evaluated them, and
        # function_edit_ok found them the same) get the values the old ones got
        for x, y in zip(ast.walk(ast.Module(body=list(o.decorator_list), type_ignores=[])),
                        ast.walk(ast.Module(body=list(n.decorator_list), type_ignores=[]))):
            v = base._last_ev.get(id(x))
            if v is not None:
                last[id(y)] = v
    fl._last_ev = last
    for name in _NODE_CACHES:  # (kept for the nodes both trees share)
        if name == "_qns" and edit.imports:
            continue  # what names mean changed with the imports: worked out again
        d = dict(getattr(base, name))
        for k in gone:
            d.pop(k, None)
        setattr(fl, name, d)
    old_keys = {id(old_fn)} | {id(s.node) for s in scopes[1:]} | {id(o) for o, _n in edit.fn_edits}
    fl._fn_memo = {k: v for k, v in base._fn_memo.items() if k[0] not in old_keys}
    fl._memo_keep = {k: v for k, v in base._memo_keep.items() if k[0] not in old_keys}
    for j, o, n in edit.module_edits:
        fl.module_runs[j] = _rerun_statement(fl, base, j, o, n, module_scope)

    def reruns_with(run) -> bool:  # an ancestor's function is re-run: so is this run, with it
        p = run.parent
        while p is not None:
            if id(p.scope) in rerun:
                return True
            p = p.parent
        return False

    # a function node recorded by a run is the tree's of the version that made the run: the
    # scope is found by place (an edit since made another node of the same function)
    at_place = {(s.node.lineno, s.node.col_offset, s.name): s for s in facts.scopes[1:]}

    def scope_of(fn):
        s = fl.scope_by_node.get(id(fn))
        return s if s is not None else at_place.get((fn.lineno, fn.col_offset, fn.name))

    if limit is not None:
        # what the runs to re-run cost the time before: past the limit, no use starting
        estimate = sum(r.cost for r in base.runs if id(r.scope) in rerun and not reruns_with(r))
        if time.thread_time() + estimate > limit:
            raise _NoPatch(f"re-running {len(scopes)} functions costs more than half the whole flow")
    kept: set = set()

    def check_calls(new) -> None:
        """Each call run `new` made of a function not re-run got what the call at that place got
        the time before (from the memo or as before, not run again), passing the same values and
        none of the edited lines; a run that call (the same call node) made the time before then
        stands. Else that function runs again."""
        was = new.was
        for j, c in enumerate(new.calls):
            callee = scope_of(c[4])
            if callee is None or id(callee) in rerun:
                continue
            o = was.calls[j] if was is not None and j < len(was.calls) else None
            # (values equal field by field: a memo entry is found by a key that leaves some of a
            # value's fields out, and the whole flow would make it from the values passed here)
            if o is None or scope_of(o[4]) is not callee or o[0] is not c[0] or (o[7] is not None and o[8] is not c[8]) \
                    or not same_value((c[1], c[2], c[3], c[5]), (o[1], o[2], o[3], o[5])) \
                    or _passes_any([c], fresh) or _passes_any([o], gone):
                fl._grow[id(callee)] = callee
            elif o[7] is not None:
                kept.add(id(o[7]))
                new.calls[j] = c[:7] + (o[7], c[8])  # the run that call made stands (for later patches)

    fl._patch_scopes = rerun
    fl._grow = {}
    fl.runs = []
    made: list = []  # every run the re-runs made
    for run in base.runs:
        if id(run.scope) not in rerun:
            fl.runs.append(run)
            continue
        if reruns_with(run):
            continue
        if fl._stopped or ctx.out_of_time():
            raise _NoPatch("out of time")
        if limit is not None and time.thread_time() > limit:
            raise _NoPatch(f"re-running {len(scopes)} functions costs more than half the whole flow")
        new, created = _rerun(fl, run, run.scope)
        if new is None:  # it ran a function not re-run, and stopped there: another round
            break
        fl.runs += created
        made += created
        if not run.standalone and not same_value(new.result, run.result):
            p = run.parent
            if p is None or p.scope is module_scope:
                raise _NoPatch(f"what `{run.scope.name}` returns to the script changed")
            fl._grow[id(p.scope)] = p.scope  # its caller runs again with what it gets now
        for c in created:
            check_calls(c)
        if fl._grow:
            break  # another round will run them all again, these functions with them
    fl._patch_scopes = None
    if fl._grow:
        return fl, [s for s in fl._grow.values() if id(s) not in rerun]
    superseded, gone_runs = set(), set()
    for run in base.runs:
        if not reruns_with(run):
            continue
        superseded.add(id(run))
        if id(run.scope) in rerun:
            gone_runs.add(id(run))
            continue
        top = run  # the run a re-run one made, that this one is part of
        while id(top.parent.scope) not in rerun:
            top = top.parent
        if id(top) not in kept:
            gone_runs.add(id(run))
            fl._grow[id(top.scope)] = top.scope  # no call makes it now: its function runs again
    if len(scopes) > 1:
        # a call of a re-run function that got its value from the memo, in a run that stays (not
        # run again): the run that made that entry must run again where it ran (a root re-run,
        # whose value is compared), else the caller runs again too (one run of the edited
        # function alone never runs inside another re-run)
        for run in base.runs + base.module_runs:
            if id(run.scope) in rerun or id(run) in gone_runs:
                continue
            for c in run.calls:
                if c[7] is not None and id(c[7]) in gone_runs:
                    # it ran a re-run function inside a re-run one: only the caller can run it again
                    fl._grow[id(run.scope)] = run.scope
                if c[7] is not None or not isinstance(c[0], Val):
                    continue
                callee = scope_of(c[4])
                if callee is None or id(callee) not in rerun:
                    continue
                made_by = base._memo_keep.get(base.memo_key(c[4], c[1], c[2], c[3], c[5], c[6]))
                if made_by is None or id(made_by[4]) in superseded:
                    fl._grow[id(run.scope)] = run.scope
    grow = [s for s in fl._grow.values() if id(s) not in rerun]
    if not grow:
        for new in made:  # (kept, they would hold every earlier version's runs alive)
            new.was = new.expect = None
    return fl, grow


def _rerun_statement(fl: Flow, base: Flow, j: int, old: ast.stmt, new: ast.stmt, module_scope) -> Run:
    """Runs statement `new` of the script in place of `old` (the j-th), from the environment the
    base had before it: it must leave the same environment and make the same calls."""
    if j >= len(base.module_envs):
        raise _NoPatch("the script stopped before that statement")
    prev = base.module_runs[j]
    run = Run(module_scope, True)
    run.expect = prev.calls
    fr = _Frame(module_scope, None, None, True, 0, run=run)
    n0 = len(fl.runs)
    after = fl._exec(new, dict(base.module_envs[j]), fr)
    if len(fl.runs) != n0:
        raise _NoPatch("a statement of the script calls differently")
    if len(run.calls) != len(prev.calls) or any(x[0] is not y[0] for x, y in zip(run.calls, prev.calls)):
        raise _NoPatch("a statement of the script calls differently")
    if _passes_any(prev.calls, {id(n): n for n in subtree_ids([old]).values()}) or \
            _passes_any(run.calls, {id(n): n for n in subtree_ids([new]).values()}):
        raise _NoPatch("a statement of the script passes a value made in it to a function")
    before = base.module_envs[j + 1] if j + 1 < len(base.module_envs) else base.module_env
    if after is None or not same_value(after, before):
        raise _NoPatch("what a statement of the script binds changed")
    run.expect = None
    return run


def _rerun(fl: Flow, run, scope) -> tuple:
    """Runs `run` of `scope` again: the new run, and every run it made (itself first); the new run
    None when it stopped because it ran a function not re-run."""
    n0 = len(fl.runs)
    fl._expect = (scope, run)
    if run.standalone:
        fl._run_scope(scope)
    else:
        fl._active = set(run.active)
        caller = _Frame(None, None, None, run.recording, run.depth)
        env = {"__nograd__": run.ng} if run.ng is not None else {}
        # a run made while the script's statements ran saw no module environment yet (the whole
        # flow sets it once the script is done: Flow._run)
        module_env = fl.module_env
        if _during_script(run, fl.facts.scopes[0]):
            fl.module_env = {}
        try:
            fl._invoke(scope, run.node, run.args, run.kwargs, env, caller, self_val=run.self_val,
                       is_forward=run.is_forward)
        finally:
            fl._active = set()
            fl.module_env = module_env
    fl._expect = None
    created = fl.runs[n0:]
    del fl.runs[n0:]
    if fl._grow and fl._stopped:
        return None, created  # (see Flow._invoke: a function not re-run was run)
    if fl._stopped:
        raise _NoPatch("out of time")
    if not created or created[0].scope is not scope:
        raise _NoPatch(f"`{scope.name}` runs differently (a call not made before)")
    new = created[0]
    new.parent = run.parent
    return new, created


def _during_script(run, module_scope) -> bool:
    """Whether `run` was made (through its callers) by a statement of the script."""
    p = run.parent
    while p is not None:
        if p.scope is module_scope:
            return True
        p = p.parent
    return False


def _passes_any(calls: list, nodes: dict | set) -> bool:
    """Whether a call in `calls` passed a value that mentions one of `nodes` (by id)."""
    if not nodes:
        return False
    seen: set = set()
    return any(mentions((c[1], c[2], c[3], c[5]), nodes, seen) for c in calls)


def _same_bindings(old, new) -> bool:
    """The model and optimizer bindings of two facts equal field by field: nodes and scopes by
    identity, bindings they refer to (`alias_of`) by their place in the list."""
    pos_old = {id(x): i for i, x in enumerate(old.models)}
    pos_new = {id(x): i for i, x in enumerate(new.models)}

    def same(v, w) -> bool:
        if v is w:
            return True
        if type(v) is not type(w):
            return False
        if type(v) in (list, tuple):
            return len(v) == len(w) and all(same(p, q) for p, q in zip(v, w))
        if id(v) in pos_old:
            return pos_old[id(v)] == pos_new.get(id(w), -1)
        if isinstance(v, ModelBinding) and id(w) not in pos_new:
            # `Trainer(Net())`: the instance built in the call, a binding of no name (not listed)
            return same_fields(v, w)
        if isinstance(v, ast.AST) or type(v).__name__ == "Scope" or hasattr(v, "__dict__"):
            return False
        return v == w

    def same_fields(x, y) -> bool:
        d1, d2 = x.__dict__, y.__dict__
        return d1.keys() == d2.keys() and all(same(v, d2[k]) for k, v in d1.items())

    for xs, ys in ((old.models, new.models), (old.optimizers, new.optimizers)):
        if len(xs) != len(ys) or not all(same_fields(x, y) for x, y in zip(xs, ys)):
            return False
    return True


def _frameworks_sig(ctx) -> tuple:
    return tuple(sorted((b.fn.lineno, b.fn.col_offset, b.role, b.framework, b.counter or "", b.counter_start)
                        for b in frameworks.bodies(ctx).values()))
