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

import ast
import builtins
import errno
import io
import json
import os
import select
import shutil
import signal
import sys
import tempfile
import time
import traceback
import types
import warnings

PROTOCOL = 1
MAX_EVENT_BYTES = 4 * 1024 * 1024
MAX_OUTPUT = 16 * 1024
MINIMAL_ENV_KEYS = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "PYTHONPATH", "VIRTUAL_ENV", "CONDA_PREFIX",
                    "LD_LIBRARY_PATH", "SYSTEMROOT", "TZ")


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


_flowtable = _load_sibling("flowtable")  # the gradient-flow table (one row per parameter tensor)
_modhook = _load_sibling("modhook")  # probes and line marks in the project modules the script imports
_script_rewrite = _load_sibling("script_rewrite")  # loops cut short, probes placed, compiled
Rewriter = _script_rewrite.Rewriter  # (this file's interface: tests/live/test_rewrite.py uses them)
place_statement_probes = _script_rewrite.place_statement_probes
rewrite = _script_rewrite.rewrite
_observer = _load_sibling("observer")  # optimizers, backward calls, parameters and probed values seen
Observer = _observer.Observer
_guards = _load_sibling("guards")  # CUDA -> CPU, writes -> temp folder, network refused
NetworkRefused, install_guards = _guards.NetworkRefused, _guards.install_guards
_model_only = _load_sibling("model_only")  # the model class alone with a synthetic input
run_model_only = _model_only.run_model_only
_sandbox = _load_sibling("sandbox")  # network namespace, Landlock, seccomp, rlimits
sandbox_netns, sandbox_landlock = _sandbox.sandbox_netns, _sandbox.sandbox_landlock
sandbox_seccomp, sandbox_limits = _sandbox.sandbox_seccomp, _sandbox.sandbox_limits


# --------------------------------------------------------------------------------------------
# Observation (child side)
# --------------------------------------------------------------------------------------------

class _StopRun(BaseException):
    """Raised by the wall-clock alarm inside the child; a BaseException so `except Exception` in user
    code does not swallow it."""


class _Bounded(io.RawIOBase):
    def __init__(self, limit):
        self.limit, self.total, self.buf = limit, 0, bytearray()

    def writable(self):
        return True

    def write(self, b):
        n = len(b)
        self.total += n
        room = self.limit - len(self.buf)
        if room > 0:
            self.buf += bytes(b[:room])
        return n


def _exc_info(exc: BaseException, path: str) -> dict:
    tb = exc.__traceback__
    line = None
    frames = traceback.extract_tb(tb)
    for fr in frames:
        if fr.filename == path:
            line = fr.lineno
    text = "".join(traceback.format_exception(type(exc), exc, tb))
    if len(text) > 6000:
        text = text[:1500] + "\n...\n" + text[-4000:]
    msg = str(exc)
    if len(msg) > 2000:
        msg = msg[:2000] + "..."
    return {"type": type(exc).__name__, "message": msg, "line": line, "traceback": text,
            "user_lines": [fr.lineno for fr in frames if fr.filename == path][-10:]}


def obs_line(frames, path):
    lines = [fr.lineno for fr in frames if fr.filename == path]
    return lines[-1] if lines else None


def _classify(exc: BaseException, obs: Observer, memory_mb: int) -> str:
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, _StopRun):
        return "timeout"
    if isinstance(exc, MemoryError) or "can't allocate memory" in text or "Cannot allocate memory" in text:
        return "memory"
    if obs.network:
        return "network"
    if isinstance(exc, OSError) and exc.errno in (errno.EACCES, errno.EPERM, errno.ENETUNREACH):
        frames = traceback.extract_tb(exc.__traceback__)
        if frames and "socket" in ((frames[-1].line or "") + frames[-1].filename):
            obs.network.append({"what": "socket", "target": None, "line": obs_line(frames, obs.path)})
            return "network"
    if obs.processes or (isinstance(exc, OSError) and exc.errno in (errno.EAGAIN,) and "fork" in text.lower()):
        return "process"
    if isinstance(exc, SystemExit):
        code = exc.code
        return "ok" if code in (None, 0) else "exit"
    return "exception"


# --------------------------------------------------------------------------------------------
# Child process: one request
# --------------------------------------------------------------------------------------------

def child_main(req: dict, wfd: int, tmp: str, torch) -> None:
    t0 = time.monotonic()
    fork_ms = round((time.time() - req.get("_forked_at", time.time())) * 1000, 2)
    path = os.path.abspath(req["path"])
    script_dir = os.path.dirname(path) or "/"
    memory_mb = int(req.get("memory_mb", 2048))
    timeout_s = float(req.get("timeout_s", 20.0))
    sent = [0]

    def emit(obj):
        data = (json.dumps(obj, default=str, allow_nan=True) + "\n").encode()
        if sent[0] + len(data) > MAX_EVENT_BYTES:
            return
        sent[0] += len(data)
        view = memoryview(data)
        while view:
            try:
                n = os.write(wfd, view)
            except InterruptedError:
                continue
            view = view[n:]

    # fds: stdin from /dev/null, C-level stdout/stderr into a file in the temp folder
    try:
        os.setpgid(0, 0)
    except OSError:
        pass
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    cap = os.open(os.path.join(tmp, ".output"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(cap, 1)
    os.dup2(cap, 2)
    os.close(cap)
    os.close(devnull)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)

    # environment: minimal, no secrets
    keep = {k: os.environ[k] for k in MINIMAL_ENV_KEYS if k in os.environ}
    os.environ.clear()
    os.environ.update(keep)
    os.environ.update({"HOME": tmp, "TMPDIR": tmp, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1",
                       "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg", "PYTHONDONTWRITEBYTECODE": "1",
                       "TORCH_HOME": os.path.join(tmp, "torch"), "HF_HUB_OFFLINE": "1",
                       "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "disabled",
                       "XDG_CACHE_HOME": os.path.join(tmp, "cache")})
    tempfile.tempdir = tmp
    sys.dont_write_bytecode = True

    sandbox = {"netns": False, "landlock": 0, "seccomp": False}
    timing = {}
    if req.get("sandbox", True):
        ts = time.monotonic()
        try:
            sandbox["netns"] = sandbox_netns()
        except Exception:
            pass
        timing["netns_ms"] = round((time.monotonic() - ts) * 1000, 2)
        ts = time.monotonic()
        try:
            sandbox["landlock"] = sandbox_landlock(tmp)
        except Exception:
            pass
        try:
            sandbox["seccomp"] = sandbox_seccomp()
        except Exception:
            pass
        sandbox_limits(memory_mb, sandbox["seccomp"])
        timing["landlock_seccomp_limits_ms"] = round((time.monotonic() - ts) * 1000, 2)
    sandbox["timing"] = timing
    timing["fork_ms"] = fork_ms

    stdout_raw, stderr_raw = _Bounded(MAX_OUTPUT), _Bounded(MAX_OUTPUT)
    sys.stdout = io.TextIOWrapper(stdout_raw, encoding="utf-8", errors="replace", line_buffering=True,
                                  write_through=True)
    sys.stderr = io.TextIOWrapper(stderr_raw, encoding="utf-8", errors="replace", line_buffering=True,
                                  write_through=True)
    sys.stdin = io.StringIO("")

    obs = Observer(torch, path, req, emit)
    result: dict = {"event": "end", "sandbox": sandbox, "mode": req.get("mode", "script")}
    status = "ok"
    exc_info = None
    mo_info = None
    hook = run_exc = None
    try:
        torch.set_num_threads(1)
        torch.manual_seed(int(req.get("seed") or 0))  # the edge runs use another seed (see probe_values)
        source = req["source"]
        probes = req.get("probes") or []
        lines = source.encode("utf-8").split(b"\n")
        tg = time.monotonic()
        cut = req.get("mode", "script") == "script"
        try:
            code, placed, sites = rewrite(source, path, probes, cut_loops=cut, watch=req.get("watch") or (),
                                          tolerate=req.get("tolerate") or ())
        except SyntaxError:
            raise
        except Exception as exc:  # a bug in our rewrite must not look like the user's error
            result["rewrite_error"] = repr(exc)
            code, placed, sites = rewrite(source, path, [], cut_loops=cut)
        result["probes_placed"] = {k: list(v) for k, v in placed.items()}
        result["probe_sites"] = {k: _segment(source, v) for k, v in sites.items() if v}
        obs.install()
        install_guards(torch, obs, tmp, script_dir)
        hook = _modhook.ModuleHook(req.get("modules") or [], obs, rewrite)
        hook.install()
        try:
            os.chdir(script_dir)
        except OSError:  # an unsaved buffer or a deleted folder: run from the temp folder
            os.chdir(tmp)
        here = os.path.dirname(os.path.abspath(__file__))
        sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
        sys.path.insert(0, script_dir)
        for extra in req.get("sys_path") or []:  # the folders the project's modules are named from (src/),
            if extra not in sys.path:  # after the installed packages: they never shadow one
                sys.path.append(extra)
        sys.argv = [path]
        main = types.ModuleType("__main__")
        main.__file__ = path
        main.__builtins__ = builtins
        main.__gp_probe__ = obs.probe
        main.__gp_site__ = obs.site
        builtins.__gp_site__ = obs.site
        main.__gp_iter__ = lambda it, line: obs.iter_cut(it, line)
        main.__gp_while__ = obs.while_check
        main.__gp_wreset__ = obs.while_reset
        builtins.__gp_probe__ = obs.probe  # probes inside functions defined in the file
        builtins.__gp_iter__ = main.__gp_iter__
        builtins.__gp_while__ = obs.while_check
        builtins.__gp_wreset__ = obs.while_reset
        sys.modules["__main__"] = main
        line_hits = obs.lines

        def mark(line):
            line_hits[line] = line_hits.get(line, 0) + 1

        main.__gp_mark__ = mark
        builtins.__gp_mark__ = mark

        def tolerated(line, exc):
            if len(obs.tolerated) < 20:
                obs.tolerated.append({"line": line, "type": type(exc).__name__, "message": str(exc)[:500]})

        builtins.__gp_tolerated__ = tolerated

        def on_alarm(signum, frame):
            raise _StopRun(f"timed out after {timeout_s:g} s")

        signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, max(0.2, timeout_s - (time.monotonic() - t0) - 0.3))
        result["setup_ms"] = round((time.monotonic() - t0) * 1000, 1)
        timing["rewrite_guards_ms"] = round((time.monotonic() - tg) * 1000, 2)
        t1 = time.monotonic()
        try:
            if req.get("mode") == "model-only":
                mo_info = {}
                run_model_only(torch, req, obs, main.__dict__, ast.parse(source, path), lines, mo_info)
            else:
                exec(code, main.__dict__)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        result["exec_ms"] = round((time.monotonic() - t1) * 1000, 1)
    except BaseException as exc:  # noqa: BLE001 - everything the user code does is an observation
        signal.setitimer(signal.ITIMER_REAL, 0)
        run_exc = exc
        status = _classify(exc, obs, memory_mb)
        if status != "ok":
            exc_info = _exc_info(exc, path)
            if isinstance(exc, SystemExit):
                exc_info["message"] = f"exit code {exc.code}"
        result["exec_ms"] = round((time.monotonic() - t0) * 1000, 1)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except Exception:
        pass
    try:
        result.update(obs.summary())
    except BaseException as exc:  # noqa: BLE001
        result["summary_error"] = repr(exc)
    if req.get("modules"):
        try:
            result["module_obs"] = hook.summary(run_exc)
        except BaseException as exc:  # noqa: BLE001
            result["module_obs_error"] = repr(exc)
    try:
        if not req.get("edge"):  # (an edge run forces a value: its table would show nothing of the step)
            result["flow"] = dict(_flowtable.build(obs), mode=req.get("mode", "script"))
    except BaseException as exc:  # noqa: BLE001
        result["flow_error"] = repr(exc)
    result["status"] = status
    result["exception"] = exc_info
    result["model_only"] = mo_info
    result["stdout"] = _tail(stdout_raw)
    result["stderr"] = _tail(stderr_raw)
    timing["child_total_ms"] = round((time.monotonic() - t0) * 1000, 2)
    emit(result)


def _segment(source: str, span) -> str | None:
    """Source text of a (line, col, end_line, end_col) character span."""
    try:
        lines = source.splitlines()
        l0, c0, l1, c1 = span
        if l0 == l1:
            text = lines[l0 - 1][c0:c1]
        else:
            text = "\n".join([lines[l0 - 1][c0:]] + lines[l0:l1 - 1] + [lines[l1 - 1][:c1]])
        return text if len(text) <= 200 else text[:197] + "..."
    except (IndexError, ValueError, TypeError):
        return None


def _tail(raw: _Bounded) -> dict:
    text = raw.buf.decode("utf-8", errors="replace")
    return {"text": text, "bytes": raw.total, "truncated": raw.total > len(raw.buf)}


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
