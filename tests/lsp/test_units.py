"""In-process checks of the LSP helpers: settings, column conversions, fix-all overlap, notebooks."""
from __future__ import annotations

from lsprotocol import types

from gradpath.analysis import analyze
from gradpath.analysis.findings import Span
from gradpath.config import options_from_settings
from gradpath.lsp.actions import disable_for_line, fix_all_edits
from gradpath.lsp.convert import diagnostics_by_uri, from_units, to_units
from gradpath.lsp.notebook import Cell, Snapshot, _blank_magics
from gradpath.lsp.settings import EditorSettings


def test_options_from_settings():
    problems: list[str] = []
    o = options_from_settings({"select": "GP1, GP4", "ignore": ["GP108"],
                               "severity": {"gp102": "Error", "GP3": "off", "GP401": "loud"}}, problems=problems)
    assert o.select == ["GP1", "GP4"]
    assert o.ignore == ["GP108", "GP3"]
    assert o.severity == {"GP102": "error"}
    assert len(problems) == 1 and "GP401" in problems[0]
    assert options_from_settings({}).select == ["GP"]
    assert options_from_settings({"select": 3}, problems=problems).select == ["GP"]


def test_editor_settings_shapes_and_merge():
    s = EditorSettings.parse({"gradpath": {"enable": True, "live": {"onSave": True, "timeoutSeconds": 5,
                                                                     "python": "/usr/bin/python3"},
                                           "trusted": False, "debounceMs": 40}})
    assert (s.live_on_save, s.live_timeout_s, s.live_python, s.trusted, s.debounce_ms) == \
        (True, 5.0, "/usr/bin/python3", False, 40)
    assert not s.live_allowed
    # a later change without `trusted` keeps it (the client sends trust at start)
    s2 = EditorSettings.parse({"gradpath": {"live.onSave": False, "severity": {"GP1": "hint"}}}, base=s)
    assert s2.trusted is False and s2.live_on_save is False and s2.options.severity == {"GP1": "hint"}
    assert EditorSettings.parse({"settings": {"debounceMs": "junk"}}).debounce_ms == 0
    assert EditorSettings.parse(None).trusted is True


def test_columns_in_every_encoding():
    line = "x = '🔥é'; y = 1"
    col = line.index("y")
    assert to_units(line, col, "utf-16") == col + 1
    assert to_units(line, col, "utf-8") == len(line[:col].encode())
    assert to_units(line, col, "utf-32") == col
    for enc in ("utf-8", "utf-16", "utf-32"):
        assert from_units(line, to_units(line, col, enc), enc) == col


def test_fix_all_skips_overlapping_fixes():
    def fx(l, c0, c1, text, safe=True, preferred=False):
        return {"title": text, "safe": safe, "preferred": preferred, "edits": [
            {"uri": "u", "range": {"start": {"line": l, "character": c0}, "end": {"line": l, "character": c1}},
             "newText": text}]}
    datas = [{"fixes": [fx(1, 0, 5, "a")]},
             {"fixes": [fx(1, 3, 8, "overlaps a")]},
             {"fixes": [fx(1, 5, 5, "touches a")]},
             {"fixes": [fx(2, 0, 1, "unsafe", safe=False)]},
             {"fixes": [fx(3, 0, 1, "other"), fx(3, 0, 2, "preferred", preferred=True)]}]
    got = [e["newText"] for e in fix_all_edits(datas)]
    assert got == ["a", "touches a", "preferred"]


def test_disable_for_line_noqa_and_strings():
    diag = types.Diagnostic(range=types.Range(start=types.Position(line=0, character=4),
                                              end=types.Position(line=0, character=6)),
                            message="m", code="GP101", source="gradpath", data={"code": "GP101"})
    units = lambda t, c: to_units(t, c)  # noqa: E731
    a = disable_for_line(diag, "u", ["opt(x)  # noqa: E501"], units)
    assert a.edit.changes["u"][0].new_text == ", GP101"
    assert disable_for_line(diag, "u", ["opt(x)  # gradpath: ignore"], units) is None
    assert disable_for_line(diag, "u", ['s = """', 'inside', '"""'], units) is None


def test_notebook_snapshot_mapping():
    c1 = Cell("cell1", 1, ["import torch", "%time x = 1"])
    c2 = Cell("cell2", 3, ["import torch.optim as optim", "opt = optim.SGD([], lr=0.1)"])
    text = "\n".join(_blank_magics(c1.lines) + c2.lines) + "\n"
    snap = Snapshot("nb", 1, text, None, cells=[c1, c2])
    r = analyze(snap.text)
    assert [f.code for f in r.findings] == ["GP101"]
    by = diagnostics_by_uri(r.findings, snap)
    assert by["cell1"] == []
    (d,) = by["cell2"]
    assert d.range.start.line == 1 and d.range.start.character == c2.lines[1].index("[]")
    assert snap.map_span(Span(2, 0, 3, 3)) == ("cell1", Span(2, 0, 2, len(c1.lines[1])))


def test_unknown_selectors_are_reported():
    problems: list[str] = []
    o = options_from_settings({"select": ["GP1", "GP9"], "ignore": ["partial-params", "bogus"]}, problems=problems)
    assert o.select == ["GP1", "GP9"] and o.ignore == ["partial-params", "bogus"]
    assert len(problems) == 2 and "'GP9'" in problems[0] and "'bogus'" in problems[1]


def test_hover_picks_the_binding_of_the_scope_and_skips_comments():
    from gradpath.analysis.engine import Context
    from gradpath.analysis.source import SourceFile
    from gradpath.lsp.hover import _in_comment_or_string, _pick, model_markdown

    text = ("import torch.nn as nn\n"
            "def a():\n    model = nn.Linear(2, 3)\n    return model\n"
            "def b():\n    model = nn.Linear(4, 5, bias=False)\n    return model\n"
            "class T:\n    def __init__(self):\n        self.net = nn.Linear(1, 1)\n"
            "    def step(self):\n        return self.net(1)\n")
    ctx = Context(SourceFile.parse(text), None)
    models = [m for m in ctx.facts.models if m.key == "model"]
    assert "(3, 2)" in model_markdown(ctx, _pick(models, 4)) and "bias" in model_markdown(ctx, _pick(models, 4))
    md = model_markdown(ctx, _pick(models, 7))
    assert "(5, 4)" in md and "bias" not in md and "1 parameter tensor," in md
    assert _pick([m for m in ctx.facts.models if m.key == "self.net"], 12).line == 10
    assert _in_comment_or_string("x = model  # model", 14)
    assert not _in_comment_or_string("x = model  # model", 5)


def test_resolvers_take_the_user_interpreters_sys_path(tmp_path):
    import sys

    from gradpath.lsp.resolvers import ResolverPool, interpreter_sys_path

    paths = interpreter_sys_path(sys.executable)
    assert paths and any(p.endswith("site-packages") for p in paths)
    assert interpreter_sys_path(str(tmp_path / "missing-python")) is None
    pool = ResolverPool()
    pool.set_python(sys.executable)
    r = pool.get(str(tmp_path))
    assert r is not None and r.fast_only
    assert any(p.endswith("site-packages") for p in r.sys_path)
    assert pool.get(str(tmp_path)) is r  # one per root
    pool.set_python(None)
    assert pool.get(str(tmp_path)) is not r
