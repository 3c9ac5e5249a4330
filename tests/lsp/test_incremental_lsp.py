"""Incremental re-analysis through the real server: typing in one function of a long file publishes
what a whole-file analysis finds, and the server checks itself against one when typing pauses."""
from __future__ import annotations

import asyncio
import sys

import pytest_lsp
from lsprotocol import types
from pytest_lsp import LanguageClient

from gradpath.analysis import analyze
from lsp_helpers import CONFIG, Recorder, _init, open_doc, uri_of
from testpaths import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
from gen_corpus import generate  # noqa: E402


@pytest_lsp.fixture(config=CONFIG)
async def client(lsp_client: LanguageClient):
    await _init(lsp_client, {"debounceMs": 0, "logLevel": "debug"})
    yield
    await lsp_client.shutdown_session()


def _expected(text: str) -> list[tuple]:
    return [(f.code, f.span.line - 1, f.span.col, f.span.end_line - 1, f.span.end_col, f.message)
            for f in analyze(text, "gen.py").findings]


def _got(p: types.PublishDiagnosticsParams) -> list[tuple]:
    return sorted((d.code, d.range.start.line, d.range.start.character, d.range.end.line,
                   d.range.end.character, d.message) for d in p.diagnostics)


def _change(client, uri, version, line, col, end_col, text):
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
        content_changes=[types.TextDocumentContentChangePartial(
            range=types.Range(start=types.Position(line=line, character=col),
                              end=types.Position(line=line, character=end_col)), text=text)]))


async def _wait_log(client, needle: str, timeout: float = 10.0) -> str:
    for _ in range(int(timeout / 0.05)):
        hits = [m.message for m in client.log_messages if needle in m.message]
        if hits:
            return hits[-1]
        await asyncio.sleep(0.05)
    raise AssertionError(f"no log message with {needle!r}: {[m.message for m in client.log_messages][-10:]}")


async def test_typing_in_one_function_publishes_the_whole_file_result(client, tmp_path):
    rec = Recorder(client)
    path = tmp_path / "gen.py"
    text = generate(800, seed=3, idx=800)
    path.write_text(text)
    uri = uri_of(path)
    open_doc(client, uri, text)
    p = await rec.wait_for(lambda p: p.uri == uri and p.version == 1, timeout=30)
    assert _got(p) == sorted(_expected(text))

    lines = text.split("\n")
    # 1: a digit changed inside a function
    i = next(k for k, s in enumerate(lines) if "lr=1e-3" in s)
    c = lines[i].index("lr=1e-3") + 5
    lines[i] = lines[i][:c] + "2" + lines[i][c + 1:]
    _change(client, uri, 2, i, c, c + 1, "2")
    p = await rec.wait_for(lambda p: p.uri == uri and p.version == 2, timeout=30)
    assert _got(p) == sorted(_expected("\n".join(lines)))
    assert "incremental analysis" in await _wait_log(client, "gen.py: incremental analysis")

    # 2: an open bracket typed at the end of a line in another function: one syntax error there,
    # every other finding stays
    j = next(k for k, s in enumerate(lines) if "loss.backward()" in s and k > i + 30)
    end = len(lines[j])
    lines[j] += "("
    _change(client, uri, 3, j, end, end, "(")
    p = await rec.wait_for(lambda p: p.uri == uri and p.version == 3, timeout=30)
    want = sorted(_expected("\n".join(lines)))
    assert _got(p) == want
    assert [d.range.start.line for d in p.diagnostics if d.code == "GP000"] == [j]
    assert len(want) > 1

    # 3: removed again; after the pause the server's whole-file check agrees
    lines[j] = lines[j][:-1]
    _change(client, uri, 4, j, end, end + 1, "")
    p = await rec.wait_for(lambda p: p.uri == uri and p.version == 4, timeout=30)
    assert _got(p) == sorted(_expected("\n".join(lines)))
    await _wait_log(client, "whole-file analysis agrees with the incremental one")


async def _open_generated(client, tmp_path, n: int, seed: int, idx: int):
    """A generated file of `n` lines, open and analysed (version 1): (recorder, uri, its lines)."""
    rec = Recorder(client)
    path = tmp_path / "gen.py"
    text = generate(n, seed=seed, idx=idx)
    path.write_text(text)
    uri = uri_of(path)
    open_doc(client, uri, text)
    await rec.wait_for(lambda p: p.uri == uri and p.version == 1, timeout=60)
    return rec, uri, text.split("\n")


async def _open_long(client, tmp_path, seed: int):
    """A 3,000-line generated file, open and analysed (version 1): (recorder, uri, its lines, the
    line of `import torch`), where a typed edit needs a whole-file analysis."""
    rec, uri, lines = await _open_generated(client, tmp_path, 3000, seed, 3000 + seed)
    return rec, uri, lines, next(k for k, s in enumerate(lines) if s.startswith("import torch"))


async def test_a_burst_of_keystrokes_stops_the_analyses_it_supersedes(client, tmp_path):
    """Keys typed faster than a whole-file analysis runs: each new version stops the analysis of the
    one before part way (it would hold the interpreter lock, and the document's analyzer, against
    the newer one); only the last version is published, with the whole-file result."""
    rec, uri, lines, i = await _open_long(client, tmp_path, seed=11)
    col = len("import torch")  # typed into the imports: every version needs a whole-file analysis
    word = ",os,re,json"
    for n, ch in enumerate(word):
        _change(client, uri, 2 + n, i, col + n, col + n, ch)
        await asyncio.sleep(0.005)
    last = 1 + len(word)
    lines[i] = lines[i][:col] + word + lines[i][col:]
    p = await rec.wait_for(lambda p: p.uri == uri and p.version == last, timeout=60)
    assert _got(p) == sorted(_expected("\n".join(lines)))
    msg = await _wait_log(client, "a newer request arrived")
    assert "gen.py: analysis of version" in msg
    await asyncio.sleep(0.5)
    versions = [q.version for q in rec.items if q.uri == uri]
    assert versions[-1] == last  # nothing older published after the newest


async def test_a_save_does_not_stop_the_analysis_of_the_text_it_saves(client, tmp_path):
    rec, uri, lines, i = await _open_long(client, tmp_path, seed=12)
    _change(client, uri, 2, i, len(lines[i]), len(lines[i]), ", os")  # a whole-file analysis
    lines[i] += ", os"
    await asyncio.sleep(0.02)
    client.text_document_did_save(types.DidSaveTextDocumentParams(
        text_document=types.TextDocumentIdentifier(uri=uri)))
    p = await rec.wait_for(lambda p: p.uri == uri and p.version == 2, timeout=60)
    assert _got(p) == sorted(_expected("\n".join(lines)))
    await _wait_log(client, "gen.py: same analysis")  # the save's request found it done
    assert not [m.message for m in client.log_messages if "analysis of version 2 stopped" in m.message]


async def test_a_line_typed_key_by_key_publishes_the_whole_file_result_at_every_key(client, tmp_path):
    """Enter in a function body, then a statement typed one key at a time: most of those texts do
    not parse (`tmp =`, `torch.clamp(`). Each version's diagnostics are a whole-file analysis of it
    (its syntax error included); those that do not parse take the result from before the line."""
    rec, uri, lines = await _open_generated(client, tmp_path, 800, seed=5, idx=805)
    i = next(k for k, s in enumerate(lines) if "optimizer.step()" in s and k > 100)
    indent = lines[i][:len(lines[i]) - len(lines[i].lstrip())]
    _change(client, uri, 2, i, len(lines[i]), len(lines[i]), "\n" + indent)
    lines.insert(i + 1, indent)
    await rec.wait_for(lambda p: p.uri == uri and p.version == 2, timeout=30)
    typed = "tmp = torch.clamp(loss, min=1e-6)"
    for n, ch in enumerate(typed):
        col = len(indent) + n
        _change(client, uri, 3 + n, i + 1, col, col, ch)
        lines[i + 1] += ch
        p = await rec.wait_for(lambda p, v=3 + n: p.uri == uri and p.version == v, timeout=30)
        assert _got(p) == sorted(_expected("\n".join(lines))), lines[i + 1]
    await _wait_log(client, "recovered, the text of a version analysed a moment ago")
