"""The live worker's OS-level sandbox, applied by each forked child to itself before it runs the user's
script: its own network namespace, Landlock (writes only under the run's temp folder), a seccomp filter,
and rlimits (memory, processes, file size, core dumps).

Worker side: standard library only; imported by worker.py as `_gradpath_live.sandbox` (see
worker._load_sibling). The Python-level guards are in guards.py.
"""
from __future__ import annotations

import ctypes
import errno
import os
import sys

try:
    import resource
except ImportError:  # pragma: no cover - not on Windows (where the live step is unsupported anyway)
    resource = None


_libc = None


def _lib():
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def sandbox_netns() -> bool:
    """A new user + network namespace: only a down loopback, nothing outside is reachable."""
    if not sys.platform.startswith("linux"):
        return False
    uid, gid = os.getuid(), os.getgid()
    libc = _lib()
    if libc.unshare(0x10000000 | 0x40000000) != 0:  # CLONE_NEWUSER | CLONE_NEWNET
        return False
    try:
        with open("/proc/self/setgroups", "w") as f:
            f.write("deny")
    except OSError:
        pass
    try:
        with open("/proc/self/uid_map", "w") as f:
            f.write(f"{uid} {uid} 1")
        with open("/proc/self/gid_map", "w") as f:
            f.write(f"{gid} {gid} 1")
    except OSError:
        pass
    return True


def sandbox_landlock(writable: str) -> int:
    """Kernel-enforced: no file may be written, created, removed or renamed outside `writable`.
    Returns the Landlock ABI used, 0 when unavailable."""
    if not sys.platform.startswith("linux"):
        return 0
    import platform
    nr = {"x86_64": (444, 445, 446), "aarch64": (444, 445, 446)}.get(platform.machine())
    if nr is None:
        return 0
    libc = _lib()
    libc.syscall.restype = ctypes.c_long
    abi = libc.syscall(nr[0], None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    if abi < 1:
        return 0
    fs = 2 | 16 | 32 | 64 | 128 | 256 | 512 | 1024 | 2048 | 4096  # write, remove, make_*
    if abi >= 2:
        fs |= 8192  # REFER
    if abi >= 3:
        fs |= 16384  # TRUNCATE
    net = 1 | 2 if abi >= 4 else 0  # BIND_TCP | CONNECT_TCP: no rule allows any port
    scoped = 1 | 2 if abi >= 6 else 0  # abstract unix sockets, signals outside the sandbox
    attr = (ctypes.c_uint64 * 3)(fs, net, scoped)
    size = 8 if abi < 4 else (16 if abi < 6 else 24)
    rfd = libc.syscall(nr[0], ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0))
    if rfd < 0:
        return 0

    class PathBeneath(ctypes.Structure):
        _pack_ = 1
        _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]

    def allow(path, access):
        try:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        except OSError:
            return
        try:
            pb = PathBeneath(access, fd)
            libc.syscall(nr[1], ctypes.c_int(rfd), ctypes.c_int(1), ctypes.byref(pb), ctypes.c_uint32(0))
        finally:
            os.close(fd)

    allow(writable, fs)
    file_rights = 2 | (16384 if abi >= 3 else 0)
    for dev in ("/dev/null", "/dev/zero", "/dev/full"):
        allow(dev, file_rights)
    libc.prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS
    ok = libc.syscall(nr[2], ctypes.c_int(rfd), ctypes.c_uint32(0)) == 0
    os.close(rfd)
    return abi if ok else 0


def sandbox_seccomp() -> bool:
    """Refuse new processes (threads are fine), exec, sockets, signals to other processes, ptrace and
    namespace games. Syscalls fail with an errno; nothing is killed."""
    import platform
    mach = platform.machine()
    if mach == "x86_64":
        arch = 0xC000003E
        deny = {57: errno.EAGAIN, 58: errno.EAGAIN, 59: errno.EPERM, 322: errno.EPERM, 41: errno.EACCES,
                101: errno.EPERM, 310: errno.EPERM, 311: errno.EPERM, 200: errno.EPERM, 424: errno.EPERM,
                272: errno.EPERM, 308: errno.EPERM, 165: errno.EPERM, 166: errno.EPERM, 155: errno.EPERM,
                161: errno.EPERM, 321: errno.EPERM, 298: errno.EPERM, 250: errno.EPERM, 248: errno.EPERM,
                249: errno.EPERM, 323: errno.EPERM, 425: errno.EPERM, 53: errno.EACCES}
        clone, clone3, kill, tgkill = 56, 435, 62, 234
    elif mach == "aarch64":
        arch = 0xC00000B7
        deny = {221: errno.EPERM, 281: errno.EPERM, 198: errno.EACCES, 117: errno.EPERM, 270: errno.EPERM,
                271: errno.EPERM, 130: errno.EPERM, 424: errno.EPERM, 97: errno.EPERM, 268: errno.EPERM,
                40: errno.EPERM, 39: errno.EPERM, 41: errno.EPERM, 51: errno.EPERM, 280: errno.EPERM,
                241: errno.EPERM, 219: errno.EPERM, 217: errno.EPERM, 218: errno.EPERM, 282: errno.EPERM,
                425: errno.EPERM, 199: errno.EACCES}
        clone, clone3, kill, tgkill = 220, 435, 129, 131
    else:
        return False
    ALLOW = 0x7FFF0000

    def ERR(e):
        return 0x00050000 | (e & 0xFFFF)

    mypid = os.getpid()
    prog: list = []  # (code, jt_label, jf_label, k) with labels resolved later
    LD, JEQ, JGE, JSET, RET = 0x20, 0x15, 0x35, 0x45, 0x06
    prog.append((LD, None, None, 4))
    prog.append((JEQ, None, "deny_arch", arch))
    prog.append((LD, None, None, 0))
    prog.append((JGE, "deny_arch", None, 0x40000000))
    for nr, e in deny.items():
        prog.append((JEQ, f"err{e}", None, nr))
    prog.append((JEQ, "clone3", None, clone3))
    prog.append((JEQ, "clone", None, clone))
    prog.append((JEQ, "selfsig", None, kill))
    prog.append((JEQ, "selfsig", None, tgkill))
    prog.append((RET, None, None, ALLOW))
    labels = {}
    labels["clone3"] = len(prog)
    prog.append((RET, None, None, ERR(errno.ENOSYS)))  # glibc falls back to clone()
    labels["clone"] = len(prog)
    prog.append((LD, None, None, 16))
    prog.append((JSET, "allow", None, 0x00010000))  # CLONE_THREAD
    prog.append((RET, None, None, ERR(errno.EAGAIN)))
    labels["selfsig"] = len(prog)
    prog.append((LD, None, None, 16))
    prog.append((JEQ, "allow", None, mypid))
    prog.append((JEQ, "allow", None, 0))
    prog.append((RET, None, None, ERR(errno.EPERM)))
    labels["allow"] = len(prog)
    prog.append((RET, None, None, ALLOW))
    for e in set(deny.values()):
        labels[f"err{e}"] = len(prog)
        prog.append((RET, None, None, ERR(e)))
    labels["deny_arch"] = len(prog)
    prog.append((RET, None, None, ERR(errno.EPERM)))

    class SockFilter(ctypes.Structure):
        _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8),
                    ("k", ctypes.c_uint32)]

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_uint16), ("filter", ctypes.POINTER(SockFilter))]

    arr = (SockFilter * len(prog))()
    for i, (code, jt, jf, k) in enumerate(prog):
        jt_off = labels[jt] - i - 1 if jt else 0
        jf_off = labels[jf] - i - 1 if jf else 0
        if not (0 <= jt_off < 256 and 0 <= jf_off < 256):
            return False
        arr[i] = SockFilter(code, jt_off, jf_off, k & 0xFFFFFFFF)
    fprog = SockFprog(len(prog), arr)
    libc = _lib()
    libc.prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS
    return libc.prctl(22, 2, ctypes.byref(fprog), 0, 0) == 0  # PR_SET_SECCOMP, SECCOMP_MODE_FILTER


def _vm_size_bytes() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _count_own_processes() -> int:
    uid, n = os.getuid(), 0
    try:
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    if os.stat(f"/proc/{d}").st_uid == uid:
                        n += 1
                except OSError:
                    pass
    except OSError:
        return 64
    return n


def sandbox_limits(memory_mb: int, seccomp_on: bool):
    if resource is None:
        return

    def setl(which, soft, hard=None):
        try:
            cur = resource.getrlimit(which)
            h = soft if hard is None else hard
            if cur[1] != resource.RLIM_INFINITY:
                h = min(h, cur[1])
                soft = min(soft, h)
            resource.setrlimit(which, (soft, h))
        except (ValueError, OSError):
            pass

    setl(resource.RLIMIT_CORE, 0)
    setl(resource.RLIMIT_FSIZE, 256 * 1024 * 1024)
    setl(resource.RLIMIT_NOFILE, 512)
    if not seccomp_on and os.getuid() != 0:
        setl(resource.RLIMIT_NPROC, _count_own_processes() + 4)
    vm = _vm_size_bytes()
    if vm:
        setl(resource.RLIMIT_AS, vm + memory_mb * 1024 * 1024)
    else:
        setl(resource.RLIMIT_DATA, memory_mb * 1024 * 1024)
