"""An edit inside one function's body re-runs only that function in the dataflow (flow_patch.py,
graft.py): the patched flow must equal the flow a whole analysis builds for the same text, and the
findings a whole-file `analyze()` gives."""
from __future__ import annotations

import ast
import random
import sys

import pytest

from gradpath.analysis import analyze, dataflow, flow_patch
from gradpath.analysis import facts as facts_mod
from gradpath.analysis.graft import graft
from gradpath.analysis.incremental import IncrementalAnalyzer
from body_edits import random_body_edits
from testpaths import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
from flow_digest import _canon, _pos  # noqa: E402

SCRIPT = '''\
import torch
import torch.nn as nn
import torch.nn.functional as F


class Net(nn.Module):
    def __init__(self, n=10):
        super().__init__()
        self.fc1 = nn.Linear(20, 64)
        self.fc2 = nn.Linear(64, n)

    def forward(self, x):
        h = F.relu(self.fc1(x))
        return self.fc2(h)


def make_batch(n, width=20):
    x = torch.randn(n, width)
    y = torch.randint(0, 10, (n,))
    return x, y


def compute_loss(criterion, out, y):
    scale = 1.0
    loss = criterion(out, y) * scale
    return loss


def log_step(step, loss, every=10):
    if step % every == 0:
        print(f"step {step}: {loss:.4f}")


def train_one_epoch(model, optimizer, criterion, steps=100):
    model.train()
    total = 0.0
    for step in range(steps):
        x, y = make_batch(32)
        optimizer.zero_grad()
        out = model(x)
        loss = compute_loss(criterion, out, y)
        loss.backward()
        optimizer.step()
        total += loss.item()
        log_step(step, loss.item())
    return total / steps


def main():
    model = Net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    criterion = nn.CrossEntropyLoss()
    for epoch in range(3):
        avg = train_one_epoch(model, optimizer, criterion, steps=50)
        print(epoch, avg)


if __name__ == "__main__":
    main()
'''


def _dicts(result):
    return [f.to_dict() for f in result.findings]


class _Compare:
    """Builds, next to every patched flow, the whole flow of the same analysis and compares them."""

    def __init__(self, monkeypatch):
        self.patched = 0
        self.taken = 0  # scopes whose facts were taken over from the base's
        self.cascaded = 0  # patches that re-ran other functions too
        self.differ = []
        orig = flow_patch.patched

        self.with_script = 0

        def patched(ctx, edit):
            fl = orig(ctx, edit)
            if fl is not None:
                self.patched += 1
                self.with_script += bool(edit.module_edits)
                self.cascaded += bool(edit.also)
                whole = dataflow.Flow.build(ctx)
                a, b = _state(fl, ctx.tree), _state(whole, ctx.tree)
                if a != b:
                    self.differ.append((edit.a, [k for k in a if a[k] != b[k]]))
                # the facts took over what they could from the base's: as if built from nothing
                self.taken += len(ctx.facts.__dict__.get("_taken", ()))
                a, b = _facts_state(ctx.facts), _facts_state(_fresh_facts(ctx))
                if a != b:
                    self.differ.append((edit.a, ["facts: " + k for k in a if a[k] != b[k]]))
            return fl
        monkeypatch.setattr(flow_patch, "patched", patched)


class _Bare:
    """A context's tree and symbols without the kept dataflow: facts built from nothing."""

    def __init__(self, ctx):
        self.tree, self.symbols, self.src, self.path = ctx.tree, ctx.symbols, ctx.src, ctx.path
        self.resolver = ctx.resolver
        self.flow_edit = self.scope_reuse = None


def _fresh_facts(ctx):
    return facts_mod.Facts.build(_Bare(ctx))


def _facts_state(f) -> dict:
    """Everything Facts.build records, scopes by their place in the list, nodes by identity."""
    at = {id(s): i for i, s in enumerate(f.scopes)}
    pos = {id(b): i for i, b in enumerate(f.models)}

    def rec(x):
        out = []
        for k, v in sorted(x.__dict__.items()):
            if k == "scope":
                v = at[id(v)]
            elif k == "alias_of":
                v = [pos.get(id(y), (y.key, y.line, y.cls)) for y in v]
            elif isinstance(v, ast.AST):
                v = id(v)
            out.append((k, v))
        return out

    return {
        "scopes": [(id(s.node), s.kind, s.name, s.class_name, at.get(id(s.parent)),
                    [id(n) for n in s.walk()]) for s in f.scopes],
        "parents": {k: id(v) for k, v in f.parents.items()},
        "nodes": [id(n) for n in f.all_nodes()],
        "calls": [id(n) for n in f.__dict__["_all_calls"]],
        "node_scope": {k: at[id(v)] for k, v in f.node_scopes().items()},
        "models": [rec(x) for x in f.models],
        "optimizers": [rec(x) for x in f.optimizers],
        "method_calls": [rec(x) for x in f.calls],
    }


def _state(fl, tree) -> dict:
    """What the rules read of a flow: events (their order aside), every node's last value, the
    module environment."""
    return {
        "events": sorted(repr(_canon((e.kind, e.node, e.scope, e.vals, e.nodes, e.info, e.nograd))) for e in fl.events),
        "last": [(_pos(n), repr(_canon(fl.value_at(n)))) for n in ast.walk(tree) if fl.value_at(n) is not None],
        "module_env": repr(_canon(fl.module_env)),
    }


def _edit(text: str, needle: str, new: str) -> str:
    assert text.count(needle) == 1, needle
    return text.replace(needle, new)


def _edited_once(monkeypatch, text: str, needle: str, new: str):
    """An analyzer that analysed `text`, then `text` with `needle` replaced (every patched flow
    compared with the whole one, see _Compare)."""
    cmp = _Compare(monkeypatch)
    ia = IncrementalAnalyzer()
    _run(ia, text)
    _run(ia, _edit(text, needle, new))
    return ia, cmp


def _run(ia, text, path="t.py"):
    got = ia.analyze(text, path)
    assert _dicts(got) == _dicts(analyze(text, path)), ia.stats
    return got


# -- grafting --------------------------------------------------------------------------------------
def test_a_grafted_tree_equals_a_fresh_parse_and_shares_every_untouched_node():
    old = ast.parse(SCRIPT)
    lines = SCRIPT.split("\n")
    i = next(k for k, ln in enumerate(lines) if "loss = compute_loss" in ln)
    lines[i] = lines[i].replace("criterion, out", "criterion, outq")
    new_text = "\n".join(lines)
    fresh = ast.parse(new_text)
    a = b = i + 1
    top_old = next(st for st in old.body if isinstance(st, ast.FunctionDef) and st.name == "train_one_epoch")
    top_new = next(st for st in fresh.body if isinstance(st, ast.FunctionDef) and st.name == "train_one_epoch")
    grafted = graft(top_old, top_new, a, b)
    assert ast.dump(grafted, include_attributes=True) == ast.dump(
        next(st for st in ast.parse(new_text).body if getattr(st, "name", "") == "train_one_epoch"),
        include_attributes=True)
    old_ids = {id(n) for n in ast.walk(top_old)}
    for n in ast.walk(grafted):
        if isinstance(n, ast.expr_context) or not hasattr(n, "lineno"):
            continue
        on_edit = n.lineno <= b and n.end_lineno >= a
        assert (id(n) in old_ids) == (not on_edit), (type(n).__name__, n.lineno)
    # the old tree is untouched
    assert ast.dump(top_old) == ast.dump(next(st for st in ast.parse(SCRIPT).body
                                              if getattr(st, "name", "") == "train_one_epoch"))


TRAINER = '''\
import torch


class Trainer:
    """A trainer of many methods."""

    def __init__(self, model, lr=0.1):
        self.model = model
        self.opt = torch.optim.SGD(model.parameters(), lr=lr)

    @torch.no_grad()
    def evaluate(self, x):
        return self.model(x).mean()

    def step(self, x, y):
        self.opt.zero_grad()
        loss = (self.model(x) - y).pow(2).mean()
        loss.backward()
        self.opt.step()
        return loss.item()

    def fit(self, batches):
        for x, y in batches:
            self.step(x, y)
'''


@pytest.mark.parametrize("old,new,reparsed", [
    ("        return self.model(x).mean()", "        return self.model(x).sum()", True),  # decorated method
    ("        loss.backward()", "        loss.backward(retain_graph=True)", True),
    ("            self.step(x, y)", "            self.step(x, yq)", True),  # the class's last line
    ("        loss.backward()", "    loss.backward()", False),  # dedented: a statement of the class now
    ("        loss.backward()", "loss.backward()", False),  # out of the class
    ("        return loss.item()", "        return (loss.item()", False),  # a bracket left open
    ("        return loss.item()", '        return """loss.item()', False),  # a string left open
    ("        loss.backward()", "        if loss:", False),  # a block without a body
])
def test_a_method_parsed_alone_gives_the_tree_a_parse_of_the_class_gives(old, new, reparsed):
    from gradpath.analysis.graft import method_reparsed
    before = ast.parse(TRAINER)
    text = _edit(TRAINER, old, new)
    lines = text.split("\n")
    k = next(i + 1 for i, ln in enumerate(lines) if ln == new)
    got = method_reparsed(before.body[1], k, k, lines)
    if not reparsed:
        assert got is None
        return
    whole = ast.parse(text).body[1]
    assert ast.dump(got, include_attributes=True) == ast.dump(whole, include_attributes=True)
    # the other methods are the previous tree's nodes; the edited one is new
    assert [m is o for m, o in zip(got.body, before.body[1].body)] == [
        not (m.lineno <= k <= m.end_lineno) for m in got.body]


def test_an_edit_in_a_method_takes_over_the_facts_of_the_other_methods(monkeypatch):
    from gradpath.analysis import incremental
    cmp = _Compare(monkeypatch)
    made = []
    orig = incremental.method_reparsed
    monkeypatch.setattr(incremental, "method_reparsed", lambda *a: made.append(orig(*a)) or made[-1])
    walked = []
    orig_walk = facts_mod.Facts._walk_statement
    monkeypatch.setattr(facts_mod.Facts, "_walk_statement",
                        lambda self, stack, *a: walked.append((self, stack[-1][0])) or orig_walk(self, stack, *a))
    ia = IncrementalAnalyzer()
    _run(ia, TRAINER + "\n\nTrainer(torch.nn.Linear(2, 1)).fit([])\n")
    walked.clear()
    _run(ia, _edit(TRAINER, "        loss.backward()", "        loss.backward(retain_graph=True)")
         + "\n\nTrainer(torch.nn.Linear(2, 1)).fit([])\n")
    assert ia.stats.flow == "patched `step`" and cmp.patched == 1 and not cmp.differ
    assert made and made[-1] is not None
    # the analysis's facts (built first; the comparison's are built from nothing after) walked the
    # edited method only: the class's docstring and other methods, the import and the script's
    # statement were taken over
    walked = [n for f, n in walked if f is walked[0][0]]
    assert [type(n).__name__ for n in walked] == ["FunctionDef"] and walked[0].name == "step"


# -- patching ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("needle,new,fn", [
    ("    scale = 1.0\n", "    scale = 2.0\n", "compute_loss"),
    ('        print(f"step {step}: {loss:.4f}")', '        print(f"step {step}: {loss:.5f}")', "log_step"),
    ("        optimizer.zero_grad()\n", "        optimizer.zero_gradq()\n", "train_one_epoch"),
    ("        print(epoch, avg)", "        print(epoch, avgq)", "main"),
    ("        h = F.relu(self.fc1(x))", "        h = F.gelu(self.fc1(x))", "forward"),
])
def test_an_edit_inside_a_function_reruns_only_that_function(monkeypatch, needle, new, fn):
    ia, cmp = _edited_once(monkeypatch, SCRIPT, needle, new)
    assert ia.stats.mode == "incremental" and ia.stats.flow == f"patched `{fn}`", ia.stats
    assert cmp.patched == 1 and not cmp.differ
    # the facts of every other top-level statement were taken over: of the eight scopes, all but
    # the module's and those of the edited statement (the class's two methods for `forward`)
    assert cmp.taken == (6 if fn != "forward" else 5)


def test_a_helper_that_now_returns_a_cut_loss_reruns_its_caller_too_and_the_bug_is_found(monkeypatch):
    cmp = _Compare(monkeypatch)
    ia = IncrementalAnalyzer()
    before = _run(ia, SCRIPT)
    text = _edit(SCRIPT, "    return loss\n", "    return loss.detach()\n")
    got = _run(ia, text)
    # what compute_loss returns changed: its caller runs again with what it gets now, and so does
    # the helper that caller passes `loss.item()` to (train_one_epoch returns what it returned
    # before: the rounds stop there)
    assert ia.stats.mode == "incremental"
    assert ia.stats.flow == "patched `compute_loss` (with `train_one_epoch`, `log_step`)"
    assert cmp.patched == 1 and not cmp.differ
    assert {f.code for f in got.findings} - {f.code for f in before.findings} == {"GP201"}


def test_a_bug_typed_into_the_training_loop_is_found_on_the_patched_flow(monkeypatch):
    cmp = _Compare(monkeypatch)
    ia = IncrementalAnalyzer()
    before = _run(ia, SCRIPT)
    got = _run(ia, _edit(SCRIPT, "        loss.backward()\n", "        loss.detach().backward()\n"))
    assert ia.stats.flow == "patched `train_one_epoch`" and cmp.patched == 1 and not cmp.differ
    assert {f.code for f in got.findings} - {f.code for f in before.findings} == {"GP201"}


def test_a_line_that_does_not_parse_patches_the_dataflow_of_the_recovered_text(monkeypatch):
    """The whole-file analysis of a text with a syntax error analyses the text its recovery makes:
    that text differs from the kept one inside one function only, and its dataflow is patched."""
    cmp = _Compare(monkeypatch)
    ia = IncrementalAnalyzer()
    _run(ia, SCRIPT)
    got = _run(ia, _edit(SCRIPT, "        optimizer.zero_grad()\n", "        optimizer.zero_grad(\n"))
    assert ia.stats.flow == "patched `train_one_epoch`" and cmp.patched == 1 and not cmp.differ
    assert {"GP000", "GP401"} <= {f.code for f in got.findings}


ARGS = "import argparse\n" + SCRIPT.replace('if __name__ == "__main__":', '''parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float, default=0.1)
parser.add_argument("--epochs", type=int, default=3)

if __name__ == "__main__":''')


def test_script_statements_edited_since_are_rerun_with_the_function(monkeypatch):
    """An argument parser's line edited (analysed in part: no whole dataflow of that text is kept),
    then a function's body: the dataflow re-runs that statement of the script and the function."""
    cmp = _Compare(monkeypatch)
    ia = IncrementalAnalyzer()
    _run(ia, ARGS)
    text = _edit(ARGS, "default=0.1)", "default=0.2)")
    _run(ia, text)
    assert ia.stats.mode == "incremental" and not ia.stats.flow  # the parser's line alone
    text = _edit(text, "        optimizer.zero_grad()\n", "        optimizer.zero_gradq()\n")
    _run(ia, text)
    assert ia.stats.flow == "patched `train_one_epoch`" and cmp.with_script == 1 and not cmp.differ
    # a statement that binds what it did not before: the whole dataflow
    text = _edit(text, "parser = argparse.ArgumentParser()", "parser = argparse.ArgumentParser(); lr = 1")
    _run(ia, text)
    text = _edit(text, "    scale = 1.0\n", "    scale = 3.0\n")
    _run(ia, text)
    assert not ia.stats.flow.startswith("patched") and not cmp.differ


@pytest.mark.parametrize("needle,new", [
    ("        self.fc2 = nn.Linear(64, n)", "        self.fc3 = nn.Linear(64, n)"),  # an attribute store
    ("def make_batch(n, width=20):", "def make_batch(n, width=21):"),  # the signature
])
def test_edits_the_patch_does_not_take(needle, new):
    ia = IncrementalAnalyzer()
    _run(ia, SCRIPT)
    _run(ia, _edit(SCRIPT, needle, new))
    assert not ia.stats.flow.startswith("patched"), ia.stats


def test_a_changed_optimizer_binding_runs_the_whole_flow(monkeypatch):
    cmp = _Compare(monkeypatch)
    ia = IncrementalAnalyzer()
    _run(ia, SCRIPT)
    _run(ia, _edit(SCRIPT, "lr=0.1)", "lr=0.2)"))
    assert ia.stats.flow == "model or optimizer bindings changed" and cmp.patched == 0


CLASSY = '''\
import torch
import torch.nn as nn


class Norm(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(8, 8))
        self.eps = 1e-6
        self.steps = 0

    def reset(self):
        self.steps = 0
        self.eps = 1e-6

    def forward(self, x):
        self.steps += 1
        return self.body(x) / (x.std() + self.eps)


def build():
    net = Norm()
    return net


def main():
    net = build()
    opt = torch.optim.Adam(net.parameters())
    for _ in range(10):
        opt.zero_grad()
        net(torch.randn(4, 8)).sum().backward()
        opt.step()


main()
'''


@pytest.mark.parametrize("needle,new,outcome", [
    ("        self.steps = 0\n        self.eps", "        self.steps = 1\n        self.eps", "patched `reset`"),
    ("        self.eps = 1e-6\n\n    def forward", "        self.eps = 0.0\n\n    def forward",
     "what a class's attributes hold changed"),
    ("    net = Norm()", "    net = Norm(); net.body.append(nn.ReLU())", ""),  # a construction, a layer added
    ("        self.eps = 1e-6\n        self.steps", "        self.eps = 1e-5\n        self.steps",
     "what a class's attributes hold changed"),  # in __init__
])
def test_what_other_methods_read_of_an_edit_decides_the_patch(monkeypatch, needle, new, outcome):
    ia, cmp = _edited_once(monkeypatch, CLASSY, needle, new)
    assert ia.stats.flow == outcome, ia.stats
    assert not cmp.differ


HEADY = '''\
import torch
import torch.nn as nn


class Head(nn.Module):
    def __init__(self, loss=nn.MSELoss(), width=8):
        super().__init__()
        self.fc = nn.Linear(width, 1)
        self.loss = loss
        self.name = "head"

    def forward(self, x, y):
        return self.loss(self.fc(x), y)


def main():
    head = Head()
    opt = torch.optim.SGD(head.parameters(), lr=0.1)
    for _ in range(3):
        opt.zero_grad()
        head(torch.randn(4, 8), torch.randn(4, 1)).backward()
        opt.step()


main()
'''


@pytest.mark.parametrize("needle,new,outcome", [
    ('        self.name = "head"', '        self.name = "heads"', "patched `__init__`"),
    # the loss module `forward` calls comes from the constructor's default: not any more
    ("        self.loss = loss", "        self.loss = lossq", "the module a class's attribute gets from a default changed"),
    ("        self.fc = nn.Linear(width, 1)", "        self.fc = nn.Linear(width, 2)", "model or optimizer bindings changed"),
])
def test_an_edit_in_init_patches_when_what_other_methods_read_is_the_same(monkeypatch, needle, new, outcome):
    ia, cmp = _edited_once(monkeypatch, HEADY, needle, new)
    assert not cmp.differ
    assert ia.stats.flow == outcome, ia.stats


def test_an_edit_inside_a_nested_function_is_not_patched_but_one_beside_it_is(monkeypatch):
    text = SCRIPT.replace("def main():\n", "def main():\n    def report(v):\n        print(v)\n\n", 1)
    text = text.replace("        print(epoch, avg)", "        report(avg)\n        print(epoch)", 1)
    cmp = _Compare(monkeypatch)
    ia = IncrementalAnalyzer()
    _run(ia, text)
    _run(ia, _edit(text, "        print(v)", "        print(vq)"))
    assert not ia.stats.flow.startswith("patched")
    _run(ia, text)
    _run(ia, _edit(text, "        print(epoch)", "        print(epochq)"))
    assert ia.stats.flow == "patched `main`" and not cmp.differ


def test_a_line_typed_key_by_key_patches_every_key_that_parses(monkeypatch):
    """The keys whose text does not parse take a kept result (recovered to the text before the
    line); the next key that parses patches that text's flow. The edited function's own nodes
    come from the note of the flow patched for the key before (flow_patch.own_body_ids): they must
    be the ones a walk finds."""
    cmp = _Compare(monkeypatch)
    noted, orig_ids = [], flow_patch.own_body_ids

    def own_body_ids(base, fn):
        got = orig_ids(base, fn)
        noted.append(base.own_body is not None and base.own_body[0] is fn)
        assert got == set(flow_patch.subtree_ids(fn.body, own=True))
        return got
    monkeypatch.setattr(flow_patch, "own_body_ids", own_body_ids)
    ia = IncrementalAnalyzer()
    lines = SCRIPT.split("\n")
    i = next(k for k, ln in enumerate(lines) if "optimizer.step()" in ln)
    base = lines[:i + 1] + ["        "] + lines[i + 1:]
    _run(ia, "\n".join(base))
    typed = "tmp = torch.clamp(out.mean(), min=1e-6) * 2"
    parsed = patched = 0
    for k in range(1, len(typed) + 1):
        cur = list(base)
        cur[i + 1] = "        " + typed[:k]
        text = "\n".join(cur)
        _run(ia, text)
        try:
            ast.parse(text)
        except SyntaxError:
            continue
        if ia.stats.mode == "same":  # a blank typed after a name: the tree is the same
            continue
        parsed += 1
        patched += ia.stats.flow == "patched `train_one_epoch`"
    assert parsed >= 10 and patched == parsed, (parsed, patched)
    assert not cmp.differ
    assert sum(noted) >= 8, noted  # (taken from the note, key after key)


EXAMPLES = sorted((ROOT / "examples").glob("*.py"))


@pytest.mark.parametrize("seed", [1, 2])
def test_patched_flows_equal_whole_flows_over_random_edits_in_function_bodies(monkeypatch, seed):
    """One-character edits (a digit changed, a letter typed after a name) at random lines of
    function bodies, on the script above and the examples."""
    cmp = _Compare(monkeypatch)
    r = random.Random(seed)
    for path in [None] + EXAMPLES:
        text = SCRIPT if path is None else path.read_text()
        ia = IncrementalAnalyzer()
        _run(ia, text, str(path or "t.py"))
        for new in random_body_edits(text, r, 12):
            _run(ia, new, str(path or "t.py"))
    assert cmp.patched >= 15 and not cmp.differ, (cmp.patched, cmp.differ)
    assert cmp.cascaded >= 1, cmp.cascaded  # some of them re-ran callers or callees too


def test_only_the_documents_analysed_last_keep_their_dataflows():
    from gradpath.analysis import flow_bases
    docs = [IncrementalAnalyzer() for _ in range(flow_bases.MAX_DOCUMENTS + 1)]
    for n, ia in enumerate(docs):
        ia.analyze(SCRIPT, f"d{n}.py")
        assert len(ia._bases) == 1
    assert len(docs[0]._bases) == 0 and all(len(ia._bases) == 1 for ia in docs[1:])
    # the first document, edited again: it keeps one again (after a whole-file analysis), and the
    # least recently used of the others drops its own
    _run(docs[0], _edit(SCRIPT, "    scale = 1.0\n", "    scale = 2.0\n"), "d0.py")
    assert not docs[0].stats.flow.startswith("patched") and len(docs[0]._bases) == 1
    assert len(docs[1]._bases) == 0


# -- edits in the imports --------------------------------------------------------------------------
IMPORTS = '''\
import os

import torch
import torch.nn as nn
from torch.nn.functional import softmax
from torch import no_grad
from torch.optim import SGD


def loss_fn(logits, target):
    p = softmax(logits, dim=-1)
    return -(target * torch.log(p)).sum()


@no_grad()
def evaluate(model, data):
    return [model(x) for x in data]


def train(model, data):
    opt = SGD(model.parameters(), lr=0.1)
    for x, y in data:
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()


def main():
    model = nn.Linear(4, 2)
    train(model, [])
    evaluate(model, [])
    print(os.getcwd())


if __name__ == "__main__":
    main()
'''


def test_an_import_edit_reruns_the_functions_that_read_the_name(monkeypatch):
    """`softmax` no longer imported: `loss_fn`, the one function reading it, runs again (and its
    caller, which gets another value back); the log of a softmax (GP303) goes, and comes back with
    the import."""
    cmp = _Compare(monkeypatch)
    ia = IncrementalAnalyzer()
    before = _run(ia, IMPORTS)
    assert "GP303" in {f.code for f in before.findings}
    text = _edit(IMPORTS, "import softmax\n", "import softmaxq\n")
    got = _run(ia, text)
    assert ia.stats.mode == "incremental" and ia.stats.flow == "patched imports: `loss_fn` re-run (with `train`)"
    assert "GP303" not in {f.code for f in got.findings}
    assert {f.code for f in _run(ia, IMPORTS).findings} == {f.code for f in before.findings}  # undone
    # a name only `main` reads: `main` alone
    _run(ia, _edit(IMPORTS, "import os\n", "import osq\n"))
    assert ia.stats.flow == "patched imports: `main` re-run", ia.stats
    assert cmp.patched == 2 and not cmp.differ
    # (the facts of the readers bound their names again: as if built from nothing, see _Compare)


@pytest.mark.parametrize("text,needle,new,readers", [
    (SCRIPT, "import torch.nn.functional as F", "import torch.nn.functional as G", "`forward`"),
    (IMPORTS, "import torch\n", "import torchq\n", "`loss_fn`"),  # (the others read `nn`, `SGD`, ...)
])
def test_an_import_rules_spell_file_wide_runs_every_rule_and_patches_the_dataflow(monkeypatch, text, needle, new,
                                                                                 readers):
    """How the file spells torch.nn or its functional module: fixes and messages anywhere use it,
    so the whole file's rules run again; the dataflow still re-runs only the functions reading it."""
    cmp = _Compare(monkeypatch)
    ia = IncrementalAnalyzer()
    _run(ia, text)
    _run(ia, _edit(text, needle, new))
    assert ia.stats.flow == f"patched imports: {readers} re-run", ia.stats
    assert cmp.patched == 1 and not cmp.differ


def test_an_import_line_that_does_not_parse_patches_the_dataflow_of_the_recovered_text(monkeypatch):
    """`importq os`: the whole-file analysis analyses the text without that line (emptied by the
    recovery), which differs from the kept one by one import statement fewer: `main`, the one
    function reading `os`, runs again."""
    cmp = _Compare(monkeypatch)
    ia = IncrementalAnalyzer()
    _run(ia, IMPORTS)
    got = _run(ia, _edit(IMPORTS, "import os\n", "importq os\n"))
    assert ia.stats.flow == "patched imports: `main` re-run", ia.stats
    assert "GP000" in {f.code for f in got.findings}
    _run(ia, IMPORTS)
    _run(ia, _edit(IMPORTS, "from torch.nn.functional import softmax\n", "from torch.nn.functional import softmax,\n"))
    assert ia.stats.flow == "patched imports: `loss_fn` re-run (with `train`)", ia.stats
    assert cmp.patched == 2 and not cmp.differ


@pytest.mark.parametrize("needle,new,outcome", [
    # the optimizer's class is the import's: its binding changed
    ("from torch.optim import SGD\n", "from torch.optim import SGDq\n", "model or optimizer bindings changed"),
    # a decorator reads it (the script evaluates decorators)
    ("from torch import no_grad\n", "from torch import no_gradq\n", ""),
])
def test_import_edits_the_patch_does_not_take(monkeypatch, needle, new, outcome):
    cmp = _Compare(monkeypatch)
    ia = IncrementalAnalyzer()
    _run(ia, IMPORTS)
    _run(ia, _edit(IMPORTS, needle, new))
    assert not ia.stats.flow.startswith("patched") and ia.stats.flow == outcome, ia.stats
    assert cmp.patched == 0


METHODS = '''\
import torch
import torch.nn as nn
from torch.nn import Module
from torch.nn.functional import softmax


class Head(Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return torch.log(softmax(self.fc(x), dim=-1))


def main():
    model = Head()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for x, y in loader:
        opt.zero_grad()
        loss = nn.functional.nll_loss(model(x), y)
        loss.backward()
        opt.step()


main()
'''


def test_an_import_edit_reruns_the_methods_that_read_the_name(monkeypatch):
    cmp = _Compare(monkeypatch)
    ia = IncrementalAnalyzer()
    before = _run(ia, METHODS)
    got = _run(ia, _edit(METHODS, "import softmax\n", "import softmaxq\n"))
    assert ia.stats.flow.startswith("patched imports: `forward` re-run"), ia.stats
    assert cmp.patched == 1 and not cmp.differ
    assert "GP303" in {f.code for f in before.findings} - {f.code for f in got.findings}
    # a class's base reads it: the script builds the class (kept), so the whole flow runs
    _run(ia, METHODS)
    _run(ia, _edit(METHODS, "import Module\n", "import Moduleq\n"))
    assert not ia.stats.flow.startswith("patched") and cmp.patched == 1, ia.stats


SCRIPT_LOOP = '''\
import math

import torch

warmup = 100
base_lr = 0.1


def get_lr(it):
    if it < warmup:
        return base_lr * (it + 1) / (warmup + 1)
    return base_lr * 0.5 * (1.0 + math.cos(it))


model = torch.nn.Linear(4, 4)
opt = torch.optim.SGD(model.parameters(), lr=base_lr)
for it in range(10):
    lr = get_lr(it)
    for g in opt.param_groups:
        g["lr"] = lr
    opt.zero_grad()
    model(torch.randn(2, 4)).sum().backward()
    opt.step()
'''


@pytest.mark.parametrize("needle,new", [
    ("    return base_lr * 0.5", "    return base_lr * 0.6"),  # in the function
    ("import math\n", "import mathq\n"),  # in the imports
])
def test_a_function_the_script_calls_reruns_without_the_module_environment(monkeypatch, needle, new):
    """The whole flow runs the script's statements before it knows the module's environment, so a
    function they call sees no module variable (`warmup` here) there; its re-run must not either."""
    cmp = _Compare(monkeypatch)
    ia = IncrementalAnalyzer()
    _run(ia, SCRIPT_LOOP)
    _run(ia, _edit(SCRIPT_LOOP, needle, new))
    assert ia.stats.flow.startswith("patched") and "get_lr" in ia.stats.flow, ia.stats
    assert cmp.patched == 1 and not cmp.differ, cmp.differ


def test_a_function_edited_since_the_kept_flow_reruns_with_the_edited_one(monkeypatch):
    """An edit in a function nothing calls is analysed in part (no dataflow of that text is kept);
    the next edit, in a function the training reaches, starts from the dataflow before both and
    re-runs both functions."""
    text = SCRIPT.replace("\n\ndef main():", "\n\n@staticmethod\ndef unused_helper(x):\n    return x * 2\n\n\ndef main():")
    cmp = _Compare(monkeypatch)
    ia = IncrementalAnalyzer()
    _run(ia, text)
    text = _edit(text, "    return x * 2\n", "    return x * 3\n")
    _run(ia, text)
    assert ia.stats.mode == "incremental" and not ia.stats.flow  # regions in part
    _run(ia, _edit(text, "    scale = 1.0\n", "    scale = 2.0\n"))
    assert ia.stats.flow == "patched `compute_loss` (with `unused_helper`)", ia.stats
    assert cmp.patched == 1 and not cmp.differ, cmp.differ


# -- edits of a statement of the script ------------------------------------------------------------
SCRIPT_STATEMENTS = '''\
import torch
import torch.nn as nn
from diffusers.utils import check_min_version
from accelerate.logging import get_logger

check_min_version("0.10.0")
logger = get_logger(__name__)
TARGETS = ["to_q", "to_v"]


def train(model, opt, steps):
    for step in range(steps):
        opt.zero_grad()
        probs = torch.softmax(model(torch.randn(8, 4)), dim=-1)
        loss = -torch.log(probs).mean()
        loss.backward()
        opt.step()
        logger.info(f"step {step}: {TARGETS}")


def main():
    model = nn.Linear(4, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    train(model, opt, 10)


if __name__ == "__main__":
    main()
'''


@pytest.mark.parametrize("needle,new,outcome", [
    # a call of another module's function with another version: the statement alone runs again
    ('check_min_version("0.10.0")', 'check_min_version("0.11.0")', "patched a statement of the script"),
    # what `main` is called as: the statement runs again, the script calls no function of the file
    # either way (`main()` with nothing known of its arguments is not run again, see dataflow.py)
    ("    main()", "    mainq()", "patched a statement of the script"),
    # it binds another value: every function reading it would see another one
    ('TARGETS = ["to_q", "to_v"]', 'TARGETS = ["to_qq", "to_v"]', "what a statement of the script binds changed"),
])
def test_an_edit_of_a_statement_of_the_script_reruns_that_statement(monkeypatch, needle, new, outcome):
    cmp = _Compare(monkeypatch)
    ia = IncrementalAnalyzer()
    before = _run(ia, SCRIPT_STATEMENTS)
    assert "GP303" in {f.code for f in before.findings}
    got = _run(ia, _edit(SCRIPT_STATEMENTS, needle, new))
    assert ia.stats.flow == outcome, ia.stats
    assert {f.code for f in got.findings} == {f.code for f in before.findings}
    assert cmp.patched == (outcome.startswith("patched")) and not cmp.differ


# -- edits analysed in part (the regions an edit reaches), the dataflow of that part patched ----------
def _part_text(helpers: int = 12) -> str:
    """A model class and the loop that trains it, beside helpers that neither reaches (an edit in
    the class reaches less than most of the file, so it is analysed in part)."""
    head = '''\
import torch
import torch.nn as nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        h = self.fc(x)
        return torch.softmax(h, dim=-1)


def train():
    model = Net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(10):
        opt.zero_grad()
        loss = -torch.log(model(torch.randn(8, 4))).mean()
        loss.backward()
        opt.step()
'''
    tail = "".join(f'''

def helper_{n}(values):
    total = 0
    for v in values:
        total += v * {n}
    return total
''' for n in range(helpers))
    return head + tail


def test_keys_typed_into_a_method_analysed_in_part_patch_the_dataflow_of_that_part(monkeypatch):
    """The edit reaches the class and the loop that uses it, not the helpers: the rules run on that
    part, and from the second key on its dataflow is the one of the key before, with `forward`
    re-run (flow_bases.edit_in_part)."""
    cmp = _Compare(monkeypatch)
    text = _part_text()
    ia = IncrementalAnalyzer()
    before = _run(ia, text)
    assert "GP303" in {f.code for f in before.findings}
    needle = "        h = self.fc(x)\n"
    flows = []
    for typed in ("        h = self.fc(x)\n        s\n", "        h = self.fc(x)\n        sc\n",
                  "        h = self.fc(x)\n        sca\n"):
        _run(ia, _edit(text, needle, typed))
        assert ia.stats.mode == "incremental" and ia.stats.analysed_lines < len(text.split("\n")), ia.stats
        flows.append(ia.stats.flow)
        text2 = _edit(text, needle, typed)
    assert flows[1:] == ["patched `forward`", "patched `forward`"], flows
    assert cmp.patched == 2 and not cmp.differ
    assert {f.code for f in _run(ia, text2).findings} == {f.code for f in before.findings}


# -- blank lines added or removed --------------------------------------------------------------------
# (the loop's zero_grad removed: a GP4 finding after most places where a line is opened below)
NO_ZERO_GRAD = SCRIPT.replace("        optimizer.zero_grad()\n", "")


def _opened_after(text: str, needle: str) -> tuple[str, int]:
    """`text` with the Enter key pressed at the end of the line holding `needle` (the new line
    indented like it, blank): the new text and the new line's number."""
    lines = text.split("\n")
    i = next(k for k, ln in enumerate(lines) if needle in ln)
    indent = lines[i][:len(lines[i]) - len(lines[i].lstrip())]
    return "\n".join(lines[:i + 1] + [indent] + lines[i + 1:]), i + 2


@pytest.mark.parametrize("needle", ["x, y = make_batch(32)", "h = F.relu(self.fc1(x))", "import torch.nn as nn",
                                    "    main()", "avg = train_one_epoch("])
def test_the_enter_key_moves_the_tree_and_the_dataflow_and_runs_none_of_it(monkeypatch, needle):
    cmp = _Compare(monkeypatch)
    ia = IncrementalAnalyzer()
    before = _run(ia, NO_ZERO_GRAD)
    assert before.findings
    text, line = _opened_after(NO_ZERO_GRAD, needle)
    after = _run(ia, text)
    assert (ia.stats.reason, ia.stats.flow) == ("lines moved: the dataflow kept as it was", "lines moved: nothing re-run")
    assert cmp.patched == 1 and not cmp.differ, cmp.differ
    assert [(f.code, f.span.line + (f.span.line >= line)) for f in before.findings] == \
        [(f.code, f.span.line) for f in after.findings]
    # the blank line deleted again (a Backspace): moved back the same way
    _run(ia, NO_ZERO_GRAD)
    assert ia.stats.reason == "lines moved: the dataflow kept as it was"
    assert cmp.patched == 2 and not cmp.differ, cmp.differ


def test_a_key_typed_on_the_opened_line_patches_the_moved_dataflow(monkeypatch):
    cmp = _Compare(monkeypatch)
    ia = IncrementalAnalyzer()
    _run(ia, SCRIPT)
    text, line = _opened_after(SCRIPT, "x, y = make_batch(32)")
    _run(ia, text)
    lines = text.split("\n")
    for word in ("x", "x.", "x.sum", "x.sum()"):
        lines[line - 1] = "        " + word
        _run(ia, "\n".join(lines))
        if word in ("x", "x.sum()"):
            assert ia.stats.flow == "patched `train_one_epoch`", (word, ia.stats)
    assert cmp.patched >= 3 and not cmp.differ, cmp.differ


DOCSTRING = SCRIPT.replace("    model.train()\n    total = 0.0\n",
                           '    """One epoch.\n\n    Returns the mean loss."""\n    model.train()\n    total = 0.0 + \\\n        0.0\n')


@pytest.mark.parametrize("needle, moved", [('"""One epoch.', False), ("Returns the mean loss", True),
                                           ("total = 0.0 + \\", False)])
def test_a_blank_line_inside_a_string_or_after_a_continued_line_is_no_move(monkeypatch, needle, moved):
    """Inside a string a blank line is part of its value; after a backslash it ends the statement
    (a syntax error): neither leaves the tree as it was."""
    cmp = _Compare(monkeypatch)
    ia = IncrementalAnalyzer()
    _run(ia, DOCSTRING)
    text, _line = _opened_after(DOCSTRING, needle)
    _run(ia, text)
    assert (ia.stats.reason == "lines moved: the dataflow kept as it was") == moved, ia.stats
    assert not cmp.differ


def test_a_moved_analysis_cancelled_leaves_the_last_version_as_it_was(monkeypatch):
    import threading
    cmp = _Compare(monkeypatch)
    ia = IncrementalAnalyzer()
    _run(ia, NO_ZERO_GRAD)
    # (above the function holding the finding: its statement's tree is one of those that move)
    text, _line = _opened_after(NO_ZERO_GRAD, "x = torch.randn(n, width)")
    stop = threading.Event()
    stop.set()
    assert ia.analyze(text, "t.py", cancel=stop) is None
    _run(ia, NO_ZERO_GRAD)  # the last version's trees are where its text has them
    assert ia.stats.mode == "same"
    _run(ia, text)
    _run(ia, NO_ZERO_GRAD)
    assert ia.stats.reason == "lines moved: the dataflow kept as it was"
    assert not cmp.differ


@pytest.mark.parametrize("needle, fn", [("    return total / steps", "train_one_epoch"),
                                        ("        return self.fc2(h)", "forward"),
                                        ("        print(epoch, avg)", "main")])
def test_a_line_typed_after_the_last_statement_of_a_function_patches_it(monkeypatch, needle, fn):
    """The function grows by the line (the previous tree's ends before it): it is the edited one
    all the same, in a class too (the method parsed alone, with the line)."""
    cmp = _Compare(monkeypatch)
    ia = IncrementalAnalyzer()
    text, line = _opened_after(SCRIPT, needle)
    _run(ia, text)  # (a blank line after it already: the keys below add no line)
    lines = text.split("\n")
    indent = needle[:len(needle) - len(needle.lstrip())]
    for word in ("x", "x.sum()", "y = x.sum()"):
        lines[line - 1] = indent + word
        _run(ia, "\n".join(lines))
        assert ia.stats.flow == f"patched `{fn}`", (word, ia.stats)
    assert cmp.patched == 3 and not cmp.differ, cmp.differ


def _lines_edited(text: str, needle: str, replacement: list) -> str:
    """`text` with the line holding `needle` replaced by the lines `replacement` (none: deleted)."""
    lines = text.split("\n")
    i = next(k for k, ln in enumerate(lines) if needle in ln)
    return "\n".join(lines[:i] + replacement + lines[i + 1:])


@pytest.mark.parametrize("needle, replacement, fn", [
    ("    model.train()", [], "train_one_epoch"),
    ("total += loss.item()", ["        total += loss.item()", "        total += 0.0"], "train_one_epoch"),
    ("h = F.relu(self.fc1(x))", ["        h = F.relu(self.fc1(x))", "        h = h * 1.0", "        h = h + 0.0"], "forward"),
    ("    model = Net()", ["    model = Net()", '    print("start")'], "main"),
])
def test_lines_added_or_removed_in_a_function_body_patch_that_function(monkeypatch, needle, replacement, fn):
    """A line deleted, pasted or duplicated: the kept tree is moved where the new text has the
    lines after it, and the edited function re-runs (its statements on the old lines go)."""
    cmp = _Compare(monkeypatch)
    ia = IncrementalAnalyzer()
    before = _run(ia, NO_ZERO_GRAD)
    text = _lines_edited(NO_ZERO_GRAD, needle, replacement)
    after = _run(ia, text)
    assert ia.stats.flow.startswith(f"patched `{fn}`"), ia.stats
    assert cmp.patched == 1 and not cmp.differ, cmp.differ
    assert len(after.findings) == len(before.findings)
    _run(ia, NO_ZERO_GRAD)  # and back
    assert cmp.patched == 2 and not cmp.differ, cmp.differ


def test_a_deleted_line_that_assigns_an_attribute_runs_the_whole_flow(monkeypatch):
    """(what a class's attributes hold is compared on the kept tree, whose edited lines did not
    move): found right all the same."""
    cmp = _Compare(monkeypatch)
    ia = IncrementalAnalyzer()
    _run(ia, SCRIPT)
    _run(ia, _lines_edited(SCRIPT, "self.fc2 = nn.Linear(64, n)", []))
    assert not ia.stats.flow.startswith("patched") and not cmp.differ


def test_a_line_deletion_cancelled_leaves_the_last_version_as_it_was(monkeypatch):
    import threading
    cmp = _Compare(monkeypatch)
    ia = IncrementalAnalyzer()
    _run(ia, NO_ZERO_GRAD)
    text = _lines_edited(NO_ZERO_GRAD, "y = torch.randint(0, 10, (n,))", [])
    stop = threading.Event()
    stop.set()
    assert ia.analyze(text, "t.py", cancel=stop) is None
    _run(ia, text)  # (the finding below the edit, in train_one_epoch, where the text has it)
    _run(ia, NO_ZERO_GRAD)
    assert not cmp.differ
