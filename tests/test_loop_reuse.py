"""The loop facts of an edited file take over the previous version's events of the functions the edit
cannot reach (loop_reuse.py): every LoopFacts that took something over must equal one built from
nothing on the same analysis, and the findings a whole-file `analyze()` gives."""
from __future__ import annotations

import ast
import random

import pytest

from gradpath.analysis import analyze, loop_reuse, loops
from gradpath.analysis.incremental import IncrementalAnalyzer
from gradpath.analysis.loop_events import _IfTest
from body_edits import random_body_edits
from testpaths import ROOT

SCRIPT = '''\
import torch
import torch.nn as nn


def make_batch(n):
    return torch.randn(n, 20), torch.randint(0, 10, (n,))


def log_step(step, loss, every=10):
    if step % every == 0:
        print(step, loss)


def evaluate(model, batches):
    model.eval()
    with torch.no_grad():
        for x, y in batches:
            model(x)
    model.train()


def train_one_epoch(model, optimizer, criterion, steps=100):
    for step in range(steps):
        x, y = make_batch(32)
        loss = criterion(model(x), y)
        loss.backward()
        optimizer.step()
        log_step(step, loss.item())


def main():
    model = nn.Linear(20, 10)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for epoch in range(3):
        train_one_epoch(model, optimizer, nn.CrossEntropyLoss())
        evaluate(model, [make_batch(8)])


if __name__ == "__main__":
    main()
'''

# a class whose methods train, and chains of helpers deeper than MAX_DEPTH (3) below the roots that
# reach them first (`loop` is edited from an unknown `step_aq` to `step_a`)
CLASSES = '''\
import torch
import torch.nn as nn

lr = 0.1
seed = 0
print("start")


def loop(model, opt, loader):
    for x in loader:
        opt.zero_grad()
        model(x).sum().backward()
        step_aq(opt)


def other(model, opt, loader):
    for x in loader:
        model(x).sum().backward()
        mid(opt)


class Trainer:
    def __init__(self, model):
        self.model = model
        self.opt = torch.optim.SGD(model.parameters(), lr=lr)

    def fit(self, loader):
        for x, y in loader:
            self.opt.zero_grad()
            loss = self.model(x).sum()
            loss.backward()
            self.opt.step()

    def report(self, n):
        print("steps", n)


def mid(opt):
    step_b(opt)


def step_a(opt):
    step_b(opt)


def step_b(opt):
    step_c(opt)


def step_c(opt):
    step_d(opt)


def step_d(opt):
    opt.step()


def main():
    model = nn.Linear(4, 1)
    t = Trainer(model)
    t.fit([])
    t.report(1)
    loop(model, t.opt, [])
    other(model, t.opt, [])


main()
'''


def _frame(f):
    return tuple(("if", id(x.test)) if isinstance(x, _IfTest) else (id(x) if isinstance(x, ast.AST) else x)
                 for x in f)


def _state(lf):
    """Every unit's events (nodes and frames by identity), its loops; the cuts and the copies."""
    units = []
    for u in lf.units:
        units.append((id(u.scope), u.relevant, [(e.kind, e.key, id(e.node), tuple(_frame(f) for f in e.path),
                                                  e.target, e.models, e.opt, e.args, id(e.fn)) for e in u.events],
                      [id(x) for x in u.loops]))
    return units, lf._truncations, lf._copies


class _Watch:
    """Every LoopFacts built for an edit with a kept version (`edited`, with that version's), and
    for each that took entries over, whether it equals one built from nothing on the same
    analysis."""

    def __init__(self, monkeypatch):
        self.edited, self.differ = [], []
        self.first_cuts = None  # the cuts of the first LoopFacts built
        orig_init, orig_reuse = loops.LoopFacts.__init__, loop_reuse.reuse_for

        def init(lf, ctx):
            orig_init(lf, ctx)
            if self.first_cuts is None:
                self.first_cuts = lf._truncations
            edit = getattr(ctx, "flow_edit", None)
            if edit is not None:
                self.edited.append((lf, edit.base.loops))
            if lf.adopted:
                monkeypatch.setattr(loop_reuse, "reuse_for", lambda _lf: None)
                fresh = loops.LoopFacts.__new__(loops.LoopFacts)
                orig_init(fresh, ctx)
                monkeypatch.setattr(loop_reuse, "reuse_for", orig_reuse)
                if _state(lf) != _state(fresh):
                    self.differ.append(ctx.path)
        monkeypatch.setattr(loops.LoopFacts, "__init__", init)

    def last(self):
        return self.edited[-1][0]

    def taken(self) -> set[str]:
        """The functions whose entries the last LoopFacts took over from its kept version's."""
        lf, base = self.edited[-1]
        return {m[0].name for k, m in lf._meta.items() if base is not None and base._meta.get(k) is m}


def _run(ia, text, path="t.py"):
    got = ia.analyze(text, path)
    assert [f.to_dict() for f in got.findings] == [f.to_dict() for f in analyze(text, path).findings], ia.stats
    return got


def _edit(text, needle, new):
    assert text.count(needle) == 1, needle
    return text.replace(needle, new)


def test_an_edit_in_a_helper_takes_over_the_functions_that_do_not_reach_it(monkeypatch):
    w = _Watch(monkeypatch)
    ia = IncrementalAnalyzer()
    _run(ia, SCRIPT)
    _run(ia, _edit(SCRIPT, "print(step, loss)", "print(step, lossq)"))
    assert ia.stats.flow == "patched `log_step`"
    # log_step and what inlines it (train_one_epoch, main, the script) are computed again
    assert w.taken() == {"make_batch", "evaluate"}
    assert not w.differ


def test_an_edit_in_a_method_takes_over_the_other_methods_of_its_class(monkeypatch):
    """The edited method assigns nothing on `self`, before and after: what the other methods read
    of their class (the values bound to `self.<attr>`) is as it was."""
    w = _Watch(monkeypatch)
    ia = IncrementalAnalyzer()
    _run(ia, CLASSES)
    _run(ia, _edit(CLASSES, 'print("steps", n)', 'print("stepsq", n)'))
    assert ia.stats.flow == "patched `report`"
    taken = w.taken()
    assert "fit" in taken and "report" not in taken, taken
    assert not w.differ


@pytest.mark.parametrize("edited", ['self.steps = n', 'self.model = n'])
def test_an_edit_in_a_method_that_assigns_on_self_takes_over_no_method_of_any_class(monkeypatch, edited):
    """`self.<attr> = ...` added in a method: another method reading `self.<attr>` may now find that
    value (the last assignment in the class), so every method of every class is computed again."""
    w = _Watch(monkeypatch)
    ia = IncrementalAnalyzer()
    _run(ia, CLASSES)
    _run(ia, _edit(CLASSES, 'print("steps", n)', edited))
    assert w.edited and w.edited[-1][1] is not None  # (a kept version's loop facts were there to take)
    taken = w.taken()
    assert taken and not taken & {"__init__", "fit", "report"}, taken  # (the helpers are taken)
    assert not w.differ


def test_a_cut_result_is_not_taken_over_where_a_whole_computation_would_get_it(monkeypatch):
    """`other` reaches step_d four calls down (MAX_DEPTH is 3, `other` is computed before the helpers
    are computed on their own): the step is cut there, and the cut results stay cached for the
    depths they were computed at. The edit makes `loop` reach step_d four calls down too, through
    step_a: what that cuts and what the helpers reached at those depths get must be what a whole
    computation gives."""
    w = _Watch(monkeypatch)
    ia = IncrementalAnalyzer()
    _run(ia, CLASSES)
    assert w.first_cuts
    _run(ia, _edit(CLASSES, "step_aq(opt)", "step_a(opt)"))
    assert w.last()._truncations and w.last().adopted and not w.differ


# `first` reaches step_d four calls down and cuts step_c's call of it at the last level; `second`
# reaches step_c at that same level through y and x, and gets the cut result cached there: x counts
# as complete, made from a cut result. Once `second` no longer calls y, a whole computation reaches
# x first as a root of its own, with levels enough: x's step is there.
CUT_RESULTS = '''\
def first(opt):
    f1(opt)


def second(opt):
    y(opt)


def f1(opt):
    f2(opt)


def f2(opt):
    step_c(opt)


def y(opt):
    x(opt)


def x(opt):
    step_c(opt)


def step_c(opt):
    step_d(opt)


def step_d(opt):
    opt.step()


def main(opt):
    first(opt)
    second(opt)


main(None)
'''


def test_events_made_from_a_cut_result_are_not_taken_over(monkeypatch):
    w = _Watch(monkeypatch)
    ia = IncrementalAnalyzer()
    _run(ia, CUT_RESULTS)
    _run(ia, _edit(CUT_RESULTS, "    y(opt)", "    yq(opt)"))
    assert w.edited and "x" not in w.taken() and not w.differ


@pytest.mark.parametrize("statement, edited, taken", [('seed = 0', 'seed = 1', False),
                                                      ('print("start")', 'print("startq")', True)])
def test_a_statement_of_the_script_that_assigns_edited_since_stops_the_taking_over(monkeypatch, statement,
                                                                                   edited, taken):
    """A statement of the script edited since the kept version (analysed in part: nothing reads
    it): one that assigns may change what a name is bound to; a call does not."""
    w = _Watch(monkeypatch)
    ia = IncrementalAnalyzer()
    _run(ia, CLASSES)
    text = _edit(CLASSES, statement, edited)
    _run(ia, text)
    assert ia.stats.mode == "incremental" and not ia.stats.flow  # (the statement alone)
    _run(ia, _edit(text, 'print("steps", n)', 'print("stepsq", n)'))
    assert bool(w.last().adopted) == taken and not w.differ


def test_a_project_view_stops_the_taking_over(monkeypatch):
    """Cross-module events come from the project's summary of this very text: with a view, nothing
    is taken over (the next text has none until the project holds it)."""
    w = _Watch(monkeypatch)
    monkeypatch.setattr(loops, "project_view", lambda ctx: object())
    ia = IncrementalAnalyzer()
    _run(ia, SCRIPT)
    _run(ia, _edit(SCRIPT, "print(step, loss)", "print(step, lossq)"))
    assert ia.stats.flow == "patched `log_step`" and w.last().adopted == 0


EXAMPLES = sorted((ROOT / "examples").glob("*.py")) + sorted((ROOT / "fixtures" / "gp4").glob("*.py"))


@pytest.mark.parametrize("seed", [3, 4])
def test_loop_facts_taken_over_equal_loop_facts_built_from_nothing_over_random_edits(monkeypatch, seed):
    """One-character edits at random lines of function bodies, and the findings equal a whole
    analysis's, on the scripts above, the examples and the GP4 fixtures."""
    w = _Watch(monkeypatch)
    r = random.Random(seed)
    reused = 0
    for path, text in [("t.py", SCRIPT), ("t.py", CLASSES)] + [(str(p), p.read_text()) for p in EXAMPLES]:
        ia = IncrementalAnalyzer()
        _run(ia, text, path)
        for new in random_body_edits(text, r, 8):
            _run(ia, new, path)
            reused += bool(w.edited and w.last().adopted)
            w.edited.clear()
    assert reused >= 20 and not w.differ, (reused, w.differ)
