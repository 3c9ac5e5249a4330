"""Notebooks: code cells joined with IPython syntax blanked, findings mapped back to cell and line,
the CLI's text/JSON output for them, and --fix editing the right cell."""
import json
import textwrap

import pytest

from gradpath import cli
from gradpath.analysis import analyze
from gradpath.analysis.findings import Span
from gradpath.notebook import Notebook, cells_to_source, map_span

from test_cli import fake_rules  # noqa: F401  (the stand-in GP990 rule with a safe fix)


def code(src, **extra):
    return {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
            "source": src.splitlines(keepends=True), **extra}


def md(src):
    return {"cell_type": "markdown", "metadata": {}, "source": [src]}


def notebook(tmp_path, cells, name="nb.ipynb"):
    data = {"cells": cells, "metadata": {"kernelspec": {"name": "python3", "language": "python"},
                                         "language_info": {"name": "python"}},
            "nbformat": 4, "nbformat_minor": 5}
    path = tmp_path / name
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def test_cells_to_source_blanks_ipython_syntax():
    cells = [md("# Title"),
             code("%matplotlib inline\nimport torch\n!pip install x\nfiles = !ls\nfor i in range(2):\n    %time f(i)\ntorch?\n"),
             code("%%bash\necho hi\nls -la\n"),
             code("%%time\nx = 1\n"),
             "y = 2"]
    text, mapping = cells_to_source(cells)
    lines = text.split("\n")
    assert lines[:8] == ["pass", "import torch", "pass", "pass", "for i in range(2):", "    pass", "pass", ""]
    assert lines[8:12] == ["pass", "", "", ""]  # ...so its body is blanked whole
    assert lines[12:15] == ["pass", "x = 1", ""]  # %%time keeps its Python body
    assert lines[15:17] == ["y = 2", ""]
    import ast
    ast.parse(text)
    assert [(c.index, c.start_line, c.line_count) for c in mapping.cells] == [(1, 1, 7), (2, 9, 3), (3, 13, 2), (4, 16, 1)]
    assert map_span(mapping, Span(14, 0, 14, 5)) == (3, Span(2, 0, 2, 5))
    assert map_span(mapping, Span(2, 7, 2, 12)) == (1, Span(2, 7, 2, 12))
    assert mapping.to_joined_span(3, Span(2, 0, 2, 5)) == Span(14, 0, 14, 5)


def test_map_span_never_leaves_a_cell():
    text, mapping = cells_to_source(["a = 1\nb = 2\n", "c = 3\n"])
    assert text == "a = 1\nb = 2\n\nc = 3\n\n"
    # a span that would run into the separator is cut at its cell's end
    idx, span = map_span(mapping, Span(2, 0, 3, 0))
    assert idx == 0 and (span.line, span.end_line) == (2, 2)
    # a separator line belongs to the cell before it
    assert map_span(mapping, Span(3, 0, 3, 0))[0] == 0


def test_text_output_names_the_cell(tmp_path, capsys):
    nb = notebook(tmp_path, [md("# Training"), code("import torch\nfrom torch import optim\n"),
                             code("model = torch.nn.Linear(2, 1)\n\nopt = optim.Adam([], lr=0.1)\n")])
    rc = cli.main(["check", str(nb)])
    out = capsys.readouterr().out
    assert rc == 1
    assert out.startswith(f"{nb}:cell 3:3:18: GP101 ")


def test_json_adds_cell_only_for_notebooks(tmp_path, capsys):
    nb = notebook(tmp_path, [code("from torch import optim\n"), code("opt = optim.Adam([], lr=0.1)\n")])
    py = tmp_path / "t.py"
    py.write_text("from torch import optim\nopt = optim.Adam([], lr=0.1)\n")
    cli.main(["check", "--format", "json", str(nb), str(py)])
    a, b = json.loads(capsys.readouterr().out)
    assert a["path"] == str(nb) and a["cell"] == 2 and (a["line"], a["column"]) == (1, 18)
    assert b["path"] == str(py) and "cell" not in b and (b["line"], b["column"]) == (2, 18)
    assert list(a)[:-1] == list(b)


def test_folder_scan_includes_notebooks_but_not_checkpoints(tmp_path, capsys):
    notebook(tmp_path, [code("from torch import optim\nopt = optim.Adam([], lr=0.1)\n")])
    (tmp_path / ".ipynb_checkpoints").mkdir()
    notebook(tmp_path / ".ipynb_checkpoints", [code("from torch import optim\nopt = optim.Adam([], lr=0.1)\n")],
             name="nb-checkpoint.ipynb")
    cli.main(["check", "--format", "json", str(tmp_path)])
    assert [o["path"] for o in json.loads(capsys.readouterr().out)] == [str(tmp_path / "nb.ipynb")]


def test_syntax_error_in_one_cell_keeps_the_others(tmp_path, capsys):
    nb = notebook(tmp_path, [code("from torch import optim\n"), code("def broken(:\n    pass\n"),
                             code("opt = optim.Adam([], lr=0.1)\n")])
    cli.main(["check", "--format", "json", str(nb)])
    got = [(o["cell"], o["line"], o["code"]) for o in json.loads(capsys.readouterr().out)]
    assert (2, 1, "GP000") in got and (3, 1, "GP101") in got


def test_suppression_in_a_cell(tmp_path, capsys):
    nb = notebook(tmp_path, [code("from torch import optim\nopt = optim.Adam([], lr=0.1)  # noqa: GP101\n")])
    assert cli.main(["check", str(nb)]) == 0


def test_fix_edits_the_right_cell(fake_rules, tmp_path, capsys):  # noqa: F811
    cells = [md("Some *notes*: m.forward(x) in markdown stays"),
             code("import torch\nm = torch.nn.Linear(2, 2)\nx = torch.randn(1, 2)\n", execution_count=1),
             code("%time y = m.forward(x)\ny = m.forward(x)\n", outputs=[{"output_type": "stream", "name": "stdout",
                                                                       "text": ["é\n"]}]),
             code("z = m.forward(m.forward(x))\n")]
    nb = notebook(tmp_path, cells)
    rc = cli.main(["check", "--diff", str(nb)])
    out = capsys.readouterr().out
    assert rc == 1
    assert f"--- {nb}:cell 3\n+++ {nb}:cell 3\n" in out and "-y = m.forward(x)\n+y = m(x)\n" in out
    assert "+z = m(m(x))\n" in out
    rc = cli.main(["check", "--fix", str(nb)])
    capsys.readouterr()
    assert rc == 0
    data = json.loads(nb.read_text(encoding="utf-8"))
    assert data["cells"][0] == cells[0]
    assert data["cells"][1] == cells[1]
    assert data["cells"][2]["source"] == ["%time y = m.forward(x)\n", "y = m(x)\n"]  # the magic is left alone
    assert data["cells"][2]["outputs"] == cells[2]["outputs"]
    assert data["cells"][3]["source"] == ["z = m(m(x))\n"]
    assert data["metadata"] == {"kernelspec": {"name": "python3", "language": "python"},
                                "language_info": {"name": "python"}}
    assert nb.read_text(encoding="utf-8").startswith('{\n "cells": [\n  {\n')  # nbformat's indent kept
    assert "é" in nb.read_text(encoding="utf-8")
    # the fixed notebook is clean for the fixed code
    assert cli.main(["check", str(nb)]) == 0


def test_notebook_read_and_write_roundtrip(tmp_path):
    nb_path = notebook(tmp_path, [code("a = 1\n"), md("x")])
    before = nb_path.read_text(encoding="utf-8")
    nb = Notebook.read(nb_path)
    assert nb.is_python() and nb.cell_text(0) == "a = 1\n"
    nb.write()
    assert nb_path.read_text(encoding="utf-8") == before


def test_not_a_notebook(tmp_path, capsys):
    p = tmp_path / "x.ipynb"
    p.write_text('{"nbformat": 4}')
    assert cli.main(["check", str(p)]) == 2
    assert 'not a notebook (no "cells" list)' in capsys.readouterr().err


from hypothesis import given, settings, strategies as st

_line = st.sampled_from(["x = 1", "%time f()", "!ls", "  y = 2", "def f(:", "for i in r:", "    pass",
                         "%%bash", "%%time", "a = !ls", "obj?", "", "'''", "z = (1,"])
_cell = st.lists(_line, max_size=6).map("\n".join)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(_cell, st.builds(md, _cell)), max_size=6))
def test_cells_to_source_mapping_is_consistent(cells):
    import ast
    text, mapping = cells_to_source(cells)
    ast.parse(text)  # broken cells are blanked, IPython syntax is blanked: the join always parses
    lines = text.split("\n")
    for c in mapping.cells:
        src = cells[c.index] if isinstance(cells[c.index], str) else None
        assert src is not None  # markdown cells contribute nothing
        src_lines = src.split("\n")
        if len(src_lines) > 1 and src_lines[-1] == "":
            src_lines.pop()  # a final newline ends the last line
        assert c.line_count == len(src_lines)
        for k in range(1, c.line_count + 1):
            assert map_span(mapping, Span(c.start_line + k - 1, 0, c.start_line + k - 1, 0)) == (c.index, Span(k, 0, k, 0))
            joined = lines[c.start_line + k - 2]
            original = src_lines[k - 1]
            # a line is kept as written unless it was blanked
            assert joined == original or (c.start_line + k - 1) in mapping.blanked or c.index in mapping.syntax_errors
