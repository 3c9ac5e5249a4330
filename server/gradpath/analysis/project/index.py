"""The modules of a project and the dotted names they are imported under.

A module gets one name per folder it may be imported from: relative to the parent of its topmost
package (folders with `__init__.py`), and relative to each folder between the project root and its
own folder (flat layouts, `src/` layouts, `scripts/` folders that import their siblings, namespace
packages without `__init__.py`). An import is resolved from the importing file: among the modules
with that name, the one whose naming folder is nearest above the importing file wins (two `utils.py`
in two packages stay apart); otherwise a name held by one module only.

Qualified names in summaries (see summaries.py) resolve here to (module path, name inside it).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

_IDENT_OK = str.isidentifier


@dataclass
class ModuleEntry:
    path: str  # absolute
    names: list[str] = field(default_factory=list)  # dotted names, most specific (package) first
    roots: list[str] = field(default_factory=list)  # the folder each name is relative to
    is_package: bool = False  # an __init__.py
    external: bool = False  # outside the project, found on sys.path (project/external.py)


class ProjectIndex:
    def __init__(self, root: str, paths: list[str]):
        self.root = os.path.abspath(root)
        self.modules: dict[str, ModuleEntry] = {}
        self.by_name: dict[str, list[tuple[str, str]]] = {}  # name -> [(path, naming root)]
        self._pkg_cache: dict[str, bool] = {}
        for p in paths:
            self.add(p)

    # -- building --------------------------------------------------------------------------------
    def _is_pkg_dir(self, d: str) -> bool:
        v = self._pkg_cache.get(d)
        if v is None:
            v = os.path.isfile(os.path.join(d, "__init__.py"))
            self._pkg_cache[d] = v
        return v

    def add(self, path: str) -> ModuleEntry | None:
        path = os.path.abspath(path)
        if not path.endswith(".py"):
            return None
        if path in self.modules:
            return self.modules[path]
        d, fname = os.path.split(path)
        stem = fname[:-3]
        is_pkg = stem == "__init__"
        parts = [] if is_pkg else [stem]
        entry = ModuleEntry(path, is_package=is_pkg)
        cur = d
        # walk up to the project root (or the filesystem root if the file lies outside it)
        while True:
            if parts and all(_IDENT_OK(x) for x in parts):
                name = ".".join(parts)
                entry.names.append(name)
                entry.roots.append(cur)
            if cur == self.root or os.path.dirname(cur) == cur or not cur.startswith(self.root):
                break
            parts = [os.path.basename(cur)] + parts
            cur = os.path.dirname(cur)
        # the package name first: relative to the parent of the topmost package folder
        top = d if self._is_pkg_dir(d) else None
        while top is not None and self._is_pkg_dir(os.path.dirname(top)) and os.path.dirname(top) != top:
            top = os.path.dirname(top)
        if top is not None:
            base = os.path.dirname(top)
            if base in entry.roots:
                i = entry.roots.index(base)
                entry.names.insert(0, entry.names.pop(i))
                entry.roots.insert(0, entry.roots.pop(i))
        self.modules[path] = entry
        for name, r in zip(entry.names, entry.roots):
            self.by_name.setdefault(name, []).append((path, r))
        return entry

    def add_external(self, path: str, name: str) -> ModuleEntry | None:
        """A module outside the project under the one dotted name it is imported by (found on the
        interpreter's sys.path); a project module of that name keeps winning."""
        path = os.path.abspath(path)
        if path in self.modules or not name or not all(_IDENT_OK(x) for x in name.split(".")):
            return self.modules.get(path)
        is_pkg = os.path.basename(path) == "__init__.py"
        base = os.path.dirname(path) if not is_pkg else os.path.dirname(os.path.dirname(path))
        for _ in range(name.count(".")):
            base = os.path.dirname(base)
        entry = ModuleEntry(path, [name], [base], is_package=is_pkg, external=True)
        self.modules[path] = entry
        self.by_name.setdefault(name, []).append((path, base))
        return entry

    def is_external(self, path: str) -> bool:
        e = self.modules.get(os.path.abspath(path))
        return e is not None and e.external

    def remove(self, path: str) -> None:
        path = os.path.abspath(path)
        entry = self.modules.pop(path, None)
        if entry is None:
            return
        for name in entry.names:
            lst = [x for x in self.by_name.get(name, []) if x[0] != path]
            if lst:
                self.by_name[name] = lst
            else:
                self.by_name.pop(name, None)

    def name_of(self, path: str) -> str:
        e = self.modules.get(os.path.abspath(path))
        if e is None or not e.names:
            return os.path.splitext(os.path.basename(path))[0]
        return e.names[0]

    # -- resolving ---------------------------------------------------------------------------------
    def resolve_module(self, name: str, from_path: str | None) -> str | None:
        """The path of module `name` as imported by `from_path` (absolute import)."""
        cands = self.by_name.get(name)
        if not cands:
            return None
        if len(cands) == 1:
            return cands[0][0]
        own = [c for c in cands if not self.modules[c[0]].external]
        if own and len(own) < len(cands):
            cands = own
            if len(cands) == 1:
                return cands[0][0]
        if from_path:
            here = os.path.dirname(os.path.abspath(from_path))
            best, best_len = None, -1
            for path, r in cands:
                if (here == r or here.startswith(r + os.sep)) and len(r) > best_len:
                    best, best_len = path, len(r)
            if best is not None:
                return best
        # the one named relative to the project root, else the shortest path
        for path, r in cands:
            if r == self.root:
                return path
        return min(cands, key=lambda c: (len(c[0]), c[0]))[0]

    def resolve_relative(self, level: int, module: str, from_path: str) -> str | None:
        d = os.path.dirname(os.path.abspath(from_path))
        for _ in range(level - 1):
            d = os.path.dirname(d)
        rel = module.replace(".", os.sep) if module else ""
        cands = [os.path.join(d, "__init__.py")] if not rel else \
            [os.path.join(d, rel + ".py"), os.path.join(d, rel, "__init__.py")]
        for c in cands:
            if c in self.modules:
                return c
        return None

    def split_ref(self, qn: str, from_path: str) -> tuple[str, list[str]] | None:
        """`models.net.Net` -> (path of models/net.py, ["Net"]); `.net.Net` relative to
        from_path; `@.Net` -> (from_path, ["Net"]). None when no project module matches."""
        if qn.startswith("@."):
            return os.path.abspath(from_path), qn[2:].split(".")
        if qn.startswith("."):
            level = len(qn) - len(qn.lstrip("."))
            parts = qn[level:].split(".") if qn[level:] else []
            for i in range(len(parts), -1, -1):
                p = self.resolve_relative(level, ".".join(parts[:i]), from_path)
                if p is not None:
                    return p, parts[i:]
            return None
        parts = qn.split(".")
        for i in range(len(parts), 0, -1):
            p = self.resolve_module(".".join(parts[:i]), from_path)
            if p is not None:
                return p, parts[i:]
        return None

    def importers_hint(self) -> int:
        return len(self.modules)
