"""Seed-style bugs run for real: each finding gets the verdict and the evidence PyTorch really gives.

Findings are built by hand (as the analysis hands them over), so these tests pin the live step's
behaviour independently of the rules' current state."""
from __future__ import annotations

import pytest

from gradpath.live.verdicts import headline
from live_helpers import finding, line_of, span_of, write

pytestmark = pytest.mark.live

MODEL = """
import torch
import torch.nn as nn
import torch.optim as optim


class SimpleModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(10, 1)

    def forward(self, x):
        return self.linear(x)


model = SimpleModel()
criterion = nn.MSELoss()
"""

LOOP = """
for epoch in range(10):
    inputs = torch.randn(32, 10)
    targets = torch.randn(32, 1)
    outputs = model(inputs)
    loss = criterion(outputs, targets)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    print(f"Epoch {epoch+1}, Loss: {loss.item()}")
"""


def run(live, tmp_path, code, findings, name="train.py", timeout_s=None):
    path, text = write(tmp_path, name, code)
    fs = findings(text) if callable(findings) else findings
    report = live.confirm(str(path), text, fs, timeout_s=timeout_s)
    return text, fs, report


@pytest.mark.parametrize("opt_line, code, exc_text", [
    ("optimizer = optim.Adam([], lr=0.001)", "GP101", "ValueError: optimizer got an empty parameter list"),
    ("optimizer = optim.Adam(model.parameters, lr=0.001)", "GP109", "TypeError: 'method' object is not iterable"),
    ("optimizer = optim.SGD(model, lr=0.01)", "GP110", "TypeError: 'SimpleModel' object is not iterable"),
])
def test_constructor_errors_confirmed_with_exact_text(live, tmp_path, opt_line, code, exc_text):
    src = MODEL + opt_line + "\n" + LOOP
    text, fs, rep = run(live, tmp_path, src, lambda t: [finding(code, line_of(t, opt_line), 12,
                                                                model="model", model_class="SimpleModel")])
    v = rep.verdicts[fs[0].id]
    line = line_of(text, opt_line)
    assert v.verdict == "confirmed", v
    assert v.mode == "script"
    assert v.evidence.startswith(exc_text)
    assert f"(line {line})" in v.evidence
    assert v.data["line"] == line
    assert rep.run["error"]["line"] == line


def test_gp107_in_a_param_group_dict_raises_nothing_and_is_confirmed_by_the_empty_group(live, tmp_path):
    """PyTorch accepts an empty param group: no ValueError, the group just never trains. The
    verdict must say so, not 'not-reproduced' for lack of an exception."""
    freeze = "for p in model.parameters():\n    p.requires_grad = False\n"
    opt_line = 'optimizer = optim.SGD([{"params": [p for p in model.parameters() if p.requires_grad]}], lr=0.1)'
    src = MODEL + freeze + opt_line + "\n" + LOOP.replace("    loss.backward()\n", "")
    text, fs, rep = run(live, tmp_path, src, lambda t: [finding(
        "GP107", line_of(t, opt_line), 12, model="model", model_class="SimpleModel",
        optimizer="optimizer", optimizer_class="torch.optim.SGD")])
    v = rep.verdicts[fs[0].id]
    line = line_of(text, opt_line)
    assert v.verdict == "confirmed", v
    assert v.mode == "script"
    assert v.data == {"optimizer": "SGD", "line": line, "groups": [0]}
    assert "every parameter group is empty. PyTorch raised no error" in v.evidence


def test_gp107_in_a_param_group_dict_that_is_not_empty_is_not_reproduced(live, tmp_path):
    opt_line = 'optimizer = optim.SGD([{"params": [p for p in model.parameters() if p.requires_grad]}], lr=0.1)'
    src = MODEL + opt_line + "\n" + LOOP
    text, fs, rep = run(live, tmp_path, src, lambda t: [finding(
        "GP107", line_of(t, opt_line), 12, model="model", model_class="SimpleModel",
        optimizer="optimizer", optimizer_class="torch.optim.SGD")])
    v = rep.verdicts[fs[0].id]
    assert v.verdict == "not-reproduced", v


def test_gp102_partial_params_table(live, tmp_path):
    src = MODEL + "optimizer = optim.Adam([model.linear.weight], lr=0.001)\n" + LOOP
    text, fs, rep = run(live, tmp_path, src, lambda t: [finding(
        "GP102", line_of(t, "optim.Adam"), 12, model="model", model_class="SimpleModel",
        optimizer="optimizer", optimizer_class="torch.optim.Adam", missing=["linear.bias"])])
    v = rep.verdicts[fs[0].id]
    assert v.verdict == "confirmed", v
    assert v.evidence.startswith("linear.bias: grad ")
    assert "unchanged, not in Adam" in v.evidence.splitlines()[0]
    rows = {r["name"]: r for r in v.data["table"]}
    assert rows["linear.bias"]["changed"] is False and rows["linear.bias"]["grad"] > 0
    assert rows["linear.bias"]["optimizers"] == []
    assert rows["linear.weight"]["changed"] is True and rows["linear.weight"]["optimizers"] == ["Adam"]


def test_gp102_on_correct_program_is_not_confirmed(live, tmp_path):
    src = MODEL + "optimizer = optim.Adam(model.parameters(), lr=0.001)\n" + LOOP
    text, fs, rep = run(live, tmp_path, src, lambda t: [finding(
        "GP102", line_of(t, "optim.Adam"), 12, model="model", model_class="SimpleModel")])
    v = rep.verdicts[fs[0].id]
    assert v.verdict == "not-reproduced", v
    assert "linear.bias: grad" in v.evidence and "changed, in Adam" in v.evidence


def test_gp108_instances_are_labelled_by_the_line_that_built_them(live, tmp_path):
    # two instances of a class defined in the same file: each row group names the line of `Net()`,
    # not the `super().__init__()` line inside the class
    src = MODEL + "optimizer = optim.Adam(SimpleModel().parameters(), lr=0.001)\n" + LOOP
    text, fs, rep = run(live, tmp_path, src, lambda t: [finding(
        "GP108", line_of(t, "optim.Adam"), 12, model="model", model_class="SimpleModel",
        optimizer="optimizer", optimizer_class="torch.optim.Adam")])
    v = rep.verdicts[fs[0].id]
    trained, fresh = line_of(text, "model = SimpleModel()"), line_of(text, "optim.Adam")
    assert v.verdict == "confirmed", v
    assert v.evidence.startswith(f"SimpleModel (line {trained}): linear.weight, linear.bias: got gradients but "
                                 "never changed"), v.evidence
    assert f"  SimpleModel (line {fresh}):\n    linear.weight: no grad, unchanged, in Adam" in v.evidence


def test_gp201_detached_backward(live, tmp_path):
    src = """
    import torch
    import torch.nn as nn
    import torch.optim as optim

    model = nn.Linear(10, 1)
    optimizer = optim.Adam(model.parameters(), lr=0.001)
    output = model(torch.randn(1, 10))
    loss = nn.MSELoss()(output, torch.randn(1, 1))
    loss.backward()
    loss_detached = loss.detach()
    loss_detached.backward()
    optimizer.step()
    """
    text, fs, rep = run(live, tmp_path, src, lambda t: [finding(
        "GP201", line_of(t, "loss_detached.backward"), probe={
            "what": "backward-value", "span": span_of(t, "loss_detached", 1), "expr": "loss_detached"})])
    v = rep.verdicts[fs[0].id]
    assert v.verdict == "confirmed"
    line = line_of(text, "loss_detached.backward")
    assert v.evidence.splitlines() == [
        f"RuntimeError: element 0 of tensors does not require grad and does not have a grad_fn (line {line})",
        f"the value reaching backward() (`loss_detached`, line {line}) has requires_grad=False, grad_fn=None"]


def test_gp203_requires_grad_patch(live, tmp_path):
    src = """
    import torch
    import torch.nn as nn

    model = nn.Linear(10, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for i in range(3):
        loss = nn.functional.mse_loss(model(torch.randn(4, 10)).detach(), torch.randn(4, 1))
        loss.requires_grad_()
        opt.zero_grad()
        loss.backward()
        opt.step()
    """
    text, fs, rep = run(live, tmp_path, src, lambda t: [finding("GP203", line_of(t, "requires_grad_()"))])
    v = rep.verdicts[fs[0].id]
    assert v.verdict == "confirmed", v
    assert "all 2 parameter tensors still have grad None" in v.evidence


DIVISION = """
import torch
import torch.nn as nn

model = nn.Linear(10, 1)
optimizer = torch.optim.Adam(model.parameters(), lr=0.001)
output = model(torch.randn(1, 10))
target = torch.randn(1, 1)
loss = {loss}
optimizer.zero_grad()
loss.backward()
optimizer.step()
"""


def test_gp301_division_driven_to_zero(live, tmp_path):
    src = DIVISION.format(loss="1 / (output - target)")
    text, fs, rep = run(live, tmp_path, src, lambda t: [finding(
        "GP301", line_of(t, "loss = 1"), probe={"what": "denominator", "span": span_of(t, "output - target"),
                                               "expr": "output - target"})])
    v = rep.verdicts[fs[0].id]
    assert v.verdict == "confirmed", v
    # the run itself never divided by 0: the verdict says that the value was forced
    assert headline(v.to_dict()) == "confirmed by forcing `output - target` to 0"
    assert v.evidence.startswith("at output - target == 0 (forced by Gradpath): `1 / (output - target)` = inf")
    assert "the run itself did not get there (observed min |output - target| = " in v.evidence
    assert "the gradient reaching `output - target` is -inf" in v.evidence
    assert "loss = inf, grad non-finite in weight, bias" in v.evidence
    assert v.data["probe"]["count"] == 1 and v.data["probe"]["min_abs"] > 0


ATTENTION = """
import torch
import torch.nn as nn


class Attention(nn.Module):
    def __init__(self, dim=128):
        super().__init__()
        self.q = nn.Linear(dim, dim)
        self.keys = nn.Parameter(torch.randn(6, dim))

    def forward(self, x):
        scores = self.q(x) @ self.keys.t() / {scale}
        return scores.softmax(-1).sum(-1)


model = Attention()
opt = torch.optim.SGD(model.parameters(), lr=0.1)
for step in range(3):
    opt.zero_grad()
    loss = model(torch.randn(4, 128)).pow(2).mean()
    loss.backward()
    opt.step()
"""


@pytest.mark.parametrize("scale, expr, observed, why", [
    # a shape: a Python float, 128 ** 0.5 = 11.3
    ("self.keys.size(1) ** 0.5", "self.keys.size(1) ** 0.5", "observed min |self.keys.size(1) ** 0.5| = 11.3",
     "is a Python number, not a tensor computed from data or parameters"),
    # a constant tensor: the same value on every evaluation, no gradient
    ("torch.tensor(8.0)", "torch.tensor(8.0)", "observed min |torch.tensor(8.0)| = 8",
     "is a tensor of one constant value that depends on no parameter"),
])
def test_gp301_a_constant_denominator_is_never_forced(live, tmp_path, scale, expr, observed, why):
    """A false alarm on a correct attention layer must not come back "confirmed" by forcing a shape
    or a constant to 0: not-reproduced, with the value the run saw."""
    src = ATTENTION.replace("{scale}", scale)
    text, fs, rep = run(live, tmp_path, src, lambda t: [finding(
        "GP301", line_of(t, "scores ="), probe={"what": "denominator", "span": span_of(t, scale), "expr": expr})])
    v = rep.verdicts[fs[0].id]
    assert v.verdict == "not-reproduced", v
    assert v.evidence.startswith(observed), v.evidence
    assert f"`{expr}` {why}, so Gradpath does not force it to 0" in v.evidence
    assert "forced" not in v.data
    if "Python number" in why:  # known before any edge run: none is made
        assert fs[0].id not in (rep.run.get("edge_runs") or {})


def test_gp301_a_data_tensor_is_forced(live, tmp_path):
    """The same layer dividing by a value computed from the batch (no gradient, but it varies): it
    is forced, and the verdict says so."""
    src = ATTENTION.replace("{scale}", "x.abs().mean()")
    text, fs, rep = run(live, tmp_path, src, lambda t: [finding(
        "GP301", line_of(t, "scores ="), probe={"what": "denominator", "span": span_of(t, "x.abs().mean()"),
                                               "expr": "x.abs().mean()"})])
    v = rep.verdicts[fs[0].id]
    assert v.verdict == "confirmed", v
    assert headline(v.to_dict()) == "confirmed by forcing `x.abs().mean()` to 0"
    assert v.evidence.startswith("at x.abs().mean() == 0 (forced by Gradpath): ")
    assert v.data["forced"] == {"expr": "x.abs().mean()", "value": "0"}


def test_gp301_guarded_denominator_not_confirmed(live, tmp_path):
    src = DIVISION.format(loss="1 / (output - target).abs().clamp_min(1e-3)")
    text, fs, rep = run(live, tmp_path, src, lambda t: [finding(
        "GP301", line_of(t, "loss = 1"), probe={"what": "denominator", "span": span_of(t, "output - target"),
                                               "expr": "output - target"})])
    v = rep.verdicts[fs[0].id]
    assert v.verdict == "not-reproduced", v
    assert "stay finite" in v.evidence


def test_gp306_sqrt_gradient_at_zero(live, tmp_path):
    src = DIVISION.format(loss="torch.sqrt(((output - target) ** 2).sum())")
    text, fs, rep = run(live, tmp_path, src, lambda t: [finding(
        "GP306", line_of(t, "loss ="), probe={"what": "sqrt-arg", "span": span_of(t, "((output - target) ** 2).sum()"),
                                              "expr": "((output - target) ** 2).sum()"})])
    v = rep.verdicts[fs[0].id]
    assert v.verdict == "confirmed", v
    assert "`torch.sqrt(((output - target) ** 2).sum())` stays finite" in v.evidence
    assert "the gradient reaching `((output - target) ** 2).sum()` is inf" in v.evidence


def test_gp306_real_run_at_zero_reports_the_nan_gradient_not_a_nonfinite_sqrt(live, tmp_path):
    # pairs of equal ids give a difference of exactly 0: sqrt(0) = 0 is finite, the gradient is NaN
    src = """
    import torch
    import torch.nn as nn

    emb = nn.Embedding(4, 3)
    opt = torch.optim.SGD(emb.parameters(), lr=0.1)
    a = torch.tensor([0, 1, 2, 3])
    b = torch.tensor([0, 2, 2, 1])
    for step in range(3):
        opt.zero_grad()
        v = emb(a) - emb(b)
        loss = torch.sqrt((v ** 2).sum(dim=-1)).mean()
        loss.backward()
        opt.step()
    """
    text, fs, rep = run(live, tmp_path, src, lambda t: [finding(
        "GP306", line_of(t, "loss ="), probe={"what": "sqrt-arg", "span": span_of(t, "(v ** 2).sum(dim=-1)"),
                                              "expr": "(v ** 2).sum(dim=-1)"})])
    v = rep.verdicts[fs[0].id]
    assert v.verdict == "confirmed", v
    assert "observed min (v ** 2).sum(dim=-1) = 0" in v.evidence
    assert ("the real run already hit the edge: (v ** 2).sum(dim=-1) was exactly 0 there, "
            "`torch.sqrt((v ** 2).sum(dim=-1))` stays finite, but backward gave: loss = ") in v.evidence
    assert "grad non-finite in weight" in v.evidence
    assert "is not finite" not in v.evidence


def test_gp304_double_softmax(live, tmp_path):
    src = """
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    model = nn.Linear(8, 5)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(16, 8), torch.randint(0, 5, (16,))
    probs = F.softmax(model(x), dim=1)
    loss = F.cross_entropy(probs, y)
    loss.backward()
    opt.step()
    """
    text, fs, rep = run(live, tmp_path, src, lambda t: [finding(
        "GP304", line_of(t, "cross_entropy"), probe={"what": "loss-input", "span": span_of(t, "probs", 1),
                                                     "expr": "probs"})])
    v = rep.verdicts[fs[0].id]
    assert v.verdict == "confirmed", v
    assert "every row sums to 1" in v.evidence


ENCODER_LEFT_OUT = """
import torch
import torch.nn as nn


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))

    def forward(self, x):
        return self.net(x)


encoder = Encoder()
classifier = nn.Linear(4, 3)
optimizer = torch.optim.Adam(classifier.parameters(), lr=1e-3)
for step in range(10):
    x, y = torch.randn(16, 8), torch.randint(0, 3, (16,))
    loss = nn.functional.cross_entropy(classifier(encoder(x)), y)
    loss.backward()
    optimizer.step()
"""


def test_gp401_cites_a_tensor_of_its_optimizer_and_gp103_keeps_the_model_path(live, tmp_path):
    """An encoder left out of Adam keeps its gradients too (it is first among the tracked tensors),
    but GP401 is about Adam's missing zero_grad(): the evidence cites the classifier's weight that
    Adam holds. GP103's table names the encoder's tensors as the user does: encoder.net.0.weight."""
    text, fs, rep = run(live, tmp_path, ENCODER_LEFT_OUT, lambda t: [
        finding("GP103", line_of(t, "optimizer = torch"), model="encoder", model_class="Encoder",
                optimizer="optimizer", optimizer_class="torch.optim.Adam"),
        finding("GP401", line_of(t, "for step"), optimizer="optimizer", optimizer_class="Adam", model="classifier",
                needs_iterations=2)])
    v103, v401 = rep.verdicts[fs[0].id], rep.verdicts[fs[1].id]
    assert v103.verdict == "confirmed", v103
    assert v103.evidence.startswith("encoder.net.0.weight, encoder.net.0.bias, encoder.net.2.weight, "
                                    "encoder.net.2.bias: got gradients but never changed"), v103.evidence
    assert "\n  encoder.net.0.weight: grad " in v103.evidence
    assert v401.verdict == "confirmed", v401
    assert (f"before the 2nd backward (line {line_of(text, 'loss.backward()')}) weight.grad (Linear, in Adam) "
            "still had norm " in v401.evidence), v401.evidence
    assert "2 tensor(s) of Adam accumulated" in v401.evidence
    assert all("Adam" in g["optimizers"] for g in v401.data["grads"])
    assert "net.0" not in v401.evidence


def test_gp401_leftovers_only_outside_the_optimizer_are_not_its_bug(live, tmp_path):
    """The classifier's gradients are cleared every iteration; only the encoder, which no optimizer
    holds, keeps accumulating: not GP401's bug (GP103 covers the encoder)."""
    src = ENCODER_LEFT_OUT.replace("    loss.backward()", "    optimizer.zero_grad()\n    loss.backward()")
    text, fs, rep = run(live, tmp_path, src, lambda t: [
        finding("GP401", line_of(t, "for step"), optimizer="optimizer", optimizer_class="Adam", model="classifier",
                needs_iterations=2)])
    v = rep.verdicts[fs[0].id]
    assert v.verdict == "not-reproduced", v
    assert v.evidence == ("the gradients of the tensors Adam holds were cleared between iterations; gradients "
                          "were left over only in tensors no optimizer holds")


def test_gp401_gradients_accumulate(live, tmp_path):
    src = """
    import torch
    import torch.nn as nn

    model = nn.Linear(6, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    for epoch in range(10):
        loss = nn.functional.cross_entropy(model(torch.randn(32, 6)), torch.randint(0, 2, (32,)))
        loss.backward()
        optimizer.step()
    """
    text, fs, rep = run(live, tmp_path, src, lambda t: [finding(
        "GP401", line_of(t, "for epoch"), optimizer="optimizer", optimizer_class="SGD", model="model",
        needs_iterations=2)])
    v = rep.verdicts[fs[0].id]
    assert v.verdict == "confirmed", v
    g = v.data["grads"][0]
    assert g["before"] > 0  # left over from iteration 1: nothing cleared it
    assert g["after"] != pytest.approx(g["before"])
    assert v.evidence.startswith(f"gradients add up across iterations: before the 2nd backward (line "
                                 f"{line_of(text, 'loss.backward')}) ")
    assert rep.run["script"]["loops"][str(line_of(text, "for epoch"))]["iterations"] == 2


def test_gp401_not_reproduced_when_zeroed(live, tmp_path):
    src = """
    import torch
    import torch.nn as nn

    model = nn.Linear(6, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    for epoch in range(10):
        model.zero_grad()
        loss = nn.functional.cross_entropy(model(torch.randn(32, 6)), torch.randint(0, 2, (32,)))
        loss.backward()
        optimizer.step()
    """
    text, fs, rep = run(live, tmp_path, src, lambda t: [finding("GP401", line_of(t, "for epoch"),
                                                                needs_iterations=2)])
    assert rep.verdicts[fs[0].id].verdict == "not-reproduced"


def test_gp402_gp404_gp406(live, tmp_path):
    src = """
    import torch
    import torch.nn as nn

    model = nn.Linear(4, 1)
    other = nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    opt2 = torch.optim.Adam(other.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1)
    for epoch in range(5):
        loss = model(torch.randn(8, 4)).pow(2).mean() + other(torch.randn(8, 4)).pow(2).mean()
        loss.backward()
        opt.zero_grad()
        sched.step()
        opt.step()
    """
    text, fs, rep = run(live, tmp_path, src, lambda t: [
        finding("GP402", line_of(t, "opt.zero_grad"), optimizer="opt", optimizer_class="SGD"),
        finding("GP404", line_of(t, "loss.backward"), optimizer="opt2", optimizer_class="Adam"),
        finding("GP406", line_of(t, "sched.step")),
    ])
    v402, v404, v406 = (rep.verdicts[f.id] for f in fs)
    assert v402.verdict == "confirmed" and "with all 2 gradients cleared" in v402.evidence, v402
    assert v404.verdict == "confirmed" and "Adam.step() was never called" in v404.evidence, v404
    assert v406.verdict == "confirmed", v406
    assert "Detected call of `lr_scheduler.step()` before `optimizer.step()`" in v406.evidence


def test_gp405_loss_accumulated_with_graph(live, tmp_path):
    src = """
    import torch
    import torch.nn as nn

    model = nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    total = 0
    for epoch in range(5):
        opt.zero_grad()
        loss = model(torch.randn(8, 4)).pow(2).mean()
        loss.backward()
        opt.step()
        total += loss
    """
    text, fs, rep = run(live, tmp_path, src, lambda t: [finding("GP405", line_of(t, "total += loss"), 4,
                                                                end_col=17)])
    v = rep.verdicts[fs[0].id]
    assert v.verdict == "confirmed", v
    assert "grad_fn=MeanBackward0" in v.evidence


def test_findings_in_uncalled_function_are_not_run(live, tmp_path):
    src = """
    import torch

    def never_called():
        opt = torch.optim.Adam([], lr=0.1)
    """
    text, fs, rep = run(live, tmp_path, src, lambda t: [finding("GP101", line_of(t, "Adam("))])
    v = rep.verdicts[fs[0].id]
    assert v.verdict in ("not-run", "not-reproduced")
    assert v.verdict != "confirmed"


def test_correct_program_gets_no_confirmed(live, tmp_path):
    """Every code the live step knows, pointed at a correct program: nothing may come back confirmed."""
    src = (EXAMPLES_CORRECT := (__import__("pathlib").Path(__file__).resolve().parents[2] / "examples" /
                                "correct_training.py").read_text())
    path, text = write(tmp_path, "correct.py", src)
    opt_line = line_of(text, "optimizer = torch.optim.AdamW")
    loop_line = line_of(text, "for xb, yb in loader")
    fs = [finding(code, opt_line, 4, model="model", model_class="MLP", optimizer="optimizer",
                  optimizer_class="AdamW") for code in
          ("GP101", "GP102", "GP103", "GP104", "GP105", "GP106", "GP108", "GP109", "GP110", "GP112")]
    fs += [finding(code, loop_line, 8, optimizer="optimizer", optimizer_class="AdamW", model="model",
                   model_class="MLP", needs_iterations=2) for code in ("GP401", "GP402", "GP403", "GP404",
                                                                        "GP406", "GP407")]
    fs += [finding("GP201", line_of(text, "loss.backward()"), 12), finding("GP203", line_of(text, "loss.backward()"), 12),
           finding("GP304", line_of(text, "F.cross_entropy"), 12, probe={
               "what": "loss-input", "span": span_of(text, "logits", 1), "expr": "logits"})]
    rep = live.confirm(str(path), text, fs)
    assert rep.run["status"] == "ok", rep.run
    confirmed = {f.code: rep.verdicts[f.id].evidence for f in fs if rep.verdicts[f.id].verdict == "confirmed"}
    assert confirmed == {}
    assert len(rep.verdicts) == len(fs)


def test_later_findings_are_reached_past_an_earlier_error(live, tmp_path):
    """The first bug raises; the run goes on past it (that statement wrapped in try/except) so the
    findings after it get their own verdicts."""
    src = """
    import torch
    import torch.nn as nn

    model = nn.Linear(4, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(8, 4), torch.randint(0, 2, (8,))
    loss = nn.functional.cross_entropy(model(x), y).detach()
    loss.backward()
    with torch.no_grad():
        out = model(x)
    loss2 = nn.functional.cross_entropy(out, y)
    loss2.backward()
    bad = torch.optim.Adam([], lr=0.1)
    """
    text, fs, rep = run(live, tmp_path, src, lambda t: [
        finding("GP201", line_of(t, "loss.backward")),
        finding("GP202", line_of(t, "out = model(x)"), backward_line=line_of(t, "loss2.backward")),
        finding("GP101", line_of(t, "Adam([]"))])
    v201, v202, v101 = (rep.verdicts[f.id] for f in fs)
    assert v201.verdict == "confirmed" and "(line 8)" in v201.evidence
    # GP202's finding is the forward under no_grad; the error surfaces at its backward (line 12)
    assert v202.verdict == "confirmed", v202
    assert v202.evidence.startswith("RuntimeError: element 0 of tensors does not require grad and does not have "
                                    "a grad_fn (line 12)")
    assert v101.verdict == "confirmed", v101
    assert v101.evidence.startswith("ValueError: optimizer got an empty parameter list (line 13)")
    assert "went past the earlier error at line 8" in v101.evidence


def test_model_only_for_code_never_called(live, tmp_path):
    """Classes and a trainer the file never runs: the model-only step builds the model named by the
    finding, binds it to the names the optimizer call uses (`self.net`), and runs one step."""
    src = """
    import torch
    from torch import nn

    class Lazy(nn.Module):
        def __init__(self, d=3):
            super().__init__()
            self.inp = nn.Linear(d, d)

        def forward(self, x):
            self.out = nn.Linear(3, 1)
            return self.out(self.inp(x))

    class Trainer:
        def __init__(self):
            self.net = Lazy(3)
            self.opt = torch.optim.Adam(self.net.parameters, lr=1e-3)
    """
    text, fs, rep = run(live, tmp_path, src, lambda t: [
        finding("GP112", line_of(t, "self.out = nn.Linear"), model_class="Lazy"),
        finding("GP109", line_of(t, "torch.optim.Adam"), 20, model="self.net", model_class="Lazy")])
    v112, v109 = (rep.verdicts[f.id] for f in fs)
    assert v112.verdict == "confirmed" and v112.mode == "model-only", v112
    assert "weight: grad " in v112.evidence and "(built inside forward)" in v112.evidence
    assert (f"model-only mode (the script finished without reaching line {line_of(text, 'self.out =')}): "
            "built Lazy(3)") in v112.evidence
    assert v109.verdict == "confirmed" and v109.mode == "model-only", v109
    assert v109.evidence.startswith(f"TypeError: 'method' object is not iterable (line "
                                    f"{line_of(text, 'torch.optim.Adam')})")


def test_required_cli_argument_falls_back_to_model_only_with_argparse_reason(live, tmp_path):
    src = MODEL.replace("model = SimpleModel()", "") + """
def main():
    import argparse
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    args = ap.parse_args()
    x, y = torch.load(args.data)
    model = SimpleModel()
    optimizer = optim.SGD([model.linear.weight], lr=0.1)
    optimizer.zero_grad()
    criterion(model(x), y).backward()
    optimizer.step()


if __name__ == "__main__":
    main()
"""
    text, fs, rep = run(live, tmp_path, src, lambda t: [finding(
        "GP102", line_of(t, "optim.SGD"), 16, model="model", model_class="SimpleModel",
        optimizer="optimizer", optimizer_class="torch.optim.SGD", missing=["linear.bias"])])
    v = rep.verdicts[fs[0].id]
    assert v.verdict == "confirmed" and v.mode == "model-only", v
    assert v.evidence.startswith("linear.bias: grad ")
    assert (f"(the script could not run whole: the script exited at line {line_of(text, 'ap.parse_args()')} with "
            "exit code 2: train.py: error: the following arguments are required: --data)") in v.evidence


def test_model_only_without_standard_layers_or_registered_parameters(live, tmp_path):
    """GP105 in a class the file never builds, whose only tensor is unregistered and whose forward is a
    bare matmul: the input is sized by the model's own tensor and no optimizer is needed to show it."""
    src = """
    import torch
    from torch import nn

    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.randn(3, 4, requires_grad=True) * 0.01

        def forward(self, x):
            return x @ self.w
    """
    text, fs, rep = run(live, tmp_path, src, lambda t: [
        finding("GP105", line_of(t, "self.w ="), 8, model_class="Scaled")])
    v = rep.verdicts[fs[0].id]
    assert v.verdict == "confirmed" and v.mode == "model-only", v
    assert v.evidence.startswith("w: no grad, unchanged, in no optimizer, not registered"), v.evidence
    assert ("built Scaled() (defaults) with input randn(4, 3) (sized by a (3, 4) tensor of the model), one "
            "forward and backward; optimizer: none (the model has no registered parameters") in v.evidence


def test_model_only_past_a_missing_package_with_layers_in_a_plain_list(live, tmp_path):
    """`import requests` fails (not installed in the live interpreter): the model-only step still builds
    the model, finds an input through the layers held in the plain list, and reports the optimizer
    call's real ValueError (every layer is unregistered, so parameters() is empty)."""
    src = """
    import io
    import gradpath_no_such_package_for_data as requests
    import torch
    import torch.nn as nn


    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = [nn.Linear(8, 8), nn.Linear(8, 1)]

        def forward(self, x):
            for l in self.layers:
                x = l(x)
            return x


    def main():
        r = requests.get("https://example.com/data.pt", timeout=30)
        x, y = torch.load(io.BytesIO(r.content))
        model = Net()
        opt = torch.optim.SGD(model.parameters(), lr=0.1)


    if __name__ == "__main__":
        main()
    """
    text, fs, rep = run(live, tmp_path, src, lambda t: [
        finding("GP104", line_of(t, "self.layers ="), 8, model="model", model_class="Net",
                optimizer="opt", optimizer_class="torch.optim.SGD")])
    v = rep.verdicts[fs[0].id]
    assert v.verdict == "confirmed" and v.mode == "model-only", v
    assert v.evidence.startswith("layers[0].weight, layers[0].bias, layers[1].weight, layers[1].bias: not "
                                 "registered in the model"), v.evidence
    assert "needs a package the interpreter lacks: ModuleNotFoundError" in v.evidence
    assert "with input randn(4, 8) for Linear(8, ...)" in v.evidence
    assert "(the code's optimizer call raised ValueError: optimizer got an empty parameter list)" in v.evidence


def test_model_only_input_comes_from_the_first_layer_depth_first(live, tmp_path):
    """Nested model: the input layer is inside `encoder`, a sibling `head` of another width comes first
    breadth-first; the synthetic input must fit the encoder's Linear(16, ...)."""
    src = """
    import torch
    from torch import nn

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(16, 32)

        def forward(self, x):
            return torch.relu(self.fc(x))

    class Classifier(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = Encoder()
            self.head = nn.Linear(32, 4)

        def forward(self, x):
            return self.head(self.encoder(x))

    def train():
        model = Classifier()
        optimizer = torch.optim.Adam(model.head.parameters(), lr=1e-3)
    """
    text, fs, rep = run(live, tmp_path, src, lambda t: [finding(
        "GP102", line_of(t, "torch.optim.Adam"), 8, model="model", model_class="Classifier",
        optimizer="optimizer", optimizer_class="torch.optim.Adam", missing=["encoder.fc.weight", "encoder.fc.bias"])])
    v = rep.verdicts[fs[0].id]
    assert v.verdict == "confirmed" and v.mode == "model-only", v
    assert v.evidence.startswith("encoder.fc.weight, encoder.fc.bias: got gradients but never changed"), v.evidence
    assert "with input randn(4, 16) for Linear(16, ...)" in v.evidence


def test_model_only_after_a_script_that_builds_the_model_but_never_steps(live, tmp_path):
    src = """
    import torch
    from torch import nn

    class OnDevice(nn.Module):
        def __init__(self, n, device):
            super().__init__()
            self.w = nn.Parameter(torch.randn(n, n)).to(device)

        def forward(self, x):
            return x @ self.w

    d = OnDevice(3, "cpu")
    print(len(list(d.parameters())))
    """
    text, fs, rep = run(live, tmp_path, src, lambda t: [finding("GP105", line_of(t, "self.w ="), 8,
                                                                model_class="OnDevice")])
    v = rep.verdicts[fs[0].id]
    # Parameter.to("cpu") returns the Parameter itself: registered, trained, nothing to confirm on the CPU
    assert v.verdict == "not-reproduced" and v.mode == "model-only", v
    assert "w: grad " in v.evidence and "changed, in SGD" in v.evidence
    assert f"model-only mode (the script ran line {line_of(text, 'self.w =')} but no optimizer step): " \
           f"built OnDevice(3, \"cpu\")" in v.evidence
    assert "1\n" == rep.run["output"]["stdout"]
