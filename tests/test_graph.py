"""GP2: losses cut off from the graph. Messages, ranges, related places, fixes, probes, and
independent real-world-style programs (firing and quiet)."""
import json
import subprocess
import sys
import textwrap

import pytest

from gp_helpers import apply_fix, codes, run, span_text

RAISES = ("backward() raises RuntimeError: element 0 of tensors does not require grad and does not "
          "have a grad_fn")

SEED_DETACH = """\
import torch
import torch.nn as nn
import torch.optim as optim

model = nn.Linear(10, 1)
optimizer = optim.Adam(model.parameters(), lr=0.001)
input_tensor = torch.randn(1, 10)
target = torch.randn(1, 1)
output = model(input_tensor)
loss = nn.MSELoss()(output, target)
loss_detached = loss.detach()
loss_detached.backward()
optimizer.step()
"""


def test_gp201_detached_loss_message_range_related_fix_probe():
    [f] = run(SEED_DETACH, "GP2")
    assert f.code == "GP201" and f.severity == "error"
    assert f.message == f"`loss_detached` is `loss.detach()`: {RAISES}"
    assert span_text(SEED_DETACH, f.span) == "loss_detached.backward()"
    rel = {(r.span.line, span_text(SEED_DETACH, r.span)) for r in f.related}
    assert (11, "loss.detach()") in rel  # where the cut happens
    assert (9, "model(input_tensor)") in rel  # where the model output comes from
    probe = f.data["probe"]
    assert probe["what"] == "backward-value" and probe["expr"] == "loss_detached"
    assert f.data["model"] == "model"
    [fix] = f.fixes
    assert fix.safe
    fixed = apply_fix(SEED_DETACH, fix)
    assert "loss_detached = loss\n" in fixed
    assert codes(fixed, "GP2") == []


def test_gp201_loss_after_argmax_no_safe_fix():
    prog = """\
    import torch
    import torch.nn as nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(8, 4)

        def forward(self, x):
            return self.fc(x)

    def fit(model, loader, opt):
        for xb, yb in loader:
            scores = model(xb)
            predicted = scores.argmax(1)
            loss = nn.functional.mse_loss(predicted.float(), yb.float())
            opt.zero_grad()
            loss.backward()
            opt.step()

    net = Net()
    fit(net, [], torch.optim.SGD(net.parameters(), lr=0.1))
    """
    [f] = run(prog, "GP2")
    assert (f.code, f.span.line) == ("GP201", 18)
    assert "`loss` is computed from `scores.argmax(1)` (line 15)" in f.message
    assert f.fixes == []  # argmax cannot be removed automatically


def test_gp201_numpy_round_trip_policy_gradient():
    prog = """\
    import numpy as np
    import torch
    import torch.nn as nn

    class Actor(nn.Module):
        def __init__(self):
            super().__init__()
            self.l1 = nn.Linear(8, 64)
            self.l2 = nn.Linear(64, 4)

        def forward(self, s):
            return torch.softmax(self.l2(torch.tanh(self.l1(s))), dim=-1)

    actor = Actor()
    optim = torch.optim.Adam(actor.parameters(), lr=3e-4)
    episode_logps, episode_rewards = [], []
    for t in range(20):
        s = torch.randn(8)
        dist = actor(s).detach().numpy()
        a = np.random.choice(4, p=dist)
        episode_logps.append(np.log(dist[a]))
        episode_rewards.append(1.0)
    G = np.cumsum(episode_rewards[::-1])[::-1]
    policy_loss = torch.tensor(-np.sum(np.array(episode_logps) * G), dtype=torch.float32)
    optim.zero_grad()
    policy_loss.backward()
    optim.step()
    """
    [f] = run(prog, "GP2")
    assert (f.code, f.span.line) == ("GP201", 26)
    assert "`policy_loss` is computed from `actor(s).detach()` (line 19)" in f.message
    assert f.data["probe"]["expr"] == "policy_loss"


def test_gp203_loss_rebuilt_from_item_fix_restores_graph():
    prog = """\
    import torch
    import torch.nn as nn

    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 1))
    optimizer = torch.optim.Adam(model.parameters())
    criterion = nn.MSELoss()

    def train_step(x, y):
        optimizer.zero_grad()
        raw = criterion(model(x), y)
        loss = torch.tensor(raw.item(), requires_grad=True)
        loss.backward()
        optimizer.step()
        return loss.item()

    train_step(torch.randn(2, 4), torch.randn(2, 1))
    """
    [f] = run(prog, "GP2")
    assert (f.code, f.severity) == ("GP203", "warning")
    assert span_text(prog, f.span) == "torch.tensor(raw.item(), requires_grad=True)"
    assert "hides the cut at `raw.item()` (line 11)" in f.message
    assert "no gradient reaches `model`" in f.message
    [fix] = f.fixes
    assert not fix.safe
    fixed = apply_fix(prog, fix)
    assert "    loss = raw\n" in fixed
    assert codes(fixed, "GP2") == []


def test_gp203_requires_grad_flag_fix_removes_patch_and_detach():
    prog = """\
    import torch
    import torch.nn as nn

    net = nn.Linear(3, 1)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    out = net(torch.randn(5, 3)).detach()
    loss = ((out - torch.randn(5, 1)) ** 2).mean()
    loss.requires_grad = True
    loss.backward()
    opt.step()
    """
    [f] = run(prog, "GP2")
    assert (f.code, f.span.line) == ("GP203", 8)
    fixed = apply_fix(prog, f.fixes[0])
    assert "requires_grad" not in fixed
    assert "out = net(torch.randn(5, 3))\n" in fixed
    assert codes(fixed, "GP2") == []


def test_gp202_forward_under_no_grad_fix_moves_it_out():
    prog = """\
    import torch
    import torch.nn as nn

    model = nn.Linear(6, 2)
    opt = torch.optim.Adam(model.parameters())
    x, y = torch.randn(4, 6), torch.tensor([0, 1, 1, 0])
    with torch.inference_mode():
        logits = model(x)
    loss = nn.functional.cross_entropy(logits, y)
    loss.backward()
    opt.step()
    """
    [f] = run(prog, "GP2")
    assert (f.code, f.severity) == ("GP202", "error")
    assert span_text(prog, f.span) == "model(x)"
    assert f.message.startswith("`model(x)` runs under `torch.inference_mode()` (line 7)")
    assert {r.span.line for r in f.related} == {7, 10}
    fixed = apply_fix(prog, f.fixes[0])
    assert "inference_mode" not in fixed and "\nlogits = model(x)\n" in fixed
    assert codes(fixed, "GP2") == []


def test_gp202_decorated_helper_reported_at_call():
    prog = """\
    import torch
    import torch.nn as nn

    enc = nn.Linear(3, 3)
    opt = torch.optim.SGD(enc.parameters(), lr=0.1)

    @torch.no_grad()
    def embed(x):
        return enc(x)

    z = embed(torch.randn(2, 3))
    z.pow(2).sum().backward()
    opt.step()
    """
    [f] = run(prog, "GP2")
    assert (f.code, span_text(prog, f.span)) == ("GP202", "embed(torch.randn(2, 3))")
    fixed = apply_fix(prog, f.fixes[0])
    assert "no_grad" not in fixed
    assert codes(fixed, "GP2") == []


def test_gp201_branch_definition_that_may_reach_is_a_warning():
    prog = """\
    import torch
    import torch.nn as nn

    model = nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for step in range(3):
        out = model(torch.randn(4, 2))
        if out.isnan().any():
            loss = torch.tensor(0.0)
        else:
            loss = out.pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    """
    [f] = run(prog, "GP2")
    assert (f.code, f.severity, f.span.line) == ("GP201", "warning", 13)
    assert f.message.startswith("if the other branch of line 8 is taken, `loss` is `torch.tensor(0.0)`")


def test_gp204_detached_encoder_in_optimizer():
    prog = """\
    import torch
    import torch.nn as nn

    class AE(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = nn.Linear(16, 4)
            self.decoder = nn.Linear(4, 16)

    ae = AE()
    opt = torch.optim.Adam(ae.parameters())
    for i in range(3):
        x = torch.randn(8, 16)
        code = ae.encoder(x).detach()
        loss = ((ae.decoder(code) - x) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    """
    [f] = run(prog, "GP2")
    assert (f.code, f.span.line) == ("GP204", 14)
    assert span_text(prog, f.span) == "ae.encoder(x).detach()"
    assert "`ae.encoder`'s parameters are in `opt` (Adam)" in f.message
    assert f.data["optimizer"] == "opt"
    assert not f.fixes[0].safe


QUIET = {
    "gan": """\
    import torch
    import torch.nn as nn
    G = nn.Linear(4, 2); D = nn.Linear(2, 1)
    opt_g = torch.optim.Adam(G.parameters()); opt_d = torch.optim.Adam(D.parameters())
    crit = nn.BCEWithLogitsLoss()
    for _ in range(2):
        fake = G(torch.randn(8, 4))
        d_loss = crit(D(fake.detach()), torch.zeros(8, 1)) + crit(D(torch.randn(8, 2)), torch.ones(8, 1))
        opt_d.zero_grad(); d_loss.backward(); opt_d.step()
        g_loss = crit(D(fake), torch.ones(8, 1))
        opt_g.zero_grad(); g_loss.backward(); opt_g.step()
    """,
    "dqn target network": """\
    import torch
    import torch.nn as nn
    q = nn.Linear(4, 2); q_target = nn.Linear(4, 2)
    opt = torch.optim.RMSprop(q.parameters())
    s, s2, r = torch.randn(8, 4), torch.randn(8, 4), torch.randn(8)
    with torch.no_grad():
        y = r + 0.9 * q_target(s2).max(1)[0]
    loss = nn.functional.mse_loss(q(s).max(1)[0], y)
    opt.zero_grad(); loss.backward(); opt.step()
    """,
    "distillation teacher": """\
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    teacher, student = nn.Linear(5, 3), nn.Linear(5, 3)
    opt = torch.optim.SGD(student.parameters(), lr=0.1)
    x = torch.randn(4, 5)
    with torch.no_grad():
        soft = F.softmax(teacher(x) / 2.0, dim=-1)
    loss = F.kl_div(F.log_softmax(student(x) / 2.0, dim=-1), soft, reduction="batchmean")
    opt.zero_grad(); loss.backward(); opt.step()
    """,
    "metrics, item logging, ema": """\
    import copy
    import torch
    import torch.nn as nn
    model = nn.Linear(5, 3); ema = copy.deepcopy(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    total = 0.0
    for xb, yb in [(torch.randn(4, 5), torch.tensor([0, 1, 2, 0]))]:
        out = model(xb)
        loss = nn.functional.cross_entropy(out, yb)
        opt.zero_grad(); loss.backward(); opt.step()
        total += loss.item()
        acc = (out.argmax(1) == yb).float().mean().item()
        with torch.no_grad():
            for pe, p in zip(ema.parameters(), model.parameters()):
                pe.copy_(0.99 * pe + 0.01 * p)
    print(total, acc)
    """,
    "amp scaler and accumulation": """\
    import torch
    import torch.nn as nn
    model = nn.Linear(3, 1)
    opt = torch.optim.Adam(model.parameters())
    scaler = torch.cuda.amp.GradScaler(enabled=False)
    for i, (x, y) in enumerate([(torch.randn(2, 3), torch.randn(2, 1))] * 4):
        with torch.autocast("cpu", enabled=False):
            loss = nn.functional.mse_loss(model(x), y) / 2
        scaler.scale(loss).backward()
        if (i + 1) % 2 == 0:
            scaler.step(opt); scaler.update(); opt.zero_grad()
    """,
    "loop that always runs replaces the no_grad loss": """\
    import torch
    import torch.nn as nn
    model = nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(4, 3)
    with torch.no_grad():
        loss = model(x).pow(2).mean()
    print("before", loss.item())
    for _ in range(3):
        loss = model(x).pow(2).mean()
    loss.backward()
    opt.step()
    """,
    "simsiam stop-gradient on the same model": """\
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    net = nn.Linear(8, 8)
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    x1, x2 = torch.randn(4, 8), torch.randn(4, 8)
    p1, z2 = net(x1), net(x2)
    loss = -F.cosine_similarity(p1, z2.detach(), dim=-1).mean()
    opt.zero_grad(); loss.backward(); opt.step()
    """,
}


@pytest.mark.parametrize("name", sorted(QUIET))
def test_correct_programs_stay_quiet(name):
    assert codes(QUIET[name], "GP2") == []


def test_cli_json_reports_gp2_at_the_right_lines(tmp_path):
    p = tmp_path / "train.py"
    p.write_text(textwrap.dedent(SEED_DETACH))
    out = subprocess.run([sys.executable, "-m", "gradpath", "check", "--format", "json", str(p)],
                         capture_output=True, text=True, timeout=120)
    data = json.loads(out.stdout)
    items = data if isinstance(data, list) else data.get("findings", [])
    got = [(d["code"], d["line"], d["column"], d["end_column"]) for d in items]
    assert ("GP201", 12, 1, 25) in got


def test_real_torch_agrees_with_gp201_and_gp203(tmp_path):
    """The claims in the messages hold in torch: backward on the detached loss raises exactly that
    RuntimeError; the requires_grad patch runs but leaves every parameter's grad None; the fixed
    program gives the model gradients."""
    script = textwrap.dedent("""\
        import torch, torch.nn as nn
        res = {}
        model = nn.Linear(10, 1)
        loss = nn.MSELoss()(model(torch.randn(1, 10)), torch.randn(1, 1))
        try:
            loss.detach().backward()
            res["detach"] = "no error"
        except RuntimeError as e:
            res["detach"] = str(e)
        patched = torch.tensor(loss.item(), requires_grad=True)
        patched.backward()
        res["patched_grads"] = [p.grad is None for p in model.parameters()]
        loss.backward()
        res["fixed_grads"] = [p.grad is not None for p in model.parameters()]
        print(__import__("json").dumps(res))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["detach"] == "element 0 of tensors does not require grad and does not have a grad_fn"
    assert res["patched_grads"] == [True, True]
    assert res["fixed_grads"] == [True, True]


@pytest.mark.parametrize("patch, fixed_rhs", [
    ("loss.clone().detach().requires_grad_(True)", "loss.clone()"),
    ("torch.tensor(loss, requires_grad=True)", "loss"),
    ("torch.autograd.Variable(loss.data, requires_grad=True)", "loss"),
])
def test_gp203_patch_forms_and_their_fixes(patch, fixed_rhs):
    prog = f"""\
import torch
import torch.nn as nn
net = nn.Linear(2, 1)
opt = torch.optim.SGD(net.parameters(), lr=0.1)
loss = ((net(torch.randn(3, 2)) - 1) ** 2).mean()
loss2 = {patch}
loss2.backward()
opt.step()
"""
    [f] = run(prog, "GP2")
    assert (f.code, f.span.line, span_text(prog, f.span)) == ("GP203", 6, patch)
    assert "no gradient reaches `net`" in f.message
    fixed = apply_fix(prog, f.fixes[0])
    assert f"loss2 = {fixed_rhs}\n" in fixed
    assert codes(fixed, "GP2") == []


# -- dataflow speed-up: loops with no loop-carried value get one pass -------------------------------
@pytest.mark.parametrize("src,carries", [
    ("for x in xs:\n    y = f(x)\n    y.backward()\n", False),
    ("for x in xs:\n    total += f(x)\n", True),
    ("for x in xs:\n    errors.append(f(x))\n", False),
    ("for x in xs:\n    errors.append(f(x))\n    print(errors)\n", True),
    ("for x in xs:\n    if c:\n        y = 1\n    g(y)\n    y = 2\n", True),
    ("for x in xs:\n    self.h.append(x)\n    self.opt.step()\n", False),
    ("for x in xs:\n    self.h = x\n    g(self.h)\n", True),
    ("for x in xs:\n    with torch.no_grad():\n        y = m(x)\n    y.sum()\n", False),
    ("for x in xs:\n    torch.set_grad_enabled(False)\n", True),
    ("for x in xs:\n    def f(): pass\n", True),
    ("while i < 3:\n    i = i + 1\n", True),
    ("for x in xs:\n    h = g(h)\n", True),
    ("for x in xs:\n    a, b = f(x)\n    c = a + b\n", False),
    ("for x in xs:\n    buf[i] = x\n    y = buf[0]\n", True),
])
def test_loop_carries(src, carries):
    import ast
    from gradpath.analysis.dataflow import loop_carries
    assert loop_carries(ast.parse(src).body[0]) is carries


def test_single_pass_loops_change_no_finding(monkeypatch):
    """The one-pass shortcut gives exactly the findings of two passes everywhere on the fixtures."""
    import pathlib
    from gradpath.analysis import dataflow
    from gradpath.analysis.engine import analyze
    files = sorted(pathlib.Path(__file__).resolve().parent.parent.joinpath("fixtures").rglob("*.py"))
    assert len(files) > 50

    def snap():
        return {f: sorted((x.code, x.span.line, x.span.col, x.message, repr(x.fixes)) for x in
                          analyze(f.read_text(), str(f)).findings) for f in files}
    fast = snap()
    monkeypatch.setattr(dataflow, "loop_carries", lambda st: True)
    assert snap() == fast


def test_gp201_direct_detach_of_a_value_the_dataflow_cannot_see():
    """REINFORCE-style: the loss is built from log-probs collected on the policy by another
    function; `loss.detach().backward()` still raises for real, and the safe fix trains."""
    torch = pytest.importorskip("torch")
    from testpaths import FIXTURES
    text = (FIXTURES / "gp2" / "gp201_detach_of_a_collected_loss.py").read_text()
    [f] = run(text, "GP2")
    assert f.code == "GP201" and span_text(text, f.span) == "loss.detach().backward()"
    assert f.message == ("`loss.detach()` has no graph (a detached tensor never requires grad): "
                         "`loss.detach().backward()` raises RuntimeError: element 0 of tensors does not require "
                         "grad and does not have a grad_fn")
    with pytest.raises(RuntimeError, match="does not require grad"):
        exec(compile(text, "prog.py", "exec"), {"__name__": "__main__"})
    [fix] = f.fixes
    assert fix.safe
    fixed = apply_fix(text, fix)
    assert codes(fixed, "GP2") == []
    ns = {"__name__": "__main__"}
    torch.manual_seed(0)
    exec(compile(fixed, "prog.py", "exec"), ns)
    assert ns["policy"].affine.weight.grad is not None
