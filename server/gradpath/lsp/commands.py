"""workspace/executeCommand: gradpath.confirm (the live CPU step) and gradpath.checkWorkspace.

gradpath.confirm arguments: [uri] or [uri, findingId] (or [{"uri": ..., "findingId": ...}]).
  Refused with an error response (code -32803) when the workspace is untrusted or Gradpath is
  disabled: the server then never executes user code. Otherwise it runs the document's text once
  through `gradpath.live.service.LiveService` (a module of the workspace's project, `models/net.py`,
  through the scripts that reach it: gradpath.live.project_confirm), with work-done progress, stores the verdicts,
  republishes the diagnostics (verdict in the message, evidence in relatedInformation and hover)
  and answers {"uri", "verdicts": {findingId: {verdict, mode, evidence}}, "run": {...}}.
gradpath.checkWorkspace: analyses every *.py under the workspace folders that is not open and
  publishes its diagnostics; answers {"files": n, "findings": m}.
"""
from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from lsprotocol import types
from pygls.exceptions import JsonRpcException

from gradpath.lsp.convert import evidence_text, verdict_dict

log = logging.getLogger("gradpath.lsp")

REQUEST_FAILED = -32803
_tokens = itertools.count(1)


class CommandError(JsonRpcException):
    CODE = REQUEST_FAILED


def _jsonable(x: Any) -> Any:
    try:
        return json.loads(json.dumps(x, default=str))
    except Exception:
        return str(x)


class LiveManager:
    """Owns the LiveService (created lazily, in a worker thread: starting it imports torch in the
    worker process) and runs one live step at a time."""

    def __init__(self):
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gradpath-live")
        self._service = None
        self._config: tuple | None = None
        self._lock = threading.Lock()
        self.running: set[str] = set()

    def _get(self, python: str | None, timeout_s: float, memory_mb: int):
        cfg = (python, timeout_s, memory_mb)
        with self._lock:
            if self._service is not None and self._config == cfg:
                return self._service
            self._close_locked()
            try:
                from gradpath.live.service import LiveService
            except ImportError as exc:
                raise CommandError(f"the live CPU step is not available in this installation ({exc})")
            svc = LiveService(python=python, timeout_s=timeout_s, memory_mb=memory_mb)
            svc.start()
            self._service, self._config = svc, cfg
            return svc

    def prewarm(self, settings) -> None:
        """Start the worker ahead of the first request (live.onSave users will want it soon)."""
        def go():
            try:
                self._get(settings.live_python, settings.live_timeout_s, settings.live_memory_mb)
            except Exception as exc:
                log.info("live worker not started: %s", getattr(exc, "message", exc))
        self.pool.submit(go)

    def run(self, settings, path: str, text: str, findings: list,
            project_limits: tuple[float | None, int | None] = (None, None), project=None) -> Any:
        """Blocking: runs in self.pool. Editor settings win over the project's live limits. A module
        of a project (`models/net.py`) runs through the scripts that reach it (live/project_confirm)."""
        timeout = settings.live_timeout_s
        memory = settings.live_memory_mb
        if "live.timeoutSeconds" not in settings.raw and project_limits[0]:
            timeout = float(project_limits[0])
        if "live.memoryMb" not in settings.raw and project_limits[1]:
            memory = int(project_limits[1])
        svc = self._get(settings.live_python, timeout, memory)
        from gradpath.live import project_confirm
        if project_confirm.runs_via_scripts(path, text, project):
            return project_confirm.confirm_document(svc, project, path, text, findings, timeout)
        return svc.confirm(path, text, findings, timeout_s=timeout)

    def _close_locked(self):
        if self._service is not None:
            try:
                self._service.close()
            except Exception:
                log.exception("closing the live service failed")
        self._service = None
        self._config = None

    def close(self):
        with self._lock:
            self._close_locked()
        self.pool.shutdown(wait=False, cancel_futures=True)


def _arg_uri(args: tuple) -> tuple[str | None, str | None]:
    if not args:
        return None, None
    a0 = args[0]
    if isinstance(a0, dict):
        return a0.get("uri"), a0.get("findingId") or a0.get("id")
    if isinstance(a0, str):
        fid = args[1] if len(args) > 1 and isinstance(args[1], str) else None
        return a0, fid
    return None, None


class Progress:
    """Work-done progress when the client supports it; a no-op otherwise."""

    def __init__(self, ls, title: str):
        self.ls, self.title = ls, title
        self.token: str | None = None

    async def __aenter__(self):
        caps = self.ls.client_capabilities
        if caps and caps.window and caps.window.work_done_progress:
            token = f"gradpath-{next(_tokens)}"
            try:
                await asyncio.wait_for(self.ls.work_done_progress.create_async(token), 5)
                self.token = token
                self.ls.work_done_progress.begin(token, types.WorkDoneProgressBegin(
                    title=self.title, cancellable=False))
            except Exception:
                log.debug("work-done progress unavailable", exc_info=True)
                self.token = None
        return self

    def report(self, message: str, percentage: int | None = None):
        if self.token:
            self.ls.work_done_progress.report(self.token, types.WorkDoneProgressReport(
                message=message, percentage=percentage))

    async def end(self, message: str):
        if self.token:
            self.ls.work_done_progress.end(self.token, types.WorkDoneProgressEnd(message=message))
            self.token = None

    async def __aexit__(self, *exc):
        await self.end("failed" if exc[0] else "done")
        return False


def summarise(verdicts: dict) -> dict:
    counts = {"confirmed": 0, "not-reproduced": 0, "not-run": 0}
    for v in verdicts.values():
        d = verdict_dict(v) or {}
        counts[d.get("verdict") or "not-run"] = counts.get(d.get("verdict") or "not-run", 0) + 1
    return counts


async def confirm(ls, *args) -> dict:
    uri, focus = _arg_uri(args)
    settings = ls.settings
    if not settings.trusted:
        msg = ("Gradpath will not run code in an untrusted workspace: the live CPU step is disabled "
               "(trust the workspace to enable it)")
        ls.show_message(msg, types.MessageType.Warning)
        raise CommandError(msg)
    if not settings.enable:
        raise CommandError("Gradpath is disabled (gradpath.enable is false)")
    if not uri:
        raise CommandError("gradpath.confirm needs the document uri as its first argument")
    key = ls.analyzer.unit_key(uri)
    if not ls.analyzer.is_ours(key):
        raise CommandError(f"{uri} is not an open Python document")
    if key in ls.live.running:
        raise CommandError("a live step is already running for this document")
    st = await ls.analyzer.current(key)
    if st is None or st.snapshot is None:
        raise CommandError(f"{uri} is not open in the editor")
    snap = st.snapshot
    findings = [f for f in st.findings if f.code != "GP000"]
    path = snap.path or os.path.join(tempfile.gettempdir(), "gradpath-untitled.py")
    name = os.path.basename(path)
    ls.live.running.add(key)
    ls.send_status("live", f"running one CPU step of {name}")
    t0 = time.monotonic()
    try:
        async with Progress(ls, f"Gradpath: one CPU step of {name}") as progress:
            progress.report(f"{len(findings)} finding{'s' if len(findings) != 1 else ''} to confirm")
            loop = asyncio.get_running_loop()
            try:
                project = ls.analyzer.projects.for_path(snap.path) if snap.path else None
                report = await loop.run_in_executor(ls.live.pool, ls.live.run, settings, path,
                                                    snap.text, findings, ls.analyzer.live_limits(snap.path),
                                                    project)
            except CommandError:
                raise
            except Exception as exc:
                if type(exc).__name__ == "LiveError":  # cannot run at all: say why, no traceback
                    log.warning("live step for %s: %s", uri, exc)
                else:
                    log.exception("live step failed for %s", uri)
                raise CommandError(f"the live CPU step failed: {exc}") from exc
            verdicts = dict(getattr(report, "verdicts", None) or (report.get("verdicts") if isinstance(report, dict) else {}) or {})
            run = getattr(report, "run", None)
            if run is None and isinstance(report, dict):
                run = report.get("run")
            counts = summarise(verdicts)
            await progress.end(", ".join(f"{n} {k}" for k, n in counts.items() if n) or "no findings")
    except CommandError as exc:
        ls.send_status("ready", f"live step failed: {exc.message}", live={"uri": snap.key, "error": exc.message})
        raise
    finally:
        ls.live.running.discard(key)
    elapsed = time.monotonic() - t0
    cur = ls.analyzer.units.get(key)
    stale = cur is None or cur.snapshot is None or cur.snapshot.version != snap.version
    if not stale:
        cur.verdicts = verdicts
        cur.live_run = run
        ls.analyzer.publish(key)
        from gradpath.lsp.flow import refresh_lenses
        refresh_lenses(ls)  # the "Gradient flow" lens appears beside "Run one CPU step"
    summary = {"uri": snap.key, **counts, "seconds": round(elapsed, 3), "stale": stale}
    ls.send_status("ready", "live step: " + (", ".join(f"{n} {k}" for k, n in counts.items() if n)
                                              or "no findings to confirm"), live=summary)
    for fid, v in verdicts.items():
        d = verdict_dict(v) or {}
        log.info("live %s %s: %s (%s) %s", name, fid, d.get("verdict"), d.get("mode"),
                 evidence_text(d, 200))
    out_verdicts = {fid: {k: _jsonable(val) for k, val in (verdict_dict(v) or {}).items()}
                    for fid, v in verdicts.items()}
    from gradpath.lsp import flow as flow_mod
    run_out = {k: v for k, v in run.items() if k != "flow"} if isinstance(run, dict) else run
    result = {"uri": snap.key, "verdicts": out_verdicts, "run": _jsonable(run_out), "summary": summary,
              "gradientFlow": flow_mod.brief(run, findings)}  # the table itself: gradpath/gradientFlow
    if focus and focus in out_verdicts:
        result["focus"] = out_verdicts[focus]
    return result


async def check_workspace(ls, *args) -> dict:
    from gradpath.files import iter_python_files
    from gradpath.lsp.convert import diagnostics_by_uri
    from gradpath.lsp.notebook import Snapshot
    from gradpath.lsp.scheduler import analyse_file
    from pygls.uris import from_fs_path

    if not ls.settings.enable:
        raise CommandError("Gradpath is disabled (gradpath.enable is false)")
    roots = ls.analyzer.roots()
    if not roots:
        raise CommandError("no workspace folder to check")
    loop = asyncio.get_running_loop()
    files = await loop.run_in_executor(ls.analyzer.pool, lambda: [str(p) for p in iter_python_files(roots)][:5000])
    total = 0
    done = 0
    ls.send_status("busy", f"checking {len(files)} files")
    async with Progress(ls, "Gradpath: checking the workspace") as progress:
        for path in files:
            uri = from_fs_path(path)
            done += 1
            if ls.analyzer.is_open(uri) or ls.analyzer.is_open(ls.analyzer.unit_key(uri)):
                continue  # open documents are analysed from the editor's text
            result = await loop.run_in_executor(ls.analyzer.pool, analyse_file, ls.analyzer, path,
                                                ls.settings.options)
            if result is None:
                continue
            snap = Snapshot(uri, None, result.source.text, path)
            diags = diagnostics_by_uri(result.findings, snap, ls.analyzer.encoding)
            for u, ds in diags.items():
                ls.text_document_publish_diagnostics(types.PublishDiagnosticsParams(uri=u, diagnostics=ds))
                if ds:
                    ls.workspace_published.add(u)
            total += len(result.findings)
            if done % 20 == 0:
                progress.report(f"{done}/{len(files)} files", int(100 * done / max(1, len(files))))
    ls.send_status("ready", f"workspace: {total} finding{'s' if total != 1 else ''} in {len(files)} files")
    return {"files": len(files), "findings": total}
