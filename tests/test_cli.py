"""`gradpath check` end to end: formats, selection, exit codes, --fix/--diff, statistics, unused
suppressions, the progress bar, configuration. The fix machinery is tested with two stand-in rules
registered for the test only (GP990: `m.forward(x)` -> `m(x)`, safe; GP991: `lr=1.0` -> `lr=0.1`,
unsafe), so it does not depend on which real rules carry fixes today; GP101 is the real rule used
for the rest."""
import ast
import json
import os
import pty
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from testpaths import ROOT, server_env
from gradpath import __version__, cli
from gradpath.analysis.findings import Edit, Finding, Fix, Span

EMPTY = "from torch import optim\nopt = optim.Adam([], lr=0.1)\n"


def gp(*args, cwd=None):
    proc = subprocess.run([sys.executable, "-m", "gradpath", *map(str, args)], capture_output=True, text=True,
                          env=server_env(), cwd=cwd or ROOT, timeout=120)
    return proc.returncode, proc.stdout, proc.stderr


def run_main(capsys, *args):
    rc = cli.main([str(a) for a in args])
    out = capsys.readouterr()
    return rc, out.out, out.err


@pytest.fixture
def fake_rules(monkeypatch):
    from gradpath.analysis import rules

    def forward_call(ctx):
        for node in ast.walk(ctx.tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "forward":
                v, fn = ctx.span(node.func.value), ctx.span(node.func)
                edit = Edit(Span(v.end_line, v.end_col, fn.end_line, fn.end_col), "")
                yield Finding("GP990", "direct forward call", ctx.span(node), "info",
                              [Fix("Call the module", True, (edit,), preferred=True)])

    def big_lr(ctx):
        for node in ast.walk(ctx.tree):
            if isinstance(node, ast.keyword) and node.arg == "lr" and isinstance(node.value, ast.Constant) \
                    and node.value.value == 1.0:
                span = ctx.span(node.value)
                yield Finding("GP991", "learning rate 1.0", span, "warning",
                              [Fix("Use 0.1", False, (Edit(span, "0.1"),))])

    rules._load()
    monkeypatch.setattr(rules, "_CHECKERS", rules._CHECKERS + [("fake.forward_call", ("GP990",), forward_call),
                                                               ("fake.big_lr", ("GP991",), big_lr)])


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


# -- formats and exit codes ----------------------------------------------------------------------

def test_text_format_and_exit_code(tmp_path):
    f = write(tmp_path / "t.py", EMPTY)
    rc, out, err = gp("check", f)
    assert rc == 1
    assert out.startswith(f"{f}:2:18: GP101 Adam ")
    assert out.count("\n") == 1
    assert "Found 1 problem in 1 file." in err


def test_clean_file_exits_zero(tmp_path):
    f = write(tmp_path / "t.py", "x = 1\n")
    assert gp("check", f) == (0, "", "No problems found in 1 file.\n")
    g = write(tmp_path / "u.py", "y = 2\n")
    assert gp("check", f, g) == (0, "", "No problems found in 2 files.\n")
    # text format only: JSON and statistics stay machine-readable, stderr quiet
    assert gp("check", "--format", "json", f) == (0, "[]\n", "")
    assert gp("check", "--statistics", f)[2] == ""


def test_a_file_cut_by_the_time_limit_is_an_error_not_a_clean_result(tmp_path):
    """GRADPATH_TIME_LIMIT_S=0: every file runs out of its CPU budget before the first rule; the
    run says so with a GP000 error per file and exits 2 (a CI job must not pass on a partial
    result), also with --exit-zero."""
    f = write(tmp_path / "t.py", EMPTY)
    env = {**server_env(), "GRADPATH_TIME_LIMIT_S": "0"}
    for extra in ((), ("--exit-zero",)):
        proc = subprocess.run([sys.executable, "-m", "gradpath", "check", *extra, str(f)], capture_output=True,
                              text=True, env=env, cwd=ROOT, timeout=120)
        assert proc.returncode == 2, proc.stderr
        assert proc.stdout == (f"{f}:1:1: GP000 analysis stopped after 0 s of CPU time: "
                               "results for this file are incomplete\n")
    proc = subprocess.run([sys.executable, "-m", "gradpath", "check", "--format", "json", str(f)],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert proc.returncode == 2
    assert [(o["code"], o["severity"], o["line"]) for o in json.loads(proc.stdout)] == [("GP000", "error", 1)]
    # the default limit, on the same file: the real finding, exit 1
    assert gp("check", f)[0] == 1


def test_exit_zero(tmp_path):
    f = write(tmp_path / "t.py", EMPTY)
    rc, out, _ = gp("check", "--exit-zero", f)
    assert rc == 0 and "GP101" in out


def test_missing_path_is_a_usage_error(tmp_path):
    rc, out, err = gp("check", tmp_path / "nope.py")
    assert rc == 2 and out == "" and "nope.py: no such file or directory" in err


def test_unreadable_file_is_an_input_error(tmp_path):
    good = write(tmp_path / "a.py", EMPTY)
    broken = write(tmp_path / "b.ipynb", '{"cells": [')  # not JSON: a notebook that cannot be read
    rc, out, err = gp("check", good, broken)
    assert rc == 2
    assert "GP101" in out  # the readable file is still reported
    assert f"gradpath: {broken}: cannot read: not a valid notebook (JSON error at line 1" in err
    locked = write(tmp_path / "c.py", "x = 1\n")
    locked.chmod(0)
    if not os.access(locked, os.R_OK):  # (root reads everything)
        rc, out, err = gp("check", good, locked)
        assert rc == 2 and "GP101" in out and f"{locked}: cannot read: Permission denied" in err


def test_unknown_selector_and_unknown_format(tmp_path):
    f = write(tmp_path / "t.py", EMPTY)
    rc, _, err = gp("check", "--select", "GP9", f)
    assert rc == 2 and "unknown rule selector 'GP9'" in err
    rc, _, err = gp("check", "--format", "xml", f)
    assert rc == 2 and "invalid choice" in err


def test_select_and_ignore(tmp_path, capsys):
    f = write(tmp_path / "t.py", EMPTY)
    assert run_main(capsys, "check", "--select", "GP2", f)[0] == 0
    assert run_main(capsys, "check", "--select", "GP1", "--ignore", "GP101", f)[0] == 0
    assert run_main(capsys, "check", "--ignore", "empty-param-list", f)[0] == 0
    assert run_main(capsys, "check", "--select", "GP2,GP101", f)[0] == 1


def test_json_shape(tmp_path, capsys):
    f = write(tmp_path / "t.py", EMPTY)
    rc, out, _ = run_main(capsys, "check", "--format", "json", f)
    (obj,) = json.loads(out)
    assert list(obj) == ["path", "code", "severity", "message", "line", "column", "end_line", "end_column", "fixes"]
    assert (obj["path"], obj["code"], obj["severity"], obj["line"], obj["column"], obj["end_line"],
            obj["end_column"]) == (str(f), "GP101", "error", 2, 18, 2, 20)


def test_github_format(tmp_path, capsys):
    f = write(tmp_path / "t,1.py", EMPTY)
    rc, out, _ = run_main(capsys, "check", "--format", "github", f)
    assert rc == 1
    path = str(f).replace(",", "%2C").replace(":", "%3A")
    message = json.loads(run_main(capsys, "check", "--format", "json", f)[1])[0]["message"]
    assert "\n" not in message and "%" not in message
    assert out == f"::error file={path},line=2,col=18,endLine=2,endColumn=20,title=GP101::{message}\n"


def test_github_levels_and_escaping(fake_rules, tmp_path, capsys):
    f = write(tmp_path / "t.py", "m.forward(x)\n")
    _, out, _ = run_main(capsys, "check", "--format", "github", f)
    assert out.startswith("::notice file=") and out.endswith(",title=GP990::direct forward call\n")
    from gradpath.output import Item, format_github
    item = Item("a.py", Finding("GP101", "50% of\nit", Span(1, 0, 1, 1), "warning"))
    assert format_github([item]) == "::warning file=a.py,line=1,col=1,endLine=1,endColumn=2,title=GP101::50%25 of%0Ait\n"


def test_statistics(fake_rules, tmp_path, capsys):
    write(tmp_path / "a.py", EMPTY + "m.forward(x)\nm.forward(y)\n")
    write(tmp_path / "b.py", "m.forward(x)\nopt = optim.SGD(p, lr=1.0)\n")
    rc, out, _ = run_main(capsys, "check", "--statistics", tmp_path)
    assert rc == 1
    assert out == "3\tGP990\t[*] GP990\n1\tGP101\t    empty-param-list\n1\tGP991\t    GP991\n"
    rc, out, _ = run_main(capsys, "check", "--statistics", "--format", "json", tmp_path)
    assert json.loads(out)[0] == {"code": "GP990", "name": "GP990", "count": 3, "fixable": True}


def test_folders_recurse_and_skip_hidden_and_venvs(tmp_path, capsys):
    write(tmp_path / "pkg" / "a.py", EMPTY)
    write(tmp_path / ".hidden" / "b.py", EMPTY)
    write(tmp_path / "venv" / "c.py", EMPTY)
    write(tmp_path / "pkg" / "notes.txt", EMPTY)
    rc, out, _ = run_main(capsys, "check", "--format", "json", tmp_path)
    assert [o["path"] for o in json.loads(out)] == [str(tmp_path / "pkg" / "a.py")]


def test_version():
    import importlib.metadata
    rc, out, _ = gp("--version")
    assert rc == 0 and out.strip() == f"gradpath {__version__}"
    # the package metadata takes its version from gradpath.__version__ (pyproject: dynamic)
    assert importlib.metadata.version("gradpath") == __version__


def test_rules_lists_every_code():
    from gradpath.analysis import catalog
    rc, out, _ = gp("rules")
    assert rc == 0
    assert [line.split()[0] for line in out.splitlines()] == [c for c in catalog.RULES if c != "GP000"]


# -- fixes ----------------------------------------------------------------------------------------

FIXABLE = """\
    import torch
    model = torch.nn.Linear(2, 1)
    out = model.forward(torch.randn(3, 2))  # a comment
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    both = model.forward(model.forward(torch.randn(3, 2)).repeat(1, 2)[:, :2])
    """


def test_fix_applies_safe_fixes_in_place(fake_rules, tmp_path, capsys):
    f = write(tmp_path / "t.py", FIXABLE)
    rc, out, err = run_main(capsys, "check", "--fix", f)
    assert f.read_text() == textwrap.dedent("""\
        import torch
        model = torch.nn.Linear(2, 1)
        out = model(torch.randn(3, 2))  # a comment
        opt = torch.optim.SGD(model.parameters(), lr=1.0)
        both = model(model(torch.randn(3, 2)).repeat(1, 2)[:, :2])
        """)
    assert rc == 1  # the unsafe one remains
    assert out == f"{f}:4:46: GP991 learning rate 1.0\n"
    assert "Fixed 3 problems, 1 remaining." in err and "1 more fixable with `--fix --unsafe-fixes`" in err
    compile(f.read_text(), str(f), "exec")


def test_fix_with_unsafe_fixes(fake_rules, tmp_path, capsys):
    f = write(tmp_path / "t.py", FIXABLE)
    rc, out, err = run_main(capsys, "check", "--fix", "--unsafe-fixes", f)
    assert rc == 0 and out == ""
    assert "lr=0.1" in f.read_text() and ".forward(" not in f.read_text()
    assert "Fixed 4 problems." in err


def test_diff_writes_nothing(fake_rules, tmp_path, capsys):
    f = write(tmp_path / "t.py", FIXABLE)
    before = f.read_text()
    rc, out, err = run_main(capsys, "check", "--diff", f)
    assert rc == 1 and f.read_text() == before
    assert out.splitlines()[:2] == [f"{f}", f"{f}"] or out.splitlines()[0] == f"--- {f}"
    assert "-out = model.forward(torch.randn(3, 2))  # a comment\n+out = model(torch.randn(3, 2))  # a comment\n" in out
    assert "lr=0.1" not in out
    assert "Would fix 3 problems." in err
    rc, out, _ = run_main(capsys, "check", "--diff", "--unsafe-fixes", f)
    assert "+opt = torch.optim.SGD(model.parameters(), lr=0.1)" in out
    clean = write(tmp_path / "c.py", "x = 1\n")
    assert run_main(capsys, "check", "--diff", clean)[:2] == (0, "")


def test_diff_relative_paths_use_a_b_prefixes(fake_rules, tmp_path, capsys, monkeypatch):
    write(tmp_path / "t.py", "m.forward(x)\n")
    monkeypatch.chdir(tmp_path)
    _, out, _ = run_main(capsys, "check", "--diff", "t.py")
    assert out == "--- a/t.py\n+++ b/t.py\n@@ -1 +1 @@\n-m.forward(x)\n+m(x)\n"


def test_fix_keeps_crlf_and_encoding(fake_rules, tmp_path, capsys):
    f = tmp_path / "t.py"
    f.write_bytes("# -*- coding: latin-1 -*-\r\ns = 'caf\xe9'\r\nm.forward(x)\r\n".encode("latin-1"))
    run_main(capsys, "check", "--fix", f)
    assert f.read_bytes() == "# -*- coding: latin-1 -*-\r\ns = 'caf\xe9'\r\nm(x)\r\n".encode("latin-1")


def test_fix_that_does_not_cure_is_not_repeated(monkeypatch, tmp_path, capsys):
    from gradpath.analysis import rules

    def stubborn(ctx):  # a buggy fix: inserts a comment, the finding stays
        for node in ast.walk(ctx.tree):
            if isinstance(node, ast.Pass):
                sp = ctx.span(node)
                yield Finding("GP990", "pass", sp, "info",
                              [Fix("comment", True, (Edit(Span(sp.line, sp.col, sp.line, sp.col), "# x\n"),))])

    rules._load()
    monkeypatch.setattr(rules, "_CHECKERS", rules._CHECKERS + [("fake.stubborn", ("GP990",), stubborn)])
    f = write(tmp_path / "t.py", "pass\n")
    rc, out, err = run_main(capsys, "check", "--fix", f)
    assert f.read_text() == "pass\n"
    assert "the fix for GP990 did not remove its finding" in err and rc == 1


def test_apply_fixes_skips_overlaps():
    text = "abcdef\nghij\n"
    f1 = Fix("1", True, (Edit(Span(1, 1, 1, 3), "X"),))
    f2 = Fix("2", True, (Edit(Span(1, 2, 1, 4), "Y"),))  # overlaps f1
    f3 = Fix("3", True, (Edit(Span(1, 5, 2, 1), "Z"),))  # across lines
    new, applied = cli.apply_fixes(text, [f1, f2, f3])
    assert new == "aXdeZhij\n" and applied == [f1, f3]


def test_choose_fix():
    safe = Fix("s", True, (Edit(Span(1, 0, 1, 0), ""),))
    unsafe = Fix("u", False, (Edit(Span(1, 0, 1, 0), ""),))
    unsafe2 = Fix("u2", False, (Edit(Span(1, 0, 1, 0), ""),))
    f = Finding("GP101", "m", Span(1, 0, 1, 1), "error", [unsafe, unsafe2])
    assert cli.choose_fix(f, False) is None
    assert cli.choose_fix(f, True) is None  # two alternatives, none preferred: never guess
    f.fixes = [unsafe, safe]
    assert cli.choose_fix(f, False) is safe and cli.choose_fix(f, True) is safe
    f.fixes = [unsafe]
    assert cli.choose_fix(f, True) is unsafe


# -- unused suppressions ---------------------------------------------------------------------------

def test_show_unused_suppressions(tmp_path, capsys):
    f = write(tmp_path / "t.py", EMPTY.replace("lr=0.1)", "lr=0.1)  # noqa: GP101") + "x = 1  # noqa: GP102\n")
    rc, out, _ = run_main(capsys, "check", f)
    assert rc == 0 and out == ""
    rc, out, _ = run_main(capsys, "check", "--show-unused-suppressions", f)
    assert rc == 1
    assert out == f"{f}:3:8: unused-suppression unused suppression: no GP102 finding on this line\n"
    # with GP102 not selected its suppression is not reported
    assert run_main(capsys, "check", "--show-unused-suppressions", "--ignore", "GP102", f)[:2] == (0, "")
    rc, out, _ = run_main(capsys, "check", "--show-unused-suppressions", "--fix", f)
    assert rc == 0 and f.read_text().endswith("lr=0.1)  # noqa: GP101\nx = 1\n")


# -- configuration from the command line ---------------------------------------------------------

def test_project_config_applies(tmp_path, capsys):
    write(tmp_path / "pyproject.toml", """\
        [tool.gradpath]
        exclude = ["legacy"]
        [tool.gradpath.severity]
        GP101 = "warning"
        [tool.gradpath.per-file-ignores]
        "scripts/*.py" = ["GP101"]
        """)
    write(tmp_path / "train.py", EMPTY)
    write(tmp_path / "legacy" / "old.py", EMPTY)
    write(tmp_path / "scripts" / "s.py", EMPTY)
    rc, out, _ = run_main(capsys, "check", "--format", "json", tmp_path)
    objs = json.loads(out)
    assert [(Path(o["path"]).relative_to(tmp_path).as_posix(), o["severity"]) for o in objs] == [("train.py", "warning")]
    # an excluded file named explicitly is still excluded (pre-commit passes file names)
    assert run_main(capsys, "check", tmp_path / "legacy" / "old.py")[:2] == (0, "")
    # --isolated ignores the configuration
    rc, out, _ = run_main(capsys, "check", "--isolated", "--format", "json", tmp_path)
    assert len(json.loads(out)) == 3


def test_config_option_and_warnings(tmp_path, capsys):
    cfg = write(tmp_path / "conf" / "my.toml", 'ignore = ["GP101"]\nbogus = 1\n')
    f = write(tmp_path / "t.py", EMPTY)
    rc, out, err = run_main(capsys, "check", "--config", cfg, f)
    assert rc == 0 and out == ""
    assert err == (f"gradpath: warning: {cfg}: unknown key 'bogus'; allowed keys: select, ignore, severity, exclude, "
                   "per-file-ignores, live; ignored\nNo problems found in 1 file.\n")
    rc, _, err = run_main(capsys, "check", "--config", tmp_path / "missing.toml", f)
    assert rc == 2 and "missing.toml: no such config file" in err


def test_cli_select_overrides_config_select(tmp_path, capsys):
    write(tmp_path / "gradpath.toml", 'select = ["GP2"]\n')
    f = write(tmp_path / "t.py", EMPTY)
    assert run_main(capsys, "check", f)[0] == 0
    assert run_main(capsys, "check", "--select", "GP1", f)[0] == 1


# -- progress -----------------------------------------------------------------------------------------

def _many(tmp_path, n=25):
    for i in range(n):
        write(tmp_path / f"m{i:02d}.py", "x = 1\n")


def test_progress_bar_on_a_terminal(tmp_path):
    _many(tmp_path)
    master, slave = pty.openpty()
    proc = subprocess.run([sys.executable, "-m", "gradpath", "check", str(tmp_path)], stdout=subprocess.PIPE,
                          stderr=slave, env={**server_env(), "TERM": "xterm"}, timeout=120)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    err = b"".join(chunks).decode()
    assert proc.returncode == 0 and proc.stdout == b""
    assert "gradpath [" in err and "25/25 files" in err
    # the bar is cleared at the end, then the summary line
    assert err.endswith("\r" + " " * 54 + "\rNo problems found in 25 files.\r\n")


def test_no_progress_bar_when_not_a_terminal(tmp_path):
    _many(tmp_path)
    assert gp("check", tmp_path) == (0, "", "No problems found in 25 files.\n")


def test_pre_commit_hook_definition():
    text = (ROOT / ".pre-commit-hooks.yaml").read_text()
    entries = dict(line.strip().lstrip("- ").split(": ", 1) for line in text.splitlines()
                   if line.strip() and not line.lstrip().startswith("#"))
    assert entries["id"] == "gradpath" and entries["entry"] == "gradpath check"
    assert entries["language"] == "python" and entries["types_or"] == "[python, jupyter]"


def test_a_file_named_twice_is_reported_once(tmp_path, capsys):
    f = write(tmp_path / "t.py", EMPTY)
    rc, out, _ = run_main(capsys, "check", "--format", "json", f, tmp_path, f)
    assert len(json.loads(out)) == 1
