"""The project model in the editor: one Project per workspace folder, indexed in the background.

- After `initialized`, each folder's modules are summarised in a background thread with work-done
  progress ("Indexing 412 modules"); analyses that run before it is ready are file-local (the first
  diagnostics of an opened file never wait for the index). When it is ready, the open files are
  analysed again with it, and files not open that hold a cross-module finding are published too
  (the Problems panel).
- The project is attached to the folder's resolver (`resolver.project`), where the rules find it.
- An edit: after a pause, the module's summary is brought up to date with the editor's text; the file
  is checked again as a whole (cross-module findings are computed only against a summary of the text
  they describe). When the summary changed, the files that import the module are checked again and
  republished (open ones from the editor's text, others from disk); when it did not, nothing else runs.
- `workspace/didChangeWatchedFiles`: created, deleted, renamed and changed-on-disk modules update
  the index the same way.
- While typing (the summary describes an older text), the file's cross-module findings of its last
  linked analysis are carried onto each new version, moved with the edit (lsp/carry.py), so they
  never vanish between keystrokes; one is dropped when the edit touches its range, and the check
  after the pause (against the updated summaries) says what is true again.
"""
from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

log = logging.getLogger("gradpath.lsp.projects")

MAX_INDEXED_FILES = 20000
PROGRESS_EVERY = 50
INDEX_START_DELAY_S = 0.3


def _has_cross_module(findings) -> bool:
    for f in findings:
        if f.data.get("cross_module") or any(getattr(r, "path", None) for r in f.related):
            return True
    return False


# The index's work waits for a pause in typing this long, and at most GIVE_WAY_MAX_S per module.
QUIET_S = 0.5
GIVE_WAY_MAX_S = 5.0


def _freeze_long_lived(give_way) -> None:
    """After an index build: one full collection, then everything alive leaves the collector's
    sight. What an earlier build froze is unfrozen first, so an index replaced since is collected."""
    import gc
    give_way()  # a full collection holds the GIL: not in the middle of typing
    gc.unfreeze()
    gc.collect()
    gc.freeze()


class _Carried:
    """A unit's cross-module findings and the text their positions refer to; and the finding keys
    of its last file-local result (without the project) with that result's text."""
    __slots__ = ("text", "findings", "local", "generation")

    def __init__(self, text, findings, local=None, generation=None):
        self.text, self.findings, self.local, self.generation = text, findings, local, generation


class Projects:
    def __init__(self, analyzer):
        self.analyzer = analyzer
        self.by_root: dict[str, object] = {}
        self.indexing: set[str] = set()
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gradpath-index")
        self._refresh: dict[str, asyncio.Task] = {}
        self._lock = threading.Lock()
        self.published: set[str] = set()  # uris of files not open that we published for
        self.refreshes = 0  # summary updates after edits (for tests and logs)
        self._carried: dict[str, _Carried] = {}  # unit key -> cross-module findings kept while typing
        self._carry_lock = threading.Lock()
        self.rechecks = 0  # dependent files checked again after a summary changed
        # set by every keystroke's analysis request: a background analysis of a closed file stops
        # part way and is tried again once the open files are analysed (one GIL for both)
        self._interrupt = threading.Event()
        self._last_interrupt = 0.0  # time.monotonic() of the last keystroke's analysis request
        self.interrupted = 0  # background analyses stopped that way (for tests and logs)
        self._stop = threading.Event()  # the server is shutting down: an index build stops

    # -- lookups ---------------------------------------------------------------------------------
    def for_path(self, path: str | None):
        if not path:
            return None
        ap = os.path.abspath(path)
        best = None
        for root, p in self.by_root.items():
            if (ap.startswith(root.rstrip(os.sep) + os.sep)) and (best is None or len(root) > len(best[0])):
                best = (root, p)
        return best[1] if best else None

    def attach(self, resolver, root: str | None) -> None:
        """Give the folder's resolver its project (a resolver made anew after a settings change
        gets it here too)."""
        if resolver is None or root is None:
            return
        p = self.by_root.get(os.path.abspath(root))
        if p is not None and getattr(resolver, "project", None) is not p:
            try:
                resolver.project = p
            except Exception:
                pass

    # -- indexing ----------------------------------------------------------------------------------
    async def start(self, ls) -> None:
        if os.environ.get("GRADPATH_NO_INDEX"):  # benchmarks compare the server without it
            return
        # the documents an editor opens right after `initialized` are analysed first
        await asyncio.sleep(INDEX_START_DELAY_S)
        for root in self.analyzer.roots():
            root = os.path.abspath(root)
            if root in self.by_root or root in self.indexing:
                continue
            self.indexing.add(root)
            try:
                await self._index(ls, root)
            except Exception:
                if not self._stop.is_set():  # (shutting down: the pools refuse new work)
                    log.exception("indexing %s failed", root)
            finally:
                self.indexing.discard(root)

    def _files(self, root: str) -> list[str]:
        from gradpath.files import iter_python_files
        from gradpath import projectconfig
        out = []
        for f in iter_python_files([root]):
            try:
                cfg, _w = projectconfig.load_project_config(str(f))
                excluded = cfg.path is not None and cfg.is_excluded(str(f))
            except Exception:
                excluded = False
            if not excluded:
                out.append(str(f))
            if len(out) >= MAX_INDEXED_FILES:
                break
        return out

    async def _index(self, ls, root: str) -> None:
        from gradpath.analysis.project import Project
        from gradpath.analysis.project.pool import IndexStopped, ProcessSummarizer
        from gradpath.lsp.commands import Progress
        loop = asyncio.get_running_loop()
        files = await loop.run_in_executor(self.pool, self._files, root)
        project = Project(root, files)
        async with Progress(ls, "Gradpath: indexing") as progress:
            progress.report(f"Indexing {len(files)} modules", 0)

            def step(i, n):
                if self._stop.is_set():
                    raise IndexStopped()
                self._give_way()
                if i % PROGRESS_EVERY == 0 or i == n:
                    loop.call_soon_threadsafe(progress.report, f"Indexing {n} modules ({i} done)",
                                              int(100 * i / max(1, n)))
            # the summaries the cache lacks are computed in a child process (analysis/project/pool.py)
            summarizer = ProcessSummarizer(stop=self._stop)
            try:
                await loop.run_in_executor(self.pool, lambda: project.build(progress=step,
                                                                            summarize_many=summarizer))
            except IndexStopped:
                return
            if summarizer.in_child:
                log.info("%d module summaries computed in a child process", summarizer.in_child)
            await loop.run_in_executor(self.pool, project.linker().loss_uses)  # warm the linker
        self.by_root[root] = project
        log.info("indexed %d modules of %s (%d from the cache)", len(files), root, project.cache.stats["hits"])
        # the index lives as long as the server: out of the collector's sight, so that no later
        # full collection walks it again (a pause in the middle of a keystroke's analysis)
        await loop.run_in_executor(self.pool, _freeze_long_lived, self._give_way)
        self.attach(self.analyzer.resolvers.get(root), root)
        # the open files of this folder again, with the project; then files not open that hold
        # cross-module findings
        from gradpath.lsp.scheduler import uri_to_path
        for key in list(self.analyzer.units):
            path = uri_to_path(key)
            if path and self.for_path(path) is project and self.analyzer.is_ours(key):
                self.analyzer.schedule(key, 0.0)
        sites = await loop.run_in_executor(self.pool, self._candidates, project)
        await self._publish_closed(ls, project, sites)
        # then modules outside the folder that its imports name (a sibling library on sys.path),
        # bounded in count and time (analysis/project/external.py); when some were linked, the
        # open files and the finding sites again
        if await loop.run_in_executor(self.pool, self._externals, project, root):
            await loop.run_in_executor(self.pool, project.linker().loss_uses)
            for key in list(self.analyzer.units):
                path = uri_to_path(key)
                if path and self.for_path(path) is project and self.analyzer.is_ours(key):
                    self.analyzer.schedule(key, 0.0)
            sites = await loop.run_in_executor(self.pool, self._candidates, project)
            await self._publish_closed(ls, project, sites)

    def _externals(self, project, root: str) -> bool:
        from gradpath.analysis.project.external import add_externals
        resolver = self.analyzer.resolvers.get(root)
        try:
            added = add_externals(project, sys_path=list(getattr(resolver, "sys_path", None) or []),
                                  give_way=self._give_way)
        except Exception:
            log.exception("external modules of %s", root)
            return False
        if added:
            log.info("%d modules outside %s linked (found on sys.path)", len(added), root)
        return bool(added)

    def interrupt(self) -> None:
        self._last_interrupt = time.monotonic()
        self._interrupt.set()

    def _give_way(self) -> None:
        """Runs in the index thread before each module it summarises or analyses: while an open
        file is being analysed, or was edited less than QUIET_S ago (the user is typing), wait, up
        to GIVE_WAY_MAX_S, so the index never slows an opened file's diagnostics (one GIL)."""
        waited = 0.0
        while waited < GIVE_WAY_MAX_S and (
                self._analysing() or time.monotonic() - self._last_interrupt < QUIET_S):
            time.sleep(0.01)
            waited += 0.01
        self._interrupt.clear()

    def _analysing(self) -> bool:
        try:
            return any(st.task is not None and not st.task.done() for st in list(self.analyzer.units.values()))
        except Exception:
            return False

    def _candidates(self, project) -> list[str]:
        """Modules where a cross-module finding may land (see link.finding_sites)."""
        from gradpath.analysis.project.link import finding_sites
        # never a module outside the folder (found on sys.path): not the user's to change here
        return sorted(p for p in finding_sites(project.linker()) if not project.index.is_external(p))

    async def _publish_closed(self, ls, project, paths) -> None:
        from gradpath.lsp.scheduler import analyse_file
        loop = asyncio.get_running_loop()
        for path in paths:
            if self._stop.is_set():
                return
            await loop.run_in_executor(self.pool, self._give_way)  # the open files' analyses go first
            await self._publish_one(ls, path, loop, analyse_file)

    async def _publish_one(self, ls, path, loop, analyse_file) -> None:
        from lsprotocol import types
        from pygls.uris import from_fs_path
        from gradpath.lsp.convert import diagnostics_by_uri
        from gradpath.lsp.notebook import Snapshot
        uri = from_fs_path(path)
        an = self.analyzer
        if an.is_open(uri) or not os.path.isfile(path) or self.for_path(path) is None:
            return
        for _attempt in range(50):
            await loop.run_in_executor(self.pool, self._give_way)  # the open files' analyses go first
            result = await loop.run_in_executor(self.pool, analyse_file, an, path, ls.settings.options,
                                                self._interrupt)
            if result is not None or not self._interrupt.is_set():
                break
            self.interrupted += 1  # a keystroke came: give way, then analyse this file again
            await asyncio.sleep(0.05)
        else:
            log.info("%s: background analysis gave way 50 times; left for later", path)
            return
        if result is None:
            return
        if not _has_cross_module(result.findings) and uri not in self.published:
            return  # nothing the index adds: the file's own findings appear when it is opened or checked
        snap = Snapshot(uri, None, result.source.text, path)
        diags = diagnostics_by_uri(result.findings, snap, an.encoding)
        for u, ds in diags.items():
            ls.text_document_publish_diagnostics(types.PublishDiagnosticsParams(uri=u, diagnostics=ds))
            self.published.add(u)

    # -- edits ---------------------------------------------------------------------------------------
    def after_analysis(self, key: str, snap) -> None:
        """Called once a version of an open file was analysed: when the project's summary is not of
        this text, bring it up to date after a pause (never on the keystroke's own path)."""
        project = self.for_path(snap.path)
        if project is None or getattr(snap, "is_notebook", False):
            return
        if project.holds(snap.path, snap.text):
            return
        t = self._refresh.get(key)
        if t is not None and not t.done():
            t.cancel()
        delay = max(0.0, self.analyzer.verify_delay_s)
        self._refresh[key] = asyncio.ensure_future(self._refresh_after(key, snap, project, delay))

    async def _refresh_after(self, key: str, snap, project, delay: float) -> None:
        try:
            if delay > 0:
                await asyncio.sleep(delay)
            if not self.analyzer._current(key, snap):
                return
            loop = asyncio.get_running_loop()
            changed = await loop.run_in_executor(self.pool, project.update, snap.path, snap.text)
            self.refreshes += 1
            await self._recheck_open(key)
            if changed:
                await self._dependents_changed(project, snap.path)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("updating the summary of %s failed", key)

    async def _recheck_open(self, key: str) -> None:
        """A whole-file check of an open file against the current project; republished if it differs."""
        an = self.analyzer
        snap = an.snapshot(key)
        if snap is None:
            return
        options = an.server.settings.options
        loop = asyncio.get_running_loop()
        out = await loop.run_in_executor(an.verify_pool, an._analyse_full, snap, options, None)
        if out is None or not an._current(key, snap):
            return
        st = an.units.get(key)
        if st is not None and st.result is not None and \
                [f.to_dict() for f in st.result.findings] == [f.to_dict() for f in out.findings]:
            return
        an._store(key, snap, out)
        an.publish(key)

    async def _dependents_changed(self, project, path: str) -> None:
        from pygls.uris import from_fs_path
        from gradpath.lsp.scheduler import analyse_file
        deps = sorted(project.dependents(path))
        # a class's users may sit two imports away (a re-export): follow one more step
        for d in list(deps):
            if os.path.basename(d) == "__init__.py":
                deps += [x for x in sorted(project.dependents(d)) if x not in deps]
        # the module itself may hold the finding (a softmax here, its loss elsewhere): its users
        # changing can move findings into it as well; and a user's change moves findings into the
        # modules it uses
        deps += [d for d in sorted(self._imported(project, path)) if d not in deps]
        loop = asyncio.get_running_loop()
        ls = self.analyzer.server
        for d in deps:
            uri = from_fs_path(d)
            key = self.analyzer.unit_key(uri)
            self.rechecks += 1
            if self.analyzer.is_open(key):
                await self._recheck_open(key)
            else:
                await self._publish_one(ls, d, loop, analyse_file)

    @staticmethod
    def _imported(project, path: str) -> set[str]:
        """The project modules `path` imports (findings may land in them: the softmax of a model
        class whose loss is in `path`)."""
        out = set()
        sm = project.summaries.get(os.path.abspath(path)) or {}
        for qn in list(sm.get("imports", {}).values()):
            sp = project.index.split_ref(qn, path)
            if sp and sp[0] != os.path.abspath(path):
                out.add(sp[0])
        return out

    # -- while typing -------------------------------------------------------------------------------
    def carry(self, snap, result):
        """Runs in the analysis threads, on every result of an open file before it is stored. With
        a project summary of this text, the result is linked: its cross-module findings are noted
        (those marked so, and those a file-local result of the same text lacks). Without one (the
        summary is of an older text: the user is typing), the noted findings are moved onto this
        text and added to the result where it lacks them."""
        from dataclasses import replace
        from gradpath.lsp import carry as cm
        if result is None or not getattr(snap, "path", None) or getattr(snap, "is_notebook", False):
            return result
        project = self.for_path(snap.path)
        if project is None:
            return result
        key, text = snap.key, snap.text
        generation = (self.analyzer.generation, id(project))
        with self._carry_lock:
            st = self._carried.get(key)
            if st is not None and st.generation != generation:
                st = None  # settings or files changed: nothing carries over
            if project.holds(snap.path, text):
                local = st.local if st is not None and st.local is not None and st.local[0] == text else None
                cross = [f for f in result.findings if cm.is_marked_cross_module(f)
                         or (local is not None and cm.finding_key(f) not in local[1])]
                self._carried[key] = _Carried(text, cross, None, generation)
                return result
            have = {cm.finding_key(f) for f in result.findings}
            if st is None:
                self._carried[key] = _Carried(text, [], (text, have), generation)
                return result
            st.local = (text, have)
            if st.text != text:
                st.findings = cm.move_findings(st.findings, st.text, text)
                st.text = text
            extra = [f for f in st.findings if cm.finding_key(f) not in have]
        if not extra:
            return result
        return replace(result, findings=sorted(list(result.findings) + extra, key=lambda f: f.sort_key()))

    def forget(self, key: str) -> None:
        with self._carry_lock:
            self._carried.pop(key, None)

    # -- files on disk -------------------------------------------------------------------------------
    async def files_changed(self, changes) -> None:
        """workspace/didChangeWatchedFiles: 1 created, 2 changed, 3 deleted (a rename is a delete
        and a create)."""
        from lsprotocol import types
        from gradpath.lsp.scheduler import uri_to_path
        loop = asyncio.get_running_loop()
        ls = self.analyzer.server
        for ch in changes:
            path = uri_to_path(ch.uri)
            if not path or not path.endswith(".py"):
                continue
            project = self.for_path(path)
            if project is None:
                continue
            if ch.type == types.FileChangeType.Deleted:
                deps = project.dependents(path) | self._imported(project, path)
                await loop.run_in_executor(self.pool, project.remove, path)
                if ch.uri in self.published:
                    ls.text_document_publish_diagnostics(types.PublishDiagnosticsParams(uri=ch.uri, diagnostics=[]))
                    self.published.discard(ch.uri)
                for d in sorted(deps):
                    await self._dependents_changed_one(d)
                continue
            if self.analyzer.is_open(ch.uri):
                continue  # the editor's text wins; its edits update the summary
            changed = await loop.run_in_executor(self.pool, project.add, path)
            if changed:
                await self._dependents_changed(project, path)

    async def _dependents_changed_one(self, path: str) -> None:
        from pygls.uris import from_fs_path
        from gradpath.lsp.scheduler import analyse_file
        uri = from_fs_path(path)
        key = self.analyzer.unit_key(uri)
        if self.analyzer.is_open(key):
            await self._recheck_open(key)
        else:
            await self._publish_one(self.analyzer.server, path, asyncio.get_running_loop(), analyse_file)

    def shutdown(self) -> None:
        self._stop.set()
        for p in self.by_root.values():
            try:
                p.save_cache()
            except Exception:
                pass
        self.pool.shutdown(wait=False, cancel_futures=True)
