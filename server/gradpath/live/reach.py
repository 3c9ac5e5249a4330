"""Which scripts of a project must run for the live step to reach a finding in a module.

A finding in `models/net.py` (the softmax at the end of `Net.forward`) is seen only when a script
that builds a `Net` and trains it runs: the `train.py` whose loss receives the model's output. This
module picks those scripts, from the project model alone (no torch, nothing is run here):

    graph = ImportGraph(project)                     # who imports whom, once per project
    picks = scripts_for(graph, finding_path, finding, text_of)
    # [Pick(path="/p/train.py", why="its loss call receives the output (related information)"), ...]

Order (deterministic, at most MAX_SCRIPTS):
1. the files named at the other end of the finding (its related information, `data["consumers"]`)
   when they are scripts themselves;
2. scripts that import those files, nearest first;
3. scripts that import the finding's own module, nearest first (through `__init__` re-exports and
   helper modules).
Within one tier a script that trains (calls backward/step/fit) comes before one that does not, then
the shorter import chain, then the path.

A *script* is a file meant to be run: it has `if __name__ == "__main__":`, or top-level loops or
calls in a file that trains (a training loop written at module level, `train_one_epoch(...)`). setup.py, conftest.py and files under tests/ folders
are never picked.
"""
from __future__ import annotations

import ast
import os
import re
import weakref
from collections import deque
from dataclasses import dataclass
from typing import Callable, Iterable

MAX_SCRIPTS = 3
NOT_SCRIPTS = {"setup.py", "conftest.py", "noxfile.py", "fabfile.py", "__init__.py", "__main__.py"}
_TRAINS = re.compile(r"\.backward\s*\(|\.step\s*\(|\bfit\w*\s*\(|\btrain\w*\s*\(")
# what a script has at column 0 (checked before parsing: most modules of a big project have none)
_TOP_LEVEL = re.compile(r"^(?:if\s.*__main__|for\s|while\s|async\s+for\s|with\s|[A-Za-z_][\w.]*\s*\(|await\s)",
                        re.MULTILINE)


@dataclass(frozen=True)
class Pick:
    path: str
    why: str  # in words: why this script reaches the finding
    tier: int = 0


def script_kind(text: str | None) -> str | None:
    """"main" (an `if __name__ == "__main__":` block), "top-level" (a loop or a call at module level
    in a file that trains: backward/step/fit.../train...(), or None (a module: definitions, imports,
    constants)."""
    if not text or not _TOP_LEVEL.search(text):
        return None
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError):
        return None
    loop = call = False
    for st in tree.body:
        if isinstance(st, ast.If) and _is_main_guard(st.test):
            return "main"
        if isinstance(st, (ast.For, ast.While, ast.AsyncFor)):
            loop = True
        elif isinstance(st, ast.With) or isinstance(st, ast.Expr) and isinstance(st.value, (ast.Call, ast.Await)):
            call = True
    # a loop or a call at module level, in a file that trains (not `for n in NAMES: register(n)`,
    # not `logging.basicConfig()`)
    return "top-level" if (loop or call) and trains(text) else None


def _is_main_guard(test: ast.AST) -> bool:
    if not isinstance(test, ast.Compare) or len(test.ops) != 1 or not isinstance(test.ops[0], ast.Eq):
        return False
    sides = [test.left, test.comparators[0]]
    names = [s for s in sides if isinstance(s, ast.Name) and s.id == "__name__"]
    consts = [s for s in sides if isinstance(s, ast.Constant) and s.value == "__main__"]
    return bool(names and consts)


def trains(text: str) -> bool:
    return bool(_TRAINS.search(text or ""))


def never_a_script(path: str) -> bool:
    base = os.path.basename(path)
    if base in NOT_SCRIPTS:
        return True
    parts = os.path.normpath(path).split(os.sep)
    return any(p in ("tests", "test", "docs") for p in parts[:-1]) or base.startswith("test_")


class ImportGraph:
    """Project modules and who imports whom (resolved by the project index: absolute, relative,
    `__init__` re-exports, imports inside functions)."""

    def __init__(self, project):
        self.project = project
        self.generation = getattr(project, "generation", None)
        self.importers: dict[str, set[str]] = {}
        index = project.index
        lock = getattr(project, "_lock", None)
        if lock is not None:  # the editor's index thread may be updating the summaries
            with lock:
                items = sorted(project.summaries.items())
        else:
            items = sorted(project.summaries.items())
        for p, sm in items:
            if not sm:
                continue
            for qn in list(sm.get("imports", {}).values()) + list(sm.get("star", ())):
                try:
                    ref = index.split_ref(qn, p)
                except Exception:  # a name the index cannot split: not a project module
                    ref = None
                if ref and ref[0] != p:
                    self.importers.setdefault(ref[0], set()).add(p)

    def holds(self, path: str) -> bool:
        return os.path.abspath(path) in self.project.index.modules

    def importers_of(self, path: str) -> dict[str, list[str]]:
        """Every module that imports `path` directly or through others: module -> the chain from it
        down to `path` (breadth first: the shortest chain; ties broken by path)."""
        path = os.path.abspath(path)
        chains = {path: [path]}
        todo = deque([path])
        while todo:
            cur = todo.popleft()
            for imp in sorted(self.importers.get(cur, ())):
                if imp not in chains:
                    chains[imp] = [imp] + chains[cur]
                    todo.append(imp)
        chains.pop(path)
        return chains


_GRAPHS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def graph_of(project) -> ImportGraph:
    """The project's import graph, made again only when a summary changed (the editor asks often)."""
    g = _GRAPHS.get(project)
    if g is None or g.generation != getattr(project, "generation", None):
        g = ImportGraph(project)
        try:
            _GRAPHS[project] = g
        except TypeError:  # not weak-referenceable: no cache
            pass
    return g


def _defined_names(project, path: str) -> list[str]:
    """Public classes and functions the module defines (from its summary)."""
    sm = (getattr(project, "summaries", None) or {}).get(os.path.abspath(path)) or {}
    out = []
    for key in ("classes", "functions"):
        for n in sm.get(key) or ():
            n = str(n)  # (methods are "Class.method": not names a script would use)
            if n.isidentifier() and not n.startswith("_") and len(n) > 2 and n not in out:
                out.append(n)
    return out[:50]


def _rel(path: str, root: str) -> str:
    try:
        r = os.path.relpath(path, root)
    except ValueError:
        return path
    return path if r.startswith("..") else r


def related_paths(finding, path: str) -> list[str]:
    """The other files a finding names: related information first, then data["consumers"]."""
    out: list[str] = []
    here = os.path.abspath(path)
    for r in getattr(finding, "related", None) or []:
        p = getattr(r, "path", None)
        if p and os.path.abspath(p) != here and os.path.abspath(p) not in out:
            out.append(os.path.abspath(p))
    for c in (getattr(finding, "data", None) or {}).get("consumers") or []:
        p = c.get("path") if isinstance(c, dict) else None
        if p and os.path.abspath(p) != here and os.path.abspath(p) not in out:
            out.append(os.path.abspath(p))
    return out


def scripts_for(graph: ImportGraph, path: str, finding=None, text_of: Callable[[str], str | None] | None = None,
                limit: int = MAX_SCRIPTS) -> list[Pick]:
    """The scripts to run so that the live step reaches `finding` in the module at `path`."""
    root = graph.project.root
    path = os.path.abspath(path)
    kinds: dict[str, str | None] = {}
    from_disk = text_of is None

    def kind(p: str) -> str | None:
        if p not in kinds:
            kinds[p] = None if never_a_script(p) else (_disk_kind(p) if from_disk else script_kind(text_of(p)))
        return kinds[p]

    if text_of is None:  # from the disk, remembered by stat (the editor's lens asks again and again)
        def text_of(p: str) -> str | None:
            c = _KINDS.get(p)
            return c[3] if c else _read(p)

    ranked: list[tuple[tuple, Pick]] = []
    seen: set[str] = set()
    names = _defined_names(graph.project, path)

    def consider(p: str, tier: int, chain: list[str], why):
        if p in seen or p == path or not kind(p):
            return
        seen.add(p)
        why = why() if callable(why) else why
        t = text_of(p) or ""
        # a script that names the module's classes or functions (`DMoNPooling(...)`) before one that
        # only imports a package that re-exports everything
        mentions = bool(names) and any(re.search(rf"\b{re.escape(n)}\b", t) for n in names)
        ranked.append(((tier, not mentions, not trains(t), len(chain), _rel(p, root)), Pick(p, why, tier)))

    others = related_paths(finding, path) if finding is not None else []
    for p in others:
        consider(p, 0, [p], f"the other end of the finding is there ({_rel(p, root)})")
    for other in others:
        if not graph.holds(other):
            continue
        for p, chain in graph.importers_of(other).items():
            consider(p, 1, chain, lambda chain=chain: "it imports " + " -> ".join(_rel(c, root) for c in chain[1:])
                     + " (the other end of the finding)")
    for p, chain in graph.importers_of(path).items():
        consider(p, 2, chain, lambda chain=chain: "it imports " + " -> ".join(_rel(c, root) for c in chain[1:]))
    ranked.sort(key=lambda x: x[0])
    return [pk for _, pk in ranked[:limit]]


_KINDS: dict[str, tuple] = {}  # path -> (mtime_ns, size, kind, text when it is a script)


def _disk_kind(path: str) -> str | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    c = _KINDS.get(path)
    if c is not None and c[0] == st.st_mtime_ns and c[1] == st.st_size:
        return c[2]
    text = _read(path)
    k = script_kind(text)
    if len(_KINDS) > 50_000:
        _KINDS.clear()
    _KINDS[path] = (st.st_mtime_ns, st.st_size, k, text if k else None)
    return k


def is_runnable(path: str, text: str | None) -> bool:
    """Run the file itself (a script), or look for scripts that reach it (a module)?"""
    if not path.endswith(".py"):
        return True  # a notebook runs top to bottom
    kind = script_kind(text)
    if kind == "main":  # even under tests/: it is meant to be run (only never picked for others)
        return os.path.basename(path) not in NOT_SCRIPTS
    return not never_a_script(path) and kind is not None


def no_script_reason(path: str, root: str) -> str:
    return (f"no script in the project reaches {_rel(path, root)}: nothing that is run (an "
            "`if __name__ == \"__main__\":` block or a top-level training loop) imports it")


def _read(path: str) -> str | None:
    from pathlib import Path

    from gradpath.files import read_source
    try:
        return read_source(Path(path))
    except (OSError, UnicodeDecodeError):
        return None


def group_by_script(picks: Iterable[tuple[object, list[Pick]]]) -> dict[str, list[object]]:
    """{script path: [keys whose first pick it is]} in a stable order (first appearance)."""
    out: dict[str, list[object]] = {}
    for key, ps in picks:
        if ps:
            out.setdefault(ps[0].path, []).append(key)
    return out
