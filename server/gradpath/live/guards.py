"""The live worker's Python-level guards, installed in the child before the user's script runs: CUDA
stays on the CPU, writes are mapped into the run's temp folder, network connections and new processes
are refused with a clear record (NetworkRefused), torch.compile is a no-op, DataLoaders load in-process,
warnings are recorded.

Worker side: standard library only (torch is passed in); imported by worker.py as
`_gradpath_live.guards` (see worker._load_sibling). The OS-level sandbox is in sandbox.py.
"""
from __future__ import annotations

import builtins
import errno
import io
import os
import shutil
import socket
import warnings

from .observer import Observer  # (annotations)


class NetworkRefused(OSError):
    pass


def install_guards(torch, obs: Observer, tmp: str, script_dir: str):
    out_root = os.path.join(tmp, "files")
    os.makedirs(out_root, exist_ok=True)
    real_open = builtins.open
    real_os_open = os.open
    real_stat = os.stat
    real_lstat = os.lstat

    def real_exists(a):
        try:
            real_stat(a)
            return True
        except OSError:
            return False
    redirected: dict[str, str] = {}

    def inside(p):
        return p == tmp or p.startswith(tmp + os.sep)

    def mapped(p, for_write):
        if isinstance(p, int):
            return p
        try:
            s = os.fsdecode(os.fspath(p))
        except TypeError:
            return p
        a = os.path.abspath(s)
        if inside(a) or a in ("/dev/null", "/dev/zero", "/dev/full"):
            return s
        if a in redirected:
            return redirected[a]
        if not for_write:
            # a folder that exists only because the script wrote into it: its mirror
            if any(k.startswith(a + os.sep) for k in redirected) and not real_exists(a):
                return os.path.join(out_root, a.lstrip(os.sep))
            return s
        target = os.path.join(out_root, a.lstrip(os.sep))
        try:
            os.makedirs(os.path.dirname(target), exist_ok=True)
        except OSError:
            pass
        redirected[a] = target
        if len(obs.writes) < 50:
            obs.writes.append({"path": s, "line": obs.user_line(3)})
        return target

    def pretend_deleted(path, target) -> bool:
        """Removing a real file or folder outside the temp folder (`if os.path.exists(log): os.remove(log)`):
        the real one stays, the script's view loses it (later reads go to its absent mirror), and the call
        succeeds as it would have."""
        if isinstance(path, int) or not isinstance(target, str):
            return False
        try:
            a = os.path.abspath(os.fsdecode(os.fspath(path)))
        except TypeError:
            return False
        if os.path.abspath(target) == a:
            return False
        try:
            real_lstat(target)
            return False  # the script's own copy exists: really remove that
        except OSError:
            pass
        try:
            real_lstat(a)
        except OSError:
            return False
        return True

    def is_write_mode(mode):
        return any(c in mode for c in "wax+")

    def g_open(file, mode="r", *a, **k):
        return real_open(mapped(file, is_write_mode(mode)), mode, *a, **k)

    builtins.open = g_open
    io.open = g_open
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

    def g_os_open(path, flags, *a, **k):
        return real_os_open(mapped(path, bool(flags & write_flags)), flags, *a, **k)

    os.open = g_os_open
    for name in ("remove", "unlink", "rmdir", "mkdir", "makedirs", "chmod", "utime", "truncate"):
        real = getattr(os, name, None)
        if real is None:
            continue

        def make(real, name):
            def f(path, *a, **k):
                target = mapped(path, True)
                if name in ("remove", "unlink", "rmdir") and pretend_deleted(path, target):
                    return None
                return real(target, *a, **k)
            f.__name__ = name
            return f
        setattr(os, name, make(real, name))
    for name in ("rename", "replace", "link", "symlink"):
        real = getattr(os, name, None)
        if real is None:
            continue

        def make2(real, name):
            def f(src, dst, *a, **k):
                return real(mapped(src, name in ("rename", "replace")), mapped(dst, True), *a, **k)
            f.__name__ = name
            return f
        setattr(os, name, make2(real, name))
    real_listdir = os.listdir

    def g_listdir(path="."):
        if isinstance(path, int):
            return real_listdir(path)
        a = os.path.abspath(os.fsdecode(os.fspath(path)))
        mirror = os.path.join(out_root, a.lstrip(os.sep))
        names = []
        for p in (a, mirror):
            try:
                names += [n for n in real_listdir(p) if n not in names]
            except OSError:
                if p == a and not os.path.isdir(mirror):
                    raise
        return names
    os.listdir = g_listdir
    for name in ("stat", "lstat", "scandir", "access"):
        real = getattr(os, name, None)
        if real is None:
            continue

        def make_read(real, name):
            def f(path=".", *a, **k):
                return real(mapped(path, False), *a, **k)
            f.__name__ = name
            return f
        setattr(os, name, make_read(real, name))
    real_rmtree = shutil.rmtree

    def g_rmtree(path, *a, **k):
        target = mapped(path, True)
        if pretend_deleted(path, target):
            return None
        return real_rmtree(target, *a, **k)
    shutil.rmtree = g_rmtree

    real_save = torch.save

    def g_save(obj, f, *a, **k):
        if isinstance(f, (str, bytes, os.PathLike)):
            f = mapped(f, True)
        return real_save(obj, f, *a, **k)
    torch.save = g_save
    real_load = torch.load

    def g_load(f, *a, **k):
        if isinstance(f, (str, bytes, os.PathLike)):
            f = mapped(f, False)
        k.setdefault("map_location", "cpu")
        return real_load(f, *a, **k)
    torch.load = g_load

    # network: refuse at the Python level too (the namespace/seccomp refuse at the kernel level)
    def refuse(what, target=None):
        if isinstance(target, tuple) and len(target) >= 2:
            target = f"{target[0]}:{target[1]}"
        obs.network.append({"what": what, "target": str(target)[:200] if target is not None else None,
                            "line": obs.user_line(3)})
        return NetworkRefused(errno.ENETUNREACH, "Network is unreachable (the gradpath live step runs offline)")

    def sock_init(self_, *a, **k):
        raise refuse("socket")
    socket.socket.__init__ = sock_init

    def g_getaddrinfo(host, port=None, *a, **k):
        target = f"{host}:{port}" if port not in (None, 0) else str(host)
        obs.network.append({"what": "resolve", "target": target[:200], "line": obs.user_line(2)})
        raise socket.gaierror(socket.EAI_NONAME, f"Name resolution refused for {host!r} "
                              "(the gradpath live step runs offline)")
    socket.getaddrinfo = g_getaddrinfo

    def g_create_connection(address, *a, **k):
        raise refuse("connect", address)
    socket.create_connection = g_create_connection

    # processes: refuse with a clear record
    import subprocess

    class _Refused(OSError):
        pass

    def no_process(*a, **k):
        obs.processes.append({"line": obs.user_line(2), "what": repr(a[:1])[:200]})
        raise _Refused(errno.EPERM, "starting processes is disabled in the gradpath live step")

    subprocess.Popen.__init__ = lambda self_, *a, **k: no_process(*a)
    os.system = lambda cmd: no_process(cmd)
    if hasattr(os, "fork"):
        os.fork = lambda: no_process("fork")
    if hasattr(os, "forkpty"):
        os.forkpty = lambda: no_process("forkpty")

    # CUDA stays on the CPU
    try:
        from torch.overrides import TorchFunctionMode
    except ImportError:  # torch < 2.0: only the module-level patches below
        TorchFunctionMode = object

    def cpu_dev(d):
        if isinstance(d, str) and (d.startswith("cuda") or d.startswith("mps")):
            return "cpu"
        if isinstance(d, torch.device) and d.type in ("cuda", "mps"):
            return torch.device("cpu")
        if isinstance(d, int) and not isinstance(d, bool):
            return "cpu"
        return d

    class KeepOnCPU(TorchFunctionMode):
        def __torch_function__(self, func, types_, args=(), kwargs=None):
            kwargs = kwargs or {}
            moved = False
            if "device" in kwargs:
                new = cpu_dev(kwargs["device"])
                moved = new is not kwargs["device"]
                kwargs["device"] = new
            name = getattr(func, "__name__", "")
            if name == "to" and len(args) >= 2:
                new = cpu_dev(args[1])
                moved = moved or new is not args[1]
                args = (args[0], new) + tuple(args[2:])
            elif name == "cuda" and args:
                out = args[0]
                # on a GPU, .cuda() of a Parameter returns a plain (non-leaf) tensor: keep that meaning
                return out.clone() if isinstance(out, torch.nn.Parameter) else out
            out = func(*args, **kwargs)
            if moved and name == "to" and isinstance(args[0], torch.nn.Parameter) and out is args[0]:
                return out.clone()
            return out

    if TorchFunctionMode is not object:
        mode = KeepOnCPU()
        mode.__enter__()
    torch.nn.Module.cuda = lambda self_, *a, **k: self_
    orig_mod_to = torch.nn.Module.to

    def mod_to(self_, *a, **k):
        if a:
            a = (cpu_dev(a[0]),) + tuple(a[1:])
        if "device" in k:
            k["device"] = cpu_dev(k["device"])
        return orig_mod_to(self_, *a, **k)
    torch.nn.Module.to = mod_to
    torch.cuda.is_available = lambda: False
    if hasattr(torch, "compile"):
        def no_compile(model=None, *a, **k):
            return model if model is not None else (lambda m: m)
        torch.compile = no_compile
    try:
        import torch.utils.data as tud
        orig_dl_init = tud.DataLoader.__init__

        def dl_init(self_, *a, **k):
            k["num_workers"] = 0
            k.pop("prefetch_factor", None)
            k["persistent_workers"] = False
            k["pin_memory"] = False
            return orig_dl_init(self_, *a, **k)
        tud.DataLoader.__init__ = dl_init
    except Exception:
        pass

    def showwarning(message, category, filename, lineno, file=None, line=None):
        text = str(message)
        for w in obs.warnings:
            if w["message"] == text:
                w["count"] += 1
                return
        if len(obs.warnings) < 30:
            obs.warnings.append({"category": category.__name__, "message": text[:1000],
                                 "line": obs.user_line(2) or (lineno if filename == obs.path else None),
                                 "stack": obs.user_stack(2), "count": 1})
    warnings.showwarning = showwarning
    warnings.simplefilter("always")
