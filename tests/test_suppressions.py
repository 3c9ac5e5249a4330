"""Suppression comments: which findings they hide, which are reported unused, and the fix that
removes an unused one. Uses GP101 (empty parameter list), the rule that every build has."""
import textwrap

from gradpath.analysis import analyze
from gradpath.analysis.suppressions import UNUSED_CODE, parse, unused_findings
from gradpath.analysis.source import split_lines
from gradpath.cli import apply_fixes

HEAD = "import torch\nfrom torch import optim\nmodel = torch.nn.Linear(2, 1)\n"


def run(line: str):
    return analyze(HEAD + line + "\n", "t.py")


def codes(result):
    return [(f.span.line, f.code) for f in result.findings]


def test_unsuppressed_finding_is_reported():
    assert codes(run("opt = optim.Adam([], lr=0.1)")) == [(4, "GP101")]


def test_each_directive_form_suppresses():
    for comment in ("# gradpath: ignore[GP101]", "# gradpath: ignore", "# noqa: GP101", "# noqa:GP101",
                    "# NOQA: gp101", "# noqa", "# gradpath:ignore[GP1]", "# gradpath: ignore[empty-param-list]",
                    "# noqa: E501, GP101", "# noqa: E501  # gradpath: ignore[GP101]",
                    "# gradpath: ignore[GP401, GP101] (intended: built later)"):
        result = run(f"opt = optim.Adam([], lr=0.1)  {comment}")
        assert codes(result) == [], comment
        assert [(f.code, line) for f, line in [(f, f.span.line) for f, _ in result.suppressed]] == [("GP101", 4)]


def test_directives_that_do_not_suppress():
    for comment in ("# noqa: E501", "# gradpath: ignore[GP102]", "# noqa: GP102", "# gradpath ignore",
                    "# see the noqa docs", "# gradpath: ignore[GP2]"):
        assert codes(run(f"opt = optim.Adam([], lr=0.1)  {comment}")) == [(4, "GP101")], comment


def test_directive_inside_a_string_is_not_a_directive():
    assert codes(run('opt = optim.Adam([], lr=0.1); s = "# noqa: GP101"')) == [(4, "GP101")]


def test_directive_on_another_line_does_not_suppress():
    text = HEAD + "# noqa: GP101\nopt = optim.Adam([], lr=0.1)\n"
    assert codes(analyze(text, "t.py")) == [(5, "GP101")]


def test_multiline_call_is_suppressed_on_the_findings_start_line():
    text = HEAD + "opt = optim.Adam(\n    [],  # noqa: GP101\n    lr=0.1)\n"
    assert codes(analyze(text, "t.py")) == []


def test_unused_suppressions_recorded():
    text = HEAD + textwrap.dedent("""\
        opt = optim.Adam([], lr=0.1)  # noqa: GP101, GP102
        x = 1  # gradpath: ignore[GP401]
        y = 2  # gradpath: ignore
        z = 3  # noqa
        w = 4  # noqa: E501
        v = 5  # noqa: GP999
        """)
    result = analyze(text, "t.py")
    assert result.findings == []
    assert sorted(result.unused_suppressions) == [(4, "GP102"), (5, "GP401"), (6, "*"), (9, "GP999")]
    msgs = {f.span.line: f.message for f in unused_findings(result)}
    assert msgs == {
        4: "unused suppression: no GP102 finding on this line",
        5: "unused suppression: no GP401 finding on this line",
        6: "unused suppression: no Gradpath finding on this line",
        9: "unused suppression: no GP999 finding on this line (GP999: no such Gradpath rule)",
    }
    for f in unused_findings(result):
        assert f.code == UNUSED_CODE and f.severity == "info"


def test_unused_respects_enabled_codes():
    text = HEAD + "x = 1  # noqa: GP401\n"
    result = analyze(text, "t.py")
    assert [f.span.line for f in unused_findings(result)] == [4]
    # GP401 not selected in this run: its suppression is not known to be unused
    assert unused_findings(result, enabled=lambda code: not code.startswith("GP4")) == []


def _fixed(text: str) -> str:
    result = analyze(text, "t.py")
    fixes = [f.fixes[0] for f in unused_findings(result)]
    return apply_fixes(text, fixes)[0]


def test_removing_unused_suppressions():
    text = HEAD + textwrap.dedent("""\
        opt = optim.Adam([], lr=0.1)  # noqa: GP101, GP102
        x = 1  # gradpath: ignore[GP401]
        y = 2  # keep this  # gradpath: ignore
        z = 3  # noqa: E501, GP401
        w = 4  # gradpath: ignore[GP401]  # explained here
        """)
    assert _fixed(text) == HEAD + textwrap.dedent("""\
        opt = optim.Adam([], lr=0.1)  # noqa: GP101
        x = 1
        y = 2  # keep this
        z = 3  # noqa: E501
        w = 4  # explained here
        """)
    # and the result suppresses the same and leaves nothing unused
    again = analyze(_fixed(text), "t.py")
    assert again.findings == [] and again.unused_suppressions == []


def test_parse_positions_are_characters():
    text = 'x = "é🙂"  # noqa: GP101\n'
    (d,) = parse(text)
    assert text.splitlines()[0][d.col:d.end_col] == "# noqa: GP101"


def test_untokenizable_text_still_reads_directives():
    text = HEAD + 'opt = optim.Adam([], lr=0.1)  # noqa: GP101\ns = """never closed\n'
    result = analyze(text, "t.py")
    assert [f.code for f in result.findings if f.code != "GP000"] == []
    assert [f.code for f, _ in result.suppressed] == ["GP101"]


from hypothesis import given, settings, strategies as st

_piece = st.sampled_from(["x = 1", "# noqa", "# noqa: GP101", "#noqa:GP1,E5", "# gradpath: ignore[",
                          "# gradpath: ignore[GP1]", "'", '"', '"""', "\\", "\n", "  ", "é", "🙂", "(", ")",
                          "opt = optim.Adam([], lr=0.1)", "\r\n", "\t", "#"])


@settings(max_examples=200, deadline=None)
@given(st.lists(_piece, max_size=25).map("".join))
def test_any_text_is_safe(text):
    """Never raises; every directive's position points at its own text; fixes apply cleanly."""
    result = analyze(HEAD + text, "t.py")
    lines = result.source.lines
    for d in parse(result.source.text):
        assert lines[d.line - 1][d.col:d.end_col] == d.text
    fixes = [f.fixes[0] for f in unused_findings(result)]
    apply_fixes(result.source.text, fixes)


def test_backslash_crlf_continuation_keeps_line_numbers():
    # a hypothesis find: `\` + CRLF counted as two line breaks put the directive past the last line
    text = HEAD + "x = 1 + \\\r\n2  # noqa: GP101\r\n"
    (d,) = parse(text)
    assert d.line == 5 and split_lines(text)[4][d.col:d.end_col] == "# noqa: GP101"
