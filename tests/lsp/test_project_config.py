"""The project's [tool.gradpath] applies in the editor, under the editor's own settings."""
from __future__ import annotations

from lsprotocol import types

from lsp_helpers import SEEDS, Recorder, client, open_doc, uri_of  # noqa: F401

SEED_EMPTY = SEEDS / "seed1_ex2_empty_list.py"


async def test_pyproject_severity_exclude_and_editor_override(client, tmp_path):
    (tmp_path / "pyproject.toml").write_text(
        '[tool.gradpath]\nexclude = ["vendor/**"]\n[tool.gradpath.severity]\nGP101 = "warning"\n'
        '[tool.gradpath.per-file-ignores]\n"legacy_*.py" = ["GP101"]\n')
    (tmp_path / "vendor").mkdir()
    rec = Recorder(client)
    text = SEED_EMPTY.read_text()
    uri = uri_of(tmp_path / "train.py")
    open_doc(client, uri, text)
    p = await rec.wait_for(lambda p: p.uri == uri)
    assert [(d.code, d.severity) for d in p.diagnostics] == [("GP101", types.DiagnosticSeverity.Warning)]
    excluded = uri_of(tmp_path / "vendor" / "lib.py")
    open_doc(client, excluded, text)
    p = await rec.wait_for(lambda p: p.uri == excluded)
    assert list(p.diagnostics) == []
    # the editor's severity for the same code wins
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(
        settings={"gradpath": {"severity": {"GP101": "info"}}}))
    p = await rec.wait_for(lambda p: p.uri == uri and p.diagnostics
                           and p.diagnostics[0].severity == types.DiagnosticSeverity.Information)
    # the editor ignoring another code keeps the project's per-file ignores
    legacy = uri_of(tmp_path / "legacy_train.py")
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(
        settings={"gradpath": {"ignore": ["GP3"]}}))
    open_doc(client, legacy, text)
    p = await rec.wait_for(lambda p: p.uri == legacy)
    assert list(p.diagnostics) == []
    p = await rec.wait_for(lambda p: p.uri == uri and p.diagnostics)
    assert p.diagnostics[0].code == "GP101"
