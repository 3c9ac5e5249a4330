"""The editor never publishes a partial analysis as if it were complete: a file whose analysis hits
the CPU time limit (here GRADPATH_TIME_LIMIT_S=0: every analysis stops before its first rule) gets
the GP000 "results for this file are incomplete" error, on open and after each edit."""
from __future__ import annotations

import sys

import pytest_lsp
from pytest_lsp import ClientServerConfig, LanguageClient

from lsp_helpers import SEEDS, Recorder, _env, _init, change_doc, open_doc, uri_of

CONFIG = ClientServerConfig(server_command=[sys.executable, "-m", "gradpath", "serve"],
                            server_env={**_env(), "GRADPATH_TIME_LIMIT_S": "0"})


@pytest_lsp.fixture(config=CONFIG)
async def limited(lsp_client: LanguageClient):
    await _init(lsp_client, {"debounceMs": 0})
    yield
    await lsp_client.shutdown_session()


async def test_an_incomplete_analysis_is_published_as_such(limited):
    rec = Recorder(limited)
    path = SEEDS / "seed1_ex2_empty_list.py"
    uri = uri_of(path)
    text = path.read_text()
    open_doc(limited, uri, text)
    p = await rec.wait_for(lambda p: p.uri == uri, timeout=30)
    assert [(d.code, d.severity, d.range.start.line, d.message) for d in p.diagnostics] == [
        ("GP000", 1, 0, "analysis stopped after 0 s of CPU time: results for this file are incomplete")]
    # an edit (the incremental path) is no different
    n = len(rec.items)
    change_doc(limited, uri, text.replace("lr=0.001", "lr=0.01"), 2)
    p = await rec.wait_for(lambda p: p.uri == uri and rec.items.index(p) >= n, timeout=30)
    assert [d.code for d in p.diagnostics] == ["GP000"]
    assert "results for this file are incomplete" in p.diagnostics[0].message
