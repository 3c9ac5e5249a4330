"""Gradpath live worker: runs one tiny CPU training step of a user's script and reports what it saw.

Depends only on the standard library and torch, so it runs by file path under any interpreter that
has torch (gradpath need not be installed there):

    python worker.py            # serve requests: one JSON object per line on stdin, answers on stdout

The worker imports torch once, does one throwaway optimizer step (which loads torch._dynamo), then
forks one child per request. The child sandboxes itself (network namespace, Landlock, seccomp,
rlimits, Python-level guards), runs the user's file as __main__ with every loop cut short, observes
optimizers, backward calls, parameters and probed sub-expressions, and streams JSON events back over
a private pipe. The worker enforces the wall-clock limit and never lets user output reach its own
stdout (the protocol stream).
"""
from __future__ import annotations

import json
import os
import select
import shutil
import signal
import sys
import tempfile
import time
import traceback
import warnings

PROTOCOL = 1


def _load_sibling(name: str):
    """A module next to this file, imported as `_gradpath_live.<name>`: a private package whose path is
    this folder, so the user's own modules are never shadowed, each sibling is loaded once, and the
    siblings import one another relatively (`from . import observer`)."""
    import importlib
    import importlib.machinery
    import importlib.util
    if "_gradpath_live" not in sys.modules:
        spec = importlib.machinery.ModuleSpec("_gradpath_live", None, is_package=True)
        spec.submodule_search_locations = [os.path.dirname(os.path.abspath(__file__))]
        sys.modules["_gradpath_live"] = importlib.util.module_from_spec(spec)
    return importlib.import_module(f"_gradpath_live.{name}")


# The child's side, one module per part (each imports the ones it needs relatively):
#   child_run.py       one forked child, one request: fds, environment, sandbox, run, the "end" event
#   sandbox.py         network namespace, Landlock, seccomp, rlimits
#   guards.py          Python-level guards: CUDA -> CPU, writes -> temp folder, network refused
#   script_rewrite.py  loops cut short, probes around flagged sub-expressions, line marks
#   observer.py        optimizers, backward calls, parameters and probed values seen; the summary
#   model_only.py      the model class alone with a synthetic input
#   flowtable.py, probe_values.py, leftovers.py, modhook.py (see each)
_child_run = _load_sibling("child_run")
child_main = _child_run.child_main
MAX_EVENT_BYTES, MAX_OUTPUT = _child_run.MAX_EVENT_BYTES, _child_run.MAX_OUTPUT
_script_rewrite = _load_sibling("script_rewrite")
Rewriter = _script_rewrite.Rewriter  # (this file's interface: tests/live/test_rewrite.py uses them)
place_statement_probes = _script_rewrite.place_statement_probes
rewrite = _script_rewrite.rewrite


# --------------------------------------------------------------------------------------------
# Worker loop (parent side)
# --------------------------------------------------------------------------------------------

class _Run:
    """One forked child running one request."""

    def __init__(self, req: dict, torch):
        self.req = req
        self.t0 = time.monotonic()
        self.timeout_s = float(req.get("timeout_s", 20.0))
        self.deadline = self.t0 + self.timeout_s + 1.5
        self.tmp = tempfile.mkdtemp(prefix="gradpath-live-")
        self.chunks: list[bytes] = []
        self.size = 0
        self.timed_out = False
        self.got_end = False
        self.done = False
        rfd, wfd = os.pipe()
        req["_forked_at"] = time.time()
        pid = os.fork()
        if pid == 0:  # child
            code = 0
            try:
                os.close(rfd)
                for other in list(_OPEN_RFDS) + list(_PROTO_FDS):
                    try:
                        os.close(other)  # the protocol pipes and the other children's pipes
                    except OSError:
                        pass
                child_main(req, wfd, self.tmp, torch)
            except BaseException:  # noqa: BLE001
                code = 3
                try:
                    os.write(wfd, (json.dumps({"event": "crash", "error": traceback.format_exc()[-4000:]})
                                   + "\n").encode())
                except Exception:
                    pass
            finally:
                os._exit(code)
        os.close(wfd)
        self.pid, self.rfd = pid, rfd
        _OPEN_RFDS.add(rfd)
        try:
            os.setpgid(pid, pid)
        except OSError:
            pass

    def on_readable(self):
        data = os.read(self.rfd, 65536)
        if not data:
            self._close()
            return
        if self.size < MAX_EVENT_BYTES:
            self.chunks.append(data)
        self.size += len(data)
        if data.endswith(b"\n") and b'{"event": "end"' in self.chunks[-1]:
            self.got_end = True  # the child's last word: answer now, reap it afterwards
            self._close()

    def _close(self):
        self.done = True
        _OPEN_RFDS.discard(self.rfd)
        os.close(self.rfd)
        self.t_read = time.monotonic()

    def expire(self):
        self.timed_out = True
        self._close()
        for target in (lambda: os.killpg(self.pid, signal.SIGKILL), lambda: os.kill(self.pid, signal.SIGKILL)):
            try:
                target()
            except OSError:
                pass

    def finish(self) -> dict:
        pid, tmp = self.pid, self.tmp
        wstatus = 0
        if not self.got_end:
            _, wstatus = os.waitpid(pid, 0)
            try:
                os.killpg(pid, signal.SIGKILL)  # anything it left behind
            except OSError:
                pass
        result = None
        crash = None
        for line in b"".join(self.chunks).split(b"\n"):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if obj.get("event") == "end":
                result = obj
            elif obj.get("event") == "crash":
                crash = obj.get("error")
        if result is None:
            result = {"event": "end", "status": "timeout" if self.timed_out else "killed", "exception": None}
            if os.WIFSIGNALED(wstatus):
                result["signal"] = os.WTERMSIG(wstatus)
            elif os.WIFEXITED(wstatus) and not self.timed_out and not crash:
                code = os.WEXITSTATUS(wstatus)
                result["status"] = "exit"
                result["exception"] = {"type": "SystemExit", "message": f"exit code {code} (the process ended "
                                       "itself, e.g. os._exit(), before the step finished)", "line": None}
            if crash:
                result["status"] = "internal-error"
                result["internal_error"] = crash
        # files written by the user code (all inside tmp)
        written = []
        files_root = os.path.join(tmp, "files")
        for dp, _, fns in os.walk(files_root):
            for fn in fns:
                full = os.path.join(dp, fn)
                try:
                    written.append({"path": "/" + os.path.relpath(full, files_root),
                                    "bytes": os.path.getsize(full)})
                except OSError:
                    pass
                if len(written) >= 50:
                    break
        result["files_written"] = written
        try:
            with open(os.path.join(tmp, ".output"), "rb") as f:
                raw = f.read(MAX_OUTPUT + 1)
            result["fd_output"] = {"text": raw[:MAX_OUTPUT].decode("utf-8", errors="replace"),
                                   "truncated": len(raw) > MAX_OUTPUT}
        except OSError:
            pass
        result["wall_ms"] = round((time.monotonic() - self.t0) * 1000, 1)
        result["reap_ms"] = round((time.monotonic() - self.t_read) * 1000, 1)
        result["timed_out"] = self.timed_out
        return result

    def cleanup(self):
        if self.got_end:
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except OSError:
                pass
            _PENDING.append(self.pid)  # reaped later without waiting for its teardown
        shutil.rmtree(self.tmp, ignore_errors=True)


_OPEN_RFDS: set[int] = set()
_PROTO_FDS: set[int] = set()
MAX_PARALLEL = max(1, min(4, (os.cpu_count() or 1)))


def run_many(reqs: list[dict], torch) -> tuple[list[dict], list]:
    """Run requests concurrently (at most MAX_PARALLEL children at a time); results in order."""
    reap_pending()
    waiting = list(enumerate(reqs))
    running: list[tuple[int, _Run]] = []
    results: list[dict | None] = [None] * len(reqs)
    finished: list[_Run] = []
    while waiting or running:
        while waiting and len(running) < MAX_PARALLEL:
            i, req = waiting.pop(0)
            running.append((i, _Run(req, torch)))
        now = time.monotonic()
        for i, r in running:
            if not r.done and now >= r.deadline:
                r.expire()
        live = [r for _, r in running if not r.done]
        if live:
            left = min(r.deadline for r in live) - time.monotonic()
            ready, _, _ = select.select([r.rfd for r in live], [], [], max(0.0, min(left, 0.5)))
            for r in live:
                if r.rfd in ready:
                    r.on_readable()
        for i, r in list(running):
            if r.done:
                results[i] = r.finish()
                finished.append(r)
                running.remove((i, r))
    return results, finished


def run_request(req: dict, torch):
    results, finished = run_many([req], torch)

    def cleanup():
        for r in finished:
            r.cleanup()
        reap_pending()
    return results[0], cleanup


_PENDING: list[int] = []


def reap_pending(block: bool = False):
    for pid in list(_PENDING):
        try:
            done, _ = os.waitpid(pid, 0 if block else os.WNOHANG)
        except ChildProcessError:
            done = pid
        if done:
            _PENDING.remove(pid)


def warm_up():
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")
    os.environ["CUDA_VISIBLE_DEVICES"] = ""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import torch
        import torch.nn.functional  # noqa: F401
        import torch.optim.optimizer  # noqa: F401
        import torch.utils.data  # noqa: F401
        from torch.overrides import TorchFunctionMode  # noqa: F401
        import subprocess  # noqa: F401
        import platform  # noqa: F401
        torch.set_num_threads(1)
        m = torch.nn.Linear(4, 1)
        opt = torch.optim.Adam(m.parameters(), lr=1e-3)
        m(torch.zeros(2, 4)).pow(2).mean().backward()
        opt.step()
        opt.zero_grad()
        torch.nn.functional.cross_entropy(torch.randn(2, 3, requires_grad=True), torch.tensor([0, 1])).backward()
    return torch


def main() -> int:
    # The protocol uses private copies of stdin/stdout; fds 0 and 1 are pointed at /dev/null so that
    # nothing printed by torch (or anything else) can corrupt the protocol stream.
    proto_in = os.fdopen(os.dup(0), "rb", buffering=0)
    proto_out = os.dup(1)
    _PROTO_FDS.update({proto_in.fileno(), proto_out})
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    os.close(devnull)
    sys.stdout = sys.stderr

    def send(obj):
        data = (json.dumps(obj, default=str) + "\n").encode()
        view = memoryview(data)
        while view:
            n = os.write(proto_out, view)
            view = view[n:]

    t0 = time.monotonic()
    c0 = time.process_time()
    try:
        torch = warm_up()
    except BaseException as exc:  # noqa: BLE001
        send({"ready": False, "error": f"{type(exc).__name__}: {exc}"})
        return 2
    send({"ready": True, "protocol": PROTOCOL, "torch": torch.__version__, "python": sys.version.split()[0],
          "executable": sys.executable, "warm_ms": round((time.monotonic() - t0) * 1000, 1),
          "warm_cpu_ms": round((time.process_time() - c0) * 1000, 1), "pid": os.getpid()})
    buf = b""
    while True:
        if _PENDING:
            r, _, _ = select.select([proto_in], [], [], 0.2)
            reap_pending()
            if not r:
                continue
        chunk = proto_in.read(65536)
        if not chunk:
            reap_pending(block=True)
            return 0
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            if not line.strip():
                continue
            try:
                req = json.loads(line)
            except ValueError as exc:
                send({"id": None, "error": f"bad request: {exc}"})
                continue
            if req.get("op") == "ping":
                send({"id": req.get("id"), "pong": True})
                continue
            if req.get("op") == "exit":
                return 0
            if req.get("op") == "batch":
                finished = []
                try:
                    results, finished = run_many(list(req.get("requests") or []), torch)
                    res = {"results": results}
                except Exception:  # noqa: BLE001
                    res = {"status": "internal-error", "internal_error": traceback.format_exc()[-4000:],
                           "exception": None}
                res["id"] = req.get("id")
                send(res)
                for r in finished:
                    r.cleanup()
                reap_pending()
                continue
            cleanup = None
            try:
                res, cleanup = run_request(req, torch)
            except Exception as exc:  # noqa: BLE001
                res = {"status": "internal-error", "internal_error": traceback.format_exc()[-4000:],
                       "exception": None}
            res["id"] = req.get("id")
            send(res)
            if cleanup is not None:
                try:
                    cleanup()
                except Exception:  # noqa: BLE001
                    pass


if __name__ == "__main__":
    sys.exit(main())
