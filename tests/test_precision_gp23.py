"""Precision of GP2/GP3 on well-kept code (issue 17): the value-range lattice (bounds.py), severities
of the layer-contract case, messages that blame a sigmoid / promise "learns nothing" only when true."""
import math
from pathlib import Path

from gp_helpers import run
from gradpath.analysis import bounds
from gradpath.analysis.bounds import Rng

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def test_rng_arithmetic():
    unit, pos = bounds.UNIT, bounds.POS
    assert pos.excludes_zero() and not unit.excludes_zero()
    assert bounds.add(bounds.NONNEG, pos).excludes_zero()  # x**2 + eps
    assert not bounds.add(bounds.NONNEG, bounds.NONNEG).excludes_zero()
    assert bounds.sub(Rng(1, 1), unit) == Rng(0, 1)  # 1 - sigmoid: can be 0
    squeezed = bounds.add(bounds.mul(unit, Rng(0.999, 0.999)), Rng(0.0005, 0.0005))
    assert squeezed.lo == 0.0005 and math.isclose(squeezed.hi, 0.9995)
    assert bounds.sub(Rng(1, 1), squeezed).excludes_zero()
    assert bounds.mul(pos, pos).excludes_zero() and not bounds.mul(pos, unit).excludes_zero()
    assert bounds.div(bounds.NONNEG, pos) == bounds.NONNEG
    assert bounds.power(bounds.add(Rng(1, 1), bounds.NONNEG), -1.5) == pos  # Student-t kernel
    assert bounds.hull(Rng(0, 1), Rng(2, 3)) == Rng(0, 3)
    assert bounds.clamp(None, 1e-6, None).excludes_zero()


def test_convex_mix_stays_in_the_hull():
    # (1 - g) * z + g * 0.5 with g in (0, 1]: strictly inside (0, 1)
    r = bounds.convex(Rng(0, 1, lo_open=True), bounds.UNIT, Rng(0.5, 0.5))
    assert r == Rng(0, 1, True, True) and r.excludes_zero() and r.excludes(1.0)
    # a gate that may be 0 or 1 keeps the ends
    assert bounds.convex(bounds.UNIT, bounds.UNIT, bounds.UNIT) == bounds.UNIT
    # a gate outside [0, 1] is no convex mix
    assert bounds.convex(Rng(-1, 2), bounds.UNIT, bounds.UNIT) is None


def test_eps_names():
    for name in ("eps", "self.eps", "norm_eps", "layer_norm_epsilon", "EPS", "eps2"):
        assert bounds.eps_named(name), name
    for name in ("steps", "reps", "epsilon_greedy", "keps_x"):
        assert not bounds.eps_named(name), name


def _fixture(rel):
    return (FIXTURES / rel).read_text(encoding="utf-8")


def test_gp301_layer_contract_is_info_loss_side_mean_is_warning():
    found = {(f.span.line, f.code): f for f in run(_fixture("gp3/gp301_layer_contract.py"), "GP3")}
    assert found[(30, "GP301")].severity == "info"
    assert "inside `GraphConv.forward`, with no loss in sight" in found[(30, "GP301")].message
    assert found[(41, "GP301")].severity == "info"
    assert found[(60, "GP301")].severity == "warning"
    assert "no loss in sight" not in found[(60, "GP301")].message


def test_gp302_blames_a_sigmoid_only_when_z_is_one():
    prog = """\
    import torch
    import torch.nn as nn

    model = nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(8, 4)
    p = torch.sigmoid(model(x))
    w = model(x).clamp(max=1.0)
    loss = -torch.log(1 - p).mean() - torch.log(1 - w).mean()
    loss.backward()
    opt.step()
    """
    fs = sorted(run(prog, "GP302"), key=lambda f: f.span.col)
    assert len(fs) == 2
    assert "`1 - p` is 0 wherever `p` reaches 1 (sigmoid(x) is exactly 1.0" in fs[0].message
    assert "`1 - w` is 0 wherever `w` reaches 1, and log(0)" in fs[1].message
    assert "sigmoid" not in fs[1].message


def test_gp203_says_learns_nothing_only_with_a_model_or_optimizer():
    prog = """\
    import torch


    def check(out):
        total = out.sum()
        total = torch.tensor(total.item(), requires_grad=True)
        total.backward()
    """
    [f] = run(prog, "GP2")
    assert f.code == "GP203"
    assert "no gradient reaches any model parameter" in f.message
    assert "learns nothing" not in f.message
    [g] = [f for f in run(_fixture("gp2/gp203_autograd_demo.py"), "GP2")]
    assert g.span.line == 28 and g.message.endswith("training runs and learns nothing")


def test_gp301_zeros_replaced_before_dividing():
    prog = """\
    import torch
    import torch.nn as nn

    model = nn.Linear(4, 3)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(8, 4)
    s = model(x)
    denom = s.abs().sum(dim=1, keepdim=True)
    denom[denom == 0] = 1.0
    a = s / denom
    d2 = s.abs().sum(dim=0).masked_fill(s.abs().sum(dim=0) == 0, 1.0)
    b = s / d2
    c = s / s.abs().sum(dim=1, keepdim=True)
    loss = (a + b + c).pow(2).mean()
    loss.backward()
    opt.step()
    """
    assert [(f.span.line, f.code) for f in run(prog, "GP3")] == [(13, "GP301")]
