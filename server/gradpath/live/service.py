"""The live CPU step, server side: keeps a warm worker process and turns its observations into verdicts.

    svc = LiveService(python="/path/to/python")   # an interpreter that has torch
    svc.start()                                     # warms up in the background, returns at once
    report = svc.confirm(path, text, findings)      # LiveReport: verdicts keyed by finding.id
    svc.close()

The worker (`worker.py`, stdlib + torch only) talks over its own stdin/stdout pipes, created here, so
nothing it or the user's code prints can reach this process's stdout (the LSP stream). A worker
that dies or stops answering is killed and replaced.
"""
from __future__ import annotations

import collections
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gradpath.live import verdicts as V
from gradpath.live.verdicts import Verdict  # noqa: F401  (part of this module's interface)

WORKER_PATH = str(Path(__file__).resolve().parent / "worker.py")
WORKER_ENV_KEYS = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "PYTHONPATH", "VIRTUAL_ENV", "CONDA_PREFIX",
                   "LD_LIBRARY_PATH", "SYSTEMROOT", "TZ", "TMPDIR")
READY_TIMEOUT_S = 120.0
MAX_EDGE_RUNS = 6


class LiveError(Exception):
    """The live step cannot run at all (no interpreter, no torch)."""


@dataclass
class LiveReport:
    verdicts: dict[str, Verdict] = field(default_factory=dict)
    run: dict = field(default_factory=dict)
    via: dict = field(default_factory=dict)  # (module path, finding id) -> Verdict, see via.py

    def to_dict(self) -> dict:
        return {"verdicts": {k: v.to_dict() for k, v in self.verdicts.items()}, "run": self.run}


def worker_env(tmp_root: str | None = None) -> dict:
    env = {k: os.environ[k] for k in WORKER_ENV_KEYS if k in os.environ}
    if tmp_root:
        # every run's temporary folder lives under the service's own root, removed when the service closes
        # (a worker killed mid-run, or closed right after its last answer, cannot clean up after itself)
        env["TMPDIR"] = tmp_root
    env.update({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "",
                "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1", "PYTHONIOENCODING": "utf-8",
                "HOME": tempfile.gettempdir()})
    return env


class _Worker:
    def __init__(self, python: str, tmp_root: str | None = None):
        self.python = python
        self.tmp_root = tmp_root
        self.proc: subprocess.Popen | None = None
        self.info: dict = {}
        self.error: str | None = None
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=200)
        self.ready = threading.Event()
        self._buf = b""
        self.started_at = time.monotonic()

    def launch(self):
        self.started_at = time.monotonic()
        try:
            self.proc = subprocess.Popen(
                [self.python, "-u", WORKER_PATH], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, env=worker_env(self.tmp_root), close_fds=True, start_new_session=True,
                cwd=tempfile.gettempdir())
        except OSError as exc:
            self.error = f"cannot start the live worker with {self.python}: {exc.strerror or exc}"
            self.ready.set()
            return
        threading.Thread(target=self._drain_stderr, daemon=True, name="gradpath-live-stderr").start()
        msg = self.read_message(time.monotonic() + READY_TIMEOUT_S)
        if msg is None:
            tail = "".join(self.stderr_tail).strip().splitlines()[-3:]
            self.error = (f"the live worker under {self.python} did not start" +
                          (f": {' / '.join(tail)}" if tail else ""))
            self.kill()
        elif not msg.get("ready"):
            err = msg.get("error") or "unknown error"
            if "No module named 'torch'" in err:
                self.error = f"{self.python} cannot import torch ({err}); choose an interpreter that has torch"
            else:
                self.error = f"the live worker under {self.python} failed to warm up: {err}"
            self.kill()
        else:
            self.info = msg
            self.info["startup_s"] = round(time.monotonic() - self.started_at, 3)
        self.ready.set()

    def _drain_stderr(self):
        proc = self.proc
        try:
            for line in iter(proc.stderr.readline, b""):
                self.stderr_tail.append(line.decode("utf-8", errors="replace")[:500])
        except (OSError, ValueError):
            pass

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None and not self.error

    def read_message(self, deadline: float) -> dict | None:
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            r, _, _ = select.select([fd], [], [], min(left, 1.0))
            if not r:
                if self.proc.poll() is not None:
                    return None
                continue
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                return None
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        try:
            return json.loads(line)
        except ValueError:
            return {"error": "bad message from the worker", "raw": line[:200].decode(errors="replace")}

    def request(self, req: dict, timeout_s: float) -> dict | None:
        try:
            self.proc.stdin.write((json.dumps(req) + "\n").encode())
            self.proc.stdin.flush()
        except (OSError, ValueError):
            return None
        return self.read_message(time.monotonic() + timeout_s + 10.0)

    def kill(self):
        p = self.proc
        if p is None:
            return
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except OSError:
            pass
        try:
            p.kill()
        except OSError:
            pass
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        for s in (p.stdin, p.stdout):
            try:
                s.close()
            except OSError:
                pass


class LiveService:
    def __init__(self, python: str | None = None, timeout_s: float = 20.0, memory_mb: int = 2048):
        self.python = python or sys.executable
        self.timeout_s = float(timeout_s)
        self.memory_mb = int(memory_mb)
        self._worker: _Worker | None = None
        self._lock = threading.Lock()  # one request at a time
        self._start_lock = threading.Lock()
        self._closed = False
        self._tmp_root: str | None = None
        self.restarts = 0
        self._req_id = 0

    # -- lifecycle ---------------------------------------------------------------------------------
    def _check_python(self):
        if not hasattr(os, "fork"):
            raise LiveError("the live CPU step needs fork() (Linux or macOS); it is not available on this system")
        py = self.python
        if os.sep not in py:
            found = shutil.which(py)
            if not found:
                raise LiveError(f"interpreter {py!r} not found on PATH")
            self.python = py = found
        if not os.path.isfile(py) or not os.access(py, os.X_OK):
            raise LiveError(f"interpreter {py!r} does not exist or is not executable")

    def start(self) -> None:
        """Start warming a worker in the background; returns at once."""
        with self._start_lock:
            if self._closed:
                raise LiveError("the live service is closed")
            if self._worker is not None and (self._worker.alive() or not self._worker.ready.is_set()):
                return
            self._check_python()
            if self._tmp_root is None or not os.path.isdir(self._tmp_root):
                self._tmp_root = tempfile.mkdtemp(prefix="gradpath-live-root-")
            w = _Worker(self.python, self._tmp_root)
            self._worker = w
            threading.Thread(target=w.launch, daemon=True, name="gradpath-live-start").start()

    @property
    def warm(self) -> bool:
        w = self._worker
        return w is not None and w.ready.is_set() and w.alive()

    def wait_ready(self, timeout: float | None = READY_TIMEOUT_S) -> bool:
        """Block until the worker is warm (True) or failed to start (False)."""
        self.start()
        w = self._worker
        return w is not None and w.ready.wait(timeout) and w.alive()

    def close(self) -> None:
        with self._start_lock:
            self._closed = True
            w, self._worker = self._worker, None
        if w is not None:
            w.ready.wait(timeout=1)
            w.kill()
        root, self._tmp_root = self._tmp_root, None
        if root:
            shutil.rmtree(root, ignore_errors=True)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.close()

    def _ready_worker(self) -> _Worker:
        self.start()
        w = self._worker
        if not w.ready.wait(timeout=READY_TIMEOUT_S):
            raise LiveError("the live worker did not become ready in time")
        if w.error:
            err = w.error
            with self._start_lock:
                if self._worker is w:
                    self._worker = None
            raise LiveError(err)
        return w

    def _replace(self, w: _Worker):
        w.kill()
        with self._start_lock:
            if self._worker is w:
                self._worker = None
        self.restarts += 1

    def _call(self, req: dict, timeout_s: float) -> dict:
        """One request to the worker; a worker that died or hung is replaced and the request retried once."""
        for attempt in range(2):
            w = self._ready_worker()
            self._req_id += 1
            req["id"] = self._req_id
            t = time.monotonic()
            res = w.request(req, timeout_s)
            if res is not None and (res.get("status") or "results" in res or "error" not in res):
                return res
            self._replace(w)
            # retry once on a fresh worker, unless the first attempt already used most of the time
            if attempt == 1 or time.monotonic() - t > timeout_s / 2:
                break
        return {"status": "killed", "exception": None,
                "error": "the live worker died or stopped answering; it was replaced"}

    def _call_batch(self, reqs: list[dict], timeout_s: float) -> list[dict]:
        """Several independent runs at once (the worker forks them concurrently)."""
        res = self._call({"op": "batch", "requests": reqs}, timeout_s)
        results = res.get("results") if isinstance(res, dict) else None
        if not isinstance(results, list) or len(results) != len(reqs):
            failed = {"status": res.get("status", "killed") if isinstance(res, dict) else "killed",
                      "exception": None, "error": (res or {}).get("error") or (res or {}).get("internal_error")}
            return [dict(failed) for _ in reqs]
        return results

    # -- the step -----------------------------------------------------------------------------------
    def confirm(self, path: str, text: str, findings: list, timeout_s: float | None = None,
                via=None) -> LiveReport:
        """`via` (a gradpath.live.via.ViaPlan): findings in modules this script imports, judged on the
        same run (their verdicts in `report.via`)."""
        t0 = time.monotonic()
        timeout = float(timeout_s or self.timeout_s)
        deadline = t0 + timeout
        path = os.path.abspath(path)
        run: dict[str, Any] = {"path": path, "python": self.python, "timeout_s": timeout,
                               "memory_mb": self.memory_mb}
        report = LiveReport(run=run)
        if any(f.code.startswith("GP0") for f in findings):
            for f in findings:
                report.verdicts[f.id] = Verdict(V.NOT_RUN, "none", "the file has a syntax error; nothing can run", {})
            run["mode"] = "none"
            return report
        cold = not self.warm
        with self._lock:
            w0 = time.monotonic()
            self._ready_worker()
            run["worker_wait_ms"] = round((time.monotonic() - w0) * 1000, 1)
            deadline = time.monotonic() + timeout  # the limit is for the user's code, not the warm-up
            run["cold"] = cold
            if self._worker and self._worker.info:
                run["torch"] = self._worker.info.get("torch")
            iterations = 1
            for f in findings:
                need = f.data.get("needs_iterations") or (2 if f.code in ("GP401", "GP403", "GP405", "GP111") else 1)
                iterations = max(iterations, min(int(need), 3))
            probes = []
            for f in findings:
                p = f.data.get("probe")
                if p and p.get("span"):
                    probes.append({"id": f.id, "what": p.get("what"), "span": p["span"], "expr": p.get("expr")})
                elif f.code == "GP405":
                    probes.append({"id": f.id, "what": "accumulated", "span": f.span.to_dict()})
            watch = sorted({line for f in findings for line in range(f.span.line, min(f.span.end_line, f.span.line + 50) + 1)})
            if via is not None:
                probes = probes + via.script_probes
                iterations = max(iterations, via.iterations)
            base = {"path": path, "source": text, "iterations": iterations, "probes": probes,
                    "memory_mb": self.memory_mb, "watch": watch}
            if via is not None:
                base.update(via.request_fields())
            script = self._call(dict(base, mode="script", timeout_s=max(1.0, deadline - time.monotonic())), timeout)
            run["script"] = _run_summary(script)
            # past an error: when the run stopped at an exception before some findings' lines, run again
            # with the failing statements wrapped in try/except (at most 3 more runs); each finding is judged
            # on the first run that reached it
            later: list[dict] = []
            tolerate: list[int] = []
            last = script
            while len(later) < 3 and last.get("status") == "exception" and deadline - time.monotonic() > 1.0:
                line = (last.get("exception") or {}).get("line")
                if not line or line in tolerate or all(V.reached(last, f) or f.span.line < line for f in findings):
                    break
                if not any(V.explains_error(f, last) for f in findings):
                    break  # only past an error that is itself a confirmed finding
                tolerate.append(line)
                last = self._call(dict(base, mode="script", tolerate=list(tolerate),
                                       timeout_s=max(0.5, deadline - time.monotonic())), timeout)
                later.append(last)
            if later:
                run["continued_past"] = [dict(_run_summary(o), tolerated=o.get("tolerated")) for o in later]
            # a finding inside a branch the cut loops never took (`if step % 4 == 0:`): one more run with
            # more iterations, used only for the findings the first run did not reach
            more = None
            unreached = [f for f in findings if not V.reached(script, f)]
            if via is not None:
                unreached += via.unreached(script)
            cut = any(l.get("cut") for l in (script.get("loops") or {}).values())
            if script.get("status") == "ok" and unreached and cut and deadline - time.monotonic() > 1.0:
                more = self._call(dict(base, mode="script", iterations=4,
                                       timeout_s=max(0.5, deadline - time.monotonic())), timeout)
                run["rerun_4_iterations"] = _run_summary(more)
                if more.get("status") != "ok":
                    more = None
            # the edge runs (one per GP3 probe) and model-only steps do not depend on each other: one batch,
            # run concurrently by the worker
            left = deadline - time.monotonic()
            batch: list[tuple[str, Any, dict]] = []
            for f in findings:
                if f.code not in V.PROBE_CODES or f.code in ("GP304", "GP305"):
                    continue
                rec = (script.get("probes") or {}).get(f.id)
                if not rec or not rec.get("count") or (rec.get("nonfinite") or 0) > 0:
                    continue
                if V.unforceable(rec, None, final=False):  # a Python number, a shape: never forced
                    continue
                if sum(1 for k, _, _ in batch if k == "edge") >= MAX_EDGE_RUNS:
                    break
                kind = next((p["what"] for p in probes if p["id"] == f.id), None) or V.DEFAULT_PROBE_KIND.get(f.code)
                # another seed and two iterations: a value computed from data differs from the first run's,
                # one that stays the same is a constant of the program and is not forced (V.unforceable)
                batch.append(("edge", f.id, dict(base, mode="script", edge={"id": f.id, "what": kind},
                                                 seed=1, iterations=max(2, base.get("iterations", 1)),
                                                 timeout_s=max(0.5, left))))
            if via is not None:
                room = MAX_EDGE_RUNS - sum(1 for k, _, _ in batch if k == "edge")
                batch.extend(("edge", key, req) for key, req in via.edge_requests(script, base, left, room, more))
            mo_keys: set = set()
            for f in findings:
                if not self._wants_model_only(f, script):
                    continue
                key = _mo_key(f)
                if key in mo_keys:
                    continue
                mo_keys.add(key)
                batch.append(("model-only", key, dict(
                    base, mode="model-only", model_class=f.data.get("model_class"), model_key=f.data.get("model"),
                    optimizer_class=f.data.get("optimizer_class"), span=f.span.to_dict(), probes=[],
                    fallback_optimizer=f.code in ("GP104", "GP105", "GP112"),
                    # with no model class, the optimizer call alone (`Adam([])`) is enough for GP101-style
                    # findings, when the script stopped at data, network or a package (not at an abuse limit)
                    optimizer_alone=script.get("status") in ("exception", "network"),
                    iterations=1, timeout_s=max(0.5, left))))
            edges: dict[str, dict] = {}
            model_only: dict[tuple, dict] = {}
            if batch and left > 0.5:
                results = self._call_batch([r for _, _, r in batch], left)
                for (kind, key, _), res in zip(batch, results):
                    (edges if kind == "edge" else model_only)[key] = res
            if edges:
                run["edge_runs"] = {fid: _run_summary(o) for fid, o in edges.items()}
            if model_only:
                run["model_only_runs"] = [_run_summary(o) for o in model_only.values()]
        modes = set()
        regions = V.loop_regions(text)
        for f in findings:
            key = _mo_key(f)
            try:
                obs = script
                if not V.reached(script, f):
                    obs = next((o for o in later if V.reached(o, f)), script)
                if more is not None and not V.reached(obs, f) and V.reached(more, f):
                    obs = more
                if obs is not script and obs is not more:
                    v0 = None
                else:
                    v0 = True
                v = V.decide(f, obs, edges.get(f.id), model_only.get(key), timeout, self.memory_mb, regions)
                if obs is more:
                    v.data["iterations"] = 4
                if v0 is None:
                    tol = obs.get("tolerated") or []
                    if tol:
                        t0_ = tol[0]
                        v.evidence += (f"\n(judged on a run that went past the earlier error at line {t0_['line']}: "
                                       f"{t0_['type']}: {V._first(t0_['message'], 120)})")
                        v.data["continued_past"] = tol
            except Exception as exc:  # a verdict bug must not lose the other verdicts
                v = Verdict(V.NOT_RUN, "none", f"internal error while deciding: {type(exc).__name__}: {exc}", {})
            if v.verdict == V.NOT_RUN:
                out = (script.get("stdout") or {}).get("text") or ""
                if out.strip():
                    v.data.setdefault("output_tail", "\n".join(out.rstrip().splitlines()[-5:])[-1000:])
            report.verdicts[f.id] = v
            modes.add(v.mode)
        if via is not None:
            report.via = via.decide(script, edges, timeout, self.memory_mb, more)
        run["mode"] = "script" if "script" in modes or not modes else ("model-only" if "model-only" in modes
                                                                        else "none")
        run["status"] = script.get("status")
        run["output"] = _output(script)
        if script.get("exception"):
            exc = script["exception"]
            run["error"] = {"type": exc.get("type"), "message": exc.get("message"), "line": exc.get("line"),
                            "traceback": exc.get("traceback")}
        elif script.get("status") not in ("ok", None):
            run["error"] = {"message": V.failure_reason(script, None, timeout, self.memory_mb)}
        run["files_written"] = script.get("files_written", [])
        from gradpath.live.report.view import choose_table
        run["flow"] = choose_table(script, model_only.values())  # the gradient-flow table (one row per tensor)
        run["sandbox"] = script.get("sandbox")
        run["timings"] = {"total_ms": round((time.monotonic() - t0) * 1000, 1),
                          "script_ms": script.get("wall_ms"), "exec_ms": script.get("exec_ms"),
                          "worker_startup_s": (self._worker.info.get("startup_s") if self._worker else None),
                          "runs": 1 + len(edges) + len(model_only)}
        run["restarts"] = self.restarts
        return report

    def _wants_model_only(self, f, script: dict) -> bool:
        if f.code not in V.MODEL_ONLY_CODES:
            return False
        status = script.get("status")
        if status == "ok":
            return not V.reached(script, f) or not script.get("step_count")
        if f.code in V.EXCEPTION_CODES:
            ok, hit = V._exception_match(f, script, V.EXCEPTION_CODES[f.code])
            return not (ok and hit)
        return True


def _mo_key(f) -> tuple:
    return (f.data.get("model_class"), f.data.get("model"), f.data.get("optimizer_class"),
            f.span.line if f.code in V.EXCEPTION_CODES else None, f.code in ("GP104", "GP105", "GP112"))


def _run_summary(obs: dict) -> dict:
    return {k: obs.get(k) for k in ("status", "wall_ms", "exec_ms", "setup_ms", "reap_ms", "backward_count", "step_count",
                                    "loops", "timed_out", "sandbox", "mode") if k in obs}


def _output(obs: dict) -> dict:
    out = obs.get("stdout") or {}
    err = obs.get("stderr") or {}
    fd = obs.get("fd_output") or {}
    return {"stdout": out.get("text", ""), "stdout_bytes": out.get("bytes", 0),
            "stderr": (err.get("text", "") + fd.get("text", ""))[-16384:], "stderr_bytes": err.get("bytes", 0),
            "truncated": bool(out.get("truncated") or err.get("truncated") or fd.get("truncated"))}
