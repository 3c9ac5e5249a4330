"""lsp/carry.py: findings moved from one text onto the next (what the editor keeps publishing for a
file's cross-module findings while the project's summary lags behind the text)."""
from __future__ import annotations

from gradpath.analysis.findings import Edit, Finding, Fix, Related, Span
from gradpath.lsp.carry import Move, common_prefix, common_suffix, move_findings

TEXT = "import x\n\nclass A:\n    def f(self):\n        return self.head(y).softmax(-1)\n"


def _finding(text=TEXT):
    line = 5
    col = text.split("\n")[4].index("self.head")
    end = col + len("self.head(y).softmax(-1)")
    return Finding("GP304", "ends in a softmax", Span(line, col, line, end), "warning",
                   fixes=[Fix("logits", False, (Edit(Span(line, col, line, end), "self.head(y)"),))],
                   related=[Related(Span(10, 4, 10, 9), "loss here", "/p/train.py"),
                            Related(Span(4, 8, 4, 9), "forward here")],
                   data={"cross_module": True})


def test_prefix_and_suffix():
    assert common_prefix("abcdef", "abcxef") == 3
    assert common_suffix("abcdef", "abcxef", 3) == 2
    assert common_prefix("abc", "abc") == 3
    assert common_suffix("aaa", "aaaa", 3) == 3


def test_lines_typed_above_move_the_finding_down():
    new = TEXT.replace("class A:\n", "class A:\n    scale = 2\n")
    (g,) = move_findings([_finding()], TEXT, new)
    assert (g.span.line, g.span.end_line) == (6, 6)
    assert g.span.col == _finding().span.col
    assert g.related[0].span == Span(10, 4, 10, 9)  # another file: unmoved
    assert g.related[1].span == Span(5, 8, 5, 9)
    assert g.fixes[0].edits[0].span == g.span


def test_typing_on_the_same_line_after_the_range_keeps_it():
    new = TEXT.replace("softmax(-1)\n", "softmax(-1)  # probs\n")
    (g,) = move_findings([_finding()], TEXT, new)
    assert g.span == _finding().span


def test_an_edit_inside_or_continuing_the_range_drops_it():
    assert move_findings([_finding()], TEXT, TEXT.replace("softmax(-1)", "softmax(-2)")) == []
    assert move_findings([_finding()], TEXT, TEXT.replace("softmax(-1)", "softmax(-1).t")) == []
    assert move_findings([_finding()], TEXT, TEXT.replace("return self", "return not_self")) == []
    # its related range in this file (the `f` of def f) touched: dropped too
    assert move_findings([_finding()], TEXT, TEXT.replace("def f(", "def g(")) == []


def test_a_deleted_line_above_moves_it_up():
    new = TEXT.replace("import x\n\n", "import x\n")
    (g,) = move_findings([_finding()], TEXT, new)
    assert g.span.line == 4


def test_columns_count_characters_before_the_range_on_its_line():
    new = TEXT.replace("        return self", "        return (\U0001F600, self", 1).replace("(-1)\n", "(-1))\n")
    # the emoji and "(" typed before the range shift it right by 3 characters, and ")" after it
    # does not continue the expression: kept
    mv = Move(TEXT, new)
    assert mv.touches(_finding().span)  # two separate edits read as one middle, which spans it
    one = TEXT.replace("        return self", "        return \U0001F600 or self", 1)
    (g,) = move_findings([_finding()], TEXT, one)
    f = _finding()
    assert (g.span.col, g.span.end_col) == (f.span.col + 5, f.span.end_col + 5)


def test_lone_carriage_returns_move_the_same_way():
    new = TEXT.replace("class A:\n", "class A:\n    scale = 2\n")
    want = move_findings([_finding()], TEXT, new)
    got = move_findings([_finding()], TEXT.replace("\n", "\r"), new.replace("\n", "\r"))
    crlf = move_findings([_finding()], TEXT.replace("\n", "\r\n"), new.replace("\n", "\r\n"))
    assert got == want == crlf and want
