"""Resolution of what one file cannot answer: module classes imported from the user's other modules.

`from models import Net` with `Net` in `models.py`, `models/__init__.py`, or re-exported by a
package (`from .net import Net` in `models/__init__.py`), and `import models` + `models.Net()`.

Fast path first: the module file is found relative to the importing file, the project root and the
given `sys_path`, parsed with `ast` and cached per (path, mtime). jedi (`jedi.Project` per root,
`jedi.Script.goto`) answers only what the fast path cannot (an installed package of the user, an
import hook, a `sys.path` trick), lazily, for capitalised names that the file actually calls. Its
answers are kept in the resolver's `JediAnswers` table per (file, import, the file's `sys.path`
lines): typing elsewhere in the file never asks jedi again. With `fast_only=True` jedi is never started, but answers already in the table are used:
the language server publishes the fast result first, asks `needs_slow_pass(path)` (names with no
answer yet), runs `resolve_pending(text, path)` in the background, and re-analyses when an answer
names a class.

`enrich(ctx)` fills, for each resolved local name (`Net`, or `models.Net` for attribute access):
  ctx.symbols.resolved_bases[name]   qualified bases, with "torch.nn.Module" when it is a module class
  ctx.symbols.imported_classes[name] a facts.ClassSource (class node + the symbols of its file), which
                                     the facts use for the class's parameter inventory.
"""
from __future__ import annotations

import ast
import logging
import os
import threading
import weakref
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from gradpath.analysis.symbols import Symbols, canonical, is_torch_module_qualname

log = logging.getLogger("gradpath.resolve")

# Libraries whose classes we never look into (their inventories are unknown on purpose, and jedi
# over torch costs seconds).
SKIP_TOP = frozenset({
    "torch", "torchvision", "torchaudio", "torchtext", "transformers", "timm", "numpy", "np", "pandas",
    "scipy", "sklearn", "lightning", "pytorch_lightning", "accelerate", "datasets", "os", "sys", "math",
    "json", "re", "typing", "collections", "itertools", "functools", "copy", "random", "pathlib",
    "dataclasses", "argparse", "logging", "time", "tqdm", "matplotlib", "einops", "jax", "tensorflow",
})
MAX_DEPTH = 6


@dataclass
class _Module:
    path: str
    mtime: float
    tree: ast.Module
    symbols: Symbols
    resolved: bool = False


class JediAnswers:
    """What jedi said about imported names: key -> (class file, line) or None (nothing usable).
    `version` grows whenever an answer naming a class is added or dropped, so an incremental
    analysis made before it knows to start afresh."""

    def __init__(self):
        self._lock = threading.Lock()
        self._d: dict[tuple, tuple[str, int] | None] = {}
        self.version = 0

    def get(self, key: tuple) -> tuple[bool, tuple[str, int] | None]:
        with self._lock:
            if key in self._d:
                return True, self._d[key]
            return False, None

    def put(self, key: tuple, value: tuple[str, int] | None) -> None:
        with self._lock:
            if key in self._d and self._d[key] == value:
                return
            self._d[key] = value
            if value is not None:
                self.version += 1

    def drop(self, key: tuple) -> None:
        with self._lock:
            if self._d.pop(key, None) is not None:
                self.version += 1


@dataclass
class _Pending:
    """A name the fast path left to jedi, with what jedi needs to look it up."""
    local: str
    key: tuple
    pos: tuple[int, int] | None  # a call of the name (jedi's goto position), 1-based line


class Resolver:
    def __init__(self, root: str | None = None, sys_path: list[str] | None = None, use_jedi: bool = True,
                 fast_only: bool = False):
        self.root = os.path.abspath(root) if root else None
        self.sys_path = [os.path.abspath(p) for p in (sys_path or []) if p]
        self.use_jedi = use_jedi
        self.fast_only = fast_only
        self._modules: dict[str, _Module] = {}
        self.answers = JediAnswers()
        self._projects: dict[str, object] = {}
        self._lock = threading.RLock()
        self.stats = {"parsed": 0, "cache_hits": 0, "jedi_calls": 0}
        # file -> (hash of the text analysed, the names the fast path left to jedi with no answer yet)
        self.pending: dict[str, tuple[int, list[_Pending]]] = {}

    # -- public --------------------------------------------------------------------------------
    def enrich(self, ctx) -> None:
        sym = ctx.symbols
        if not hasattr(sym, "imported_classes"):
            sym.imported_classes = {}
        base_dir = os.path.dirname(os.path.abspath(ctx.path)) if ctx.path else self.root
        pending = []
        idx = _TreeIndex(ctx.tree)  # one walk for the imports, aliases and attributes read below
        for local, (module, name, level) in idx.imports.items():
            src = self._find_class(module, name, level, base_dir, 0)
            if src is not None:
                self._record(sym, local, src)
                continue
            sub = f"{module}.{name}" if module else name
            if self._module_file(sub, level, base_dir) is not None:
                # `from pkg import models` / `from . import models`, then `models.Net()`
                for attr in idx.attrs.get(local, ()):
                    src = self._find_class(sub, attr, level, base_dir, 0)
                    if src is not None:
                        sym.aliases.setdefault(local, local)
                        self._record(sym, f"{local}.{attr}", src)
            elif self.use_jedi and ctx.path and self._jedi_candidate(idx, local, module):
                key = self._answer_key(ctx, local, (module, name, level))
                known, hit = self.answers.get(key)
                if known:
                    src = self._class_at(hit, key) if hit is not None else None
                    if src is not None:
                        self._record(sym, local, src)
                    if hit is None or src is not None:
                        continue
                pending.append(_Pending(local, key, idx.called.get(local)))
        for local, module in idx.module_aliases.items():
            for attr in idx.attrs.get(local, ()):
                src = self._find_class(module, attr, 0, base_dir, 0)
                if src is not None:
                    self._record(sym, f"{local}.{attr}", src)
        ctx.unresolved_imports = [p.local for p in pending]
        if ctx.path:
            self.pending[os.path.abspath(ctx.path)] = (hash(ctx.src.text), list(pending))
        if pending and not self.fast_only:
            for p in pending:
                src = self._jedi_class(ctx.src.text, ctx.path, p)
                if src is not None:
                    self._record(sym, p.local, src)
        if getattr(self, "project", None) is not None:
            # model classes reached through a factory of another module (the project model)
            from gradpath.analysis.project import factories
            factories.enrich(self, ctx)

    def needs_slow_pass(self, ctx) -> bool:
        """True when jedi might answer names the fast path left open. `ctx` is the analysis
        Context, or the path of a file this resolver has enriched (the language server keeps
        only the AnalysisResult)."""
        if not self.use_jedi:
            return False
        if isinstance(ctx, (str, os.PathLike)):
            return bool(self.pending.get(os.path.abspath(str(ctx)), (0, []))[1])
        return bool(getattr(ctx, "unresolved_imports", None) and ctx.path)

    def resolve_pending(self, text: str, path: str) -> bool:
        """Ask jedi about the names the last analysis of `path` left open (the language server's
        background pass; no analysis runs here). Only when that analysis was of `text`: the call
        positions belong to it. True when an answer names a class, so a re-analysis would differ."""
        if not self.use_jedi or not path:
            return False
        h, names = self.pending.get(os.path.abspath(path), (None, []))
        if h != hash(text):
            return False
        found = False
        for p in names:
            known, _ = self.answers.get(p.key)
            if not known:
                found = self._jedi_class(text, path, p) is not None or found
        return found

    # -- recording -----------------------------------------------------------------------------
    def _record(self, sym, local: str, src) -> None:
        """Record under the name `symbols.qualname` gives for `local` (`models.Net` for a
        `from models import Net`), and under the local spelling."""
        from gradpath.analysis.facts import InventoryBuilder
        try:
            qn = sym.qualname(ast.parse(local, mode="eval").body)
        except SyntaxError:
            qn = None
        if qn is None and "." not in local:
            sym.aliases.setdefault(local, local)  # relative imports: make the name resolvable
            qn = local
        keys = {local} | ({qn} if qn else set())
        for k in keys:
            sym.imported_classes[k] = src
        ib = InventoryBuilder(None)
        bases = [canonical(src.symbols.qualname(b) or "") for b in src.node.bases]
        if ib.is_module_source(src) and "torch.nn.Module" not in bases:
            bases.append("torch.nn.Module")
        for k in keys:
            sym.resolved_bases[k] = [b for b in bases if b]

    # -- imports of the importing file ---------------------------------------------------------
    # -- the fast path -------------------------------------------------------------------------
    def _search_dirs(self, base_dir: str | None) -> list[str]:
        dirs = []
        for d in [base_dir, self.root, *self.sys_path]:
            if d and d not in dirs:
                dirs.append(d)
        return dirs

    def _module_file(self, module: str, level: int, base_dir: str | None) -> str | None:
        rel = module.replace(".", os.sep) if module else ""
        if level:
            if base_dir is None:
                return None
            d = base_dir
            for _ in range(level - 1):
                d = os.path.dirname(d)
            dirs = [d]
        else:
            dirs = self._search_dirs(base_dir)
            # scripts inside a package: `from models import Net` may be relative to a parent folder
            if base_dir and self.root and base_dir.startswith(self.root):
                d = base_dir
                while d.startswith(self.root) and d not in dirs:
                    dirs.append(d)
                    d = os.path.dirname(d)
        for d in dirs:
            if not rel:
                cand = [os.path.join(d, "__init__.py")]
            else:
                cand = [os.path.join(d, rel + ".py"), os.path.join(d, rel, "__init__.py")]
            for c in cand:
                if os.path.isfile(c):
                    return c
        return None

    def load(self, path: str) -> _Module | None:
        try:
            mtime = os.stat(path).st_mtime
        except OSError:
            return None
        with self._lock:
            m = self._modules.get(path)
            if m is not None and m.mtime == mtime:
                self.stats["cache_hits"] += 1
                return m
            try:
                text = Path(path).read_text(encoding="utf-8", errors="replace")
                tree = ast.parse(text, filename=path)
            except (OSError, SyntaxError, ValueError, RecursionError):
                return None
            sym = Symbols.build(tree)
            sym.path = path
            sym.imported_classes = {}
            m = _Module(path, mtime, tree, sym)
            self._modules[path] = m
            self.stats["parsed"] += 1
            return m

    def _resolve_module_imports(self, m: _Module, depth: int) -> None:
        """Fill a loaded module's own imported classes (for base classes and submodules)."""
        if m.resolved or depth > MAX_DEPTH:
            return
        m.resolved = True
        base_dir = os.path.dirname(m.path)
        idx = _TreeIndex(m.tree)
        for local, (module, name, level) in idx.imports.items():
            src = self._find_class(module, name, level, base_dir, depth + 1)
            if src is not None:
                self._record(m.symbols, local, src)
        for local, module in idx.module_aliases.items():
            for attr in idx.attrs.get(local, ()):
                src = self._find_class(module, attr, 0, base_dir, depth + 1)
                if src is not None:
                    self._record(m.symbols, f"{local}.{attr}", src)

    def _find_class(self, module: str, name: str, level: int, base_dir: str | None, depth: int):
        from gradpath.analysis.facts import ClassSource
        if depth > MAX_DEPTH:
            return None
        path = self._module_file(module, level, base_dir)
        if path is None:
            # `from pkg import mod` then mod.Class is handled by the caller; `from pkg import Class`
            # where pkg is a folder without __init__.py (namespace package): nothing to parse
            return None
        m = self.load(path)
        if m is None:
            return None
        info = m.symbols.classes.get(name)
        if info is not None:
            self._resolve_module_imports(m, depth)
            return ClassSource(info.node, m.symbols, path)
        # a re-export: `from .net import Net` / `from models.net import Net as Net` in that module
        mdir = os.path.dirname(path)
        for node in m.tree.body:
            if isinstance(node, ast.ImportFrom):
                for a in node.names:
                    if (a.asname or a.name) == name and a.name != "*":
                        return self._find_class(node.module or "", a.name, node.level, mdir, depth + 1)
                    if a.name == "*":
                        src = self._find_class(node.module or "", name, node.level, mdir, depth + 1)
                        if src is not None:
                            return src
            elif isinstance(node, ast.Assign) and len(node.targets) == 1 and \
                    isinstance(node.targets[0], ast.Name) and node.targets[0].id == name and \
                    isinstance(node.value, ast.Name) and node.value.id in m.symbols.classes:
                info = m.symbols.classes[node.value.id]
                self._resolve_module_imports(m, depth)
                return ClassSource(info.node, m.symbols, path)
        return None

    # -- the slow path (jedi) ------------------------------------------------------------------
    @staticmethod
    def _jedi_candidate(idx: "_TreeIndex", local: str, module: str) -> bool:
        """A capitalised name the module calls (`Net(...)`) or subclasses, imported from a module
        outside the skipped libraries."""
        if not local[:1].isupper() or module.split(".")[0] in SKIP_TOP:
            return False
        return local in idx.called or local in idx.bases

    @staticmethod
    def _answer_key(ctx, local: str, imported: tuple) -> tuple:
        """What jedi's answer depends on: the file (and its mtime: a save may change what its
        folder holds), the import, and the file's own `sys.path` lines; not the rest of the text."""
        path = os.path.abspath(ctx.path)
        try:
            mtime = os.stat(path).st_mtime
        except OSError:
            mtime = None
        text = ctx.src.text
        tricks = tuple(line.strip() for line in text.splitlines() if "sys.path" in line) \
            if "sys.path" in text else ()
        return (path, mtime, local, imported, tricks)

    def _class_at(self, hit: tuple[str, int], key: tuple):
        """The class jedi pointed at, if it is still there (else the answer is dropped)."""
        from gradpath.analysis.facts import ClassSource
        path, line = hit
        m = self.load(path)
        if m is not None:
            for node in ast.walk(m.tree):
                if isinstance(node, ast.ClassDef) and node.lineno == line:
                    self._resolve_module_imports(m, 0)
                    return ClassSource(node, m.symbols, path)
        self.answers.drop(key)
        return None

    def _jedi_class(self, text: str, path: str, p: _Pending):
        known, hit = self.answers.get(p.key)
        if not known:
            hit = self._jedi_goto(text, path, p.local, p.pos)
            self.answers.put(p.key, hit)
        if hit is None:
            return None
        return self._class_at(hit, p.key)

    def _project(self, root: str):
        import jedi
        p = self._projects.get(root)
        if p is None:
            kwargs = {}
            if self.sys_path:
                kwargs["added_sys_path"] = list(self.sys_path)
            p = jedi.Project(root, **kwargs)
            self._projects[root] = p
        return p

    def _jedi_goto(self, text: str, path: str, local: str, pos: tuple[int, int] | None):
        try:
            import jedi
        except ImportError:  # pragma: no cover - jedi is a dependency
            return None
        if pos is None:
            return None
        root = self.root or os.path.dirname(os.path.abspath(path))
        self.stats["jedi_calls"] += 1
        try:
            script = jedi.Script(code=text, path=path, project=self._project(root))
            names = script.goto(pos[0], pos[1], follow_imports=True)
        except Exception:  # jedi can fail on odd code; the fast result stands
            log.debug("jedi failed for %s in %s", local, path, exc_info=True)
            return None
        for n in names:
            mp = getattr(n, "module_path", None)
            if n.type == "class" and mp is not None and n.line:
                mp = str(mp)
                if "site-packages" in mp or "dist-packages" in mp or mp.endswith(".pyi"):
                    return None
                return mp, n.line
        return None


class _TreeIndex:
    """What `enrich` reads of a module's tree, from one walk: `from m import a as b` imports, `import a.b as
    c` aliases, the capitalised attributes read through each dotted name (`models.Net`), the names
    called (with the position of their first call) and the names used as base classes.

    In the order of `ast.walk` (breadth first): a later import of a name wins, the first call of a
    name counts. Each top-level statement is walked once for as long as its tree lives
    (`_StatementIndex`, kept by statement: an editor's versions share the statements an edit did
    not touch); where it stands in the walk is its depth, then its place among the statements,
    then its place in its own walk."""
    __slots__ = ("imports", "module_aliases", "attrs", "called", "bases")

    def __init__(self, tree):
        self.attrs: dict = {}
        self.bases: set = set()  # names used as a class's base
        called: dict = {}  # name -> ((depth, statement, seq), the call's func node)
        imports: dict = {}  # name -> ((depth, statement, seq), value)
        aliases: dict = {}
        for i, st in enumerate(getattr(tree, "body", ())):
            part = _STATEMENT_INDEX.get(st)
            if part is None:
                part = _StatementIndex(st)
                try:
                    _STATEMENT_INDEX[st] = part
                except TypeError:  # pragma: no cover - every ast node can be referenced weakly
                    pass
            for name, (depth, seq, node) in part.called.items():
                key = (depth, i, seq)
                got = called.get(name)
                if got is None or key < got[0]:
                    called[name] = (key, node)
            for mine, theirs in ((part.imports, imports), (part.module_aliases, aliases)):
                for name, (depth, seq, value) in mine.items():
                    key = (depth, i, seq)
                    got = theirs.get(name)
                    if got is None or key > got[0]:
                        theirs[name] = (key, value)
            for dotted, names in part.attrs.items():
                self.attrs.setdefault(dotted, set()).update(names)
            self.bases |= part.bases
        self.called: dict = {n: (f.lineno, f.col_offset) for n, (_k, f) in called.items()}  # first `name(...)`
        self.imports: dict = {n: v for n, (_k, v) in imports.items()}
        self.module_aliases: dict = {n: v for n, (_k, v) in aliases.items()}


class _StatementIndex:
    """_TreeIndex's findings in one top-level statement, each with where the walk met it: (depth in
    the module's walk, place in this statement's walk). Nodes rather than positions (an edit that
    adds lines moves the statement in place)."""
    __slots__ = ("imports", "module_aliases", "attrs", "called", "bases", "__weakref__")

    def __init__(self, st):
        self.imports: dict = {}
        self.module_aliases: dict = {}
        self.attrs: dict = {}
        self.called: dict = {}
        self.bases: set = set()
        todo = deque([(st, 1)])
        seq = 0
        pop, push = todo.popleft, todo.append
        while todo:
            node, depth = pop()
            seq += 1
            for child in ast.iter_child_nodes(node):
                push((child, depth + 1))
            t = type(node)
            if t is ast.Call:
                f = node.func
                if type(f) is ast.Name and f.id not in self.called:
                    self.called[f.id] = (depth, seq, f)
            elif t is ast.ClassDef:
                for b in node.bases:
                    if type(b) is ast.Name:
                        self.bases.add(b.id)
            elif t is ast.Attribute:
                if not node.attr[:1].isupper():
                    continue
                chain, cur = [], node.value
                while isinstance(cur, ast.Attribute):
                    chain.append(cur.attr)
                    cur = cur.value
                if isinstance(cur, ast.Name):
                    chain.append(cur.id)
                    self.attrs.setdefault(".".join(reversed(chain)), set()).add(node.attr)
            elif t is ast.ImportFrom:
                mod = node.module or ""
                if not node.level and mod.split(".")[0] in SKIP_TOP:
                    continue
                for a in node.names:
                    if a.name != "*":
                        self.imports[a.asname or a.name] = (depth, seq, (mod, a.name, node.level))
            elif t is ast.Import:
                for a in node.names:
                    if a.name.split(".")[0] in SKIP_TOP:
                        continue
                    self.module_aliases[a.asname or a.name] = (depth, seq, a.name)


# (statement -> its _StatementIndex, while the statement's tree lives)
_STATEMENT_INDEX: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
