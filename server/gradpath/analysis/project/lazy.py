"""A single-file check reads only the part of the project the file's findings can depend on.

`gradpath check path/to/file.py` inside a repository used to summarise (or decode from the cache)
every module of the repository. What the cross-module rules ask about a file F:
- what names F imports are, and what the functions, classes and values they lead to do: the modules
  F imports, transitively (through package `__init__` re-exports and star imports, and the
  `pkg.sub.name` chains a plain `import pkg` reaches);
- who uses what F defines: the loss a script applies to the output of F's model class, the callers
  that pass values to F's functions, the subclasses and instantiations of F's classes: these sit in
  modules that import F (directly or through a package re-exporting it), transitively; and what
  those modules import in turn (the loss they use, the trainer they hand the model to);
- classes registered with a decorator into a registry F reaches (`@MODELS.register`): the modules
  that register into a module of the set, with what they import.

So: needed = forward closure of (F and its importers, transitively), plus registering modules,
to a fixpoint. Both closures go by names through packages: forwards, a package `__init__` (or a
star-imported module) that only passes a name on is read for that name, not followed whole;
backwards, a package counts as an importer of F only for the names it passes on from F, and its
own importers only when they take one of them. The import graph comes from the texts (a regular expression over import
statements, resolved by the project index): reading every file is cheap; summarising or decoding
every summary is not. The graph over-approximates (imports under `if`, in functions, in `try`): a
module too many costs time, never a finding. Everything else works as for a folder: the index
holds every module (names resolve as they would), the summaries of the needed ones are read from
the cache (decoding only those entries) or computed, the linker sees those summaries.

What this leaves out, knowingly: callers of a function of an imported module that do not reach F
(another script calling `engine.train(...)` with other arguments). A parameter's value is taken
only when every caller agrees, so a caller left out could turn agreement into disagreement; the
fixture projects' findings are the same file by file (tests/project/test_lazy_index.py).
"""
from __future__ import annotations

import os
import re
from typing import Callable, Iterable

EAGER_AFTER = 3  # modules whose importers are searched by word before all imports are resolved
_STMT = re.compile(r"[ \t]*(?:from[ \t]+(\.*[\w.]*)[ \t]+)?import[ \t]*(\([^)]*\)|(?:[^\n\\;]|\\\r?\n)*)")
# a class decorated with `@name.attr` (`@MODELS.register_module()`): what summaries record as a
# registration (other decorators may sit between it and the class)
_REGISTERS = re.compile(r"^[ \t]*@[ \t]*[\w.]+\.\w+[^\n]*\n(?:[ \t]*@[^\n]*\n)*[ \t]*class\b", re.M)


def _statements(text: str):
    """Import statements: each line holding `import`, matched from its start (a regular expression
    run over the whole text line by line costs ten times more)."""
    i = text.find("import")
    last = -1
    while i >= 0:
        ls = text.rfind("\n", 0, i) + 1
        if ls != last:
            last = ls
            m = _STMT.match(text, ls)
            if m is not None:
                yield m
        i = text.find("import", i + 6)


def _names(s: str) -> list[list[str]]:
    s = s.strip().strip("()").replace("\\\r\n", " ").replace("\\\n", " ")
    out = []
    for item in s.split(","):
        item = item.split("#", 1)[0].strip()
        if item:
            out.append(item.split())
    return out


_TOP_DEF = re.compile(r"^(?:(?:async[ \t]+)?def|class)[ \t]+(\w+)|^(\w+)[ \t]*(?::[^=\n]*)?=(?!=)", re.M)


def top_names(text: str) -> set[str]:
    """Names a module defines at its top level (functions, classes, assignments)."""
    return {a or b for a, b in _TOP_DEF.findall(text)}


def bindings(text: str) -> tuple[dict[str, str], list[str]]:
    """(local name -> qualified name of what `from m import x as y` binds, star-imported modules)."""
    names: dict[str, str] = {}
    stars: list[str] = []
    for m in _statements(text):
        mod, items = m.group(1), m.group(2)
        if not mod:
            continue
        for parts in _names(items):
            if parts[0] == "*":
                stars.append(mod)
            else:
                names[parts[2] if len(parts) >= 3 and parts[1] == "as" else parts[0]] = \
                    f"{mod}{'' if mod.endswith('.') else '.'}{parts[0]}"
    return names, stars


def text_imports(text: str, is_package: Callable[[str], bool] | None = None) -> list[str]:
    """The qualified names a module's import statements name, written as summaries write them
    (`.net.Net` for a relative import, `pkg.sub` for `import pkg.sub`), plus `alias.a.b` chains
    for names used through an imported package of the project (`import torch_geometric as pyg;
    pyg.nn.GCNConv`; `is_package(qn)` says which qualified names are such packages)."""
    out: list[str] = []
    aliases: dict[str, str] = {}
    for m in _statements(text):
        mod, names = m.group(1), m.group(2)
        if mod is not None:
            if not mod:
                continue
            for parts in _names(names):
                name = parts[0]
                if name == "*":
                    out.append(mod)
                    continue
                qn = f"{mod}{'' if mod.endswith('.') else '.'}{name}"
                out.append(qn)
                aliases[parts[2] if len(parts) >= 3 and parts[1] == "as" else name] = qn
        else:
            for parts in _names(names):
                name = parts[0]
                out.append(name)
                if len(parts) >= 3 and parts[1] == "as":
                    aliases[parts[2]] = name
                else:
                    aliases[name.split(".")[0]] = name.split(".")[0]
    pk = {a: q for a, q in aliases.items() if is_package is None or is_package(q)}
    if pk:
        # attribute chains on imported packages: the submodules they reach
        pat = re.compile(r"(?<![\w.])(" + "|".join(re.escape(a) for a in sorted(pk, key=len, reverse=True))
                         + r")((?:\.\w+)+)")
        seen = set()
        for m in pat.finditer(text):
            qn = pk[m.group(1)] + m.group(2)
            if qn not in seen:
                seen.add(qn)
                out.append(qn)
    return out


def registers(text: str) -> bool:
    """Whether the text decorates a class with `@name.attr` (a registry's register method)."""
    return _REGISTERS.search(text) is not None


class ImportGraph:
    """Project modules -> the project modules their texts import (resolved by the index), worked
    out per module when asked: every text is read, but only the texts that may import a module in
    question (they hold its name) have their imports resolved."""

    def __init__(self, index, reader: Callable[[str], str | None], paths: Iterable[str]):
        self.index = index
        self.texts: dict[str, str] = {}
        self._refs: dict[str, list[str]] = {}
        self._out: dict[str, set[str]] = {}
        self._split_memo: dict[tuple[str, str], object] = {}
        for p in paths:
            text = reader(p)
            if text is not None:
                self.texts[p] = text
        self.registering = {p for p, t in self.texts.items() if "@" in t and registers(t)}

    def split(self, qn: str, p: str):
        """index.split_ref for a name read from the text of p, remembered per (name, folder): a
        name from a text resolves the same from every file of one folder."""
        key = (qn, os.path.dirname(p))
        got = self._split_memo.get(key, False)
        if got is False:
            got = self._split_memo[key] = self.index.split_ref(qn, p)
        return got

    def refs(self, p: str) -> list[str]:
        got = self._refs.get(p)
        if got is None:
            index = self.index

            def is_module(qn):
                sp = self.split(qn, p)
                return sp is not None and not sp[1]
            got = self._refs[p] = text_imports(self.texts.get(p, ""), is_module)
        return got

    def out(self, p: str) -> set[str]:
        got = self._out.get(p)
        if got is None:
            got = set()
            for qn in self.refs(p):
                # (the linker resolves `pkg.sub.name` to pkg/sub straight away, as the index does
                # here: the packages on the way are not read for it)
                sp = self.split(qn, p)
                if sp is not None and sp[0] != p:
                    got.add(sp[0])
            self._out[p] = got
        return got

    def _words(self, m: str) -> set[str]:
        """What a text importing module m must hold: the last part of one of its names."""
        e = self.index.modules.get(m)
        words = {n.rsplit(".", 1)[-1] for n in (e.names if e else [])}
        stem = os.path.basename(m)[:-3]
        words.add(os.path.basename(os.path.dirname(m)) if stem == "__init__" else stem)
        return words

    def importers(self, m: str) -> set[str]:
        words = self._words(m)
        pkg = os.path.dirname(m) + os.sep if os.path.basename(m) == "__init__.py" else None
        out = set()
        for p, t in self.texts.items():
            if p == m:
                continue
            if any(w in t for w in words) or (pkg is not None and p.startswith(pkg) and "from ." in t):
                if m in self.out(p):
                    out.add(p)
        return out

    def _all_importers(self) -> dict[str, set[str]]:
        into: dict[str, set[str]] = {}
        for p in self.texts:
            for t in self.out(p):
                into.setdefault(t, set()).add(p)
        return into

    def _reaches(self, u: str, m: str, names) -> tuple[bool, bool]:
        """Whether module u reaches what module m passes on (`names`: None for anything m holds),
        and whether through a star import."""
        star = False
        hit = False
        stars = None
        for qn in self.refs(u):
            sp = self.split(qn, u)
            if sp is None or sp[0] != m:
                continue
            if sp[1]:
                if names is None or sp[1][0] in names:
                    hit = True
                continue
            if stars is None:
                stars = bindings(self.texts.get(u, ""))[1]
            if qn in stars:
                star = hit = True
            elif names is None:
                hit = True
        return hit, star

    def _passes_on(self, u: str, m: str, names, star: bool):
        """The names through which package `u` passes on what it takes from m (None: any)."""
        bound, stars = bindings(self.texts.get(u, ""))
        out = set()
        for local, qn in bound.items():
            sp = self.split(qn, u)
            if sp is not None and sp[0] == m and (names is None or (sp[1] and sp[1][0] in names)):
                out.add(local)
        if star:
            if names is None:
                t = self.texts.get(m, "")
                names = top_names(t) | set(bindings(t)[0])
            out |= set(names)
        return out

    def users(self, targets: Iterable[str]) -> set[str]:
        """`targets` and the modules that reach them through imports, transitively. A package
        `__init__` counts only for the names it passes on from them (`from .resnet import *` passes
        on what resnet.py defines; `from timm.models import create_model` does not reach resnet.py
        through it), and its importers only when they take one of those names. A few modules are
        looked up by the words their importers must hold; past EAGER_AFTER, every text's imports
        are resolved once."""
        exp: dict[str, set | None] = {os.path.abspath(t): None for t in targets}
        todo = list(exp)
        into = None
        asked = 0
        while todo:
            m = todo.pop()
            names = exp[m]
            asked += 1
            if into is None and asked > EAGER_AFTER:
                into = self._all_importers()
            if m in self.registering:
                # a class registered into a registry here is reached by whoever looks the
                # registry up: the importers of what this module imports (the registry's module)
                for t in sorted(self.out(m)):
                    for u in sorted(into.get(t, ()) if into is not None else self.importers(t)):
                        if u not in exp or exp[u] is not None:
                            exp[u] = None
                            todo.append(u)
            for u in sorted(into.get(m, ()) if into is not None else self.importers(m)):
                hit, star = self._reaches(u, m, names)
                if not hit:
                    continue
                if os.path.basename(u) == "__init__.py":
                    new = self._passes_on(u, m, names, star)
                    if not new:
                        continue
                else:
                    new = None
                old = exp.get(u, set()) if u in exp else set()
                if u in exp and (old is None or (new is not None and new <= old)):
                    continue
                exp[u] = None if new is None or old is None else (old | new)
                todo.append(u)
        return set(exp)


def needed(project, graph: ImportGraph, targets: Iterable[str], ensure: Callable[[str], dict | None]) -> set[str]:
    """The modules the findings of `targets` can depend on (see the module docstring). Modules
    followed whole: the targets, their importers, and every module a name is taken from when the
    name is defined there; a package `__init__` (or a star-imported module) that only passes a
    name on is read for that name alone. `ensure(path)` gives a module's summary (reading it)."""
    index = project.index
    full: set[str] = set()
    touched: set[str] = set()
    names_seen: set[tuple[str, str]] = set()
    todo_full = sorted(graph.users(targets))
    todo_names: list[tuple[str, str]] = []

    def ref(m: str, qn: str) -> None:
        sp = index.split_ref(qn, m)
        if sp is None or sp[0] == m:
            return
        t, rest = sp
        if rest:
            todo_names.append((t, rest[0]))
        elif t not in touched:
            touched.add(t)  # a module object: its attributes used are refs of their own
            ensure(t)

    while True:
        while todo_full or todo_names:
            if todo_full:
                m = todo_full.pop()
                if m in full:
                    continue
                full.add(m)
                touched.add(m)
                ensure(m)
                for qn in graph.refs(m):
                    ref(m, qn)
                continue
            m, name = todo_names.pop()
            if (m, name) in names_seen or m in full:
                continue
            names_seen.add((m, name))
            touched.add(m)
            sm = ensure(m)
            if not sm:
                continue
            if name in sm["imports"]:
                ref(m, sm["imports"][name])
            elif name in sm["classes"] or name in sm["functions"] or name in sm["globals"]:
                todo_full.append(m)
            else:
                if os.path.basename(m) == "__init__.py":
                    sub = index.resolve_relative(1, name, m)
                    if sub is not None and sub not in touched:
                        touched.add(sub)
                        ensure(sub)
                for star in sm.get("star", ()):
                    ref(m, star + ("" if star.endswith(".") else ".") + name)
        # modules that register classes into a registry of the set
        extra = sorted(r for r in graph.registering if r not in full and graph.out(r) & touched)
        if not extra:
            return touched
        todo_full = extra


def build_for_files(project, targets: Iterable[str], progress=None) -> set[str]:
    """Summaries of the modules `targets` need, from the cache (decoding only those entries) or
    computed; the project's index keeps every module. Returns the needed set."""
    project.cache.load(lazy=True)
    paths = project.paths()
    graph = ImportGraph(project.index, project._reader, paths)
    done: set[str] = set()

    def ensure(p: str):
        if p not in done:
            done.add(p)
            if not project._from_stat(p):
                text = graph.texts.get(p)
                if text is not None:
                    project._set(p, text)
                    project._note_stat(p)
            if progress is not None:
                progress(len(done), len(paths))
        return project.summaries.get(p)
    wanted = [os.path.abspath(t) for t in targets if os.path.abspath(t) in project.index.modules]
    need = needed(project, graph, wanted, ensure)
    project.cache.save(keep=None)  # entries of the modules not needed stay as they were
    project.partial = need
    return need
