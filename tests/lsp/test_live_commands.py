"""gradpath.confirm through the server: refused when untrusted; with a trusted workspace, a real
live CPU step whose verdict lands in the diagnostics, the hover and the command's answer."""
from __future__ import annotations

import asyncio

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcException

from lsp_helpers import SEEDS, Recorder, client, open_doc, untrusted, uri_of  # noqa: F401

SEED_EMPTY = SEEDS / "seed1_ex2_empty_list.py"


async def _open(c, path=SEED_EMPTY):
    rec = Recorder(c)
    uri = uri_of(path)
    open_doc(c, uri, path.read_text())
    p = await rec.wait_for(lambda p: p.uri == uri)
    return uri, list(p.diagnostics), rec


async def test_untrusted_workspace_never_runs_code(untrusted, tmp_path):
    marker = tmp_path / "ran.txt"
    path = tmp_path / "evil.py"
    path.write_text(f"open({str(marker)!r}, 'w').write('ran')\nimport torch.optim as optim\nopt = optim.SGD([], lr=0.1)\n")
    uri, diags, _ = await _open(untrusted, path)
    assert [d.code for d in diags] == ["GP101"]
    with pytest.raises(JsonRpcException) as exc:
        await untrusted.workspace_execute_command_async(types.ExecuteCommandParams(
            command="gradpath.confirm", arguments=[uri]))
    assert "untrusted" in str(exc.value)
    assert not marker.exists()
    # no "run" affordances either: no code lens, no confirm action
    assert await untrusted.text_document_code_lens_async(types.CodeLensParams(
        text_document=types.TextDocumentIdentifier(uri=uri))) is None
    actions = await untrusted.text_document_code_action_async(types.CodeActionParams(
        text_document=types.TextDocumentIdentifier(uri=uri), range=diags[0].range,
        context=types.CodeActionContext(diagnostics=diags)))
    titles = [a.title for a in actions]
    assert titles and not any("live" in t for t in titles)
    # the server is still serving
    h = await untrusted.text_document_hover_async(types.HoverParams(
        text_document=types.TextDocumentIdentifier(uri=uri), position=diags[0].range.start))
    assert h is not None and "GP101" in h.contents.value


async def test_lens_over_optimizer_and_confirm_action_when_trusted(client):
    uri, diags, _ = await _open(client)
    lenses = await client.text_document_code_lens_async(types.CodeLensParams(
        text_document=types.TextDocumentIdentifier(uri=uri)))
    assert lenses is not None and len(lenses) == 1
    (lens,) = lenses
    assert lens.range.start.line == 21
    assert lens.command.command == "gradpath.confirm" and list(lens.command.arguments) == [uri]
    actions = await client.text_document_code_action_async(types.CodeActionParams(
        text_document=types.TextDocumentIdentifier(uri=uri), range=diags[0].range,
        context=types.CodeActionContext(diagnostics=diags)))
    # (lsprotocol's client-side converter reads a CodeAction carrying a command as a Command)
    confirm = [a for a in actions if "Confirm GP101 with a live CPU step" in a.title]
    assert len(confirm) == 1


async def test_confirm_unknown_document_is_an_error_not_a_crash(client):
    with pytest.raises(JsonRpcException):
        await client.workspace_execute_command_async(types.ExecuteCommandParams(
            command="gradpath.confirm", arguments=[uri_of(SEEDS / "nope.py")]))
    uri, diags, _ = await _open(client)
    assert [d.code for d in diags] == ["GP101"]


@pytest.mark.live
async def test_confirm_runs_a_live_step_and_republishes(client):
    uri, diags, rec = await _open(client)
    n = len(rec.items)
    res = await client.workspace_execute_command_async(types.ExecuteCommandParams(
        command="gradpath.confirm", arguments=[uri, diags[0].data["id"]]))
    v = res["verdicts"]["GP101:22:23"]
    assert v["verdict"] == "confirmed", v
    assert "optimizer got an empty parameter list" in str(v["evidence"])
    assert res["focus"]["verdict"] == "confirmed"
    p = await rec.wait_for(lambda p: p.uri == uri and rec.items.index(p) >= n)
    (d,) = p.diagnostics
    assert "live step: confirmed" in d.message
    assert any("optimizer got an empty parameter list" in r.message for r in d.related_information)
    h = await client.text_document_hover_async(types.HoverParams(
        text_document=types.TextDocumentIdentifier(uri=uri), position=d.range.start))
    assert "Live CPU step:** confirmed (script) — _the live step showed the bug: PyTorch raised" in h.contents.value
    assert d.message not in h.contents.value
    # work-done progress was reported
    assert any(client.progress_reports.values())


@pytest.mark.live
async def test_the_live_status_resets_when_the_confirmed_finding_goes_away(client):
    """After a confirm, the client's status bar says "live: 1 confirmed". The quick fix's edit
    removes the finding: the server tells the client that no verdict applies to that document."""
    from lsp_helpers import change_doc
    uri, diags, rec = await _open(client)
    statuses = []
    client.feature("gradpath/status")(lambda ls, params: statuses.append(params))
    await client.workspace_execute_command_async(types.ExecuteCommandParams(
        command="gradpath.confirm", arguments=[uri]))

    def live_of(s):
        live = s.get("live") if isinstance(s, dict) else getattr(s, "live", None)
        if live is None:
            return None
        return dict(live) if isinstance(live, dict) else live._asdict()  # pygls: a namedtuple
    assert any((live_of(s) or {}).get("confirmed") == 1 for s in statuses), statuses
    n = len(statuses)
    fixed = SEED_EMPTY.read_text().replace("optim.Adam([]", "optim.Adam(model.parameters()")
    change_doc(client, uri, fixed, 2)
    await rec.wait_for(lambda p: p.uri == uri and not p.diagnostics, timeout=30)
    for _ in range(50):
        if len(statuses) > n:
            break
        await asyncio.sleep(0.1)
    assert [live_of(s) for s in statuses[n:]] == [{"uri": uri, "cleared": True, "update": True}], statuses[n:]


@pytest.mark.live
async def test_live_on_save(client):
    uri, diags, rec = await _open(client)
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(
        settings={"gradpath": {"live": {"onSave": True}}}))
    client.text_document_did_save(types.DidSaveTextDocumentParams(
        text_document=types.TextDocumentIdentifier(uri=uri)))
    p = await rec.wait_for(lambda p: p.uri == uri and p.diagnostics
                           and "live step: confirmed" in p.diagnostics[0].message, timeout=60)
    assert p.diagnostics[0].code == "GP101"


async def test_confirm_with_a_missing_interpreter_says_so(client, tmp_path):
    uri, diags, rec = await _open(client)
    statuses = []
    client.feature("gradpath/status")(lambda ls, params: statuses.append(params))
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(
        settings={"gradpath": {"live": {"python": str(tmp_path / "no-such-python")}}}))
    with pytest.raises(JsonRpcException) as exc:
        await client.workspace_execute_command_async(types.ExecuteCommandParams(
            command="gradpath.confirm", arguments=[uri]))
    assert "no-such-python" in str(exc.value) and "does not exist" in str(exc.value)
    def get(o, k):
        return o.get(k) if isinstance(o, dict) else getattr(o, k, None)
    assert any(get(get(s, "live") or {}, "error") for s in statuses)
    # the diagnostics are untouched and the server keeps serving
    h = await client.text_document_hover_async(types.HoverParams(
        text_document=types.TextDocumentIdentifier(uri=uri), position=diags[0].range.start))
    assert h is not None and "Live CPU step" not in h.contents.value
