"""The editor's live step on a module of the workspace's project (issue 15, item 7): the lens over
`models/mlp.py`'s finding names the script the step runs (train.py), and gradpath.confirm on that
document runs train.py with real torch and puts the verdict on the softmax finding in mlp.py."""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest
import pytest_lsp
from lsprotocol import types
from pygls.uris import from_fs_path
from pytest_lsp import ClientServerConfig, LanguageClient

from lsp_helpers import CAPS, Recorder, open_doc, uri_of

ROOT = Path(__file__).resolve().parents[2]
PROJECT = ROOT / "fixtures" / "projects" / "models_pkg_softmax_ce"
WORK = Path(os.environ.get("GRADPATH_TEST_WORKSPACE", "/tmp")) / f"gradpath-live-project-{os.getpid()}"


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT / "server") + os.pathsep + env.get("PYTHONPATH", "")
    env["XDG_CACHE_HOME"] = str(WORK.parent / f"gradpath-live-project-cache-{os.getpid()}")
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
    shutil.rmtree(WORK, ignore_errors=True)


@pytest.mark.live
async def test_live_step_on_a_module_runs_the_script_that_reaches_it(client):
    rec = Recorder(client)
    mlp = WORK / "models" / "mlp.py"
    uri = uri_of(mlp)
    open_doc(client, uri, mlp.read_text())
    # the cross-module GP304 arrives once the index is built
    p = await rec.wait_for(lambda p: p.uri == uri and any(d.code == "GP304" for d in p.diagnostics), timeout=60)
    (d,) = p.diagnostics
    lenses = await client.text_document_code_lens_async(types.CodeLensParams(
        text_document=types.TextDocumentIdentifier(uri=uri)))
    assert lenses is not None
    (lens,) = lenses
    assert lens.command.title == "Run one CPU step via ../train.py" and lens.range.start.line == 12
    assert lens.command.command == "gradpath.confirm" and list(lens.command.arguments) == [uri]
    n = len(rec.items)
    res = await client.workspace_execute_command_async(types.ExecuteCommandParams(
        command="gradpath.confirm", arguments=[uri, d.data["id"]]))
    v = res["verdicts"]["GP304:13:15"]
    assert v["verdict"] == "confirmed", v
    assert v["evidence"].startswith("ran train.py: the loss input is already a probability distribution"), v
    assert res["run"]["path"] == "train.py" and res["run"]["for"] == ["models/mlp.py"]
    assert res["run"]["scripts"] == ["train.py"]
    p = await rec.wait_for(lambda p: p.uri == uri and rec.items.index(p) >= n)
    (d,) = p.diagnostics
    assert "live step: confirmed" in d.message
