"""Error recovery while typing (analysis/source.py): a half-typed block header or a broken line inside
a call written over several lines keeps the rest of the file analysed, in a few parses."""
from __future__ import annotations

import ast

from gradpath.analysis import analyze
from gradpath.analysis.source import SourceFile

HEAD = '''import torch
import torch.nn as nn

model = nn.Linear(4, 2)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
loader = [(torch.randn(8, 4), torch.randint(0, 2, (8,)))]
'''
LOOP_BODY = "".join(f"    v{i} = x * {i}\n" for i in range(40))
TAIL = '''

frozen_opt = torch.optim.SGD([], lr=0.1)
'''


def _count_parses(monkeypatch) -> list:
    calls = []
    real = ast.parse

    def counting(*a, **k):
        calls.append(1)
        return real(*a, **k)
    monkeypatch.setattr(ast, "parse", counting)
    return calls


def test_a_half_typed_loop_header_keeps_its_body_and_the_rest_of_the_file(monkeypatch):
    good = HEAD + "for x, y in loader:\n" + LOOP_BODY + TAIL
    typing = HEAD + "forq x, y in loader:\n" + LOOP_BODY + TAIL
    assert [f.code for f in analyze(good, "t.py").findings] == ["GP101"]
    parses = _count_parses(monkeypatch)
    src = SourceFile.parse(typing)
    assert not src.prefix_only
    assert len(parses) <= 3  # the header becomes `if True:`, not 40 unexpected indents one by one
    header = HEAD.count("\n") + 1
    assert src.blanked_lines == {header}
    assert src.lines[header - 1] == "forq x, y in loader:"  # the text itself is kept
    monkeypatch.undo()
    got = analyze(typing, "t.py")
    assert sorted(f.code for f in got.findings) == ["GP000", "GP101"]  # the syntax error, and the bug below
    gp101 = next(f for f in got.findings if f.code == "GP101")
    assert gp101.span.line == typing.count("\n")


def test_a_broken_argument_line_is_dropped_and_the_call_kept():
    call = ("run = start_run(\n"
            "    project='demo',\n"
            "    resume=args.resume if args.resume elseq None,\n"
            "    name='x',\n"
            ")\n")
    text = HEAD + call + TAIL
    src = SourceFile.parse(text)
    assert not src.prefix_only
    first = HEAD.count("\n") + 1
    assert src.blanked_lines == {first + 2}  # emptied: the call parses without that line
    run = next(s for s in src.tree.body if isinstance(s, ast.Assign) and ast.unparse(s.targets[0]) == "run")
    assert [k.arg for k in run.value.keywords] == ["project", "name"]
    assert [f.code for f in analyze(text, "t.py").findings if f.code != "GP000"] == ["GP101"]


def test_a_broken_line_that_closes_a_call_blanks_the_whole_call():
    call = ("run = start_run(\n"
            "    project='demo',\n"
            "    name='x' q)\n"
            "z = 1\n")
    text = HEAD + call + TAIL
    src = SourceFile.parse(text)
    assert not src.prefix_only
    first = HEAD.count("\n") + 1
    assert src.blanked_lines >= set(range(first, first + 3))
    assert any(isinstance(s, ast.Assign) and ast.unparse(s) == "z = 1" for s in src.tree.body)
    assert [f.code for f in analyze(text, "t.py").findings if f.code != "GP000"] == ["GP101"]


def test_an_emptied_line_that_was_its_blocks_only_statement_becomes_pass():
    text = HEAD + "for x, y in loader:\n    loss = = x\nprint(1)\n" + TAIL
    src = SourceFile.parse(text)
    assert not src.prefix_only
    loop = next(s for s in src.tree.body if isinstance(s, ast.For))
    assert [type(s).__name__ for s in loop.body] == ["Pass"]
    assert src.lines[HEAD.count("\n") + 1] == "    loss = = x"  # the text itself is kept


def test_a_bad_line_among_others_leaves_the_tree_of_the_text_without_it():
    body = "for x, y in loader:\n    a = x * 2\n{}    b = y + 1\n"
    typing = SourceFile.parse(HEAD + body.format("    tmp = torch.clamp(\n") + TAIL)
    blank = SourceFile.parse(HEAD + body.format("    \n") + TAIL)
    assert typing.syntax_error is not None and blank.syntax_error is None
    assert ast.dump(typing.tree, include_attributes=True) == ast.dump(blank.tree, include_attributes=True)


def test_a_one_line_error_blanks_that_line_only():
    text = HEAD + "y = = 1\n" + TAIL
    src = SourceFile.parse(text)
    assert not src.prefix_only and src.blanked_lines == {HEAD.count("\n") + 1}


def test_a_syntax_errors_column_comes_from_the_editors_text_not_the_file_on_disk(tmp_path):
    # with a file name, Python reads the line it reports from the disk and converts the column
    # with it: the file saved a moment ago is not the text being typed
    path = tmp_path / "train.py"
    path.write_text("import torch\n\n\ndef step(model, x):\n    y = model(x)\n    return y\n")
    typing = "import torch\n\n\ndef step(model, x):\n    y = model(x)\n                tmp = é\n    return y\n"
    got = next(f for f in analyze(typing, str(path)).findings if f.code == "GP000")
    assert got.span.line == 6
    assert got.span.col == next(f for f in analyze(typing, None).findings if f.code == "GP000").span.col == 15


def test_a_failure_already_met_starts_the_recovery_with_the_same_result(monkeypatch):
    """The editor parses a text once to find its first error; handed that failure, the recovery
    parses the text once less and gives what a recovery from nothing gives."""
    texts = [HEAD + "forq x, y in loader:\n" + LOOP_BODY + TAIL,
             HEAD + "def f(a, b):\n    return g(a,\n        b c)\n" + TAIL,
             HEAD + "if True:\n    x = (\n" + TAIL]
    for text in texts:
        alone = SourceFile.parse(text)
        try:
            ast.parse(text)
        except SyntaxError as exc:
            failure = exc
        parses = _count_parses(monkeypatch)
        given = SourceFile.parse(text, failure=failure)
        monkeypatch.undo()
        parses_alone = _count_parses(monkeypatch)
        SourceFile.parse(text)
        monkeypatch.undo()
        assert len(parses) == len(parses_alone) - 1
        assert ast.dump(given.tree, include_attributes=True) == ast.dump(alone.tree, include_attributes=True)
        assert (given.syntax_error, given.recovered_lines, given.blanked_lines, given.prefix_only) == \
            (alone.syntax_error, alone.recovered_lines, alone.blanked_lines, alone.prefix_only)
