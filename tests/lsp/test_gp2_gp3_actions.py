"""GP2 and GP3 over real LSP traffic: diagnostics with ranges and related information, and one
quick fix per group applied the way an editor applies it."""
from __future__ import annotations

from lsprotocol import types

from lsp_helpers import FIXTURES, SEEDS, Recorder, apply_edits, change_doc, client, open_doc, uri_of  # noqa: F401

LOG_SOFTMAX = """\
import torch
import torch.nn as nn

net = nn.Linear(100, 10)
opt = torch.optim.SGD(net.parameters(), lr=0.1)
x, y = torch.randn(5, 100), torch.randint(0, 10, (5,))
logp = torch.log(torch.softmax(net(x), dim=1))
loss = -logp[torch.arange(5), y].mean()
opt.zero_grad()
loss.backward()
opt.step()
"""


async def _open(client, uri, text):
    rec = Recorder(client)
    open_doc(client, uri, text)
    p = await rec.wait_for(lambda p: p.uri == uri)
    return list(p.diagnostics), rec


async def _quick_fixes(client, uri, diag):
    res = await client.text_document_code_action_async(types.CodeActionParams(
        text_document=types.TextDocumentIdentifier(uri=uri), range=diag.range,
        context=types.CodeActionContext(diagnostics=[diag]))) or []
    return [a for a in res if isinstance(a, types.CodeAction) and a.kind == types.CodeActionKind.QuickFix
            and a.edit is not None and "Disable" not in a.title]


async def test_gp201_quick_fix_removes_the_detach(client):
    path = SEEDS / "seed2_ex2_detach.py"
    text = path.read_text()
    uri = uri_of(path)
    diags, rec = await _open(client, uri, text)
    (d,) = [x for x in diags if x.code == "GP201"]
    assert d.severity == types.DiagnosticSeverity.Error
    line = text.splitlines()[d.range.start.line]
    assert line[d.range.start.character:d.range.end.character] == "loss_detached.backward()"
    assert d.message.startswith("`loss_detached` is `loss.detach()`: backward() raises RuntimeError")
    related_lines = {r.location.range.start.line for r in d.related_information or []}
    assert text.splitlines().index("loss_detached = loss.detach()") in related_lines
    fixes = await _quick_fixes(client, uri, d)
    (fix,) = [a for a in fixes if a.is_preferred]
    new = apply_edits(text, fix.edit.changes[uri])
    assert new == text.replace("loss_detached = loss.detach()", "loss_detached = loss")
    change_doc(client, uri, new, 2)
    p = await rec.wait_for(lambda p: p.uri == uri and p.version == 2)
    assert [x.code for x in p.diagnostics if str(x.code).startswith("GP2")] == []


async def test_gp303_quick_fix_uses_log_softmax(client):
    uri = uri_of(FIXTURES / "gp3" / "_lsp_log_softmax.py")
    diags, rec = await _open(client, uri, LOG_SOFTMAX)
    (d,) = [x for x in diags if x.code == "GP303"]
    assert d.severity == types.DiagnosticSeverity.Warning
    assert (d.range.start.line, d.range.start.character, d.range.end.character) == (6, 7, 46)
    fixes = await _quick_fixes(client, uri, d)
    (fix,) = [a for a in fixes if a.is_preferred]
    new = apply_edits(LOG_SOFTMAX, fix.edit.changes[uri])
    assert "logp = torch.log_softmax(net(x), dim=1)\n" in new
    change_doc(client, uri, new, 2)
    p = await rec.wait_for(lambda p: p.uri == uri and p.version == 2)
    assert [x.code for x in p.diagnostics if str(x.code).startswith("GP3")] == []
