"""Incremental re-analysis (analysis/incremental.py): after each edit its findings must equal a
whole-file `analyze()` of the same text, while re-analysing only what the edit can affect."""
from __future__ import annotations

import ast
import random
import re
import sys

import pytest

from gradpath.analysis import analyze, catalog
from gradpath.analysis.incremental import RECENT_VERSIONS, IncrementalAnalyzer
from gradpath.analysis.regions import cut_regions, names_of
from gradpath.analysis.source import SourceFile
from testpaths import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
from gen_corpus import generate  # noqa: E402

EXAMPLES = sorted((ROOT / "examples").glob("*.py"))


def _dicts(result):
    return [f.to_dict() for f in result.findings]


def _check(ia: IncrementalAnalyzer, text: str, path: str = "t.py"):
    got = ia.analyze(text, path)
    ref = analyze(text, path)
    assert _dicts(got) == _dicts(ref), (ia.stats, [f.id for f in got.findings], [f.id for f in ref.findings])
    assert got.unused_suppressions == ref.unused_suppressions
    return got


def _line_of(lines: list[str], needle: str, start: int = 0) -> int:
    return next(i for i in range(start, len(lines)) if needle in lines[i])


# -- regions and names -----------------------------------------------------------------------------
def test_regions_tile_the_file_one_per_top_level_statement():
    text = ("import torch\n\n# a comment\n@dec\ndef f(x):\n    return helper(x) + g\n\n"
            "class C(Base):\n    def m(self):\n        return self.a\n\nx = 1; y = f(x)\n")
    src = SourceFile.parse(text)
    regs = cut_regions(src.tree.body, 1, len(src.lines), src.lines)
    assert [(r.start, r.end, r.kind) for r in regs] == [
        (1, 3, "import"), (4, 7, "def"), (8, 11, "def"), (12, 13, "script")]
    assert regs[1].defines == {"f"} and {"helper", "g", "dec"} <= regs[1].uses and "x" not in regs[1].uses
    assert regs[2].uses == {"Base"}
    assert regs[3].defines == {"x", "y"} and "f" in regs[3].uses


def test_names_follow_python_scopes():
    import ast
    code = ("def f(model, x=cfg):\n    global counter\n    counter += 1\n    y = [z * w for z in x]\n"
            "    def g():\n        return model + other\n    return g\n")
    kind, defines, uses = names_of(ast.parse(code).body)
    assert kind == "script"  # a `global` statement writes module state
    assert {"f", "counter"} <= defines
    assert {"cfg", "w", "other", "counter"} <= uses
    assert not ({"model", "x", "y", "z", "g"} & uses)


# -- one edit -------------------------------------------------------------------------------------
def test_an_edit_in_a_function_reanalyses_it_and_its_dependents_only():
    text = generate(1000, seed=3, idx=1000)
    ia = IncrementalAnalyzer()
    _check(ia, text)
    assert ia.stats.mode == "full"
    lines = text.split("\n")
    i = _line_of(lines, "lr=1e-3")
    lines[i] = lines[i].replace("lr=1e-3", "lr=2e-3", 1)
    _check(ia, "\n".join(lines))
    st = ia.stats
    assert st.mode == "incremental"
    assert st.analysed_lines < 0.2 * len(lines), st
    assert st.redone < 0.1 * st.regions, st


def test_a_bug_typed_into_one_function_appears_and_goes():
    text = generate(600, seed=2, idx=600)
    ia = IncrementalAnalyzer()
    before = _check(ia, text)
    lines = text.split("\n")
    i = _line_of(lines, "optimizer.zero_grad()")
    lines[i] = lines[i].replace("optimizer.zero_grad()", "pass")
    after = _check(ia, "\n".join(lines))
    assert ia.stats.mode == "incremental"
    new = {f.id for f in after.findings} - {f.id for f in before.findings}
    assert any(x.startswith("GP401:") for x in new), new
    ia._recent.clear()  # not the result remembered for this text: the incremental path
    back = _check(ia, text)
    assert ia.stats.mode == "incremental"
    assert _dicts(back) == _dicts(before)


def test_a_syntax_error_stays_in_its_statement_and_goes_away():
    text = generate(600, seed=1, idx=600)
    ia = IncrementalAnalyzer()
    before = _check(ia, text)
    lines = text.split("\n")
    i = _line_of(lines, "loss.backward()")
    lines[i] += "("  # typing an open bracket
    broken = _check(ia, "\n".join(lines))
    assert ia.stats.mode == "incremental"
    errs = [f for f in broken.findings if f.code == "GP000"]
    assert len(errs) == 1 and errs[0].span.line == i + 1
    # every finding outside the broken function is still there
    fn = ia._prev.regions[[k for k, r in enumerate(ia._prev.regions) if r.start <= i + 1 <= r.end][0]]
    outside = [f.id for f in before.findings if not fn.start <= f.span.line <= fn.end]
    assert outside and set(outside) <= {f.id for f in broken.findings}
    ia._recent.clear()  # not the result remembered for this text: the incremental path
    fixed = _check(ia, text)
    assert ia.stats.mode == "incremental"
    assert _dicts(fixed) == _dicts(before)


def test_inserted_lines_move_every_later_finding():
    text = generate(600, seed=4, idx=600)
    ia = IncrementalAnalyzer()
    before = _check(ia, text)
    lines = text.split("\n")
    first_def = _line_of(lines, "def ")
    lines[first_def:first_def] = ["# a note", "# another", ""]
    after = _check(ia, "\n".join(lines))
    assert ia.stats.mode == "incremental"
    assert [(f.code, f.span.line + (3 if f.span.line > first_def else 0)) for f in before.findings] == \
        [(f.code, f.span.line) for f in after.findings]


@pytest.mark.parametrize("what", ["import", "indent", "decorator", "future", "unchanged"])
def test_edits_that_need_the_whole_file(what):
    text = generate(400, seed=5, idx=400)
    ia = IncrementalAnalyzer()
    _check(ia, text)
    lines = text.split("\n")
    if what == "import":
        lines[_line_of(lines, "import torch.nn as nn")] = "import torch.nn as nnn"
    elif what == "indent":
        i = _line_of(lines, "def ", 20)
        lines[i] = "    " + lines[i]
    elif what == "decorator":
        i = _line_of(lines, "def ", 20)
        lines[i - 1] = "@torch.no_grad()"  # the blank line before a def becomes its decorator
    elif what == "future":
        lines[-1] = "from __future__ import annotations"
    new = "\n".join(lines)
    _check(ia, new)
    if what == "unchanged":
        assert ia.stats.mode == "same"
    else:
        assert ia.stats.mode == "full", ia.stats


def test_a_global_model_couples_the_functions_that_use_it():
    text = '''import torch
import torch.nn as nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Linear(4, 4)
        self.head = nn.Linear(4, 1)

    def forward(self, x):
        return self.head(self.body(x))


model = Net()


def freeze():
    for p in model.body.parameters():
        p.requires_grad = False


def train():
    opt = torch.optim.SGD(model.head.parameters(), lr=0.1)
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(2, 4)).sum().backward()
        opt.step()
'''
    text += generate(400, seed=7, idx=7)  # unrelated code after it: the edit need not reach it
    ia = IncrementalAnalyzer()
    _check(ia, text)
    # un-freezing in one function changes what the optimizer in another one misses
    got = _check(ia, text.replace("p.requires_grad = False", "pass", 1))
    assert ia.stats.mode == "incremental"
    assert any(f.code == "GP102" for f in got.findings)


# -- many edits -----------------------------------------------------------------------------------
def _typing_edits(text: str, n: int, seed: int):
    """Edits like typing: digits changed, names renamed, lines added and removed, calls deleted, an
    open bracket typed and removed again, a helper function pasted."""
    r = random.Random(seed)
    lines = text.split("\n")
    for k in range(n):
        op = r.choice(["digit", "digit", "digit", "paren", "blank", "delete", "dup", "rename", "newfn", "kill"])
        i = r.randrange(len(lines))
        if op == "paren":
            old = list(lines)
            lines[i] += "("
            yield "\n".join(lines)
            lines = old
            yield "\n".join(lines)
            continue
        if op == "digit":
            cand = [j for j, s in enumerate(lines) if re.search(r"\d", s) and not s.lstrip().startswith("#")]
            j = r.choice(cand)
            c = r.choice([m.start() for m in re.finditer(r"\d", lines[j])])
            lines[j] = lines[j][:c] + str((int(lines[j][c]) + 1) % 10) + lines[j][c + 1:]
        elif op == "blank":
            lines.insert(i, r.choice(["", "# note", "    # indented note"]))
        elif op == "delete" and lines[i].strip().startswith(("x =", "y =", "loss", "out", "print", "#")):
            del lines[i]
        elif op == "dup" and lines[i].strip().startswith(("x =", "loss", "print", "#")):
            lines.insert(i, lines[i])
        elif op == "rename":
            words = re.findall(r"\b(model|loss|optimizer|opt|criterion|x|y)\b", lines[i])
            if words:
                w = r.choice(words)
                lines[i] = re.sub(rf"\b{w}\b", w + "2", lines[i], count=1)
        elif op == "newfn":
            j = r.choice([j for j, s in enumerate(lines) if s.startswith(("def ", "class "))] or [len(lines)])
            lines[j:j] = [f"def helper_{k}(t):", "    return t.detach() * 2", "", ""]
        elif op == "kill":
            pats = ["optimizer.zero_grad()", ".detach()", "+ 1e-8", "optimizer.step()", "model.parameters()"]
            r.shuffle(pats)
            for pat in pats:
                js = [j for j, s in enumerate(lines) if pat in s]
                if js:
                    j = r.choice(js)
                    lines[j] = lines[j].replace(pat, "", 1)
                    break
        yield "\n".join(lines)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_incremental_equals_whole_file_over_typing_on_generated_code(seed):
    text = generate(500, seed=seed, idx=seed)
    ia = IncrementalAnalyzer()
    _check(ia, text)
    modes = []
    for new in _typing_edits(text, 60, seed):
        _check(ia, new)
        modes.append(ia.stats.mode)
    # the point of it: most edits that change the text are re-analysed in part (the rest: edits
    # in the imports, a statement indented into the one before, a syntax error its statement
    # cannot contain)
    changed = [m for m in modes if m != "same"]
    assert changed.count("incremental") >= 0.6 * len(changed), modes


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_incremental_equals_whole_file_over_typing_on_the_examples(path):
    text = path.read_text()
    ia = IncrementalAnalyzer()
    _check(ia, text)
    for new in _typing_edits(text, 15, len(text)):
        _check(ia, new)


def test_adopting_a_whole_file_result_replaces_the_base():
    from gradpath.analysis.engine import Options, analyze_raw
    text = generate(400, seed=6, idx=400)
    ia = IncrementalAnalyzer()
    ia.analyze(text, "t.py")
    raw = analyze_raw(text, "t.py", Options())
    ia.adopt(text, "t.py", Options(), None, None, raw)
    assert ia._prev.raw is raw
    ia.adopt(text + "\n# other text\n", "t.py", Options(), None, None, raw)  # stale: ignored
    assert ia._prev.text == ia._prev.raw.src.text


# -- script code: statements with their own def-use (analysis/script_state.py) ---------------------
SCRIPT = '''import argparse
import logging

import torch
import torch.nn as nn

_logger = logging.getLogger("train")
parser = argparse.ArgumentParser(description="train")
group = parser.add_argument_group("optimizer")
group.add_argument("--lr", type=float, default=0.1, help="learning rate {}".format(1))
group.add_argument("--epochs", type=int, default=3)
has_amp = hasattr(torch, "autocast")
EPOCHS = 3


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Linear(4, 4)
        self.head = nn.Linear(4, 1)

    def forward(self, x):
        return self.head(self.body(x))


def train(model, opt):
    for _ in range(EPOCHS):
        opt.zero_grad()
        model(torch.randn(2, 4)).sum().backward()
        opt.step()


def main():
    args = parser.parse_args()
    model = Net()
    opt = torch.optim.SGD(model.head.parameters(), lr=args.lr)
    _logger.info("start")
    train(model, opt)


if __name__ == "__main__":
    main()
'''


def _coupling_of(text):
    from gradpath.analysis.script_state import coupling
    src = SourceFile.parse(text)
    regs = cut_regions(src.tree.body, 1, len(src.lines), src.lines)
    return regs, coupling(regs)


def test_parser_and_logger_statements_share_no_state():
    regs, cp = _coupling_of(SCRIPT)
    assert {n: cp.kinds[n] for n in ("_logger", "parser", "group", "has_amp", "EPOCHS", "Net", "torch")} == {
        "_logger": "inert", "parser": "inert", "group": "inert", "has_amp": "immutable",
        "EPOCHS": "immutable", "Net": "function", "torch": "import"}
    first = {r.start: r for r in regs}
    lines = SCRIPT.split("\n")
    at = {name: next(i + 1 for i, s in enumerate(lines) if s.startswith(name)) for name in (
        "_logger =", "parser =", 'group.add_argument("--lr"', "has_amp", "EPOCHS", 'if __name__', "def train",
        "def main", "class Net")}
    for name in ("_logger =", "parser =", 'group.add_argument("--lr"', "has_amp", "EPOCHS"):
        assert id(first[at[name]]) in cp.independent, name
        assert id(first[at[name]]) not in cp.stateful, name
    # `main()` at module level runs main, and main runs train and builds Net, with the script's values
    for name in ('if __name__', "def main", "def train", "class Net"):
        assert id(first[at[name]]) in cp.stateful, name


def test_an_edit_in_the_argument_parser_is_reanalysed_alone():
    text = SCRIPT + generate(300, seed=4, idx=300)
    ia = IncrementalAnalyzer()
    _check(ia, text)
    _check(ia, text.replace("default=0.1", "default=0.2", 1))
    assert ia.stats.mode == "incremental", ia.stats
    assert ia.stats.redone == 1 and ia.stats.analysed_lines < 40, ia.stats
    # a name typed half-way (unknown to Python) still leaves the rest alone
    _check(ia, text.replace('help="learning rate', 'help=floatq, x="learning rate', 1))
    _check(ia, text)


@pytest.mark.parametrize("stmt, stateful", [
    ("torch.manual_seed(0)", True),  # global state of a library
    ("torch.backends.cudnn.benchmark = True", True),  # a store into a module
    ("cfg = Cfg()", True),  # an object the rules may read
    ("cfg.accum_steps = 4", True),  # a mutation of it
    ("LR = 0.1 * 2", False),
    ("print('hello', len(sys.argv))", False),
    ('parser.set_defaults(lr=0.5)', False),
])
def test_which_script_statements_share_state(stmt, stateful):
    text = ("import argparse\nimport sys\nimport torch\n\n\nclass Cfg:\n    pass\n\n\n"
            "parser = argparse.ArgumentParser()\ncfg = Cfg()\n" + stmt + "\n")
    regs, cp = _coupling_of(text)
    r = regs[-1]
    assert (id(r) in cp.stateful) == stateful, (stmt, r.facts)
    if stmt.startswith("cfg.accum"):
        assert "cfg" in cp.defines[id(r)]  # whoever reads cfg is re-analysed with it


def test_a_module_level_mutation_reaches_the_function_that_reads_it():
    text = '''import torch


class Cfg:
    pass


cfg = Cfg()
cfg.accum_steps = 4


def train(model, opt, loader):
    for i, (x, y) in enumerate(loader):
        loss = (model(x) - y).pow(2).mean()
        loss.backward()
        if (i + 1) % cfg.accum_steps == 0:
            opt.step()
            opt.zero_grad()
'''
    ia = IncrementalAnalyzer()
    _check(ia, text)
    for n in ("1", "2", "4"):
        _check(ia, text.replace("cfg.accum_steps = 4", f"cfg.accum_steps = {n}"))


def test_an_edit_inside_a_comment_keeps_every_finding_without_analysing():
    text = generate(400, seed=8, idx=400)
    lines = text.split("\n")
    i = _line_of(lines, "def ", 30)
    lines.insert(i + 1, "    # a note about this function")
    text = "\n".join(lines)
    ia = IncrementalAnalyzer()
    _check(ia, text)
    _check(ia, text.replace("# a note about", "# a longer note about", 1))
    assert (ia.stats.mode, ia.stats.reason) == ("same", "only comments changed")
    # a comment that suppresses a finding is read again, and a `#` inside a string is code
    got = _check(ia, text.replace("# a note about", "# a note (x = '#') about", 1))
    assert ia.stats.mode == "same"
    bug = "import torch\nopt = torch.optim.SGD([], lr=0.1)  # note\n"
    ia2 = IncrementalAnalyzer()
    assert [f.code for f in _check(ia2, bug).findings] == ["GP101"]
    assert _check(ia2, bug.replace("# note", "# noqa: GP101")).findings == []
    _check(ia2, bug.replace("  # note", "; s = '# note'"))
    assert ia2.stats.mode != "same"
    assert got is not None


def test_a_text_seen_a_moment_ago_reuses_its_result():
    text = generate(400, seed=9, idx=400)
    lines = text.split("\n")
    i = _line_of(lines, "opt", 20)
    typed = "\n".join(lines[:i] + [lines[i] + "q"] + lines[i + 1:])
    ia = IncrementalAnalyzer()
    _check(ia, text)
    _check(ia, typed)
    _check(ia, text)  # the character deleted again
    assert (ia.stats.mode, ia.stats.reason) == ("same", "text analysed a moment ago")
    _check(ia, typed)  # and typed again (undo / redo)
    assert ia.stats.reason == "text analysed a moment ago"
    # after an edit that moves lines, the kept trees moved: nothing is reused, results stay right
    moved = "\n".join(lines[:i] + ["", "# new"] + lines[i:])
    _check(ia, moved)
    _check(ia, text)
    assert ia.stats.reason != "text analysed a moment ago"
    _check(ia, typed)


def test_a_text_returned_to_again_and_again_outlives_the_texts_typed_since():
    """Keys typed at different places, each deleted again: the text they return to is the one
    used last, so it stays among the results kept (RECENT_VERSIONS) however many keys came."""
    text = generate(400, seed=9, idx=400)
    lines = text.split("\n")
    ia = IncrementalAnalyzer()
    _check(ia, text)
    rows = [i for i, ln in enumerate(lines) if "opt" in ln][:RECENT_VERSIONS + 2]
    assert len(rows) == RECENT_VERSIONS + 2
    for i in rows:
        _check(ia, "\n".join(lines[:i] + [lines[i] + "q"] + lines[i + 1:]))
        _check(ia, text)
        assert (ia.stats.mode, ia.stats.reason) == ("same", "text analysed a moment ago"), i


def _typed_states(lines: list[str], i: int, indent: str, stmt: str):
    """The texts of `stmt` typed one character at a time on a new line `i` (after an Enter)."""
    cur = lines[:i] + [indent] + lines[i:]
    yield "\n".join(cur)
    for n in range(1, len(stmt) + 1):
        cur[i] = indent + stmt[:n]
        yield "\n".join(cur)


def test_a_line_being_typed_that_does_not_parse_reuses_the_result_from_before_the_line():
    text = (ROOT / "examples" / "detached_metric_loss.py").read_text()
    lines = text.split("\n")
    i = _line_of(lines, "loss.backward()") if any("loss.backward()" in x for x in lines) else _line_of(lines, ".backward(")
    indent = re.match(r"\s*", lines[i]).group(0)
    ia = IncrementalAnalyzer()
    _check(ia, text)
    modes = []
    for state in _typed_states(lines, i, indent, "tmp = torch.clamp(loss.mean(), min=1e-6) * 2"):
        _check(ia, state)
        modes.append((SourceFile.parse(state).syntax_error is not None, ia.stats.mode, ia.stats.reason))
    errors = [m for m in modes if m[0]]
    assert len(errors) >= 10
    # every state that does not parse is the text before the line was begun, once recovered
    assert all(m[1:] == ("same", "recovered, the text of a version analysed a moment ago") for m in errors), errors


def test_a_recovered_text_is_compared_with_versions_of_the_same_lines_only():
    text = generate(400, seed=12, idx=400)
    lines = text.split("\n")
    i = _line_of(lines, "optimizer.step()", 40)
    indent = re.match(r"\s*", lines[i]).group(0)
    ia = IncrementalAnalyzer()
    _check(ia, text)
    # a statement typed and completed, then a second one begun: the first one stays in the tree
    done = lines[:i] + [indent + "scale = 2"] + lines[i:]
    _check(ia, "\n".join(done[:i + 1] + [indent] + done[i + 1:]))
    _check(ia, "\n".join(done[:i + 1] + [indent + "extra = ("] + done[i + 1:]))
    assert (ia.stats.mode, ia.stats.reason) == ("same", "recovered, the text of a version analysed a moment ago")
    # an edit elsewhere since then: another tree, nothing to reuse
    other = _line_of(done, "def ", 5)
    moved = done[:other] + [done[other] + "  "] + done[other + 1:]
    _check(ia, "\n".join(moved[:i + 1] + [indent + "extra = ("] + moved[i + 1:]))


def test_a_line_being_typed_that_names_an_attribute_is_analysed_again():
    # GP113 reads the attribute names the whole text mentions: a half-typed line can name one
    text = (
        "import torch\nimport torch.nn as nn\n\n\nclass Net(nn.Module):\n"
        "    def __init__(self):\n        super().__init__()\n        self.fc = nn.Linear(4, 2)\n"
        "        self.extra = nn.Linear(2, 2)\n\n    def forward(self, x):\n        return self.fc(x)\n\n\n"
        "model = Net()\nopt = torch.optim.SGD(model.parameters(), lr=0.1)\nfor x in [torch.randn(3, 4)]:\n"
        "    loss = model(x).sum()\n    opt.zero_grad()\n    loss.backward()\n    opt.step()\n")
    lines = text.split("\n")
    i = _line_of(lines, "opt.zero_grad()")  # in the training loop, away from the finding's ranges
    ia = IncrementalAnalyzer()
    assert "GP113" in [f.code for f in _check(ia, text).findings]
    _check(ia, "\n".join(lines[:i] + ["    "] + lines[i:]))
    got = _check(ia, "\n".join(lines[:i] + ["    y = model.extra +"] + lines[i:]))
    assert ia.stats.reason != "recovered, the text of a version analysed a moment ago"
    assert "GP113" not in [f.code for f in got.findings]
    _check(ia, "\n".join(lines[:i] + ["    y = 2 +"] + lines[i:]))  # no attribute named: reused
    assert ia.stats.reason == "recovered, the text of a version analysed a moment ago"


# -- a newer version arrives while an analysis runs -----------------------------------------------
class _LateCancel:
    """A cancel event that reads as set from its `after`-th look on: the analysis has started (and
    an edit that adds lines has moved the kept trees) before it stops."""

    def __init__(self, after: int = 2):
        self.looks, self.after = 0, after

    def is_set(self) -> bool:
        self.looks += 1
        return self.looks >= self.after


def test_a_cancelled_analysis_returns_nothing_and_keeps_the_last_base():
    import threading
    text = generate(600, seed=4, idx=600)
    ia = IncrementalAnalyzer()
    base = _check(ia, text)
    lines = text.split("\n")
    first_def = _line_of(lines, "def ")
    edited = "\n".join(lines[:first_def] + ["# one", "# two"] + lines[first_def:])
    stop = threading.Event()
    stop.set()
    assert ia.analyze(edited, "t.py", cancel=stop) is None
    assert ia.stats.mode == "cancelled"
    # the base is still the first text: analysing it again is free, and an edit is incremental
    again = ia.analyze(text, "t.py")
    assert ia.stats.mode == "same" and _dicts(again) == _dicts(base)
    _check(ia, edited)
    assert ia.stats.mode == "incremental"


def test_a_cancel_after_the_kept_trees_moved_puts_them_back():
    text = generate(600, seed=5, idx=601)
    lines = text.split("\n")
    ia = IncrementalAnalyzer()
    _check(ia, text)
    # lines added inside a function near the top: the regions after it move down (in place) before
    # the re-analysis starts, and the cancel comes during that re-analysis
    body = _line_of(lines, "    ", _line_of(lines, "def "))
    edited = "\n".join(lines[:body] + ["    pass", "    pass"] + lines[body:])
    probe = IncrementalAnalyzer()
    probe.analyze(text, "t.py")
    probe.analyze(edited, "t.py")
    assert probe.stats.mode == "incremental"  # the path that moves the kept trees before analysing
    late = _LateCancel(after=2)
    assert ia.analyze(edited, "t.py", cancel=late) is None
    assert late.looks >= 2  # it was looked at in the re-analysis, after the move
    positions = [(st.lineno, st.end_lineno) for r in ia._prev.regions for st in r.stmts]
    assert positions == [(st.lineno, st.end_lineno) for st in SourceFile.parse(text).tree.body]
    # and the next edits are compared with the first text, as if the cancelled one never ran
    _check(ia, edited)
    more = edited.split("\n")
    more.insert(body, "    x = 1")
    _check(ia, "\n".join(more))


def test_a_cancel_during_a_whole_file_reanalysis_after_moved_trees_puts_them_back():
    """An edit that adds lines in the imports: the kept trees move, then the whole file is analysed
    on them; a cancel during that analysis moves them back."""
    text = generate(600, seed=6, idx=602)
    lines = text.split("\n")
    ia = IncrementalAnalyzer()
    _check(ia, text)
    imp = _line_of(lines, "import ")
    edited = "\n".join(lines[:imp + 1] + ["import os", "import re"] + lines[imp + 1:])
    late = _LateCancel(after=2)
    assert ia.analyze(edited, "t.py", cancel=late) is None
    positions = [(st.lineno, st.end_lineno) for r in ia._prev.regions for st in r.stmts]
    assert positions == [(st.lineno, st.end_lineno) for st in SourceFile.parse(text).tree.body]
    _check(ia, edited)


def test_a_syntax_error_message_names_the_line_in_the_file():
    """The parser's message for a statement parsed alone names a line ("detected at line 3"):
    counted in the file, as a whole-file parse says it."""
    text = generate(600, seed=7, idx=603)
    lines = text.split("\n")
    ia = IncrementalAnalyzer()
    _check(ia, text)
    i = _line_of(lines, "    ", _line_of(lines, "def ", 200))
    lines[i] = lines[i] + ' "unterminated'
    got = _check(ia, "\n".join(lines))
    assert ia.stats.mode == "incremental"
    msg = next(f.message for f in got.findings if f.code == "GP000")
    assert f"detected at line {i + 1}" in msg


def test_a_kept_syntax_error_moves_with_the_lines_its_message_names():
    text = generate(600, seed=8, idx=604)
    lines = text.split("\n")
    i = _line_of(lines, "    ", _line_of(lines, "def ", 300))
    lines[i] = lines[i] + ' "unterminated'
    ia = IncrementalAnalyzer()
    _check(ia, "\n".join(lines))
    first_def = _line_of(lines, "def ")
    lines[first_def:first_def] = ["# one", "# two"]  # above the error: it moves down two lines
    got = _check(ia, "\n".join(lines))
    assert ia.stats.mode == "incremental"
    assert f"detected at line {i + 3}" in next(f.message for f in got.findings if f.code == "GP000")


def test_a_line_still_being_typed_when_the_resolver_changed_goes_on_from_its_recovered_text():
    # the project's index or jedi's answers arrive while a line does not parse: every earlier result
    # stops counting (another key), and the whole-file analysis of that text is kept as the result
    # of the text its recovery made
    text = (ROOT / "examples" / "detached_metric_loss.py").read_text()
    lines = text.split("\n")
    i = _line_of(lines, ".backward(")
    indent = re.match(r"\s*", lines[i]).group(0)
    ia = IncrementalAnalyzer()
    _check(ia, text)
    states = list(_typed_states(lines, i, indent, "tmp = torch.clamp(loss.mean(), min=1e-6)"))
    _check(ia, states[0])
    _check(ia, states[7])  # "tmp = t": parses
    half = states[12]  # "tmp = torch.": does not parse
    got = ia.analyze(half, "t.py", generation=1)
    assert ia.stats.reason == "options, resolver or workspace changed"
    assert [f.to_dict() for f in got.findings] == _dicts(analyze(half, "t.py"))
    for state in states[13:20]:
        got = ia.analyze(state, "t.py", generation=1)
        assert [f.to_dict() for f in got.findings] == _dicts(analyze(state, "t.py"))
        if SourceFile.parse(state).syntax_error is not None:
            assert ia.stats.reason == "recovered, the text of a version analysed a moment ago", state


def test_a_line_typed_while_another_line_is_broken_matches_after_the_whole_recovery():
    text = (ROOT / "examples" / "detached_metric_loss.py").read_text()
    lines = text.split("\n")
    imp = _line_of(lines, "import torch")
    lines[imp] = lines[imp] + " as"  # left broken, above
    i = _line_of(lines, ".backward(")
    indent = re.match(r"\s*", lines[i]).group(0)
    ia = IncrementalAnalyzer()
    _check(ia, "\n".join(lines))
    modes = []
    for state in _typed_states(lines, i, indent, "tmp = torch.clamp(loss.mean(), min=1e-6)"):
        _check(ia, state)
        modes.append(ia.stats.reason)
    assert modes.count("recovered, the text of a version analysed a moment ago") >= 10, modes



# -- edits in the imports --------------------------------------------------------------------------
MASKED = '''import torch


def masked_mean(values, mask):
    return (values * mask).sum() / mask.sum()


def main():
    model = torch.nn.Linear(8, 8)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for x, lengths in loader:
        pad = torch.arange(8) > lengths.unsqueeze(1)
        loss = masked_mean(model(x), ~pad)
        opt.zero_grad()
        loss.backward()
        opt.step()
''' + "".join(f"\n\ndef helper_{k}(t):\n    y = t * {k}\n    return y\n" for k in range(10))


@pytest.mark.parametrize("what", ["blank line after the imports", "line added to a function above"])
def test_a_finding_that_moves_is_redone_with_the_callers_it_depends_on(what):
    """Lines added above `masked_mean` move its GP301 (the mask's sum can be 0 where `main` passes
    a padding mask): redone for its new line, it needs `main` too, which passes that mask. Redone
    alone, it lost the finding (an edit in a function nothing calls had the same fault)."""
    text = MASKED if what.startswith("blank") else MASKED.replace(
        "import torch\n", "import torch\n\n\ndef unused(t):\n    return t\n", 1)
    ia = IncrementalAnalyzer()
    before = _check(ia, text)
    if what.startswith("blank"):
        new = text.replace("import torch\n", "import torch\n\n", 1)
    else:
        new = text.replace("    return t\n", "    t = t + 1\n    return t\n", 1)
    got = _check(ia, new)
    assert ia.stats.mode == "incremental", ia.stats
    assert [(f.code, f.span.line + 1) for f in before.findings] == [(f.code, f.span.line) for f in got.findings]
    assert [f.code for f in got.findings] == ["GP301"]


def test_an_import_line_typed_key_by_key_is_analysed_in_part_while_nothing_reads_its_name():
    lines = MASKED.split("\n")
    ia = IncrementalAnalyzer()
    _check(ia, MASKED)
    modes = []
    typed = "from collections import OrderedDict"
    for k in range(len(typed) + 1):
        _check(ia, "\n".join(lines[:1] + [typed[:k]] + lines[1:]))
        modes.append(ia.stats.mode)
    # the texts that parse bind a name nothing reads (`f`, `fr`, ..., `OrderedDict`): in part; the
    # others are the text before the line was begun, recovered
    assert "full" not in modes, modes
    assert modes.count("incremental") >= 10, modes
    # an edit of it that binds a name the script reads: redone with what reads it
    text = MASKED.replace("import torch\n", "import torch\nfrom os import environ as loader\n", 1)
    _check(ia, text)
    _check(ia, text.replace("environ as loader", "environ as loaderq"))


@pytest.mark.parametrize("old,new", [
    ("import torch\n", "import torch\nfrom os import *\n"),  # a star import: any name
    ("import torch\n", "import torch\nimport torch.nn as nn\n"),  # how rules spell torch.nn
    ("import torch\n", "import torchq\n"),
])
def test_import_edits_that_run_the_whole_file(old, new):
    ia = IncrementalAnalyzer()
    _check(ia, MASKED)
    _check(ia, MASKED.replace(old, new, 1))
    assert ia.stats.mode == "full", ia.stats


LARGE_CLASS = '''import torch
import torch.nn as nn


class Trainer:
    def __init__(self, model):
        self.model = model
        self.opt = torch.optim.SGD(model.parameters(), lr=0.1)

    def fit(self, loader):
        for x in loader:
            self.opt.zero_grad()
            loss = self.model(x).sum()
            loss.backward()
            self.opt.step()
''' + "".join(f'''
    def helper_{i}(self, x):
        y = x * {i}
        return y + {i}
''' for i in range(30)) + '''

Trainer(nn.Linear(2, 1)).fit([])
'''


def test_a_key_that_breaks_a_method_of_a_large_class_does_not_parse_the_class(monkeypatch):
    """A method that does not parse alone: the whole file is analysed (the edit reaches most of
    it), its text recovered from its own parse; the class is not parsed on its own to find out
    that it does not parse either. The findings are those of a whole-file analysis."""
    ia = IncrementalAnalyzer()
    _check(ia, LARGE_CLASS)
    parsed = []
    real = ast.parse

    def recording(text, *a, **k):
        parsed.append(text)
        return real(text, *a, **k)
    monkeypatch.setattr(ast, "parse", recording)
    broken = LARGE_CLASS.replace("        y = x * 7\n", "        y = x *q 7\n")
    got = ia.analyze(broken, "t.py")
    monkeypatch.undo()
    assert "the edit reaches" in ia.stats.reason or ia.stats.flow, ia.stats
    assert [f.span.line for f in got.findings if f.code == catalog.SYNTAX_ERROR] == [broken.split("\n").index("        y = x *q 7") + 1]
    assert not any(t.lstrip("\n").startswith("class Trainer") for t in parsed), [t[:40] for t in parsed]
    assert _dicts(got) == _dicts(analyze(broken, "t.py"))
    _check(ia, LARGE_CLASS)
