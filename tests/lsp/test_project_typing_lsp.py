"""Typing into a project file, over real LSP traffic: the file's cross-module findings (computed
against the project's summaries) stay published on every keystroke, moved with the edit, until the
summaries say otherwise after the pause; an edit that touches a finding's range drops it at once.

Each keystroke is its own didChange (the whole text, the next version), a little slower than the
debounce so that most versions are analysed and published while typing goes on."""
from __future__ import annotations

import asyncio
import os
import shutil
import sys
from pathlib import Path

import pytest_lsp
from lsprotocol import types
from pygls.uris import from_fs_path
from pytest_lsp import ClientServerConfig, LanguageClient

from lsp_helpers import CAPS, Recorder, change_doc, open_doc, uri_of

ROOT = Path(__file__).resolve().parents[2]
PROJECT = ROOT / "fixtures" / "projects" / "trainer_base_class"
WORK = Path(os.environ.get("GRADPATH_TEST_WORKSPACE", "/tmp")) / f"gradpath-typing-{os.getpid()}"
KEY_INTERVAL_S = 0.09  # debounce is 50 ms: nearly every keystroke is analysed and published


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT / "server") + os.pathsep + env.get("PYTHONPATH", "")
    env["XDG_CACHE_HOME"] = str(WORK.parent / f"gradpath-typing-cache-{os.getpid()}")
    return env


CONFIG = ClientServerConfig(server_command=[sys.executable, "-m", "gradpath", "serve"], server_env=_env())


@pytest_lsp.fixture(config=CONFIG)
async def client(lsp_client: LanguageClient):
    if WORK.exists():
        shutil.rmtree(WORK)
    shutil.copytree(PROJECT, WORK)
    await lsp_client.initialize_session(types.InitializeParams(
        capabilities=CAPS, root_uri=from_fs_path(str(WORK)),
        workspace_folders=[types.WorkspaceFolder(uri=from_fs_path(str(WORK)), name="proj")],
        initialization_options={"debounceMs": 50}))
    yield
    await lsp_client.shutdown_session()


def _codes(p: types.PublishDiagnosticsParams) -> list[tuple[int, str]]:
    return sorted((d.range.start.line + 1, str(d.code)) for d in p.diagnostics)


async def _type(client, uri: str, text: str, at: int, typed: str, version: int) -> tuple[str, int]:
    """Insert `typed` at offset `at` one character per didChange; returns (text, last version)."""
    for i, ch in enumerate(typed):
        text = text[:at + i] + ch + text[at + i:]
        version += 1
        change_doc(client, uri, text, version)
        await asyncio.sleep(KEY_INTERVAL_S)
    return text, version


async def test_cross_module_finding_stays_while_typing_and_goes_when_fixed(client):
    rec = Recorder(client)
    sup = WORK / "trainers" / "supervised.py"
    uri = uri_of(sup)
    text = sup.read_text()
    open_doc(client, uri, text)
    # GP407 through the base class's evaluate() (trainers/base.py): a cross-module finding
    await rec.wait_for(lambda p: p.uri == uri and (13, "GP407") in _codes(p), timeout=60)
    start = len(rec.items)
    # a new statement typed inside the inner loop, above the finding (Enter first, as in an
    # editor): the finding moves down a line
    at = text.index("            for x, y in loader:\n") + len("            for x, y in loader:")
    text, version = await _type(client, uri, text, at, "\n                n = len(x)", 1)
    # ... and a comment at the end of the finding's own line (outside its range)
    line13 = text.index("self.evaluate(loader)") + len("self.evaluate(loader)")
    text, version = await _type(client, uri, text, line13, "  # check", version)
    mid = [p for p in rec.items[start:] if p.uri == uri]
    assert len(mid) >= 10, [p.version for p in mid]  # published while typing, not only at the end
    for p in mid:
        codes = _codes(p)
        assert (14, "GP407") in codes, (p.version, codes)
    # after the pause the summaries agree: still there, on its new line
    await rec.wait_for(lambda p: p.uri == uri and p.version == version and (14, "GP407") in _codes(p), timeout=30)
    # the fix: train mode again at the top of the loop. While typing it, the finding may stay (the
    # summaries say so until the pause); once typing stops, it goes
    at = text.index("        for epoch in range(epochs):") + len("        for epoch in range(epochs):")
    start = len(rec.items)
    text, version = await _type(client, uri, text, at, "\n            self.model.train()", version)
    for p in rec.items[start:]:
        if p.uri == uri:
            assert all(c != "GP407" or line in (14, 15) for line, c in _codes(p)), (p.version, _codes(p))
    await rec.wait_for(lambda p: p.uri == uri and p.version == version and "GP407" not in
                       [c for _l, c in _codes(p)], timeout=30)


async def test_an_edit_inside_the_range_drops_it_and_the_pause_brings_the_truth(client):
    rec = Recorder(client)
    net = WORK / "models" / "classifier.py"
    uri = uri_of(net)
    text = net.read_text()
    open_doc(client, uri, text)
    # GP304 on the softmax, whose loss (CrossEntropyLoss) is in trainers/base.py
    await rec.wait_for(lambda p: p.uri == uri and (11, "GP304") in _codes(p), timeout=60)
    start = len(rec.items)
    # a statement typed in __init__, above forward: the finding moves to line 12 and stays throughout
    at = text.index("nn.Linear(64, n_out)") + len("nn.Linear(64, n_out)")
    text, version = await _type(client, uri, text, at, "\n        self.scale = 2.0", 1)
    mid = [p for p in rec.items[start:] if p.uri == uri]
    assert len(mid) >= 8, [p.version for p in mid]
    for p in mid:
        assert (12, "GP304") in _codes(p), (p.version, _codes(p))
    await rec.wait_for(lambda p: p.uri == uri and p.version == version and (12, "GP304") in _codes(p), timeout=30)
    # deleting the softmax call character by character: the edit touches the range, so the carried
    # finding is dropped at once (the file-local analysis cannot see the loss elsewhere)
    cut = ".softmax(dim=-1)"
    at = text.index(cut)
    start, first = len(rec.items), version + 1
    for _ in range(len(cut)):
        text = text[:at + len(cut) - 1 - _] + text[at + len(cut) - _:]
        version += 1
        change_doc(client, uri, text, version)
        await asyncio.sleep(KEY_INTERVAL_S)
    await rec.wait_for(lambda p: p.uri == uri and p.version == version and not _codes(p), timeout=30)
    for p in rec.items[start:]:
        if p.uri == uri and p.version is not None and p.version >= first:
            assert "GP304" not in [c for _l, c in _codes(p)], (p.version, _codes(p))
