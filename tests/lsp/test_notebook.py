"""Notebook document sync: the code cells are analysed together; diagnostics and fixes land on
the right cell and line."""
from __future__ import annotations

import pytest
from lsprotocol import types

from lsp_helpers import SEEDS, Recorder, apply_edits, client  # noqa: F401

NB = "file://" + str(SEEDS / "train.ipynb")


def cell(i: int) -> str:
    return f"vscode-notebook-cell:{SEEDS / 'train.ipynb'}#W{i}sZmlsZQ%3D%3D"


CELL_MODEL = """import torch
import torch.nn as nn
import torch.optim as optim


class SimpleModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(10, 1)

    def forward(self, x):
        return self.linear(x)


model = SimpleModel()
criterion = nn.MSELoss()
"""

CELL_TRAIN = """%matplotlib inline
# 🔥 the optimizer
optimizer = optim.Adam([], lr=0.001)
for epoch in range(10):
    loss = criterion(model(torch.randn(32, 10)), torch.randn(32, 1))
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
"""


def _open_notebook(client):
    cells = [types.NotebookCell(kind=types.NotebookCellKind.Markup, document=cell(0)),
             types.NotebookCell(kind=types.NotebookCellKind.Code, document=cell(1)),
             types.NotebookCell(kind=types.NotebookCellKind.Code, document=cell(2))]
    docs = [types.TextDocumentItem(uri=cell(0), language_id="markdown", version=1, text="# Training 🚀\n"),
            types.TextDocumentItem(uri=cell(1), language_id="python", version=1, text=CELL_MODEL),
            types.TextDocumentItem(uri=cell(2), language_id="python", version=1, text=CELL_TRAIN)]
    client.notebook_document_did_open(types.DidOpenNotebookDocumentParams(
        notebook_document=types.NotebookDocument(uri=NB, notebook_type="jupyter-notebook", version=1, cells=cells),
        cell_text_documents=docs))


async def test_notebook_diagnostics_map_to_cells(client):
    rec = Recorder(client)
    _open_notebook(client)
    p = await rec.wait_for(lambda p: p.uri == cell(2))
    (d,) = p.diagnostics
    assert d.code == "GP101"
    line = CELL_TRAIN.splitlines()[2]
    assert d.range.start.line == 2
    assert line[d.range.start.character:d.range.end.character] == "[]"
    p1 = await rec.wait_for(lambda p: p.uri == cell(1))
    assert list(p1.diagnostics) == []
    assert not any(x.uri in (NB, cell(0)) and x.diagnostics for x in rec.items)

    # the quick fix edits the training cell
    actions = await client.text_document_code_action_async(types.CodeActionParams(
        text_document=types.TextDocumentIdentifier(uri=cell(2)), range=d.range,
        context=types.CodeActionContext(diagnostics=[d])))
    fixes = [a for a in actions if isinstance(a, types.CodeAction) and a.is_preferred]
    assert len(fixes) == 1
    assert list(fixes[0].edit.changes) == [cell(2)]
    fixed = apply_edits(CELL_TRAIN, fixes[0].edit.changes[cell(2)])
    assert "optimizer = optim.Adam(model.parameters(), lr=0.001)" in fixed

    # hover on the model name in the first code cell
    h = await client.text_document_hover_async(types.HoverParams(
        text_document=types.TextDocumentIdentifier(uri=cell(1)), position=types.Position(line=14, character=1)))
    assert h is not None and "linear.weight" in h.contents.value

    # editing the cell republishes it clean
    client.notebook_document_did_change(types.DidChangeNotebookDocumentParams(
        notebook_document=types.VersionedNotebookDocumentIdentifier(uri=NB, version=2),
        change=types.NotebookDocumentChangeEvent(cells=types.NotebookDocumentCellChanges(
            text_content=[types.NotebookDocumentCellContentChanges(
                document=types.VersionedTextDocumentIdentifier(uri=cell(2), version=2),
                changes=[types.TextDocumentContentChangeWholeDocument(text=fixed)])]))))
    p = await rec.wait_for(lambda p: p.uri == cell(2) and p.version == 2)
    assert list(p.diagnostics) == []


async def test_notebook_close_clears_cells(client):
    rec = Recorder(client)
    _open_notebook(client)
    await rec.wait_for(lambda p: p.uri == cell(2) and p.diagnostics)
    client.notebook_document_did_close(types.DidCloseNotebookDocumentParams(
        notebook_document=types.NotebookDocumentIdentifier(uri=NB),
        cell_text_documents=[types.TextDocumentIdentifier(uri=cell(i)) for i in range(3)]))
    await rec.wait_for(lambda p: p.uri == cell(2) and not p.diagnostics)


@pytest.mark.live
async def test_notebook_live_step_lands_on_the_cell(client):
    rec = Recorder(client)
    _open_notebook(client)
    await rec.wait_for(lambda p: p.uri == cell(2) and p.diagnostics)
    lenses = await client.text_document_code_lens_async(types.CodeLensParams(
        text_document=types.TextDocumentIdentifier(uri=cell(2))))
    (lens,) = lenses
    assert lens.range.start.line == 2 and list(lens.command.arguments) == [NB]
    n = len(rec.items)
    res = await client.workspace_execute_command_async(types.ExecuteCommandParams(
        command=lens.command.command, arguments=list(lens.command.arguments)))
    assert [v["verdict"] for v in res["verdicts"].values()] == ["confirmed"]
    p = await rec.wait_for(lambda p: p.uri == cell(2) and rec.items.index(p) >= n)
    (d,) = p.diagnostics
    assert "live step: confirmed" in d.message and d.range.start.line == 2
