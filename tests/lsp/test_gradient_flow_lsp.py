"""The gradient-flow picture over LSP: after a real live step (real torch) on a partly optimized model,
gradpath/gradientFlow answers the per-tensor view once; the command result carries only a brief, the
diagnostics never carry the rows; a "Gradient flow" code lens and a hover link open the client's view."""
from __future__ import annotations

import json

import pytest
from lsprotocol import types

from lsp_helpers import FIXTURES, Recorder, client, open_doc, uri_of  # noqa: F401

FLOW_FIXTURE = FIXTURES / "gp1" / "gp102_flow_partly_optimized.py"


def _plain(x):
    """pygls hands a custom request's answer back as nested objects: to dicts and lists."""
    if hasattr(x, "_asdict"):
        return {k: _plain(v) for k, v in x._asdict().items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    return x


async def _flow(c, uri):
    return _plain(await c.protocol.send_request_async("gradpath/gradientFlow", {"uri": uri}))


@pytest.mark.live
async def test_gradient_flow_request_after_a_live_step(client):
    rec = Recorder(client)
    text = FLOW_FIXTURE.read_text()
    uri = uri_of(FLOW_FIXTURE)
    open_doc(client, uri, text)
    p = await rec.wait_for(lambda p: p.uri == uri)
    assert [d.code for d in p.diagnostics] == ["GP102"]

    before = await _flow(client, uri)
    assert before["available"] is False and "no live CPU step" in before["reason"]

    n = len(rec.items)
    res = await client.workspace_execute_command_async(types.ExecuteCommandParams(
        command="gradpath.confirm", arguments=[uri]))
    assert res["gradientFlow"] == {"available": True, "tensors": 13, "updated": 3,
                                   "summary": "3 of 13 tensors updated; 7 never reach Adam: encoder.*, scale; "
                                              "1 frozen, 2 without a gradient"}
    assert "flow" not in res["run"]
    p = await rec.wait_for(lambda p: p.uri == uri and rec.items.index(p) >= n)
    for d in p.diagnostics:  # the rows are not in any diagnostic
        assert '"grad_state"' not in json.dumps(d.data, default=str)

    got = await _flow(client, uri)
    assert got["available"] is True
    view = got["view"]
    rows = {r["qualname"]: r for r in view["rows"]}
    assert len(rows) == 13
    assert view["summary"] == res["gradientFlow"]["summary"]
    assert rows["encoder.embed.weight"]["flags"] == ["no-optimizer", "unchanged"]
    assert rows["decoder.proj.weight"]["flags"] == ["frozen"]
    assert rows["decoder.refine.bias"]["flags"] == ["no-grad", "unchanged"]
    assert rows["scale"]["flags"] == ["no-optimizer", "zero-grad", "unchanged"]
    assert rows["decoder.out.weight"]["flags"] == [] and rows["decoder.out.weight"]["changed"] is True
    lines = text.splitlines()
    loc = rows["encoder.layers.2.weight"]["location"]
    assert loc["uri"] == uri and "nn.Sequential(" in lines[loc["line"]]
    assert "self.embed = nn.Linear" in lines[rows["encoder.embed.bias"]["location"]["line"]]
    (gp102,) = view["findings"]
    assert gp102["code"] == "GP102" and gp102["range"]["start"]["line"] == 44
    subjects = sorted(r["qualname"] for r in view["rows"] if r["findings"])
    assert subjects == sorted(["scale"] + [f"encoder.{m}.{w}" for m in ("embed", "layers.0", "layers.2")
                                           for w in ("weight", "bias")])

    lenses = await client.text_document_code_lens_async(types.CodeLensParams(
        text_document=types.TextDocumentIdentifier(uri=uri)))
    titles = [(lz.command.title, lz.command.command) for lz in lenses]
    assert ("Gradient flow (3 of 13 tensors updated)", "gradpath.showGradientFlow") in titles
    h = await client.text_document_hover_async(types.HoverParams(
        text_document=types.TextDocumentIdentifier(uri=uri), position=p.diagnostics[0].range.start))
    assert "command:gradpath.showGradientFlow?" in h.contents.value

    # an edit makes the step outdated: the picture is gone until the next step
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
        content_changes=[types.TextDocumentContentChangeWholeDocument(text=text + "\n# edited\n")]))
    await rec.wait_for(lambda p: p.uri == uri and p.version == 2)
    after = await _flow(client, uri)
    assert after["available"] is False
