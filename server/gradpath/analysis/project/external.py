"""Modules outside the project that its imports name: a sibling project or a shared training library
on the interpreter's `sys.path` (`PYTHONPATH=../common`, a `pip install -e ../lib` path entry), found
by jedi and summarised like the project's own modules, so the linker sees a base `Trainer` class, a
`train_one_epoch` helper or a model class defined there.

Bounded: at most MAX_MODULES modules and MAX_SECONDS seconds of jedi per project (what is left
unresolved stays unknown, as before: a rule that cannot be sure says nothing). Like the per-file
resolver (analysis/resolve.py), installed packages (site-packages, dist-packages, stubs) are not
looked into: their classes are frameworks recognised by name or code the user cannot change, and
jedi over them costs seconds. Nothing here imports or runs the user's code. A finding never lands
in an external module: the CLI reports the files it was given, the editor publishes only files
under its workspace folders.

How: every absolute import of a project module whose top-level name the index does not know (and
that is not the standard library or a library in resolve.SKIP_TOP) is asked of jedi once per module
name, as `from mod import name`; a definition in a `.py` file outside the project joins the index
under jedi's dotted module name (index.add_external), with its summary. Its own imports are
followed the same way: relative ones by their files, absolute ones through jedi again.
"""
from __future__ import annotations

import logging
import os
import sys
import time

log = logging.getLogger("gradpath.project")

MAX_MODULES = 40
MAX_SECONDS = 3.0
_SKIP_PARTS = ("site-packages", "dist-packages")


def _stdlib() -> frozenset:
    names = set(getattr(sys, "stdlib_module_names", ())) | set(sys.builtin_module_names)
    return frozenset(names)


def _skip_top(top: str) -> bool:
    from gradpath.analysis.resolve import SKIP_TOP
    return top in SKIP_TOP or top in _stdlib() or top.startswith("_")


def _unresolved(project, paths) -> list[str]:
    out = set()
    for p in paths:
        sm = project.summaries.get(p)
        if not sm:
            continue
        for qn in list(sm["imports"].values()) + list(sm.get("star", ())):
            if not qn or qn.startswith(".") or qn.startswith("@") or _skip_top(qn.split(".")[0]):
                continue
            if project.index.split_ref(qn, p) is None:
                out.add(qn)
    return sorted(out)


def _usable(mp: str, root: str) -> bool:
    mp = os.path.abspath(mp)
    if not mp.endswith(".py") or any(part in mp.split(os.sep) for part in _SKIP_PARTS):
        return False
    return not (mp == root or mp.startswith(root.rstrip(os.sep) + os.sep))  # the project's own: indexed or excluded


def _relative_targets(index, path: str, qn: str) -> list[tuple[str, str]]:
    """(file, dotted name) of a relative import inside an external module, from the files on disk."""
    level = len(qn) - len(qn.lstrip("."))
    parts = [x for x in qn[level:].split(".") if x]
    entry = index.modules.get(path)
    if entry is None or not entry.roots:
        return []
    base = entry.roots[0]
    d = os.path.dirname(path)
    for _ in range(level - 1):
        d = os.path.dirname(d)
    out = []
    for i in range(len(parts), -1, -1):
        rel = os.path.join(d, *parts[:i]) if i else d
        for c in ([rel + ".py", os.path.join(rel, "__init__.py")] if i else [os.path.join(rel, "__init__.py")]):
            if os.path.isfile(c):
                name = os.path.relpath(c, base)[:-3].replace(os.sep, ".")
                if name.endswith(".__init__"):
                    name = name[: -len(".__init__")]
                out.append((c, name))
                return out
    return out


def add_externals(project, paths=None, max_modules: int = MAX_MODULES, max_seconds: float = MAX_SECONDS,
                  sys_path: list[str] | None = None, give_way=None) -> list[str]:
    """Find, index and summarise the external modules the summaries of `paths` (default: every
    module with a summary) import; returns the paths added. Never raises. `give_way()`, when
    given, runs before each lookup (the editor: it waits while the user types); the time it waits
    does not count against `max_seconds`."""
    try:
        import jedi
    except ImportError:  # pragma: no cover - jedi is a dependency
        return []
    root = project.root
    added: list[str] = []
    asked: set[str] = set()
    start = time.monotonic()
    try:
        jp = jedi.Project(root, added_sys_path=list(sys_path or []))
    except Exception:
        log.debug("jedi project for %s failed", root, exc_info=True)
        return []
    probe = os.path.join(root, "__gradpath_probe__.py")
    todo = _unresolved(project, list(paths) if paths is not None else list(project.summaries))

    def add(mp: str, name: str) -> None:
        if len(added) >= max_modules or mp in project.index.modules:
            return
        if project.index.add_external(mp, name) is None:
            return
        text = project._reader(mp)
        if text is None:
            return
        project._set(mp, text)
        project._changed()
        added.append(mp)
        sm = project.summaries.get(mp) or {}
        for qn in list(sm.get("imports", {}).values()) + list(sm.get("star", ())):
            if qn.startswith("."):
                for c, n in _relative_targets(project.index, mp, qn):
                    add(c, n)
            elif not _skip_top(qn.split(".")[0]) and project.index.split_ref(qn, mp) is None:
                todo.append(qn)

    waited = 0.0
    while todo and len(added) < max_modules:
        if give_way is not None:
            t0 = time.monotonic()
            give_way()
            waited += time.monotonic() - t0
        if time.monotonic() - start - waited > max_seconds:
            log.info("external modules of %s: stopped after %.1f s (%d added)", root, max_seconds, len(added))
            break
        qn = todo.pop(0)
        mod, _, name = qn.rpartition(".")
        if (mod or name) in asked or project.index.split_ref(qn, probe) is not None:
            continue
        asked.add(mod or name)
        code = f"from {mod} import {name}\n" if mod else f"import {name}\n"
        try:
            defs = jedi.Script(code=code, path=probe, project=jp).goto(1, len(code) - 1, follow_imports=True)
        except Exception:
            log.debug("jedi failed on %s", qn, exc_info=True)
            continue
        for d in defs:
            mp = getattr(d, "module_path", None)
            mname = getattr(d, "module_name", None)
            if mp is None or not mname or not _usable(str(mp), root):
                continue
            mp = str(mp)
            mname = mname[: -len(".__init__")] if mname.endswith(".__init__") else mname
            add(mp, mname)
            # `from pkg import Name` with Name defined in pkg/sub.py: the package re-exporting it
            entry = project.index.modules.get(os.path.abspath(mp))
            if mod and mname != mod and entry is not None and entry.roots and mname.startswith(mod + "."):
                init = os.path.join(entry.roots[0], *mod.split("."), "__init__.py")
                if os.path.isfile(init):
                    add(init, mod)
    return added
