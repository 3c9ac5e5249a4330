"""The project model: the modules of a project, a summary per module (cached by content hash), and
the linker that answers questions across modules. See DESIGN.md, "The project model".

    project = Project(root, paths)      # paths: the project's .py files
    project.build()                     # summaries from the cache or computed
    project.update(path, text)          # an edit: True when the module's summary changed
    linker = project.linker()           # questions across modules (link.Linker)

Rules reach it through `project_view(ctx)`: the Project attached to the analysis' resolver
(`resolver.project`), and the path of the file being analysed when the project holds it with the
same text (the summaries then describe what the rule sees).
"""
from __future__ import annotations

import logging
import os
import threading
from typing import Callable, Iterable

from gradpath.analysis.project.cache import SummaryCache, content_hash
from gradpath.analysis.project.index import ProjectIndex
from gradpath.analysis.project.link import Linker
from gradpath.analysis.project.summaries import summarize
from gradpath.analysis.source import normalize

log = logging.getLogger("gradpath.project")

__all__ = ["Project", "project_view", "content_hash"]


def _read(path: str) -> str | None:
    from gradpath.files import read_source
    from pathlib import Path
    try:
        return read_source(Path(path))
    except (OSError, UnicodeDecodeError):
        return None


class Project:
    def __init__(self, root: str, paths: Iterable[str] = (), use_cache: bool = True,
                 cache_folder: str | None = None, reader: Callable[[str], str | None] | None = None):
        self.root = os.path.abspath(root)
        self.index = ProjectIndex(self.root, [])
        self.cache = SummaryCache(self.root, use_disk=use_cache, folder=cache_folder)
        self.summaries: dict[str, dict | None] = {}
        self.hashes: dict[str, str] = {}
        self.broken: set[str] = set()  # modules whose current text does not parse (last good summary kept)
        self._reader = reader or _read
        self._linker: Linker | None = None
        self._lock = threading.RLock()
        self.generation = 0  # grows whenever a summary changes
        for p in paths:
            self.index.add(p)

    # -- building and updating ---------------------------------------------------------------------
    def paths(self) -> list[str]:
        return sorted(self.index.modules)

    def build(self, progress: Callable[[int, int], None] | None = None,
              summarize_many: Callable[[list], Iterable] | None = None) -> "Project":
        """Summaries of every module, from the cache or computed. `progress(done, total)` is called
        after each module. `summarize_many`, when given, computes the summaries the cache lacks
        first: it takes a list of (path, text) and yields (path, summary) as they are ready (the
        editor's index does it in another process, so that summarising never holds this process's
        interpreter lock while the user types); the modules are then taken in order as before."""
        self.cache.load()
        paths = self.paths()
        texts: dict[str, str] = {}
        if summarize_many is not None:
            todo = self._uncached(paths, texts)
            if todo:
                done = len(paths) - len(todo)
                for path, summary in summarize_many(todo):
                    self.cache.put(content_hash(texts[path]), summary)
                    done += 1
                    if progress is not None:
                        progress(done, len(paths))
                progress = None  # what follows reads the cache: no second count from 0
        for i, p in enumerate(paths):
            if not self._from_stat(p):
                text = texts.pop(p, None)
                if text is None:
                    text = self._reader(p)
                if text is not None:
                    self._set(p, text)
                    self._note_stat(p)
            if progress is not None:
                progress(i + 1, len(paths))
        self.cache.save(keep=set(self.hashes.values()))
        return self

    def _uncached(self, paths: list[str], texts: dict[str, str]) -> list[tuple[str, str]]:
        """(path, text) of the modules whose summary the cache does not hold (their normalised
        texts are kept in `texts` for the build)."""
        out = []
        for p in paths:
            if self.cache.use_disk and self._reader is _read:
                try:
                    h = self.cache.known_file(p, os.stat(p))
                except OSError:
                    h = None
                if h is not None and self.cache.knows(h):
                    continue
            text = self._reader(p)
            if text is None:
                continue
            text = normalize(text)
            texts[p] = text
            if not self.cache.knows(content_hash(text)):
                out.append((p, text))
        return out

    def _from_stat(self, path: str) -> bool:
        """A warm start: the file's stat matches what the cache recorded, so its summary is taken
        without reading it."""
        if not self.cache.use_disk or self._reader is not _read:
            return False
        try:
            st = os.stat(path)
        except OSError:
            return False
        h = self.cache.known_file(path, st)
        if h is None:
            return False
        known, s = self.cache.get(h)
        if not known:
            return False
        with self._lock:
            self.hashes[path] = h
            if s is None:
                self.broken.add(path)
                return True
            self.broken.discard(path)
            if self.summaries.get(path) != s:
                self.summaries[path] = s
                self._changed()
        return True

    def _note_stat(self, path: str) -> None:
        if not self.cache.use_disk or self._reader is not _read or path not in self.hashes:
            return
        try:
            self.cache.note_file(path, os.stat(path), self.hashes[path])
        except OSError:
            pass

    def _summary_for(self, text: str, h: str):
        known, s = self.cache.get(h)
        if not known:
            s = summarize(text)
            self.cache.put(h, s)
        return s

    def _set(self, path: str, text: str) -> bool:
        text = normalize(text)
        h = content_hash(text)
        with self._lock:
            if self.hashes.get(path) == h and path in self.summaries:
                return False
        s = self._summary_for(text, h)
        with self._lock:
            self.hashes[path] = h
            if s is None:
                self.broken.add(path)
                return False  # keep the last good summary
            self.broken.discard(path)
            if self.summaries.get(path) == s:
                return False
            self.summaries[path] = s
            self._changed()
            return True

    def update(self, path: str, text: str) -> bool:
        """A module's new text (an edit or a save); True when its summary changed (then the linker
        answers afresh, and dependent files are worth re-checking)."""
        path = os.path.abspath(path)
        if path not in self.index.modules:
            self.index.add(path)
            self._changed()
        return self._set(path, text)

    def add(self, path: str) -> bool:
        path = os.path.abspath(path)
        self.index.add(path)
        text = self._reader(path)
        self._changed()
        return self._set(path, text) if text is not None else True

    def remove(self, path: str) -> None:
        path = os.path.abspath(path)
        with self._lock:
            self.index.remove(path)
            self.summaries.pop(path, None)
            self.hashes.pop(path, None)
            self.broken.discard(path)
            self._changed()

    def save_cache(self) -> None:
        self.cache.save(keep=set(self.hashes.values()))

    def _changed(self) -> None:
        self._linker = None
        self.generation += 1

    def linker(self) -> Linker:
        with self._lock:
            if self._linker is None:
                self._linker = Linker(self.index, dict(self.summaries))
            return self._linker

    def holds(self, path: str | None, text: str) -> bool:
        """True when the project's summary of `path` was made from `text`."""
        if not path:
            return False
        path = os.path.abspath(path)
        return path in self.summaries and self.hashes.get(path) == content_hash(normalize(text)) \
            and path not in self.broken

    def dependents(self, path: str) -> set[str]:
        """Modules whose imports name `path` (directly), for re-checking after its summary changed."""
        path = os.path.abspath(path)
        out = set()
        for p, sm in list(self.summaries.items()):
            if not sm or p == path:
                continue
            for qn in list(sm["imports"].values()) + list(sm.get("star", ())):
                sp = self.index.split_ref(qn, p)
                if sp and sp[0] == path:
                    out.add(p)
                    break
        return out

    # -- to worker processes (the CLI analyses files in parallel) --------------------------------
    def __getstate__(self):
        d = self.__dict__.copy()
        d["_lock"] = None
        d["_linker"] = None
        d["cache"] = None
        d["_reader"] = None
        return d

    def __setstate__(self, d):
        self.__dict__.update(d)
        self._lock = threading.RLock()
        self.cache = SummaryCache(None, use_disk=False)
        self._reader = _read

    # -- memory figures for benchmarks -----------------------------------------------------------
    def __len__(self) -> int:
        return len(self.index.modules)


def project_view(ctx):
    """(Project, absolute path) for the file under analysis, or None when there is no project or it
    does not hold this text (the summaries would describe another version of the file)."""
    project = getattr(getattr(ctx, "resolver", None), "project", None)
    if project is None or not ctx.path:
        return None
    memo = getattr(ctx, "memo", None)
    if memo is not None:  # once per analysis (the check hashes the text)
        return memo("project-view", lambda: _view(project, ctx))
    return _view(project, ctx)


def linked_summary(ctx):
    """(Project, absolute path, its linker, this file's summary) for the file under analysis, or
    None when there is no project view or no summary of this file: what every cross-module rule
    starts from."""
    view = project_view(ctx)
    if view is None:
        return None
    project, path = view
    lk = project.linker()
    sm = lk.summary(path)
    if not sm:
        return None
    return project, path, lk, sm


def _view(project, ctx):
    if not project.holds(ctx.path, ctx.src.text):
        return None
    return project, os.path.abspath(ctx.path)
