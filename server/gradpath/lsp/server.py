"""`gradpath serve`: the pygls 2 language server (stdio). Wiring only; the work is in
scheduler.py (analysis, publishing), convert.py, actions.py, hover.py, lenses.py, commands.py.

Client contract (see settings.py for the settings keys):
- initializationOptions: the "gradpath" settings section (also accepted wrapped as
  {"gradpath": {...}} or {"settings": {...}}), plus `trusted` (false = never execute user code).
- workspace/didChangeConfiguration: {"gradpath": {...}} (or the section itself); with null settings
  the server pulls the "gradpath" section through workspace/configuration.
- Commands: gradpath.confirm [uri, findingId?], gradpath.checkWorkspace [].
- Request gradpath/gradientFlow {uri} (client -> server): the last live step's per-tensor picture
  (flow.py); code lenses "Gradient flow" and a hover link open the client's gradpath.showGradientFlow.
- Notification gradpath/status (server -> client): {"state": "ready"|"busy"|"live"|"disabled",
  "message": str, "version": str, "trusted": bool, "liveOnSave": bool, "live"?: {"uri",
  "confirmed", "not-reproduced", "not-run", "seconds", "stale"}}.
- window/logMessage: the server's log (level from the `logLevel` setting, default info).
"""
from __future__ import annotations

import asyncio
import functools
import inspect
import json
import logging
import sys
from typing import Any

from lsprotocol import types
from pygls.lsp.server import LanguageServer

from gradpath import __version__
from gradpath.lsp import actions as actions_mod
from gradpath.lsp import commands as commands_mod
from gradpath.lsp import flow as flow_mod
from gradpath.lsp import hover as hover_mod
from gradpath.lsp import lenses as lenses_mod
from gradpath.lsp import logs
from gradpath.lsp.convert import diagnostics_by_uri, to_units
from gradpath.lsp.protocol import GradpathProtocol
from gradpath.lsp.scheduler import PYTHON_LANGUAGES, Analyzer
from gradpath.lsp.settings import EditorSettings

log = logging.getLogger("gradpath.lsp")

STATUS_NOTIFICATION = "gradpath/status"
WATCHED_GLOBS = ("**/*.py", "**/pyproject.toml", "**/gradpath.toml")


class GradpathServer(LanguageServer):
    def __init__(self):
        super().__init__(
            "gradpath", __version__,
            text_document_sync_kind=types.TextDocumentSyncKind.Incremental,
            notebook_document_sync=types.NotebookDocumentSyncOptions(
                notebook_selector=[types.NotebookDocumentFilterWithCells(
                    notebook="*", cells=[types.NotebookCellLanguage(language="python")])],
                save=True),
            max_workers=4,
            protocol_cls=GradpathProtocol,
        )
        self.settings = EditorSettings()
        self.analyzer = Analyzer(self)
        self.live = commands_mod.LiveManager()
        self.workspace_published: set[str] = set()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.initialized = False
        self.client_log: logs.ClientLogHandler | None = None
        self.pending_live: set[str] = set()
        self.collect_in_pauses = False  # `gradpath serve` (main): see lsp/collector.py

    # -- messages to the client ------------------------------------------------------------------
    def send_status(self, state: str, message: str = "", **extra: Any) -> None:
        params = {"state": state, "message": message, "version": __version__,
                  "trusted": self.settings.trusted, "liveOnSave": self.settings.live_on_save}
        params.update(extra)
        try:
            self.protocol.notify(STATUS_NOTIFICATION, params)
        except Exception:
            log.debug("status notification failed", exc_info=True)

    def show_message(self, message: str, kind: types.MessageType = types.MessageType.Info) -> None:
        try:
            self.window_show_message(types.ShowMessageParams(type=kind, message=message))
        except Exception:
            log.debug("showMessage failed", exc_info=True)

    def report_server_error(self, error: Exception, source) -> None:
        # Errors are logged (file, stderr, window/logMessage), not shown as pop-ups. A request that
        # failed has already answered its error to the client.
        if isinstance(error, (json.JSONDecodeError, UnicodeDecodeError)):
            # json.loads failed on the body itself: JSON-RPC wants a Parse error with id null.
            self.protocol.parse_error(error)
            return
        name = getattr(source, "__name__", str(source))
        log.log(logging.INFO if name == "FeatureRequestError" else logging.ERROR,
                "server error (%s): %s", name, error)

    # -- settings --------------------------------------------------------------------------------
    def apply_settings(self, settings: EditorSettings) -> None:
        before = self.settings
        self.settings = settings
        self.analyzer.resolvers.set_python(settings.live_python)
        logs.set_client_level(self.client_log, settings.log_level)
        for p in settings.problems:
            log.warning("settings: %s", p)
        if before.enable and not settings.enable:
            self.analyzer.clear_all()
            self.send_status("disabled", "Gradpath is disabled")
            return
        self.analyzer.schedule_all()
        if settings.live_allowed and settings.live_on_save:
            self.live.prewarm(settings)
        self.send_status("ready", "settings applied")

    # -- hooks -----------------------------------------------------------------------------------
    def on_analysed(self, key: str) -> None:
        if key in self.pending_live:
            self.pending_live.discard(key)
            if self.settings.live_allowed and self.settings.live_on_save:
                asyncio.ensure_future(self._live_on_save(key))

    async def _live_on_save(self, key: str) -> None:
        try:
            await commands_mod.confirm(self, key)
        except commands_mod.CommandError as exc:
            log.info("live step on save skipped: %s", exc.message)
        except Exception:
            log.exception("live step on save failed")


server = None  # set by build()


def guarded(default: Any = None):
    """No handler exception may take the server down or leave a request unanswered badly: log it
    and answer `default`."""
    def deco(fn):
        if inspect.iscoroutinefunction(fn):
            @functools.wraps(fn)
            async def wrapper(*a, **kw):
                try:
                    return await fn(*a, **kw)
                except commands_mod.CommandError:
                    raise
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("%s failed", fn.__name__)
                    return default
        else:
            @functools.wraps(fn)
            def wrapper(*a, **kw):
                try:
                    return fn(*a, **kw)
                except Exception:
                    log.exception("%s failed", fn.__name__)
                    return default
        return wrapper
    return deco


def _is_python(doc: types.TextDocumentItem) -> bool:
    return doc.language_id in PYTHON_LANGUAGES or doc.uri.endswith((".py", ".pyi"))


def build() -> GradpathServer:
    ls = GradpathServer()

    @ls.feature(types.INITIALIZE)
    @guarded()
    def initialize(ls: GradpathServer, params: types.InitializeParams):
        try:
            ls.loop = asyncio.get_running_loop()
        except RuntimeError:
            ls.loop = None
        ls.client_log = logs.ClientLogHandler(ls)
        logging.getLogger("gradpath").addHandler(ls.client_log)
        ls.settings = EditorSettings.parse(params.initialization_options or {})
        ls.analyzer.resolvers.set_python(ls.settings.live_python)
        logs.set_client_level(ls.client_log, ls.settings.log_level)
        ls.analyzer.warm_up()

    @ls.feature(types.INITIALIZED)
    @guarded()
    async def initialized(ls: GradpathServer, params: types.InitializedParams):
        ls.initialized = True
        if ls.collect_in_pauses and not ls.analyzer.collector.active:
            ls.analyzer.collector.start(asyncio.get_running_loop())
        for p in ls.settings.problems:
            log.warning("settings: %s", p)
        log.info("gradpath %s ready (trusted=%s, live.onSave=%s, encoding=%s)", __version__,
                 ls.settings.trusted, ls.settings.live_on_save, ls.analyzer.encoding)
        ls.send_status("ready" if ls.settings.enable else "disabled",
                       "Gradpath is ready" if ls.settings.enable else "Gradpath is disabled")
        if ls.settings.live_allowed and ls.settings.live_on_save:
            ls.live.prewarm(ls.settings)
        if ls.settings.enable:  # the project model, in the background: first diagnostics never wait for it
            ls.index_task = asyncio.ensure_future(ls.analyzer.projects.start(ls))
        caps = ls.client_capabilities
        if caps and caps.workspace and caps.workspace.configuration:
            await _pull_configuration(ls)
        watched = caps.workspace.did_change_watched_files if caps and caps.workspace else None
        if watched and watched.dynamic_registration:
            try:
                await asyncio.wait_for(ls.client_register_capability_async(types.RegistrationParams(
                    registrations=[types.Registration(
                        id="gradpath-watch", method=types.WORKSPACE_DID_CHANGE_WATCHED_FILES,
                        register_options=types.DidChangeWatchedFilesRegistrationOptions(watchers=[
                            types.FileSystemWatcher(glob_pattern=g) for g in WATCHED_GLOBS]))])), 5)
            except Exception:
                log.debug("file watching not registered", exc_info=True)

    async def _pull_configuration(ls: GradpathServer):
        try:
            res = await asyncio.wait_for(ls.workspace_configuration_async(types.ConfigurationParams(
                items=[types.ConfigurationItem(section="gradpath")])), 5)
        except Exception:
            log.debug("workspace/configuration failed", exc_info=True)
            return
        if res and isinstance(res[0], dict) and res[0]:
            ls.apply_settings(EditorSettings.parse(res[0], base=ls.settings))

    @ls.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
    @guarded()
    async def did_change_configuration(ls: GradpathServer, params: types.DidChangeConfigurationParams):
        raw = params.settings
        if isinstance(raw, dict) and raw:
            ls.apply_settings(EditorSettings.parse(raw, base=ls.settings))
        else:
            await _pull_configuration(ls)

    # -- text documents ---------------------------------------------------------------------------
    @ls.feature(types.TEXT_DOCUMENT_DID_OPEN)
    @guarded()
    def did_open(ls: GradpathServer, params: types.DidOpenTextDocumentParams):
        if _is_python(params.text_document):
            ls.analyzer.schedule(ls.analyzer.unit_key(params.text_document.uri), 0.0)

    @ls.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    @guarded()
    def did_change(ls: GradpathServer, params: types.DidChangeTextDocumentParams):
        key = ls.analyzer.unit_key(params.text_document.uri)
        if ls.analyzer.is_ours(key):
            ls.analyzer.schedule(key, ls.settings.debounce_ms / 1000.0)

    @ls.feature(types.TEXT_DOCUMENT_DID_SAVE, types.SaveOptions(include_text=False))
    @guarded()
    def did_save(ls: GradpathServer, params: types.DidSaveTextDocumentParams):
        key = ls.analyzer.unit_key(params.text_document.uri)
        if ls.analyzer.is_ours(key):
            if ls.settings.live_on_save and ls.settings.live_allowed:
                ls.pending_live.add(key)
            ls.analyzer.schedule(key, 0.0, supersede=False)

    @ls.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    @guarded()
    def did_close(ls: GradpathServer, params: types.DidCloseTextDocumentParams):
        ls.analyzer.close(params.text_document.uri)
        ls.workspace_published.discard(params.text_document.uri)

    # -- notebooks --------------------------------------------------------------------------------
    @ls.feature(types.NOTEBOOK_DOCUMENT_DID_OPEN)
    @guarded()
    def nb_open(ls: GradpathServer, params: types.DidOpenNotebookDocumentParams):
        ls.analyzer.schedule(params.notebook_document.uri, 0.0)

    @ls.feature(types.NOTEBOOK_DOCUMENT_DID_CHANGE)
    @guarded()
    def nb_change(ls: GradpathServer, params: types.DidChangeNotebookDocumentParams):
        ls.analyzer.schedule(params.notebook_document.uri, ls.settings.debounce_ms / 1000.0)

    @ls.feature(types.NOTEBOOK_DOCUMENT_DID_SAVE)
    @guarded()
    def nb_save(ls: GradpathServer, params: types.DidSaveNotebookDocumentParams):
        key = params.notebook_document.uri
        if ls.settings.live_on_save and ls.settings.live_allowed:
            ls.pending_live.add(key)
        ls.analyzer.schedule(key, 0.0, supersede=False)

    @ls.feature(types.NOTEBOOK_DOCUMENT_DID_CLOSE)
    @guarded()
    def nb_close(ls: GradpathServer, params: types.DidCloseNotebookDocumentParams):
        ls.analyzer.close(params.notebook_document.uri,
                          [c.uri for c in params.cell_text_documents], notebook=True)

    @ls.feature(types.WORKSPACE_DID_CHANGE_WATCHED_FILES)
    @guarded()
    def watched_files_changed(ls: GradpathServer, params: types.DidChangeWatchedFilesParams):
        """A module or a project config changed on disk: the open documents that may import it
        or be configured by it are analysed again (the resolver's caches follow mtimes)."""
        asyncio.ensure_future(ls.analyzer.projects.files_changed(list(params.changes)))
        changed = [c.uri for c in params.changes]
        relevant = [u for u in changed if not ls.analyzer.is_open(u)]
        if relevant:
            log.debug("files changed on disk: %s", ", ".join(relevant[:5]))
            ls.analyzer.schedule_all(delay_s=ls.settings.debounce_ms / 1000.0)

    # -- requests ---------------------------------------------------------------------------------
    @ls.feature(types.TEXT_DOCUMENT_CODE_ACTION, types.CodeActionOptions(
        code_action_kinds=[types.CodeActionKind.QuickFix, actions_mod.FIX_ALL_KIND], resolve_provider=False))
    @guarded(default=None)
    async def code_action(ls: GradpathServer, params: types.CodeActionParams):
        if not ls.settings.enable:
            return None
        uri = params.text_document.uri
        key = ls.analyzer.unit_key(uri)
        if not ls.analyzer.is_ours(key):
            return None
        only = [str(getattr(k, "value", k)) for k in (params.context.only or [])] or None
        out: list[types.CodeAction] = []
        doc = ls.workspace.text_documents.get(_unquote(uri))
        lines = [l.rstrip("\r\n") for l in doc.lines] if doc is not None else []
        enc = ls.analyzer.encoding

        def units(text, col):
            return to_units(text, col, enc)

        if actions_mod.kind_wanted(types.CodeActionKind.QuickFix.value, only):
            diagnostics = list(params.context.diagnostics)
            if any(d.source == "gradpath" and not isinstance(d.data, dict) for d in diagnostics):
                diagnostics = await _with_data(ls, key, uri, diagnostics)
            for diag in diagnostics:
                try:  # one malformed diagnostic must not cost the others their actions
                    found = actions_mod.quick_fixes(diag)
                    found.append(actions_mod.disable_for_line(diag, uri, lines, units))
                    if ls.settings.live_allowed:
                        found.append(actions_mod.confirm_action(diag, uri))
                    out += [a for a in found if a is not None]
                except Exception:
                    log.exception("code actions for %s failed", diag.code)
        if only and actions_mod.kind_wanted(actions_mod.FIX_ALL_KIND, only) or \
                (only is None and any(isinstance(d.data, dict) and d.source == "gradpath"
                                      for d in params.context.diagnostics)):
            st = await ls.analyzer.current(key)
            if st is not None and st.snapshot is not None:
                by_uri = diagnostics_by_uri(st.findings, st.snapshot, enc)
                datas = [d.data for d in by_uri.get(uri, []) if isinstance(d.data, dict)]
                a = actions_mod.fix_all_action(datas)
                if a is not None:
                    out.append(a)
        return out or None

    async def _with_data(ls: GradpathServer, key: str, uri: str, diagnostics):
        """For clients that do not echo `diagnostic.data` back: take it from the stored result
        (matching code and range), without analysing again when the result is current."""
        st = await ls.analyzer.current(key)
        if st is None or st.snapshot is None:
            return diagnostics
        ours = diagnostics_by_uri(st.findings, st.snapshot, ls.analyzer.encoding, st.verdicts).get(uri, [])
        table = {(str(d.code), d.range.start.line, d.range.start.character,
                  d.range.end.line, d.range.end.character): d.data for d in ours}
        out = []
        for d in diagnostics:
            if d.source == "gradpath" and not isinstance(d.data, dict):
                k = (str(d.code), d.range.start.line, d.range.start.character, d.range.end.line,
                     d.range.end.character)
                if k in table:
                    d = types.Diagnostic(range=d.range, message=d.message, severity=d.severity,
                                         code=d.code, source=d.source, data=table[k],
                                         code_description=d.code_description,
                                         related_information=d.related_information)
            out.append(d)
        return out

    @ls.feature(types.TEXT_DOCUMENT_HOVER)
    @guarded(default=None)
    async def hover(ls: GradpathServer, params: types.HoverParams):
        if not ls.settings.enable:
            return None
        uri = params.text_document.uri
        key = ls.analyzer.unit_key(uri)
        if not ls.analyzer.is_ours(key):
            return None
        st = await ls.analyzer.current(key)
        if st is None or st.snapshot is None:
            return None
        loop = asyncio.get_running_loop()
        ctx = await loop.run_in_executor(ls.analyzer.pool, ls.analyzer.context, st)
        return hover_mod.hover(st, ctx, st.snapshot, uri, params.position, ls.analyzer.encoding)

    @ls.feature(types.TEXT_DOCUMENT_CODE_LENS, types.CodeLensOptions(resolve_provider=False))
    @guarded(default=None)
    async def code_lens(ls: GradpathServer, params: types.CodeLensParams):
        if not ls.settings.live_allowed:
            return None
        uri = params.text_document.uri
        key = ls.analyzer.unit_key(uri)
        if not ls.analyzer.is_ours(key):
            return None
        st = await ls.analyzer.current(key)
        if st is None or st.snapshot is None:
            return None
        loop = asyncio.get_running_loop()
        ctx = await loop.run_in_executor(ls.analyzer.pool, ls.analyzer.context, st)
        if ctx is None:
            return None
        lenses = lenses_mod.optimizer_lenses(ctx, st.snapshot, uri, ls.analyzer.encoding)
        project = ls.analyzer.projects.for_path(st.snapshot.path) if st.snapshot.path else None
        if project is not None and not lenses:  # a module: the lens names the script that runs for it
            lenses = await loop.run_in_executor(ls.analyzer.pool, lenses_mod.module_lenses, st, uri,
                                                ls.analyzer.encoding, project, lenses)
        return flow_mod.with_flow_lenses(st, lenses) or None

    @ls.feature(flow_mod.FLOW_REQUEST)
    @guarded(default=None)
    async def gradient_flow(ls: GradpathServer, params):
        return await flow_mod.gradient_flow(ls, params)

    @ls.command("gradpath.confirm")
    @guarded()
    async def confirm(ls: GradpathServer, *args):
        return await commands_mod.confirm(ls, *args)

    @ls.command("gradpath.checkWorkspace")
    @guarded()
    async def check_workspace(ls: GradpathServer, *args):
        return await commands_mod.check_workspace(ls, *args)

    @ls.feature(types.SHUTDOWN)
    @guarded()
    def shutdown(ls: GradpathServer, params):
        ls.analyzer.shutdown()
        ls.live.close()

    global server
    server = ls
    return ls


def _unquote(uri: str) -> str:
    from urllib.parse import unquote
    return unquote(uri)


def main(args=None) -> int:
    logs.setup(getattr(args, "log_file", None))
    ls = build()
    ls.collect_in_pauses = True
    log.info("starting gradpath %s language server on stdio", __version__)
    # The LSP stream owns the real stdout; a stray print() anywhere in the process goes to stderr.
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr
    try:
        ls.start_io(stdin, stdout)
    finally:
        try:
            ls.live.close()
            ls.analyzer.shutdown()
        except Exception:
            log.exception("cleanup failed")
    # `exit` after `shutdown`: 0; `exit` without `shutdown`: 1 (LSP spec). pygls raises SystemExit
    # from a callback that start_io swallows, so the status is taken from the protocol here.
    code = getattr(ls.protocol, "exit_code", None)
    return code if code is not None else 0
