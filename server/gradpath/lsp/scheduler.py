"""Analysis scheduling: debounce, run off the event loop, publish only the current version.

Everything here is called on the event loop thread except `_analyse`, which runs in a thread pool.
A unit is a text document (key = its uri) or a notebook (key = the notebook's uri).
"""
from __future__ import annotations

import asyncio
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from lsprotocol import types

from gradpath.analysis.engine import AnalysisResult, Context, analyze, analyze_raw, finish
from gradpath.analysis.incremental import IncrementalAnalyzer
from gradpath.lsp.collector import Collector
from gradpath.lsp.convert import diagnostics_by_uri
from gradpath.lsp.notebook import Snapshot, notebook_snapshot
from gradpath.lsp.resolvers import ResolverPool, root_for

log = logging.getLogger("gradpath.lsp")

# After an incremental analysis is published, the whole file is analysed again once typing has
# paused this long; if that finds anything different, it is republished (same version).
VERIFY_DELAY_S = 0.4

PYTHON_LANGUAGES = {"python", "python3", "ipython", None, ""}
WARM_UP_TEXT = """import torch
import torch.nn as nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 1)

    def forward(self, x):
        return self.fc(x)


model = Net()
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
for x in range(2):
    opt.zero_grad()
    loss = model(torch.randn(2, 4)).sum()
    loss.backward()
    opt.step()
"""


def uri_to_path(uri: str) -> str | None:
    try:
        from pygls.uris import to_fs_path
        if not uri.startswith("file:"):
            return None
        return to_fs_path(uri)
    except Exception:
        return None


@dataclass
class UnitState:
    snapshot: Snapshot | None = None  # what the current findings were computed from
    result: AnalysisResult | None = None
    verdicts: dict[str, Any] = field(default_factory=dict)  # finding id -> live Verdict
    live_run: dict | None = None
    # the live-verdict counts the client last heard for this unit (None: none apply)
    live_counts: dict[str, int] | None = None
    published: set[str] = field(default_factory=set)  # uris we published diagnostics for
    task: asyncio.Task | None = None
    slow_task: asyncio.Task | None = None
    verify_task: asyncio.Task | None = None
    # set when the next edit arrives: the running whole-file check stops at its next time check
    verify_cancel: threading.Event | None = None
    # set when a newer request for this unit arrives: the analysis of the older one stops part way
    # (it would otherwise hold the interpreter lock, and `inc_lock`, against the newer one)
    cancel: threading.Event | None = None
    cancel_version: int | None = None  # the version the requests sharing `cancel` are for
    _ctx: tuple[object, Context] | None = None
    # incremental re-analysis of this unit's text, one call at a time
    inc: IncrementalAnalyzer = field(default_factory=IncrementalAnalyzer)
    inc_lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def findings(self):
        return self.result.findings if self.result is not None else []


class Analyzer:
    def __init__(self, server):
        self.server = server
        self.units: dict[str, UnitState] = {}
        self.pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="gradpath-analysis")
        self.slow_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gradpath-jedi")
        self.verify_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gradpath-verify")
        # bumped whenever everything must be analysed afresh (settings, files changed on disk):
        # incremental state from before does not carry over
        self.generation = 0
        self.incremental = True
        self.verify_delay_s = VERIFY_DELAY_S
        self.verifications = 0  # full re-analyses after incremental ones
        self.corrections = 0  # ... that found something different and republished
        self.resolvers = ResolverPool()
        from gradpath.lsp.projects import Projects
        self.projects = Projects(self)  # the project model per workspace folder (built in the background)
        self._latest: dict[str, object] = {}  # key -> latest known version (read by threads)
        self._lock = threading.Lock()
        self.analyses = 0  # count of analyses run (for logs and tests)
        self.collector = Collector()  # garbage collected in the pauses (`gradpath serve` only)
        self._config_warned: set[str] = set()

    # -- documents -------------------------------------------------------------------------------
    @property
    def ws(self):
        return self.server.workspace

    @property
    def encoding(self) -> str:
        enc = self.ws.position_encoding
        return str(getattr(enc, "value", enc) or "utf-16")

    def roots(self) -> list[str]:
        out = []
        try:
            for f in self.ws.folders.values():
                p = uri_to_path(f.uri)
                if p:
                    out.append(p)
            if not out and self.ws.root_path:
                out.append(self.ws.root_path)
        except Exception:
            pass
        return out

    def unit_key(self, uri: str) -> str:
        """The unit a document belongs to: its notebook's uri for a notebook cell."""
        try:
            nb = self.ws.get_notebook_document(cell_uri=uri)
        except Exception:
            nb = None
        return nb.uri if nb is not None else uri

    def snapshot(self, key: str) -> Snapshot | None:
        ws = self.ws
        nb = ws.get_notebook_document(notebook_uri=key)
        if nb is not None:
            return notebook_snapshot(nb, ws.text_documents, uri_to_path(key))
        doc = ws.text_documents.get(unquote(key))
        if doc is None:
            return None
        text = doc.source
        return Snapshot(key, (doc.version, hash(text)), text, uri_to_path(key), doc_version=doc.version)

    def is_open(self, key: str) -> bool:
        return (self.ws.get_notebook_document(notebook_uri=key) is not None
                or unquote(key) in self.ws.text_documents)

    def is_ours(self, key: str) -> bool:
        """Open, and Python: a notebook, or a text document with a Python language id or name."""
        if self.ws.get_notebook_document(notebook_uri=key) is not None:
            return True
        doc = self.ws.text_documents.get(unquote(key))
        if doc is None:
            return False
        return (getattr(doc, "language_id", None) in PYTHON_LANGUAGES
                or key.endswith((".py", ".pyi")))

    # -- scheduling ------------------------------------------------------------------------------
    def schedule(self, key: str, delay_s: float = 0.0, supersede: bool = True) -> None:
        """Analyse the unit's current text (after `delay_s`) and publish. A running analysis of an
        older version stops part way; one of this same version too, unless `supersede` is False (a
        save: the text it analyses is the text saved, and the new request then finds it done)."""
        self.projects.interrupt()  # a background analysis of a closed file gives way to this one
        self.collector.busy()
        st = self.units.setdefault(key, UnitState())
        snap = self.snapshot(key)
        if snap is not None:
            with self._lock:
                self._latest[key] = snap.version
        if st.task is not None and not st.task.done():
            st.task.cancel()
        version = snap.version if snap is not None else None
        if st.cancel is None or supersede or version != st.cancel_version:
            if st.cancel is not None:
                st.cancel.set()
            st.cancel = threading.Event()  # (else the running analysis and this request share one)
            st.cancel_version = version
        self._cancel_verify(st)
        st.task = asyncio.ensure_future(self._run(key, delay_s, st.cancel))

    @staticmethod
    def _cancel_verify(st: UnitState) -> None:
        """Stop a pending or running whole-file check: the task, and the thread's analysis (which
        otherwise holds the GIL against the next keystroke's analysis for its whole length)."""
        if st.verify_task is not None and not st.verify_task.done():
            st.verify_task.cancel()
        if st.verify_cancel is not None:
            st.verify_cancel.set()
            st.verify_cancel = None

    def schedule_all(self, delay_s: float = 0.0) -> None:
        self.generation += 1
        keys = set(self.units)
        keys.update(nb.uri for nb in self.ws.notebook_documents.values())
        for key in keys:
            if self.is_ours(key):
                self.schedule(key, delay_s)

    async def _run(self, key: str, delay_s: float, cancel: threading.Event | None = None) -> None:
        try:
            if delay_s > 0:
                await asyncio.sleep(delay_s)
            if not self.server.settings.enable:
                return
            snap = self.snapshot(key)
            if snap is None:
                return
            options = self.server.settings.options
            loop = asyncio.get_running_loop()
            out = await loop.run_in_executor(self.pool, self._analyse, snap, options, cancel)
            if out is None or not self._current(key, snap):
                return  # a newer version exists: its own task will publish
            result, needs_slow = out
            self._store(key, snap, result)
            self.publish(key)
            self.collector.published()
            self.server.on_analysed(key)
            self.projects.after_analysis(key, snap)
            if result.mode == "incremental" and self.verify_delay_s >= 0:
                st = self.units[key]
                self._cancel_verify(st)
                st.verify_cancel = threading.Event()
                st.verify_task = asyncio.ensure_future(self._verify(key, snap, options, st.verify_cancel))
            if needs_slow:
                st = self.units[key]
                if st.slow_task is not None and not st.slow_task.done():
                    st.slow_task.cancel()
                # on open, at once; while typing, after a pause
                delay = self.verify_delay_s if result.mode == "incremental" else 0.0
                st.slow_task = asyncio.ensure_future(self._slow(key, snap, delay))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("analysis of %s failed", key)

    async def _slow(self, key: str, snap: Snapshot, delay_s: float) -> None:
        """jedi, in the background, for the imported names the fast resolver could not answer
        (no analysis here: an answer goes into the resolver's table, which every later analysis
        of the file reads). When an answer names a class, the file is analysed again and
        republished. While the user types, it waits for a pause; it never asks twice about
        the same import."""
        try:
            if delay_s > 0:
                await asyncio.sleep(delay_s)
            if not self._current(key, snap):
                return
            loop = asyncio.get_running_loop()
            found = await loop.run_in_executor(self.slow_pool, self._resolve_pending, snap)
            if found and key in self.units and self.is_open(key):
                log.info("%s: jedi resolved an imported model class; analysing again", key)
                self.schedule(key, 0.0)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("jedi pass for %s failed", key)

    def _resolve_pending(self, snap: Snapshot) -> bool:
        """Runs in the jedi thread."""
        with self._lock:
            if self._latest.get(snap.key, snap.version) != snap.version:
                return False
        resolver, _options, excluded = self._prepare(snap, self.server.settings.options)
        fn = getattr(resolver, "resolve_pending", None)
        if excluded or fn is None or not snap.path:
            return False
        return bool(fn(snap.text, snap.path))

    async def _verify(self, key: str, snap: Snapshot, options, cancel: threading.Event) -> None:
        """Once typing pauses: the whole-file analysis of what was analysed incrementally. The
        incremental result equals it except where a rule reads the file as a whole in a way the
        region dependencies do not see; then the whole-file result is republished and becomes the
        base of the next incremental step."""
        try:
            await asyncio.sleep(self.verify_delay_s)
            if not self._current(key, snap):
                return
            loop = asyncio.get_running_loop()
            out = await loop.run_in_executor(self.verify_pool, self._analyse_full, snap, options, cancel)
            if out is None or not self._current(key, snap):
                return
            st = self.units.get(key)
            if st is None or st.snapshot is None or st.snapshot.version != snap.version \
                    or self.server.settings.options is not options:
                return
            self.verifications += 1
            before = [f.to_dict() for f in st.findings]
            after = [f.to_dict() for f in out.findings]
            if after != before:
                self.corrections += 1
                log.info("%s: the whole-file analysis differs from the incremental one (%d vs %d findings); "
                         "republishing", key, len(after), len(before))
                self._store(key, snap, out)
                self.publish(key)
            else:
                log.debug("%s: whole-file analysis agrees with the incremental one", key)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("verification of %s failed", key)

    def _analyse_full(self, snap: Snapshot, options, cancel: threading.Event | None = None
                      ) -> AnalysisResult | None:
        """Runs in the verify thread: a whole-file analysis, adopted as the unit's incremental base
        when the unit still holds this text. None when a newer version arrived (before or during:
        `cancel` stops it part way)."""
        with self._lock:
            latest = self._latest.get(snap.key, snap.version)
        if latest != snap.version or (cancel is not None and cancel.is_set()):
            return None
        resolver, options, excluded = self._prepare(snap, options)
        if excluded:
            return None
        raw = analyze_raw(snap.text, snap.path, options, resolver, cancel=cancel, keep_flow=True)
        if raw.cancelled:
            log.debug("%s: whole-file check stopped: the text changed", snap.key)
            return None
        self.analyses += 1
        st = self.units.get(snap.key)
        if st is not None:
            with st.inc_lock:
                st.inc.adopt(snap.text, snap.path, options, resolver, self._gen(resolver), raw)
        # cross-module findings stay while the project's summary lags behind the text (projects.py)
        return self.projects.carry(snap, finish(raw, options))

    def _prepare(self, snap: Snapshot, options):
        root = root_for(snap.path, self.roots())
        resolver = self.resolvers.get(root) if (snap.path or root) else None
        self.projects.attach(resolver, root)
        options, excluded = self.options_for(snap.path, options)
        return resolver, options, excluded

    def _gen(self, resolver) -> tuple:
        """What incremental state depends on beyond the text: settings and files on disk
        (`generation`), and the jedi answers the resolver holds (a new one changes what an
        imported name is, anywhere in the file)."""
        answers = getattr(resolver, "answers", None)
        project = getattr(resolver, "project", None)  # a changed summary elsewhere changes cross-module findings
        return (self.generation, getattr(answers, "version", 0), id(project), getattr(project, "generation", 0))

    def _current(self, key: str, snap: Snapshot) -> bool:
        cur = self.snapshot(key)
        return cur is not None and cur.version == snap.version

    def _store(self, key: str, snap: Snapshot, result: AnalysisResult) -> None:
        st = self.units.setdefault(key, UnitState())
        if st.snapshot is not None and st.snapshot.text != snap.text:
            st.verdicts = {}  # verdicts belong to the text they ran on
            st.live_run = None
        st.snapshot, st.result = snap, result
        st._ctx = None

    def _analyse(self, snap: Snapshot, options, cancel: threading.Event | None = None):
        """Runs in a worker thread. Returns (AnalysisResult, whether jedi could add to it) or None
        if stale (a newer request arrived before, or while, it ran: `cancel` is then set). jedi
        itself runs later, in `_slow`, and never here."""
        with self._lock:
            latest = self._latest.get(snap.key, snap.version)
        if latest != snap.version:
            return None  # a newer version arrived while this job waited for a worker
        resolver, options, excluded = self._prepare(snap, options)
        if excluded:
            from gradpath.analysis.source import SourceFile
            return AnalysisResult(findings=[], source=SourceFile.parse("", snap.path)), False
        st = self.units.get(snap.key)
        if st is None or not self.incremental:
            result = analyze(snap.text, snap.path, options, resolver=resolver)
        else:
            with st.inc_lock:
                if cancel is not None and cancel.is_set():
                    return None
                result = st.inc.analyze(snap.text, snap.path, options, resolver, self._gen(resolver),
                                        cancel=cancel)
                stats = st.inc.stats
            if result is None:
                log.debug("%s: analysis of version %s stopped after %.1f ms: a newer request arrived",
                          snap.key, snap.version, stats.seconds * 1000)
                return None
            log.debug("%s: %s analysis in %.1f ms (%d of %d regions redone, %d lines analysed)%s%s",
                      snap.key, stats.mode, stats.seconds * 1000, stats.redone, stats.regions,
                      stats.analysed_lines, f"; {stats.reason}" if stats.reason else "",
                      f"; dataflow: {stats.flow}" if stats.flow and stats.mode == "full" else "")
        self.analyses += 1
        needs = resolver is not None and ResolverPool.needs_slow_pass(resolver, snap.text, snap.path)
        return self.projects.carry(snap, result), needs

    def options_for(self, path: str | None, editor_options):
        """The project's `[tool.gradpath]` (pyproject.toml / gradpath.toml, found from the file
        upwards) under the editor's settings. Returns (options, excluded by the project)."""
        if not path:
            return editor_options, False
        try:
            from gradpath import projectconfig
        except ImportError:
            return editor_options, False
        try:
            cfg, warnings = projectconfig.load_project_config(path)
            for w in warnings:
                if w not in self._config_warned:
                    self._config_warned.add(w)
                    log.warning("%s", w)
            if cfg.path is None:
                return editor_options, False
            if cfg.is_excluded(path):
                return editor_options, True
            project = cfg.options_for(path)
            merged = projectconfig.merge_options(project, editor_options)
            # ignores add up: the editor ignoring GP3 must not undo the project's per-file ignores
            merged.ignore = list(dict.fromkeys(list(project.ignore) + list(editor_options.ignore)))
            return merged, False
        except Exception:
            log.exception("project configuration for %s", path)
            return editor_options, False

    def live_limits(self, path: str | None) -> tuple[float | None, int | None]:
        """The project's live-step limits (timeout seconds, memory MB), None where unset."""
        if not path:
            return None, None
        try:
            from gradpath import projectconfig
            cfg, _ = projectconfig.load_project_config(path)
            return cfg.live.timeout_seconds, cfg.live.memory_mb
        except Exception:
            return None, None

    def warm_up(self) -> None:
        """Import the rules and load the layer table now, in the pool, so that the first opened
        document does not pay for it."""
        def go():
            try:
                analyze(WARM_UP_TEXT, None)
            except Exception:
                log.debug("warm-up failed", exc_info=True)
        self.pool.submit(go)

    async def current(self, key: str) -> UnitState | None:
        """The unit's state, analysed at the document's current version (analysing now, without
        publishing, when the last result is older)."""
        snap = self.snapshot(key)
        if snap is None:
            return None
        st = self.units.setdefault(key, UnitState())
        if st.snapshot is not None and st.snapshot.version == snap.version:
            return st
        loop = asyncio.get_running_loop()
        out = await loop.run_in_executor(self.pool, self._analyse, snap, self.server.settings.options)
        if out is None:  # superseded while waiting: analyse what is current now
            snap = self.snapshot(key)
            if snap is None:
                return None
            with self._lock:
                self._latest[key] = snap.version
            out = await loop.run_in_executor(self.pool, self._analyse, snap, self.server.settings.options)
            if out is None:
                return None
        result, _ = out
        if self._current(key, snap):
            self._store(key, snap, result)
            return st
        tmp = UnitState(snapshot=snap, result=result)
        return tmp

    def context(self, st: UnitState) -> Context | None:
        """Facts of the analysed snapshot (built once per version, for hover and code lenses)."""
        snap = st.snapshot
        if snap is None:
            return None
        if st._ctx is not None and st._ctx[0] == snap.version:
            return st._ctx[1]
        from gradpath.analysis.source import SourceFile
        root = root_for(snap.path, self.roots())
        resolver = self.resolvers.get(root) if (snap.path or root) else None
        ctx = Context(SourceFile.parse(snap.text, snap.path), snap.path, resolver)
        try:
            ctx.facts  # noqa: B018 - build now, in the caller's thread
        except Exception:
            log.exception("facts failed for %s", snap.key)
        st._ctx = (snap.version, ctx)
        return ctx

    # -- publishing ------------------------------------------------------------------------------
    def publish(self, key: str) -> None:
        st = self.units.get(key)
        if st is None or st.snapshot is None:
            return
        snap = st.snapshot
        by_uri = diagnostics_by_uri(st.findings, snap, self.encoding, st.verdicts)
        for uri in st.published - set(by_uri):
            self._send(uri, [], None)
        for uri, diags in by_uri.items():
            self._send(uri, diags, snap.cell_version(uri))
        st.published = set(by_uri)
        self._announce_live(key, st)

    def _announce_live(self, key: str, st: UnitState) -> None:
        """Keep the client's "live: 1 confirmed" true: when the verdicts that apply to the unit's
        current findings change (a quick fix removed the finding, an edit dropped the verdicts),
        say so in a gradpath/status; `cleared` when none applies any more. A confirm's own summary
        is sent by the command after it publishes."""
        ids = {f.id for f in st.findings}
        counts: dict[str, int] | None = None
        for fid, v in st.verdicts.items():
            if fid not in ids:
                continue
            word = (v.get("verdict") if isinstance(v, dict) else getattr(v, "verdict", None)) or "not-run"
            counts = counts or {"confirmed": 0, "not-reproduced": 0, "not-run": 0}
            counts[word] = counts.get(word, 0) + 1
        if counts != st.live_counts and st.live_counts is not None:
            # "update": applies only if the client's status bar shows this unit's last live step
            live = {"uri": key, **counts, "stale": False, "update": True} if counts else \
                {"uri": key, "cleared": True, "update": True}
            msg = "live step: " + (", ".join(f"{n} {k}" for k, n in counts.items() if n) if counts
                                   else "its results no longer apply (the file changed)")
            self.server.send_status("ready", msg, live=live)
        st.live_counts = counts

    def _send(self, uri: str, diags: list, version: int | None) -> None:
        self.server.text_document_publish_diagnostics(
            types.PublishDiagnosticsParams(uri=uri, diagnostics=diags, version=version))

    def close(self, key: str, uris=(), notebook: bool = False) -> None:
        """Forget a unit and clear every diagnostic we published for it (a text document's own uri
        always; a notebook's cells, given in `uris`, and whatever cells we published to)."""
        st = self.units.pop(key, None)
        self.projects.forget(key)
        with self._lock:
            self._latest.pop(key, None)
        clear = set(uris) if notebook else set(uris) | {key}
        if st is not None:
            for t in (st.task, st.slow_task):
                if t is not None and not t.done():
                    t.cancel()
            self._cancel_verify(st)
            clear |= st.published
            self.collector.closed()  # what its analyses left goes in the next pause
        for uri in sorted(clear):
            self._send(uri, [], None)

    def clear_all(self) -> None:
        for key in list(self.units):
            st = self.units[key]
            for t in (st.task, st.slow_task):
                if t is not None and not t.done():
                    t.cancel()
            self._cancel_verify(st)
            for uri in st.published:
                self._send(uri, [], None)
            st.published = set()
            st.snapshot, st.result = None, None

    def shutdown(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.slow_pool.shutdown(wait=False, cancel_futures=True)
        self.verify_pool.shutdown(wait=False, cancel_futures=True)
        self.projects.shutdown()
        self.resolvers.close()


def analyse_file(analyzer: "Analyzer", path: str, editor_options,
                 cancel: threading.Event | None = None) -> AnalysisResult | None:
    """For gradpath.checkWorkspace and the index's files that are not open: one file from disk,
    under its project configuration, with the fast resolver of its workspace root. None when
    unreadable or excluded by the project. `cancel`, once set (a keystroke in an open file), stops
    the analysis part way: the result is then None and `cancel` stays set, so the caller knows to
    try again later."""
    from gradpath.files import read_source
    from pathlib import Path
    options, excluded = analyzer.options_for(path, editor_options)
    if excluded:
        return None
    try:
        text = read_source(Path(path))
    except OSError as exc:
        log.warning("%s: cannot read: %s", path, exc)
        return None
    resolver = analyzer.resolvers.get(root_for(path, analyzer.roots()))
    if cancel is None:
        return analyze(text, os.fspath(path), options, resolver=resolver)
    raw = analyze_raw(text, os.fspath(path), options, resolver, cancel=cancel)
    return None if raw.cancelled else finish(raw, options)
