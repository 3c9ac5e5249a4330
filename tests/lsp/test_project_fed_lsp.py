"""Issue 15, second round, in the editor over real LSP traffic: with one training script open, the
GP3 findings inside the loss modules it feeds and the GP201 on the cut in a submodule's forward
reach the Problems panel once the index is built (those modules are not open), with related
information in the script."""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest_lsp
from lsprotocol import types
from pygls.uris import from_fs_path
from pytest_lsp import ClientServerConfig, LanguageClient

from lsp_helpers import CAPS, Recorder, open_doc, uri_of

ROOT = Path(__file__).resolve().parents[2]
PROJECTS = ROOT / "fixtures" / "projects"
WORK = Path(os.environ.get("GRADPATH_TEST_WORKSPACE", "/tmp")) / f"gradpath-fed-{os.getpid()}"


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT / "server") + os.pathsep + env.get("PYTHONPATH", "")
    env["XDG_CACHE_HOME"] = str(WORK.parent / f"gradpath-fed-cache-{os.getpid()}")
    return env


CONFIG = ClientServerConfig(server_command=[sys.executable, "-m", "gradpath", "serve"], server_env=_env())


def _workspace() -> Path:
    """Both fixture projects, each a workspace folder of its own."""
    if WORK.exists():
        shutil.rmtree(WORK)
    for name in ("losses_sqrt_division", "detach_in_submodule_forward"):
        shutil.copytree(PROJECTS / name, WORK / name)
    return WORK


@pytest_lsp.fixture(config=CONFIG)
async def client(lsp_client: LanguageClient):
    root = _workspace()
    folders = [types.WorkspaceFolder(uri=from_fs_path(str(root / n)), name=n)
               for n in ("losses_sqrt_division", "detach_in_submodule_forward")]
    await lsp_client.initialize_session(types.InitializeParams(
        capabilities=CAPS, root_uri=folders[0].uri, workspace_folders=folders,
        initialization_options={"debounceMs": 50}))
    yield
    await lsp_client.shutdown_session()


def _codes(p: types.PublishDiagnosticsParams) -> list[tuple[int, str]]:
    return sorted((d.range.start.line + 1, str(d.code)) for d in p.diagnostics)


async def test_fed_loss_and_cut_forward_findings_reach_closed_files(client):
    rec = Recorder(client)
    losses = WORK / "losses_sqrt_division"
    train = losses / "train.py"
    open_doc(client, uri_of(train), train.read_text())
    dist_uri = uri_of(losses / "losses" / "distance.py")
    p = await rec.wait_for(lambda p: p.uri == dist_uri and len(p.diagnostics) == 3, timeout=90)
    assert _codes(p) == [(10, "GP306"), (19, "GP301"), (25, "GP308")]
    (d,) = [d for d in p.diagnostics if d.code == "GP306"]
    assert d.related_information and d.related_information[0].location.uri.endswith("trainer.py")
    fn_uri = uri_of(losses / "losses" / "functional.py")
    p = await rec.wait_for(lambda p: p.uri == fn_uri and p.diagnostics, timeout=60)
    assert _codes(p) == [(2, "GP301")]

    sub = WORK / "detach_in_submodule_forward"
    open_doc(client, uri_of(sub / "train.py"), (sub / "train.py").read_text())
    enc_uri = uri_of(sub / "models" / "encoder.py")
    p = await rec.wait_for(lambda p: p.uri == enc_uri and p.diagnostics, timeout=90)
    assert _codes(p) == [(10, "GP201")]
    (d,) = p.diagnostics
    assert [os.path.basename(r.location.uri) for r in d.related_information] == ["train.py", "train.py", "net.py"]
