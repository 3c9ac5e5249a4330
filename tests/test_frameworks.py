"""Framework loops (issue 16): counter guards, helper effects, framework bodies recognised by
qualified names (never imported), exact ranges of the framework fixtures' findings, their fixes
applied and re-checked."""
from __future__ import annotations

import ast
import subprocess
import sys
import textwrap

import pytest

from gp_helpers import apply_fix, run, span_text
from testpaths import FIXTURES, ROOT
from gradpath.analysis import accumulation, analyze, effects
from gradpath.analysis.effects import Effect

FW = FIXTURES / "frameworks"


def guard(src, consts=None):
    consts = consts or {}
    return accumulation.parse_guard(ast.parse(src, mode="eval").body,
                                    lambda n: consts.get(ast.unparse(n)))


# -- counter guards --------------------------------------------------------------------------------

def test_counter_guards_read_as_residues():
    g = guard("(i + 1) % 4 == 0")
    assert (g.counter, g.period, g.truth) == ("i", 4, frozenset({3}))
    assert guard("i % k", {"k": 3}).truth == frozenset({1, 2})
    assert guard("not step % k", {"k": 3}).truth == frozenset({0})
    assert guard("engine.state.iteration % ACC == 1", {"ACC": 1}).never
    assert guard("i % 4 == 0 or i % 4 == 1").truth == frozenset({0, 1})
    assert guard("it % cfg.n == cfg.n - 1", {"cfg.n": 5}).truth == frozenset({4})
    # `i = 0` before the loop does not turn the counter into a constant
    assert guard("i % 2 == 0", {"i": 0}).truth == frozenset({0})


def test_unknown_guards_are_not_evaluated():
    assert guard("i % k == 0") is None  # k unknown
    assert guard("did_step") is None
    assert guard("i % 4 == 0 and use_amp") is None
    assert guard("i > 10") is None
    assert accumulation.never_true(ast.parse("use_amp and i % 1 == 1", mode="eval").body)
    assert not accumulation.never_true(ast.parse("use_amp or i % 1 == 1", mode="eval").body)


# -- helper effects --------------------------------------------------------------------------------

def _fn(src):
    return ast.parse(textwrap.dedent(src)).body[0]


def test_helper_effects_on_parameters_and_self():
    fn = _fn("""
        def set_mode(mode, models):
            for m in models:
                if mode == "train":
                    m.train()
                else:
                    m.eval()
    """)
    assert [(e.kind, e.target, e.conditional) for e in effects.summarize(fn)] == \
        [("train", "models[*]", True), ("eval", "models[*]", True)]
    assert [(e.kind, e.target, e.conditional) for e in effects.summarize(fn, {"mode": "eval"})] == \
        [("eval", "models[*]", False)]
    val = _fn("""
        def validate(self, loader):
            self.model.eval()
            local = make()
            local.train()
            return sum(self.model(x) for x in loader)
    """)
    assert [(e.kind, e.target) for e in effects.summarize(val)] == [("eval", "self.model")]
    step = _fn("""
        def train_step(model, optimizer, loss_fn, x, y, accelerator):
            optimizer.zero_grad()
            loss = loss_fn(model(x), y)
            accelerator.backward(loss)
            optimizer.step()
            model.train(False)
    """)
    got = effects.summarize(step)
    assert [(e.kind, e.target) for e in got] == [("zero_grad", "optimizer"), ("backward", "?"),
                                                 ("step", "optimizer"), ("eval", "model")]
    assert all(isinstance(e, Effect) and isinstance(e.node, ast.Call) for e in got)


def test_call_literals_and_branch_pruning():
    fn = _fn("def f(self, phase, flag=False): pass")
    call = ast.parse("obj.f('val', flag=True)", mode="eval").body
    lits = effects.call_literals(call, fn, skip_first=True)
    assert lits == {"phase": "val", "flag": True}
    assert effects.branch_taken(ast.parse("phase == 'train'", mode="eval").body, lits) is False
    assert effects.branch_taken(ast.parse("phase in ('val', 'test') and flag", mode="eval").body, lits) is True
    assert effects.branch_taken(ast.parse("other", mode="eval").body, lits) is None


# -- framework fixtures: exact ranges, messages, fixes ------------------------------------------------

def check(path):
    text = path.read_text(encoding="utf-8")
    res = analyze(text, str(path))
    assert not res.failed_rules, res.failed_rules
    return text, res.findings


@pytest.mark.parametrize("name, code, covered", [
    ("lightning_manual_accumulation.py", "GP402", "opt.zero_grad()"),
    ("accelerate_model_zero_grad.py", "GP402", "model.zero_grad()"),
    ("ignite_never_cleared.py", "GP401", "def update"),
    ("hf_trainer_cut_loss.py", "GP201", "loss"),
    ("helpers_mode_switch.py", "GP407", "self.validate()"),
    ("lightning_configure_optimizers.py", "GP103", "self.encoder.parameters()"),
])
def test_framework_findings_cover_the_offending_expression(name, code, covered):
    text, fs = check(FW / name)
    got = [f for f in fs if f.code == code]
    assert got, [f.code for f in fs]
    assert span_text(text, got[0].span) == covered


def test_lightning_manual_accumulation_message_and_fix():
    text, fs = check(FW / "lightning_manual_accumulation.py")
    (f,) = fs
    assert "opt.step() (line 27) only when `(batch_idx + 1) % ACCUMULATE == 0`" in f.message
    assert f.data["accumulation"] and f.data["clear_line"] == 22
    assert [r.span.line for r in f.related] == [25, 27]
    (fix,) = f.fixes
    assert not fix.safe
    fixed = apply_fix(text, fix)
    assert "            opt.step()\n            opt.zero_grad()\n" in fixed
    res = analyze(fixed, "fixed.py")
    assert [g.code for g in res.findings] == []


def test_accelerate_fix_clears_with_the_prepared_optimizer():
    text, fs = check(FW / "accelerate_model_zero_grad.py")
    (f,) = fs
    assert "accelerate skips optimizer.step() (line 21)" in f.message
    fixed = apply_fix(text, f.fixes[0])
    assert "        model.zero_grad()" not in fixed and "optimizer.step()\n        optimizer.zero_grad()" in fixed
    assert analyze(fixed, "fixed.py").findings == []


def test_ignite_never_true_clear_and_its_fix():
    text, fs = check(FW / "ignite_never_cleared.py")
    (f,) = fs
    assert "runs only when `engine.state.iteration % ACCUMULATION_STEPS == 1` (line 18), which is never true" \
        in f.message
    fixed = apply_fix(text, f.fixes[0])
    assert "# expect: GP401\n    optimizer.zero_grad()\n    model.train()" in fixed
    assert analyze(fixed, "fixed.py").findings == []


def test_gp401_fix_in_a_lightning_body_goes_after_the_optimizer_binding():
    src = textwrap.dedent('''
        import pytorch_lightning as pl
        import torch.nn.functional as F


        class Lit(pl.LightningModule):
            def __init__(self, net):
                super().__init__()
                self.automatic_optimization = False
                self.net = net

            def training_step(self, batch, batch_idx):
                """One manual step."""
                opt = self.optimizers()
                x, y = batch
                loss = F.mse_loss(self.net(x), y)
                self.manual_backward(loss)
                opt.step()
    ''')
    fs = [f for f in analyze(src, "lit.py").findings if f.code == "GP401"]
    assert len(fs) == 1 and span_text(src, fs[0].span) == "def training_step"
    fixed = apply_fix(src, fs[0].fixes[0])
    assert "opt = self.optimizers()\n        opt.zero_grad()\n        x, y = batch" in fixed


def test_gp407_through_a_helper_is_at_the_call_with_the_helper_line_related():
    text, fs = check(FW / "helpers_mode_switch.py")
    by_line = {f.span.line: f for f in fs}
    f = by_line[32]
    assert "self.model.eval() (line 17, reached through `self.validate()`)" in f.message
    assert f.related[0].span.line == 17
    g = by_line[54]
    assert span_text(text, g.span) == 'set_mode("eval", [encoder, decoder])'
    assert g.related[0].span.line == 40


def test_automatic_optimization_is_not_a_gp4_loop():
    # Lightning clears and steps: no GP401/GP404 on a training_step that only returns its loss
    src = '''
        import lightning as L
        import torch
        import torch.nn.functional as F

        class Lit(L.LightningModule):
            def __init__(self):
                super().__init__()
                self.layer = torch.nn.Linear(4, 1)

            def training_step(self, batch, batch_idx):
                x, y = batch
                return F.mse_loss(self.layer(x), y)

            def configure_optimizers(self):
                return torch.optim.SGD(self.parameters(), lr=0.1)
    '''
    assert run(src) == []
    cut = src.replace("return F.mse_loss(self.layer(x), y)", "return F.mse_loss(self.layer(x), y).detach()")
    fs = run(cut)
    assert [f.code for f in fs] == ["GP201"] and "when Lightning backwards the loss `training_step` returns" \
        in fs[0].message


def test_frameworks_are_never_imported():
    code = ("import sys, pathlib\n"
            "from gradpath.analysis import analyze\n"
            f"for p in sorted(pathlib.Path({str(FW)!r}).glob('*.py')):\n"
            "    analyze(p.read_text(), str(p))\n"
            "bad = [m for m in ('pytorch_lightning', 'lightning', 'ignite', 'accelerate', 'transformers', 'trl', 'torch')"
            " if m in sys.modules]\n"
            "print(bad)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_live_reason_for_a_missing_framework():
    from gradpath.live.frameworks import missing_framework, missing_reason
    assert missing_framework("ModuleNotFoundError", "No module named 'pytorch_lightning.core'") == "pytorch_lightning"
    assert missing_framework("ModuleNotFoundError", "No module named 'numpyy'") is None
    r = missing_reason({"exception": {"type": "ModuleNotFoundError", "message": "No module named 'accelerate'",
                                      "line": 7}})
    assert r.startswith("needs accelerate: the script imports it at line 7")
