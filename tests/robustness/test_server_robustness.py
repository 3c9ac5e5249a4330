"""The real server (`python -m gradpath serve`) over stdio under abuse: editing storms, awkward
positions, protocol garbage, disconnects and long open/close sessions. Every test drives its own
server process with the raw client in lspclient.py (pytest-lsp's client cannot send malformed
frames or vanish mid-request).
"""
from __future__ import annotations

import json
import random
import re
import time
from pathlib import Path

import pytest

from lspclient import LspClient, ServerExited, lsp_pos_of, server_env
from gradpath.analysis import analyze

ROOT = Path(__file__).resolve().parents[2]

PARTIAL = '''\
import torch
import torch.nn as nn
import torch.optim as optim


class SimpleModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(10, 1)

    def forward(self, x):
        return self.linear(x)


model = SimpleModel()
criterion = nn.MSELoss()
optimizer = optim.Adam([model.linear.weight], lr=0.001)

for epoch in range(10):
    inputs = torch.randn(32, 10)
    targets = torch.randn(32, 1)
    outputs = model(inputs)
    loss = criterion(outputs, targets)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
'''


# -- helpers ---------------------------------------------------------------------------------------

@pytest.fixture
def workspace(tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    return ws


def start(ws: Path, options: dict | None = None, encodings=None) -> LspClient:
    c = LspClient(cwd=str(ws), env=server_env(), stderr_path=str(ws.parent / f"server-{time.time_ns()}.log"))
    c.initialize(ws, {"debounceMs": 0, **(options or {})}, encodings=encodings, timeout=60)
    return c


@pytest.fixture
def server(workspace):
    c = start(workspace)
    yield c
    c.shutdown()


def utf16_col(line: str, col: int) -> int:
    return len(line[:col].encode("utf-16-le")) // 2


def lines_of(text: str) -> list[str]:
    return re.split(r"\r\n|\r|\n", text)


def expected_diags(text: str, path: str) -> list[tuple]:
    """A fresh in-process analysis of `text`, as (code, start line, start utf16, end line, end utf16)."""
    res = analyze(text, path)
    lines = lines_of(text)
    out = []
    for f in res.findings:
        s = f.span
        out.append((f.code, s.line - 1, utf16_col(lines[s.line - 1], s.col),
                    s.end_line - 1, utf16_col(lines[s.end_line - 1], s.end_col)))
    return sorted(out)


def got_diags(msg) -> list[tuple]:
    out = []
    for d in msg["params"]["diagnostics"]:
        r = d["range"]
        out.append((d.get("code"), r["start"]["line"], r["start"]["character"],
                    r["end"]["line"], r["end"]["character"]))
    return sorted(out)


def range_text(text: str, rng: dict) -> str:
    """The text an LSP range (UTF-16 columns) covers."""
    lines = lines_of(text)

    def off(pos):
        line = lines[pos["line"]]
        units, i = 0, 0
        while i < len(line) and units < pos["character"]:
            units += 2 if ord(line[i]) > 0xFFFF else 1
            i += 1
        return pos["line"], i
    (sl, sc), (el, ec) = off(rng["start"]), off(rng["end"])
    if sl == el:
        return lines[sl][sc:ec]
    return "\n".join([lines[sl][sc:]] + lines[sl + 1:el] + [lines[el][:ec]])


def apply_change(text: str, change: dict) -> str:
    """Apply one incremental LSP change (UTF-16 positions) to `text`, like the spec says."""
    if "range" not in change:
        return change["text"]
    # character offsets of line starts
    starts = [0]
    for m in re.finditer(r"\r\n|\r|\n", text):
        starts.append(m.end())

    def offset(pos):
        ln = pos["line"]
        if ln >= len(starts):
            return len(text)
        base = starts[ln]
        end = starts[ln + 1] if ln + 1 < len(starts) else len(text)
        line = text[base:end].rstrip("\r\n")
        units, i = 0, 0
        while i < len(line) and units < pos["character"]:
            units += 2 if ord(line[i]) > 0xFFFF else 1
            i += 1
        return base + i
    a, b = offset(change["range"]["start"]), offset(change["range"]["end"])
    return text[:a] + change["text"] + text[b:]


def wait_settled(c: LspClient, uri: str, version: int, timeout: float = 60.0, quiet: float = 1.5):
    """Wait for the publish of `version`, then for `quiet` seconds without another publish."""
    m = c.wait_publish(uri, version, timeout=timeout)
    while True:
        mark = c.mark()
        try:
            m2 = c.wait_for(lambda x: x.get("method") == "textDocument/publishDiagnostics"
                            and x["params"]["uri"] == uri, timeout=quiet, start=mark)
            m = m2
        except TimeoutError:
            return m


def server_alive(c: LspClient) -> bool:
    """The server still answers requests."""
    r = c.call("textDocument/hover", {"textDocument": {"uri": "file:///nowhere/never.py"},
                                      "position": {"line": 0, "character": 0}}, timeout=30)
    return "result" in r or "error" in r


# -- editing storm ---------------------------------------------------------------------------------

def _storm_edit(r: random.Random, text: str) -> dict:
    lines = lines_of(text)
    ln = r.randrange(len(lines))
    line = lines[ln]
    units = len(line.encode("utf-16-le")) // 2
    kind = r.random()
    if kind < 0.5 or units == 0:  # insert
        col = r.randint(0, units)
        # never split a surrogate pair
        while col and 0 < col < units and _splits_pair(line, col):
            col -= 1
        new = r.choice(["x", " ", "1", "(", ")", "é", "中", "😀", ".", ":", "\n", "#", "_", "detach()"])
        return {"range": {"start": {"line": ln, "character": col}, "end": {"line": ln, "character": col}},
                "text": new}
    a = r.randint(0, units)
    b = min(units, a + r.randint(1, 3))
    while a and _splits_pair(line, a):
        a -= 1
    while b < units and _splits_pair(line, b):
        b += 1
    if kind < 0.6 and ln + 1 < len(lines):  # join with the next line
        return {"range": {"start": {"line": ln, "character": units}, "end": {"line": ln + 1, "character": 0}},
                "text": ""}
    return {"range": {"start": {"line": ln, "character": a}, "end": {"line": ln, "character": b}}, "text": ""}


def _splits_pair(line: str, col16: int) -> bool:
    units = 0
    for ch in line:
        if units == col16:
            return False
        units += 2 if ord(ch) > 0xFFFF else 1
        if units > col16:
            return True
    return False


def test_editing_storm(server, workspace):
    c = server
    path = workspace / "storm.py"
    text = PARTIAL
    path.write_text(text, encoding="utf-8")
    uri = path.as_uri()
    c.open(uri, text)
    c.wait_publish(uri, 1, timeout=60)
    rss_before = c.rss_kb()
    r = random.Random(1234)
    version = 1
    requests = []
    original = text
    for i in range(1000):
        if i % 150 == 149:
            text = original  # back to a parseable state now and then (as a real user would)
            change = {"text": text}
        else:
            change = _storm_edit(r, text)
            text = apply_change(text, change)
        version += 1
        c.change(uri, version, [change])
        if i % 10 == 5:
            requests.append(c.hover(uri, r.randrange(len(lines_of(text))), r.randint(0, 30)))
        if i % 25 == 7:
            ln = r.randrange(len(lines_of(text)))
            requests.append(c.code_action(uri, {"start": {"line": ln, "character": 0},
                                                "end": {"line": ln, "character": 5}}))
    # then silence
    last = wait_settled(c, uri, version, timeout=120)
    assert last["params"]["version"] == version
    for rid in requests:
        resp = c.response(rid, timeout=60)
        assert "result" in resp or ("error" in resp and isinstance(resp["error"].get("code"), int))
    # the last publish equals a fresh analysis of the final text
    assert got_diags(last) == expected_diags(text, str(path))
    # no publish for this document carries an older version than one sent before it
    versions = [m["params"].get("version") for m in c.publishes(uri)]
    assert all(v is not None for v in versions)
    assert versions == sorted(versions), "a publish went back to an older version"
    assert len(versions) < 1000, "every keystroke published: no debounce or stale-drop at all?"
    # memory did not run away
    rss_after = c.rss_kb()
    assert rss_after - rss_before < 80_000, f"RSS grew {rss_before} -> {rss_after} kB during the storm"
    assert server_alive(c)


def test_storm_with_full_text_changes_and_final_state_after_reopen(server, workspace):
    """Full-document changes in a burst, then close and reopen: the reopened text's diagnostics
    are fresh, nothing from before the close comes after it."""
    c = server
    path = workspace / "full.py"
    uri = path.as_uri()
    c.open(uri, PARTIAL)
    c.wait_publish(uri, 1, timeout=60)
    text = PARTIAL
    for v in range(2, 202):
        text = PARTIAL.replace("lr=0.001", f"lr=0.{v:04d}") if v % 2 else PARTIAL.replace(
            "[model.linear.weight]", "model.parameters()")
        c.change(uri, v, [{"text": text}])
    mark = c.mark()
    c.close_doc(uri)
    clear = c.wait_for(lambda m: m.get("method") == "textDocument/publishDiagnostics"
                       and m["params"]["uri"] == uri and m["params"].get("version") is None, 60, mark)
    clear_at = c.messages.index(clear)
    assert clear["params"]["diagnostics"] == []
    c.open(uri, "x = 1\n", version=1)
    m = wait_settled(c, uri, 1, timeout=60)
    assert got_diags(m) == []
    after = c.publishes(uri, start=clear_at + 1)
    assert all(p["params"]["diagnostics"] == [] for p in after), \
        [(p["params"].get("version"), len(p["params"]["diagnostics"])) for p in after]


# -- positions -------------------------------------------------------------------------------------

WEIRD_PREFIX = 's = "😀👍🏽中文e\u0301"; '


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_utf16_columns_before_and_inside_flagged_code(server, workspace, newline):
    c = server
    text = PARTIAL.replace("model", "模型").replace(
        "optimizer = optim.Adam(", WEIRD_PREFIX + "optimizer = optim.Adam(")
    text = text.replace("\n", newline)
    path = workspace / "pos.py"
    uri = path.as_uri()
    c.open(uri, text)
    m = wait_settled(c, uri, 1, timeout=60)
    diags = m["params"]["diagnostics"]
    gp102 = [d for d in diags if d.get("code") == "GP102"]
    assert gp102, f"no GP102 in {diags}"
    covered = range_text(text, gp102[0]["range"])
    assert "模型.linear.weight" in covered, f"range covers {covered!r}"
    assert got_diags(m) == expected_diags(text, str(path))
    # now type more astral characters before the flagged code on the same line: the range moves
    line = gp102[0]["range"]["start"]["line"]
    c.change(uri, 2, [{"range": {"start": {"line": line, "character": 0},
                                 "end": {"line": line, "character": 0}}, "text": "t = '🎉🎉'; "}])
    text2 = apply_change(text, {"range": {"start": {"line": line, "character": 0},
                                          "end": {"line": line, "character": 0}}, "text": "t = '🎉🎉'; "})
    m2 = wait_settled(c, uri, 2, timeout=60)
    d2 = [d for d in m2["params"]["diagnostics"] if d.get("code") == "GP102"]
    assert d2 and range_text(text2, d2[0]["range"]) == covered
    assert d2[0]["range"]["start"]["character"] == gp102[0]["range"]["start"]["character"] + len("t = '🎉🎉'; ") + 2


def test_utf8_position_encoding_when_client_prefers_it(workspace):
    c = start(workspace, encodings=["utf-8", "utf-16"])
    try:
        text = PARTIAL.replace("optimizer = optim.Adam(", WEIRD_PREFIX + "optimizer = optim.Adam(")
        path = workspace / "pos8.py"
        uri = path.as_uri()
        c.open(uri, text)
        m = wait_settled(c, uri, 1, timeout=60)
        d = [d for d in m["params"]["diagnostics"] if d.get("code") == "GP102"][0]
        line = lines_of(text)[d["range"]["start"]["line"]]
        start_char = len(line.encode("utf-8")[:d["range"]["start"]["character"]].decode("utf-8"))
        assert line[start_char:].startswith("[model.linear.weight]")
    finally:
        c.shutdown()


def test_edit_at_last_line_without_trailing_newline(server, workspace):
    c = server
    text = PARTIAL.rstrip("\n")  # ends with "    optimizer.step()" and no newline
    path = workspace / "last.py"
    uri = path.as_uri()
    c.open(uri, text)
    wait_settled(c, uri, 1, timeout=60)
    n = len(lines_of(text)) - 1
    end = len(lines_of(text)[-1])
    edits = [
        {"range": {"start": {"line": n, "character": end}, "end": {"line": n, "character": end}},
         "text": "  # 😀 done"},
        {"range": {"start": {"line": n, "character": 4}, "end": {"line": n, "character": 4 + len("optimizer.step()")}},
         "text": "pass"},  # removes the step: the loop now never steps
        {"range": {"start": {"line": n, "character": 0}, "end": {"line": n + 5, "character": 0}},
         "text": "    optimizer.step()\n    print('x')"},  # range past the end: clamped per spec
    ]
    v = 1
    for e in edits:
        v += 1
        c.change(uri, v, [e])
        text = apply_change(text, e)
        m = wait_settled(c, uri, v, timeout=60)
        assert got_diags(m) == expected_diags(text, str(path)), f"after edit {e}"


def test_crlf_document_edits(server, workspace):
    c = server
    text = PARTIAL.replace("\n", "\r\n")
    path = workspace / "crlf.py"
    uri = path.as_uri()
    c.open(uri, text)
    m = wait_settled(c, uri, 1, timeout=60)
    assert got_diags(m) == expected_diags(text, str(path))
    # insert a line above the optimizer: its diagnostic moves down by one line
    ln = [i for i, l in enumerate(lines_of(text)) if l.startswith("optimizer")][0]
    e = {"range": {"start": {"line": ln, "character": 0}, "end": {"line": ln, "character": 0}},
         "text": "# 中文 comment\r\n"}
    c.change(uri, 2, [e])
    text = apply_change(text, e)
    m = wait_settled(c, uri, 2, timeout=60)
    assert got_diags(m) == expected_diags(text, str(path))
    assert any(d[1] == ln + 1 for d in got_diags(m))


# -- protocol --------------------------------------------------------------------------------------

def test_malformed_json_server_stays_up(server):
    c = server
    body = b'{"jsonrpc": "2.0", "id": 77, "method": "textDocument/hover", "params": {'
    c.send_raw(b"Content-Length: %d\r\n\r\n" % len(body) + body)
    assert server_alive(c)


def test_malformed_json_gets_parse_error(server):
    c = server
    mark = c.mark()
    body = b'{"jsonrpc": "2.0", "id": 77, "method": "textDocument/hover", "params": {'
    c.send_raw(b"Content-Length: %d\r\n\r\n" % len(body) + body)
    assert server_alive(c)
    errs = [m for m in c.messages[mark:] if "error" in m and m.get("id") in (None, 77)]
    assert errs and errs[0]["error"]["code"] == -32700, f"no parse error response: {c.messages[mark:]}"


@pytest.mark.parametrize("payload,code", [
    ({"jsonrpc": "2.0", "id": 501, "method": "gradpath/noSuchMethod", "params": {}}, -32601),
    pytest.param({"jsonrpc": "2.0", "id": 502, "method": "textDocument/hover", "params": {"bogus": 1}},
                 -32602),
    pytest.param({"jsonrpc": "2.0", "id": 503, "method": "textDocument/hover", "params": "not an object"},
                 -32602),
])
def test_bad_requests_get_errors_per_spec(server, payload, code):
    c = server
    c.send(payload)
    resp = c.response(payload["id"], timeout=10)
    assert "error" in resp, resp
    assert resp["error"]["code"] == code or (code == -32602 and resp["error"]["code"] in (-32602, -32603)), resp
    assert server_alive(c)


def test_invalid_messages_do_not_kill_the_server(server):
    c = server
    for body in [b'[]', b'null', b'{"foo": 1}\n', b'{"jsonrpc":"2.0","id":601}',
                 b'{"jsonrpc":"2.0","id":602,"method":12345}', b'\xff\xfe\x00', b'"just a string"',
                 b'{"jsonrpc":"1.0","id":603,"method":"textDocument/hover"}',
                 b'{"jsonrpc":"2.0","method":"textDocument/didOpen","params":{"textDocument":42}}']:
        c.send_raw(b"Content-Length: %d\r\n\r\n" % len(body) + body)
    c.notify("gradpath/unknownNotification", {"x": 1})
    c.notify("$/unknownDollarNotification", None)
    assert server_alive(c)


def test_requests_for_documents_never_opened(server, workspace):
    c = server
    uri = (workspace / "never.py").as_uri()
    for method, params in [
        ("textDocument/hover", {"textDocument": {"uri": uri}, "position": {"line": 3, "character": 2}}),
        ("textDocument/codeAction", {"textDocument": {"uri": uri}, "range": {
            "start": {"line": 0, "character": 0}, "end": {"line": 0, "character": 1}},
            "context": {"diagnostics": []}}),
        ("textDocument/codeLens", {"textDocument": {"uri": uri}}),
    ]:
        resp = c.call(method, params, timeout=30)
        assert "result" in resp or "error" in resp
        if "result" in resp:
            assert resp["result"] in (None, []), resp
    mark = c.mark()
    c.change(uri, 5, [{"text": "x = 1\n"}])
    c.close_doc(uri)
    c.notify("textDocument/didSave", {"textDocument": {"uri": uri}})
    assert server_alive(c)
    assert all(p["params"]["diagnostics"] == [] for p in c.publishes(uri, start=mark))


def test_cancelled_request_is_answered_and_server_stays_up(server, workspace):
    c = server
    path = workspace / "c.py"
    c.open(path.as_uri(), PARTIAL)
    rid = c.hover(path.as_uri(), 16, 2)
    c.notify("$/cancelRequest", {"id": rid})
    resp = c.response(rid, timeout=30)
    assert "result" in resp or resp["error"]["code"] == -32800
    assert server_alive(c)


def test_request_before_initialize_is_refused(workspace):
    c = LspClient(cwd=str(workspace), env=server_env())
    try:
        resp = c.call("textDocument/hover", {"textDocument": {"uri": "file:///x.py"},
                                             "position": {"line": 0, "character": 0}}, timeout=60)
        assert "error" in resp and resp["error"]["code"] == -32002, resp
        c.initialize(workspace, {"debounceMs": 0})
        assert server_alive(c)
    finally:
        c.shutdown()


def test_client_disconnects_mid_request(workspace):
    c = start(workspace)
    path = workspace / "d.py"
    c.open(path.as_uri(), PARTIAL)
    c.hover(path.as_uri(), 16, 2)
    c.code_action(path.as_uri(), {"start": {"line": 16, "character": 0}, "end": {"line": 16, "character": 3}})
    c.proc.stdin.close()  # the editor vanished
    try:
        rc = c.proc.wait(30)
    except Exception:
        rc = None
    finally:
        c.kill()
    assert rc is not None, "the server did not exit after its client went away"


def test_shutdown_then_exit(workspace):
    c = start(workspace)
    try:
        resp = c.call("shutdown", None, timeout=30)
        assert "result" in resp and resp["result"] is None
        c.notify("exit")
        assert c.proc.wait(30) == 0
    finally:
        c.kill()


def test_exit_without_shutdown(workspace):
    c = start(workspace)
    try:
        c.notify("exit")
        assert c.proc.wait(30) == 1  # exit without shutdown: 1, per the spec
    finally:
        c.kill()


# -- long sessions ---------------------------------------------------------------------------------

def test_500_open_close_cycles_memory_bounded(server, workspace):
    c = server
    texts = [PARTIAL, PARTIAL.replace("[model.linear.weight]", "model.parameters()"),
             PARTIAL.replace("model", "模型") + "\n# 😀\n"]
    uris = []

    def cycle(i):
        uri = (workspace / f"cyc_{i % 60}.py").as_uri()
        c.open(uri, texts[i % 3], version=i + 1)
        if i % 4 == 0:
            c.change(uri, i + 2, [{"text": texts[(i + 1) % 3]}])
        c.close_doc(uri)
        uris.append(uri)
    for i in range(100):
        cycle(i)
    # let the server settle, then measure
    server_alive(c)
    time.sleep(2)
    rss_warm = c.rss_kb()
    for i in range(100, 500):
        cycle(i)
    assert server_alive(c)
    time.sleep(3)
    rss_end = c.rss_kb()
    assert rss_end - rss_warm < 40_000, f"RSS grew {rss_warm} -> {rss_end} kB over 400 open/close cycles"
    # after each document's last close, its last publish is empty: no stale squiggles
    last: dict[str, list] = {}
    for m in c.publishes():
        last[m["params"]["uri"]] = m["params"]["diagnostics"]
    for uri in set(uris):
        assert last.get(uri, []) == [], f"{uri} still has diagnostics after close"
