"""The project model in the editor, over real LSP traffic: the index builds in the background with
work-done progress, the first diagnostics of an opened file do not wait for it, cross-module findings
arrive once it is built (also for files that are not open), edits update summaries and re-check the
files that depend on them, and watched-file events keep the index in step with the disk."""
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
WORK = Path(os.environ.get("GRADPATH_TEST_WORKSPACE", "/tmp")) / f"gradpath-index-{os.getpid()}"


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT / "server") + os.pathsep + env.get("PYTHONPATH", "")
    env["XDG_CACHE_HOME"] = str(WORK.parent / f"gradpath-index-cache-{os.getpid()}")
    return env


CONFIG = ClientServerConfig(server_command=[sys.executable, "-m", "gradpath", "serve"], server_env=_env())


def _fresh_workspace() -> Path:
    if WORK.exists():
        shutil.rmtree(WORK)
    shutil.copytree(PROJECT, WORK)
    return WORK


@pytest_lsp.fixture(config=CONFIG)
async def client(lsp_client: LanguageClient):
    root = _fresh_workspace()
    await lsp_client.initialize_session(types.InitializeParams(
        capabilities=CAPS, root_uri=from_fs_path(str(root)),
        workspace_folders=[types.WorkspaceFolder(uri=from_fs_path(str(root)), name="proj")],
        initialization_options={"debounceMs": 50}))
    yield
    await lsp_client.shutdown_session()


def _codes(p: types.PublishDiagnosticsParams) -> list[tuple[int, str]]:
    return sorted((d.range.start.line + 1, str(d.code)) for d in p.diagnostics)


async def test_index_then_cross_module_findings_for_open_and_closed_files(client):
    rec = Recorder(client)
    sup = WORK / "trainers" / "supervised.py"
    uri = uri_of(sup)
    open_doc(client, uri, sup.read_text())
    # the first publish for the opened file comes whether or not the index is ready
    first = await rec.wait_for(lambda p: p.uri == uri, timeout=20)
    assert all(str(d.code).startswith("GP") for d in first.diagnostics)
    # once indexed: GP407 through the base class's evaluate() in the open file ...
    await rec.wait_for(lambda p: p.uri == uri and (13, "GP407") in _codes(p), timeout=60)
    # ... and GP304 on the softmax in models/classifier.py, which is not open (Problems panel)
    net_uri = uri_of(WORK / "models" / "classifier.py")
    p = await rec.wait_for(lambda p: p.uri == net_uri and (11, "GP304") in _codes(p), timeout=60)
    (d,) = [d for d in p.diagnostics if d.code == "GP304"]
    assert d.related_information and d.related_information[0].location.uri.endswith("supervised.py")
    values = [v for vs in client.progress_reports.values() for v in vs]
    titles = [getattr(v, "title", None) for v in values]
    messages = [getattr(v, "message", None) or "" for v in values]
    assert "Gradpath: indexing" in titles
    assert any(m.startswith("Indexing ") and "modules" in m for m in messages), messages


async def test_an_edit_that_changes_a_summary_rechecks_its_dependents(client):
    rec = Recorder(client)
    net = WORK / "models" / "classifier.py"
    sup = WORK / "trainers" / "supervised.py"
    net_uri, sup_uri = uri_of(net), uri_of(sup)
    open_doc(client, sup_uri, sup.read_text())
    open_doc(client, net_uri, net.read_text())
    await rec.wait_for(lambda p: p.uri == net_uri and (11, "GP304") in _codes(p), timeout=60)
    # return the logits: the summary changes, GP304 goes away in the edited file
    fixed = net.read_text().replace(".softmax(dim=-1)  # expect: GP304", "")
    change_doc(client, net_uri, fixed, 2)
    await rec.wait_for(lambda p: p.uri == net_uri and p.version == 2 and not _codes(p), timeout=30)
    # put the softmax back under a new name elsewhere in the file: found again after the pause
    again = fixed.replace("return self.head(self.body(x))", "return self.head(self.body(x)).softmax(-1)")
    change_doc(client, net_uri, again, 3)
    await rec.wait_for(lambda p: p.uri == net_uri and p.version == 3 and (11, "GP304") in _codes(p), timeout=30)


async def test_a_new_module_on_disk_joins_the_index(client):
    rec = Recorder(client)
    sup_uri = uri_of(WORK / "trainers" / "supervised.py")
    open_doc(client, sup_uri, (WORK / "trainers" / "supervised.py").read_text())
    await rec.wait_for(lambda p: p.uri == sup_uri and (13, "GP407") in _codes(p), timeout=60)
    extra = WORK / "extra_train.py"
    extra.write_text(
        "import torch\nimport torch.nn as nn\nimport torch.nn.functional as F\n\n\n"
        "class Tiny(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
        "        self.fc = nn.Linear(4, 2)\n\n    def forward(self, x):\n        return F.softmax(self.fc(x), 1)\n")
    user = WORK / "use_tiny.py"
    user.write_text(
        "import torch\nimport torch.nn as nn\nfrom extra_train import Tiny\n\nmodel = Tiny()\n"
        "opt = torch.optim.SGD(model.parameters(), lr=0.1)\nfor x, y in [(torch.randn(2, 4), torch.tensor([0, 1]))]:\n"
        "    opt.zero_grad()\n    loss = nn.CrossEntropyLoss()(model(x), y)\n    loss.backward()\n    opt.step()\n")
    client.workspace_did_change_watched_files(types.DidChangeWatchedFilesParams(changes=[
        types.FileEvent(uri=uri_of(extra), type=types.FileChangeType.Created),
        types.FileEvent(uri=uri_of(user), type=types.FileChangeType.Created)]))
    await rec.wait_for(lambda p: p.uri == uri_of(extra) and (12, "GP304") in _codes(p), timeout=30)
    # deleting the user takes the finding away
    user.unlink()
    client.workspace_did_change_watched_files(types.DidChangeWatchedFilesParams(changes=[
        types.FileEvent(uri=uri_of(user), type=types.FileChangeType.Deleted)]))
    await rec.wait_for(lambda p: p.uri == uri_of(extra) and not _codes(p), timeout=30)
