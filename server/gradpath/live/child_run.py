"""One forked child of the live worker, one request: it points its fds away from the protocol, clears
its environment, sandboxes itself (sandbox.py), rewrites the user's script (script_rewrite.py), installs
the observer and the guards, runs the script as __main__ (or the model alone, model_only.py) under a
wall-clock alarm, classifies how it ended, and streams JSON events back over its private pipe, the last
one ("end") carrying the observer's summary and the gradient-flow table.

Worker side: standard library only (torch is passed in); imported by worker.py as
`_gradpath_live.child_run` (see worker._load_sibling).
"""
from __future__ import annotations

import ast
import builtins
import errno
import io
import json
import os
import signal
import sys
import tempfile
import time
import traceback
import types

from . import flowtable as _flowtable  # the gradient-flow table (one row per parameter tensor)
from . import modhook as _modhook  # probes and line marks in the project modules the script imports
from .guards import install_guards
from .model_only import run_model_only
from .observer import Observer
from .sandbox import sandbox_landlock, sandbox_limits, sandbox_netns, sandbox_seccomp
from .script_rewrite import rewrite


MAX_EVENT_BYTES = 4 * 1024 * 1024
MAX_OUTPUT = 16 * 1024
MINIMAL_ENV_KEYS = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "PYTHONPATH", "VIRTUAL_ENV", "CONDA_PREFIX",
                    "LD_LIBRARY_PATH", "SYSTEMROOT", "TZ")


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
