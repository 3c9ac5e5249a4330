"""A minimal, dependency-free JSON-RPC/LSP client over a subprocess's stdio.

Used by the robustness tests (which need to send malformed frames and vanish mid-request, which
pytest-lsp's client cannot) and by the benchmarks (which need arrival timestamps). A reader thread
parses `Content-Length` frames and stamps every message with `time.perf_counter()` on arrival.
Server-to-client requests (workspace/configuration, window/workDoneProgress/create,
client/registerCapability...) are answered automatically.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[2]
SERVER_SRC = ROOT / "server"


def server_env(extra: dict | None = None) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(SERVER_SRC) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("PYTHONUNBUFFERED", "1")
    if extra:
        env.update(extra)
    return env


class ServerExited(Exception):
    pass


class Message(dict):
    """A decoded message; `.t` is its arrival time (perf_counter)."""
    t: float = 0.0


class LspClient:
    def __init__(self, cmd: list[str] | None = None, cwd: str | os.PathLike | None = None,
                 env: dict | None = None, stderr_path: str | os.PathLike | None = None):
        self.cmd = cmd or [sys.executable, "-m", "gradpath", "serve"]
        self._stderr = open(stderr_path, "wb") if stderr_path else subprocess.DEVNULL
        self.t_start = time.perf_counter()
        self.proc = subprocess.Popen(self.cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._stderr, cwd=cwd, env=env or server_env(),
                                     bufsize=0)
        self.messages: list[Message] = []
        self.cond = threading.Condition()
        self._next_id = 0
        self._wlock = threading.Lock()
        self.closed = False
        self.auto_answer: dict[str, Callable[[dict], Any]] = {
            "workspace/configuration": lambda p: [None for _ in (p or {}).get("items", [])],
            "window/workDoneProgress/create": lambda p: None,
            "client/registerCapability": lambda p: None,
            "client/unregisterCapability": lambda p: None,
            "workspace/applyEdit": lambda p: {"applied": False},
            "workspace/codeLens/refresh": lambda p: None,
            "workspace/diagnostic/refresh": lambda p: None,
            "window/showMessageRequest": lambda p: None,
        }
        self._reader = threading.Thread(target=self._read_loop, daemon=True)
        self._reader.start()

    # -- transport ---------------------------------------------------------------------------------
    def _read_loop(self) -> None:
        out = self.proc.stdout
        try:
            while True:
                headers = {}
                while True:
                    line = out.readline()
                    if not line:
                        raise EOFError
                    line = line.strip()
                    if not line:
                        break
                    k, _, v = line.decode("ascii", "replace").partition(":")
                    headers[k.strip().lower()] = v.strip()
                n = int(headers.get("content-length", "0"))
                body = b""
                while len(body) < n:
                    chunk = out.read(n - len(body))
                    if not chunk:
                        raise EOFError
                    body += chunk
                t = time.perf_counter()
                msg = Message(json.loads(body.decode("utf-8")))
                msg.t = t
                if "method" in msg and "id" in msg and msg["method"] in self.auto_answer:
                    try:
                        self.respond(msg["id"], self.auto_answer[msg["method"]](msg.get("params")))
                    except OSError:
                        pass
                with self.cond:
                    self.messages.append(msg)
                    self.cond.notify_all()
        except (EOFError, ValueError, OSError):
            pass
        finally:
            with self.cond:
                self.closed = True
                self.cond.notify_all()

    def send_raw(self, data: bytes) -> None:
        with self._wlock:
            self.proc.stdin.write(data)
            self.proc.stdin.flush()

    def send(self, obj: dict) -> float:
        body = json.dumps(obj, ensure_ascii=False).encode("utf-8")
        t = time.perf_counter()
        self.send_raw(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        return t

    def notify(self, method: str, params: Any = None) -> float:
        return self.send({"jsonrpc": "2.0", "method": method, "params": params})

    def request(self, method: str, params: Any = None) -> int:
        self._next_id += 1
        rid = self._next_id
        self.send({"jsonrpc": "2.0", "id": rid, "method": method, "params": params})
        return rid

    def respond(self, rid, result) -> None:
        self.send({"jsonrpc": "2.0", "id": rid, "result": result})

    # -- waiting -------------------------------------------------------------------------------------
    def wait_for(self, pred: Callable[[Message], bool], timeout: float = 10.0, start: int = 0) -> Message:
        """The first message (from index `start`) satisfying pred."""
        deadline = time.monotonic() + timeout
        i = start
        with self.cond:
            while True:
                while i < len(self.messages):
                    m = self.messages[i]
                    i += 1
                    if pred(m):
                        return m
                if self.closed:
                    raise ServerExited(f"server exited (rc={self.proc.poll()}) while waiting")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("no matching message within %.1fs" % timeout)
                self.cond.wait(left)

    def response(self, rid: int, timeout: float = 10.0) -> Message:
        return self.wait_for(lambda m: m.get("id") == rid and "method" not in m, timeout)

    def call(self, method: str, params: Any = None, timeout: float = 10.0) -> Message:
        return self.response(self.request(method, params), timeout)

    def mark(self) -> int:
        with self.cond:
            return len(self.messages)

    def publishes(self, uri: str | None = None, start: int = 0) -> list[Message]:
        with self.cond:
            msgs = list(self.messages[start:])
        return [m for m in msgs if m.get("method") == "textDocument/publishDiagnostics"
                and (uri is None or m["params"]["uri"] == uri)]

    def wait_publish(self, uri: str, version: int | None = None, timeout: float = 10.0,
                     start: int = 0) -> Message:
        def ok(m):
            if m.get("method") != "textDocument/publishDiagnostics" or m["params"]["uri"] != uri:
                return False
            return version is None or m["params"].get("version") == version
        return self.wait_for(ok, timeout, start)

    # -- LSP helpers ---------------------------------------------------------------------------------
    def initialize(self, root: str | os.PathLike | None = None, options: dict | None = None,
                   encodings: list[str] | None = None, timeout: float = 30.0) -> Message:
        root_uri = Path(root).resolve().as_uri() if root else None
        caps = {
            "textDocument": {
                "synchronization": {"didSave": True, "dynamicRegistration": False},
                "publishDiagnostics": {"versionSupport": True, "relatedInformation": True},
                "hover": {"contentFormat": ["markdown", "plaintext"]},
                "codeAction": {"codeActionLiteralSupport": {"codeActionKind": {"valueSet": [
                    "quickfix", "source", "source.fixAll"]}}},
            },
            "workspace": {"configuration": False, "workspaceFolders": True, "applyEdit": True},
            "window": {"workDoneProgress": True},
            "general": {"positionEncodings": encodings or ["utf-16"]},
        }
        params = {"processId": os.getpid(), "rootUri": root_uri, "capabilities": caps,
                  "initializationOptions": options or {},
                  "workspaceFolders": [{"uri": root_uri, "name": "ws"}] if root_uri else None}
        res = self.call("initialize", params, timeout)
        self.notify("initialized", {})
        return res

    def open(self, uri: str, text: str, version: int = 1, language: str = "python") -> float:
        return self.notify("textDocument/didOpen", {"textDocument": {
            "uri": uri, "languageId": language, "version": version, "text": text}})

    def change(self, uri: str, version: int, changes: list[dict]) -> float:
        return self.notify("textDocument/didChange", {
            "textDocument": {"uri": uri, "version": version}, "contentChanges": changes})

    def close_doc(self, uri: str) -> float:
        return self.notify("textDocument/didClose", {"textDocument": {"uri": uri}})

    def hover(self, uri: str, line: int, character: int) -> int:
        return self.request("textDocument/hover", {"textDocument": {"uri": uri},
                                                   "position": {"line": line, "character": character}})

    def code_action(self, uri: str, rng: dict, diagnostics: list | None = None) -> int:
        return self.request("textDocument/codeAction", {
            "textDocument": {"uri": uri}, "range": rng,
            "context": {"diagnostics": diagnostics or [], "triggerKind": 1}})

    def shutdown(self, timeout: float = 10.0) -> None:
        try:
            if self.proc.poll() is None:
                try:
                    self.call("shutdown", None, timeout)
                except (TimeoutError, ServerExited):
                    pass
                try:
                    self.notify("exit")
                except OSError:
                    pass
                try:
                    self.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    pass
        except OSError:
            pass
        finally:
            self.kill()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except OSError:
                pass
        if hasattr(self._stderr, "close"):
            self._stderr.close()

    # -- process memory ------------------------------------------------------------------------------
    def rss_kb(self) -> int:
        return rss_kb(self.proc.pid)

    def children_rss_kb(self) -> dict[int, tuple[str, int]]:
        """pid -> (command line, RSS kB) of every descendant of the server."""
        return {pid: (cmdline(pid), rss_kb(pid)) for pid in descendants(self.proc.pid)}


def rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace").strip()
    except OSError:
        return "?"


def descendants(pid: int) -> list[int]:
    kids: dict[int, list[int]] = {}
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            stat = (p / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        kids.setdefault(ppid, []).append(int(p.name))
    out, todo = [], [pid]
    while todo:
        for c in kids.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def full_range_change(text: str) -> dict:
    return {"text": text}


def lsp_pos_of(text: str, offset: int) -> dict:
    """LSP position (UTF-16 columns) of a character offset into `text` (\\n, \\r\\n or \\r lines)."""
    import re
    line = 0
    line_start = 0
    for m in re.finditer(r"\r\n|\r|\n", text):
        if m.start() >= offset:
            break
        line += 1
        line_start = m.end()
    col = len(text[line_start:offset].encode("utf-16-le")) // 2
    return {"line": line, "character": col}
