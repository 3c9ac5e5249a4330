"""Code actions and hovers from the real server."""
from __future__ import annotations

from lsprotocol import types

from lsp_helpers import (SEEDS, Recorder, apply_edits, change_doc, client, open_doc,  # noqa: F401
                         uri_of)

SEED_EMPTY = SEEDS / "seed1_ex2_empty_list.py"
SEED_PARTIAL = SEEDS / "seed1_ex3_partial.py"


async def _open(client, path, text=None, name=None):
    rec = Recorder(client)
    uri = uri_of(path.with_name(name) if name else path)
    text = text if text is not None else path.read_text()
    open_doc(client, uri, text)
    p = await rec.wait_for(lambda p: p.uri == uri)
    return uri, text, list(p.diagnostics), rec


async def _actions(client, uri, diags, only=None, rng=None):
    rng = rng or diags[0].range
    return await client.text_document_code_action_async(types.CodeActionParams(
        text_document=types.TextDocumentIdentifier(uri=uri), range=rng,
        context=types.CodeActionContext(diagnostics=diags, only=only))) or []


def _code_actions(result):
    return [a for a in result if isinstance(a, types.CodeAction)]


async def test_quick_fix_turns_the_seed_into_the_fixed_program(client):
    uri, text, diags, _ = await _open(client, SEED_EMPTY)
    (d,) = diags
    actions = _code_actions(await _actions(client, uri, [d]))
    fixes = [a for a in actions if a.kind == types.CodeActionKind.QuickFix and a.edit is not None
             and "Disable" not in a.title]
    assert fixes, [a.title for a in actions]
    preferred = [a for a in fixes if a.is_preferred]
    assert len(preferred) == 1
    new = apply_edits(text, preferred[0].edit.changes[uri])
    assert "optimizer = optim.Adam(model.parameters(), lr=0.001)" in new
    assert new == text.replace("optim.Adam([], lr=0.001)", "optim.Adam(model.parameters(), lr=0.001)")
    # the fixed text analyses clean
    rec = Recorder(client)
    change_doc(client, uri, new, 2)
    p = await rec.wait_for(lambda p: p.uri == uri and p.version == 2)
    assert [x.code for x in p.diagnostics] == []


async def test_disable_for_line_appends_and_extends_the_directive(client):
    uri, text, diags, rec = await _open(client, SEED_EMPTY)
    actions = _code_actions(await _actions(client, uri, diags))
    (dis,) = [a for a in actions if a.title == "Disable GP101 for this line"]
    new = apply_edits(text, dis.edit.changes[uri])
    line = new.splitlines()[21]
    assert line.endswith("# expect: GP101  # gradpath: ignore[GP101]")
    change_doc(client, uri, new, 2)
    p = await rec.wait_for(lambda p: p.uri == uri and p.version == 2)
    assert list(p.diagnostics) == []
    # a line that already has a directive for another code gets the code added to it
    text3 = text.replace("optim.Adam([], lr=0.001)  # expect: GP101",
                         "optim.Adam([], lr=0.001)  # gradpath: ignore[GP401]")
    change_doc(client, uri, text3, 3)
    p = await rec.wait_for(lambda p: p.uri == uri and p.version == 3)
    actions = _code_actions(await _actions(client, uri, list(p.diagnostics)))
    (dis,) = [a for a in actions if a.title == "Disable GP101 for this line"]
    new = apply_edits(text3, dis.edit.changes[uri])
    assert new.splitlines()[21].endswith("# gradpath: ignore[GP401, GP101]")


FIX_ALL_SRC = '''import torch
import torch.nn as nn
import torch.optim as optim


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 1)

    def forward(self, x):
        return self.fc(x)


def train_a():
    model = Net()
    opt = optim.SGD([], lr=0.1)
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(2, 4)).sum().backward()
        opt.step()


def train_b():
    model = Net()
    opt = optim.Adam(model.parameters, lr=1e-3)
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(2, 4)).sum().backward()
        opt.step()
'''


async def test_fix_all_applies_every_safe_fix(client):
    uri, text, diags, rec = await _open(client, SEEDS / "x.py", FIX_ALL_SRC, name="fix_all_demo.py")
    assert sorted(d.code for d in diags) == ["GP101", "GP109"]
    result = _code_actions(await _actions(client, uri, [], only=[types.CodeActionKind.SourceFixAll],
                                          rng=types.Range(start=types.Position(line=0, character=0),
                                                          end=types.Position(line=0, character=0))))
    (fix_all,) = result
    assert fix_all.kind == "source.fixAll.gradpath"
    new = apply_edits(text, fix_all.edit.changes[uri])
    assert "opt = optim.SGD(model.parameters(), lr=0.1)" in new
    assert "opt = optim.Adam(model.parameters(), lr=1e-3)" in new
    change_doc(client, uri, new, 2)
    p = await rec.wait_for(lambda p: p.uri == uri and p.version == 2)
    assert list(p.diagnostics) == []
    # nothing left to fix: no fix-all action
    assert _code_actions(await _actions(client, uri, [], only=[types.CodeActionKind.SourceFixAll],
                                        rng=fix_all_range())) == []


def fix_all_range():
    return types.Range(start=types.Position(line=0, character=0), end=types.Position(line=0, character=0))


async def _hover(client, uri, line, character):
    h = await client.text_document_hover_async(types.HoverParams(
        text_document=types.TextDocumentIdentifier(uri=uri), position=types.Position(line=line, character=character)))
    return h.contents.value if h is not None else None


async def test_hover_on_a_diagnostic_explains_the_rule(client):
    uri, text, diags, _ = await _open(client, SEED_EMPTY)
    d = diags[0]
    md = await _hover(client, uri, d.range.start.line, d.range.start.character + 1)
    assert md is not None
    assert "GP101" in md and "empty-param-list" in md
    assert "What PyTorch does" in md and "ValueError: optimizer got an empty parameter list" in md
    assert "**Fix:**" in md
    assert "GP101.md" in md
    # the editor shows the diagnostic's message above the hover: the rule card does not repeat it
    assert d.message not in md and d.message.split(":")[0] not in md


async def test_hover_on_a_model_lists_its_parameters(client):
    uri, text, diags, _ = await _open(client, SEED_EMPTY)
    line = text.splitlines().index("model = SimpleModel()")
    md = await _hover(client, uri, line, 2)
    assert md is not None
    assert "SimpleModel" in md
    assert "linear.weight" in md and "(1, 10)" in md
    assert "linear.bias" in md and "(1,)" in md
    assert "2 parameter tensors" in md and "11 scalars" in md


async def test_hover_on_an_optimizer_shows_its_coverage(client):
    uri, text, diags, _ = await _open(client, SEED_PARTIAL)
    assert [d.code for d in diags] == ["GP102"]
    lines = text.splitlines()
    line = next(i for i, l in enumerate(lines) if l.startswith("optimizer = "))
    md = await _hover(client, uri, line, 3)
    assert md is not None
    assert "Adam" in md
    assert "1 of 2" in md
    assert "linear.bias" in md
    # and where it is used later
    step = next(i for i, l in enumerate(lines) if "optimizer.step()" in l)
    md2 = await _hover(client, uri, step, lines[step].index("optimizer") + 2)
    assert md2 is not None and "linear.bias" in md2


async def test_quick_fix_for_a_client_that_drops_diagnostic_data(client):
    uri, text, diags, _ = await _open(client, SEED_EMPTY)
    d = diags[0]
    bare = types.Diagnostic(range=d.range, message=d.message, code=d.code, source=d.source,
                            severity=d.severity)
    actions = _code_actions(await _actions(client, uri, [bare]))
    preferred = [a for a in actions if a.is_preferred]
    assert len(preferred) == 1
    new = apply_edits(text, preferred[0].edit.changes[uri])
    assert "optim.Adam(model.parameters(), lr=0.001)" in new


async def test_malformed_requests_do_not_take_the_server_down(client):
    uri, text, diags, _ = await _open(client, SEED_EMPTY)
    junk = types.Diagnostic(range=diags[0].range, message="x", code="GP101", source="gradpath",
                            data={"code": "GP101", "fixes": [{"title": "t", "safe": True, "edits": [{"bad": 1}]}]})
    actions = _code_actions(await client.text_document_code_action_async(types.CodeActionParams(
        text_document=types.TextDocumentIdentifier(uri=uri), range=diags[0].range,
        context=types.CodeActionContext(diagnostics=[junk, diags[0]]))))
    # the good diagnostic keeps its actions
    assert len([a for a in actions if a.is_preferred]) == 1
    assert await _hover(client, uri, 9999, 9999) is None
    # still serving, with the right answers
    md = await _hover(client, uri, diags[0].range.start.line, diags[0].range.start.character)
    assert md is not None and "GP101" in md


async def test_related_information_points_at_the_model_and_the_missing_parameter(client):
    uri, text, diags, _ = await _open(client, SEED_PARTIAL)
    (d,) = diags
    lines = text.splitlines()
    assert "linear.bias is never updated" in d.message
    rel = {r.message: r.location for r in d.related_information}
    loc = rel["model (SimpleModel) is created here"]
    assert loc.uri == uri and lines[loc.range.start.line].startswith("model = SimpleModel()")
    loc = rel["linear.bias is created here"]
    assert "nn.Linear(10, 1)" in lines[loc.range.start.line]
    assert d.data["data"]["missing"] == ["linear.bias"]
    assert d.severity == types.DiagnosticSeverity.Warning
    # GP102's fix is unsafe: offered, marked, never in fix-all
    actions = _code_actions(await _actions(client, uri, diags))
    unsafe = [a for a in actions if "unsafe" in a.title]
    assert unsafe and not any(a.is_preferred for a in unsafe)
    assert _code_actions(await _actions(client, uri, [], only=[types.CodeActionKind.SourceFixAll],
                                        rng=fix_all_range())) == []
