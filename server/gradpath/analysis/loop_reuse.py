"""The loop facts of an edited file, taking over what the previous version's loop facts computed for
the functions the edit cannot reach (see loops.py: each function's body is flattened into events
once, with the events of the functions it calls inlined).

An edit inside one function's body (the kind of edit flow_patch.py patches the dataflow for: a
`FlowEdit`) changes the events of that function and of every function that inlines it, directly or
through others; an edit of import statements, those of the functions reading a name it binds
differently (`FlowEdit.readers`) and of the functions inlining one. The others stand when what else
their events are made from is as it was:
- the tree: the new one has as many lines and shares every node outside the edited statements with
  the previous one (graft.py), so a function outside them is the same object, its events naming
  nodes of the new tree too;
- the names: statements of the script edited since (analysed in part then) assign nothing
  (module-level assignments are what a key is bound to when nothing closer binds it:
  `parser.add_argument(...)` is fine, `lr = 0.1` is not); no `global`/`nonlocal` in the edited
  function, before or after;
- the facts the events read: the model and optimizer bindings (optimizer_at, model_at) and the
  framework bodies, compared as flow_patch.py compares them;
- a method's `self.<attr>` bindings are read from the other methods of its class (and whether a
  framework class assigns an attribute, from its bases): an edit inside a method that assigns
  `self` and its attributes the same values (by text) at the same lines as before makes that method
  "dirty"; any other edit inside a class, every method of every class of the file;
- the project: cross-module events (project/loop_link.py) need a project view, which both analyses
  must lack (the view exists only while the project holds this very text).

Each function's entry (LoopFacts._meta) records the functions whose events it asked for (`deps`,
transitively), how many levels of inlining it used (`height`: with fewer levels left a call would
have been cut), the copies of events its own call sites made (the file-wide bound MAX_TOTAL_COPIES
counts each function's own copies once, whatever the order), whether it used no cut result (a
result computed with a cut is cached per depth, and whoever asks at that depth gets it) and the
calls it inlined. An entry is taken over when it used no cut result, neither it nor any of its deps
is dirty or being computed, the copies stay within the bound, and computing it here would cut
nothing: every function it reaches is complete here already, or is reached with enough levels left
and not at a depth where this computation cut it before. Then the state is the one computing it
would leave (its deps' entries come with it, their copies counted). Pure: stdlib `ast`.
"""
from __future__ import annotations

import ast
import re

from gradpath.analysis.facts import key_of
from gradpath.analysis.regions import first_line


class Kept:
    """What a later version takes over from a LoopFacts (kept with the dataflow, flow_patch.FlowBase):
    the functions' events and their entries, whether every unit was computed and whether it had a
    project view; not the rest of it (its indexes of the tree)."""
    __slots__ = ("_complete", "_meta", "_finished", "_view")

    def __init__(self, lf):
        self._complete, self._meta, self._finished, self._view = lf._complete, lf._meta, lf._finished, lf._view


def kept(lf) -> Kept | None:
    return Kept(lf) if lf is not None and hasattr(lf, "_meta") else None


class Reuse:
    """What a LoopFacts may take over: the previous version's LoopFacts, and the line ranges of the
    previous tree that hold the functions whose entries it may not take ("dirty": the edited
    top-level statement or method, the functions edited since, every class when the edit is in one
    and may change what its methods read of it). The
    new tree has as many lines as that one and shares every node outside those ranges."""

    def __init__(self, base, ranges: list):
        self.base = base
        self.ranges = ranges

    def dirty(self, node) -> bool:
        ln = getattr(node, "lineno", None)
        if ln is None:  # the module (the same object only when its statements all are): the script
            return bool(self.ranges)
        return any(lo <= ln <= hi for lo, hi in self.ranges)


# a `global` / `nonlocal` statement (at a line's start or after `;` / `:`; in a string too: refused)
_SCOPED = re.compile(r"(?:^|[;:])\s*(?:global|nonlocal)\s+[A-Za-z_]")


def _mentions_scoped_names(lines: list, node) -> bool:
    return any(("global" in ln or "nonlocal" in ln) and _SCOPED.search(ln)
               for ln in lines[first_line(node) - 1:node.end_lineno])


def _binds(st) -> bool:
    """A statement of the script that assigns (what a key is bound to at module level, which
    binding_value falls back on) or is no plain statement."""
    return not isinstance(st, ast.stmt) or any(isinstance(n, _BINDING) for n in ast.walk(st))


_BINDING = (ast.Assign, ast.AnnAssign, ast.AugAssign, ast.NamedExpr, ast.FunctionDef, ast.AsyncFunctionDef,
            ast.ClassDef, ast.Import, ast.ImportFrom, ast.Global, ast.Nonlocal)


def reuse_for(lf) -> Reuse | None:
    """The Reuse for `lf` (a LoopFacts being built), or None when nothing may be taken over."""
    ctx = lf.ctx
    edit = getattr(ctx, "flow_edit", None)
    if edit is None or any(_binds(o) or _binds(n) for _j, o, n in edit.module_edits):
        return None
    base = getattr(edit.base, "loops", None)
    if base is None or not base._finished or base._view or lf._view:
        return None
    old_facts = edit.base.flow.facts
    facts = ctx.facts
    if len(facts.scopes) != len(old_facts.scopes) or any(x is not y for x, y in zip(facts.scopes, old_facts.scopes)):
        return None
    old_lines, lines = edit.base.lines, ctx.src.lines
    if len(old_lines) != len(lines):
        return None
    if (edit.old_fn is not None and (_mentions_scoped_names(old_lines, edit.old_fn)
                                     or _mentions_scoped_names(lines, edit.new_fn))) \
            or any(_mentions_scoped_names(old_lines, o) or _mentions_scoped_names(lines, n) for o, n in edit.fn_edits):
        return None
    from gradpath.analysis import flow_patch  # (flow_patch imports the dataflow; loops does not need it)
    if flow_patch.facts_changed(ctx, edit):
        return None
    if edit.imports:
        # the functions reading a name the edit binds differently (methods, when some class's read it)
        ranges = [(first_line(r), r.end_lineno) for r in edit.readers]
        tops = {id(st) for st in edit.base.body}
        in_class = any(id(r) not in tops for r in edit.readers)
    elif edit.moved:
        ranges, in_class = [], False  # (the same tree, moved: nothing of it changed)
    else:
        ranges = [(first_line(edit.old_top), edit.old_top.end_lineno)]
        in_class = isinstance(edit.old_top, ast.ClassDef)
        if in_class and edit.old_fn is not None and any(m is edit.old_fn for m in edit.old_top.body) \
                and _self_assigns(edit.old_fn) == _self_assigns(edit.new_fn):
            # a method edited, assigning the same `self.<attr>`s the same values at the same lines:
            # what the other methods read of their class is as it was
            ranges, in_class = [(first_line(edit.old_fn), edit.old_fn.end_lineno)], False
    ranges += [(first_line(o), o.end_lineno) for o, _n in edit.fn_edits]
    ranges += [(first_line(o), o.end_lineno) for _j, o, _n in edit.module_edits]
    if in_class:
        ranges += [(first_line(st), st.end_lineno) for st in edit.base.body if isinstance(st, ast.ClassDef)]
    return Reuse(base, ranges)


def _self_assigns(fn) -> list:
    """Every assignment to `self` or an attribute path under it anywhere in `fn` (nested code and
    tuple targets too): (target key, line, the value's text). What a class's other methods read of
    this one (LoopBindings.binding_value's `self.` keys, frameworks.assigns_self_attr) is made of
    these."""
    out = []
    for n in ast.walk(fn):
        if isinstance(n, ast.Assign):
            targets = n.targets
        elif isinstance(n, ast.AnnAssign):
            targets = [n.target]
        else:
            continue
        todo = list(targets)
        while todo:
            t = todo.pop()
            if isinstance(t, (ast.Tuple, ast.List)):
                todo.extend(t.elts)
                continue
            if isinstance(t, ast.Starred):
                todo.append(t.value)
                continue
            k = key_of(t)
            if k is not None and (k == "self" or k.startswith("self.")):
                out.append((k, n.lineno, ast.dump(n.value) if n.value is not None else None))
    out.sort()
    return out


def adopt(lf, fn, depth: int):
    """The previous version's events of `fn`, taken over into `lf` (a LoopFacts computing
    function_events(fn, depth)) with the entries of every function they were made from; None when
    computing them here could give anything else."""
    r = lf._reuse
    b = r.base
    k = id(fn)
    meta = b._meta.get(k)
    if meta is None or meta[0] is not fn or not meta[4] or r.dirty(fn):
        return None
    deps = meta[1]
    if k in lf._busy or not deps.isdisjoint(lf._busy):
        return None  # (computed here, a call of a function being computed would be cut)
    todo = [g for g in (k, *deps) if g not in lf._complete]
    if any(r.dirty(b._meta[g][0]) for g in todo):
        return None
    if lf._copies + sum(b._meta[g][3] for g in todo) > lf.MAX_COPIES:
        return None  # (computed here, the bound on copies would cut something)
    if not _computes_whole(lf, b, k, depth, {}):
        return None
    for g in todo:
        m = b._meta[g]
        lf._complete[g] = b._complete[g]
        lf._meta[g] = m
        lf._copies += m[3]
        lf.adopted += 1
    return b._complete[k]


def _computes_whole(lf, b, k: int, depth: int, seen: dict) -> bool:
    """Whether computing function `k` at `depth` in `lf` now would cut nothing: each function it
    reaches is complete in `lf` already, or reached with as many levels left as it used, and not at
    a depth where `lf` cut it before (that result, in lf._cache, is what it would get). (Given the
    tests in adopt, the last cannot happen: an entry made from no cut result has no cycle below it,
    and the bound on copies is checked there; it is kept as a net.)"""
    if k in lf._complete:
        return True
    key = (k, depth)
    got = seen.get(key)
    if got is None:
        meta = b._meta[k]
        got = meta[2] <= depth and key not in lf._poisoned and all(
            _computes_whole(lf, b, c, depth - step, seen) for c, step in meta[5])
        seen[key] = got
    return got
