"""GP3: loss math that can turn inf or NaN. Messages, ranges, fixes applied to text, probes,
independent real-world-style programs, quiet correct programs, and real torch on the CPU."""
import json
import subprocess
import sys
import textwrap

import pytest

from gp_helpers import apply_fix, codes, run, span_text

DIV = """\
import torch
import torch.nn as nn

model = nn.Linear(10, 1)
optimizer = torch.optim.Adam(model.parameters(), lr=0.001)
input_tensor = torch.randn(1, 10)
target = torch.randn(1, 1)
output = model(input_tensor)
loss = (1 / (output - target)).sum()
optimizer.zero_grad()
loss.backward()
optimizer.step()
"""


def test_gp301_division_by_difference():
    [f] = run(DIV, "GP3")
    assert (f.code, f.severity, f.span.line) == ("GP301", "warning", 9)
    assert span_text(DIV, f.span) == "output - target"
    assert f.message.startswith("division by `output - target` is 0 wherever `output` equals `target`")
    assert f.data["probe"] == {"what": "denominator", "span": f.span.to_dict(), "expr": "output - target"}
    assert f.data["model"] == "model"
    assert any(r.span.line == 8 for r in f.related)  # where the model output comes from
    assert len(f.fixes) == 2 and not any(fx.safe for fx in f.fixes)
    titles = " | ".join(fx.title for fx in f.fixes)
    assert "clamp_min(eps)" in titles and "+ eps" in titles
    for fx in f.fixes:
        fixed = apply_fix(DIV, fx)
        assert "\neps = 1e-8\nloss = " in fixed  # a named eps, defined right before
        assert codes(fixed, "GP3") == []
    plus = next(fx for fx in f.fixes if "+ eps" in fx.title)
    assert "loss = (1 / (output - target + eps)).sum()" in apply_fix(DIV, plus)


def test_gp301_division_by_difference_in_a_helper():
    prog = """\
    import torch
    import torch.nn as nn

    model = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1))
    opt = torch.optim.SGD(model.parameters(), lr=1e-2)

    def relative_error(pred, target):
        return torch.abs(pred - target) / (target - pred.mean())

    for epoch in range(5):
        x = torch.rand(16, 3)
        y = x.sum(dim=1, keepdim=True)
        loss = relative_error(model(x), y).mean()
        opt.zero_grad(); loss.backward(); opt.step()
    """
    [f] = run(prog, "GP3")
    assert (f.code, f.span.line, span_text(prog, f.span)) == ("GP301", 8, "target - pred.mean()")


def test_gp303_log_of_softmax_safe_fix():
    prog = """\
    import torch
    import torch.nn as nn

    net = nn.Linear(100, 10)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    x, y = torch.randn(5, 100), torch.randint(0, 10, (5,))
    logp = torch.log(torch.softmax(net(x), dim=1))
    loss = -logp[torch.arange(5), y].mean()
    opt.zero_grad(); loss.backward(); opt.step()
    """
    [f] = run(prog, "GP3")
    assert (f.code, span_text(prog, f.span)) == ("GP303", "torch.log(torch.softmax(net(x), dim=1))")
    assert f.data["probe"]["what"] == "log-arg"
    assert f.data["probe"]["expr"] == "torch.softmax(net(x), dim=1)"
    [fix] = f.fixes
    assert fix.safe
    fixed = apply_fix(prog, fix)
    assert "logp = torch.log_softmax(net(x), dim=1)\n" in fixed
    assert codes(fixed, "GP3") == []


def test_gp303_minus_log_of_softmax_variable():
    prog = """\
    import torch
    import torch.nn.functional as F
    from torch import nn

    clf = nn.Linear(32, 4)
    optimizer = torch.optim.Adam(clf.parameters())
    for xb, yb in [(torch.randn(8, 32), torch.randint(0, 4, (8,)))]:
        logits = clf(xb)
        probs = F.softmax(logits, dim=-1)
        loss = -torch.log(probs.gather(1, yb.unsqueeze(1))).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    """
    [f] = run(prog, "GP3")
    assert (f.code, f.span.line) == ("GP303", 10)
    assert "(`F.softmax(logits, dim=-1)`, line 9)" in f.message
    [fix] = f.fixes  # across the variable: unsafe (the logits must still be the same there)
    assert not fix.safe
    fixed = apply_fix(prog, fix)
    assert "loss = -F.log_softmax(logits, dim=-1).gather(1, yb.unsqueeze(1)).mean()" in fixed
    assert "GP303" not in {c for _, c in codes(fixed, "GP3")}


def test_gp304_softmax_in_forward_seen_from_loop():
    prog = """\
    import torch
    import torch.nn as nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(20, 10)
            self.softmax = nn.Softmax(dim=1)

        def forward(self, x):
            x = self.fc(x)
            return self.softmax(x)

    model = Net()
    loss_fn = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters())

    def train_epoch(loader):
        for data, target in loader:
            optimizer.zero_grad()
            output = model(data)
            loss = loss_fn(output, target)
            loss.backward()
            optimizer.step()
    """
    [f] = run(prog, "GP3")
    # the finding sits on the softmax in forward (the code that must change), the loss call is related
    assert (f.code, f.severity, f.span.line) == ("GP304", "warning", 12)
    assert span_text(prog, f.span) == "self.softmax(x)"
    assert f.message.startswith("`Net.forward` ends in a softmax whose output reaches `loss_fn` "
                                "(CrossEntropyLoss) as `output` (line 22), which applies log_softmax itself")
    assert any(r.span.line == 22 for r in f.related)
    assert f.data["probe"]["what"] == "loss-input" and f.data["probe"]["expr"] == "output"
    assert f.data["probe"]["span"]["line"] == 22
    [fix] = f.fixes
    assert not fix.safe
    fixed = apply_fix(prog, fix)
    assert "        return x\n" in fixed
    assert codes(fixed, "GP3") == []


def test_gp304_direct_softmax_safe_fix():
    prog = """\
    import torch
    import torch.nn.functional as F
    head = torch.nn.Linear(16, 5)
    logits = head(torch.randn(10, 16))
    loss = F.cross_entropy(F.softmax(logits, dim=-1), torch.randint(0, 5, (10,)))
    loss.backward()
    """
    [f] = run(prog, "GP3")
    assert f.code == "GP304" and f.fixes[0].safe
    fixed = apply_fix(prog, f.fixes[0])
    assert "loss = F.cross_entropy(logits, torch.randint(0, 5, (10,)))" in fixed
    assert codes(fixed, "GP3") == []


def test_gp304_softmax_layer_in_sequential_fix_drops_it():
    prog = """\
    import torch
    import torch.nn as nn
    model = nn.Sequential(nn.Linear(10, 5), nn.ReLU(), nn.Linear(5, 3), nn.Softmax(dim=1))
    criterion = nn.CrossEntropyLoss()
    loss = criterion(model(torch.randn(4, 10)), torch.tensor([0, 1, 2, 0]))
    loss.backward()
    """
    [f] = run(prog, "GP3")
    assert (f.code, f.span.line) == ("GP304", 3)  # on the softmax layer, which the fix drops
    assert span_text(prog, f.span) == "nn.Softmax(dim=1)"
    assert "(line 5)" in f.message and any(r.span.line == 5 for r in f.related)
    fixed = apply_fix(prog, f.fixes[0])
    assert "model = nn.Sequential(nn.Linear(10, 5), nn.ReLU(), nn.Linear(5, 3))\n" in fixed
    assert codes(fixed, "GP3") == []


def test_gp305_sigmoid_in_model_with_bce_with_logits():
    prog = """\
    import torch
    from torch import nn

    class Detector(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = nn.Linear(10, 10)
            self.head = nn.Linear(10, 1)

        def forward(self, x):
            return torch.sigmoid(self.head(torch.relu(self.backbone(x))))

    model = Detector()
    criterion = nn.BCEWithLogitsLoss(pos_weight=torch.tensor([2.0]))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-4)
    for epoch in range(3):
        inputs = torch.randn(32, 10)
        labels = torch.randint(0, 2, (32, 1)).float()
        preds = model(inputs)
        loss = criterion(preds, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    """
    [f] = run(prog, "GP3")
    # on the sigmoid in forward, which the fix removes; the loss call is related information
    assert (f.code, f.severity, f.span.line) == ("GP305", "warning", 11)
    assert "sigmoid is applied twice" in f.message and f.message.startswith("`Detector.forward` ends in a sigmoid")
    assert "as `preds` (line 20)" in f.message and any(r.span.line == 20 for r in f.related)
    fixed = apply_fix(prog, f.fixes[0])
    assert "return self.head(torch.relu(self.backbone(x)))" in fixed
    assert codes(fixed, "GP3") == []


def test_gp305_bce_on_raw_logits_is_an_error():
    prog = """\
    import torch
    import torch.nn as nn
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 1))
    criterion = nn.BCELoss()
    x, y = torch.randn(8, 6), torch.randint(0, 2, (8, 1)).float()
    loss = criterion(model(x), y)
    loss.backward()
    """
    [f] = run(prog, "GP3")
    assert (f.code, f.severity) == ("GP305", "error")
    assert "all elements of input should be between 0 and 1" in f.message
    fixed = apply_fix(prog, f.fixes[0])
    assert "criterion = nn.BCEWithLogitsLoss()" in fixed
    assert codes(fixed, "GP3") == []


def test_gp305_bce_on_sigmoid_safe_fix_for_single_use_loss():
    prog = """\
    import torch
    import torch.nn as nn
    model = nn.Linear(6, 1)
    bce = nn.BCELoss()
    x, y = torch.randn(8, 6), torch.rand(8, 1).round()
    loss = bce(torch.sigmoid(model(x)), y)
    loss.backward()
    """
    [f] = run(prog, "GP3")
    assert (f.code, f.severity) == ("GP305", "warning")
    [fix] = f.fixes
    assert fix.safe
    fixed = apply_fix(prog, fix)
    assert "bce = nn.BCEWithLogitsLoss()" in fixed and "loss = bce(model(x), y)" in fixed
    assert codes(fixed, "GP3") == []


def test_gp306_pow_half_of_sum_of_squares():
    prog = """\
    import torch
    import torch.nn as nn

    class Siamese(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 16))

        def forward(self, a, b):
            return self.embed(a), self.embed(b)

    def contrastive_loss(e1, e2, label, margin=1.0):
        d = torch.pow(torch.sum((e1 - e2) ** 2, dim=1), 0.5)
        return torch.mean(label * d ** 2 + (1 - label) * torch.clamp(margin - d, min=0.0) ** 2)

    net = Siamese()
    opt = torch.optim.Adam(net.parameters())
    for i in range(5):
        e1, e2 = net(torch.randn(8, 64), torch.randn(8, 64))
        loss = contrastive_loss(e1, e2, torch.randint(0, 2, (8,)).float())
        opt.zero_grad(); loss.backward(); opt.step()
    """
    [f] = run(prog, "GP3")
    assert (f.code, f.span.line) == ("GP306", 13)
    assert span_text(prog, f.span) == "torch.pow(torch.sum((e1 - e2) ** 2, dim=1), 0.5)"
    assert f.data["probe"]["what"] == "sqrt-arg"
    assert f.data["probe"]["expr"] == "torch.sum((e1 - e2) ** 2, dim=1)"
    norm = f.fixes[0]
    fixed = apply_fix(prog, norm)
    assert "d = torch.linalg.vector_norm(e1 - e2, dim=1)\n" in fixed
    assert codes(fixed, "GP3") == []


def test_gp307_exp_of_model_output_and_gp308_std():
    prog = """\
    import torch
    import torch.nn as nn

    enc = nn.Linear(20, 8)
    opt = torch.optim.Adam(enc.parameters())
    x = torch.randn(4, 20)
    mu, out = enc(x).chunk(2, dim=1)
    kld = -0.5 * torch.sum(1 + out - mu ** 2 - torch.exp(out))
    adv = torch.randn(4)
    adv = (adv - adv.mean()) / adv.std()
    loss = kld + (mu.sum(1) * adv).mean()
    opt.zero_grad(); loss.backward(); opt.step()
    """
    found = {f.code: f for f in run(prog, "GP3")}
    assert set(found) == {"GP307", "GP308"}
    e = found["GP307"]
    assert (e.severity, e.span.line, span_text(prog, e.span)) == ("info", 8, "torch.exp(out)")
    assert e.data["probe"]["what"] == "exp-arg"
    s = found["GP308"]
    assert (s.severity, s.span.line, span_text(prog, s.span)) == ("info", 10, "adv.std()")
    assert s.data["probe"]["what"] == "std"
    fixed = apply_fix(prog, s.fixes[0])
    assert "adv = (adv - adv.mean()) / (adv.std() + eps)" in fixed
    assert "GP308" not in {c for _, c in codes(fixed, "GP3")}


QUIET = """\
import torch
import torch.nn as nn
import torch.nn.functional as F

eps = 1e-8
model = nn.Linear(10, 3)
crit = nn.CrossEntropyLoss()
bce = nn.BCEWithLogitsLoss()
opt = torch.optim.Adam(model.parameters())
x, y = torch.randn(6, 10), torch.randint(0, 3, (6,))
logits = model(x)
loss = crit(logits, y) + F.nll_loss(F.log_softmax(logits, dim=1), y)
loss = loss + bce(logits[:, 0], (y == 0).float())
loss = loss - torch.log(torch.softmax(logits, 1) + eps).mean()
loss = loss + (1 / ((logits - 1).abs() + 0.5)).mean()
loss = loss + (logits / logits.norm(dim=1, keepdim=True).clamp_min(eps)).sum()
loss = loss + F.normalize(logits, dim=1).sum()
loss = loss + torch.linalg.vector_norm(logits - 1.0, dim=1).mean()
loss = loss + torch.logsumexp(logits, dim=1).mean()
loss = loss + torch.exp(logits - logits.max(dim=1, keepdim=True).values).sum()
loss = loss + ((logits - logits.mean(0)) / (logits.std(0) + eps)).mean()
loss = loss + (logits / torch.clamp(logits.abs(), min=1e-6)).mean()
var = ((logits - logits.mean(-1, keepdim=True)) ** 2).mean(-1, keepdim=True)
loss = loss + ((logits - logits.mean(-1, keepdim=True)) / torch.sqrt(var + eps)).sum()
loss = loss + (logits * torch.rsqrt(var + 1e-5)).sum() + (logits / (var + eps) ** 0.5).sum()
with torch.no_grad():
    metric = torch.log(torch.sigmoid(logits)).mean() + (1 / (logits - 1)).mean()
opt.zero_grad(); loss.backward(); opt.step()
"""


def test_correct_numerics_stay_quiet():
    assert codes(QUIET, "GP3") == []


def test_real_torch_confirms_the_gp3_claims_and_the_fixes(tmp_path):
    """Run the flagged expressions and their fixed forms in torch on the CPU."""
    [sq] = run(textwrap.dedent("""\
        import torch
        w = torch.nn.Linear(3, 3)
        x = w(torch.randn(2, 3))
        s = torch.sqrt((x ** 2).sum())
        s.backward()
        """), "GP3")
    fixed_expr = sq.fixes[0].edits[0].new_text  # torch.linalg.vector_norm(x)
    script = textwrap.dedent(f"""\
        import json, torch
        import torch.nn as nn
        res = {{}}
        x = torch.zeros(3, requires_grad=True)
        torch.sqrt((x ** 2).sum()).backward()
        res["sqrt_grad_nan"] = bool(torch.isnan(x.grad).all())
        x.grad = None
        {fixed_expr}.backward()
        res["norm_grad"] = x.grad.tolist()
        try:
            nn.BCELoss()(torch.tensor([[2.5], [-1.0]]), torch.ones(2, 1))
            res["bce"] = "no error"
        except RuntimeError as e:
            res["bce"] = str(e)
        z = torch.tensor([-200.0, 0.0])
        res["log_softmax"] = torch.log_softmax(z, 0)[0].item()
        res["log_of_softmax"] = torch.log(torch.softmax(z, 0))[0].item()
        o = torch.tensor([1.0], requires_grad=True)
        (1 / (o - torch.tensor([1.0]))).sum().backward()
        res["div_grad"] = o.grad.item()
        print(json.dumps(res))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["sqrt_grad_nan"] is True
    assert res["norm_grad"] == [0.0, 0.0, 0.0]
    assert "all elements of input should be between 0 and 1" in res["bce"]
    assert res["log_softmax"] == -200.0 and res["log_of_softmax"] == float("-inf")
    assert res["div_grad"] in (float("-inf"), float("inf")) or res["div_grad"] != res["div_grad"]


def test_cli_json_lines_for_gp3(tmp_path):
    p = tmp_path / "div.py"
    p.write_text(DIV)
    out = subprocess.run([sys.executable, "-m", "gradpath", "check", "--format", "json", "--select", "GP3", str(p)],
                         capture_output=True, text=True, timeout=120)
    data = json.loads(out.stdout)
    items = data if isinstance(data, list) else data.get("findings", [])
    assert [(d["code"], d["line"], d["column"], d["end_column"]) for d in items] == [("GP301", 9, 14, 29)]


def test_gp304_message_states_its_figure_as_an_example_pytorch_agrees_with():
    """The squashing figure is an example (not a measurement of the user's code), and it is what
    PyTorch computes for that example."""
    prog = """\
import torch
import torch.nn.functional as F

model = torch.nn.Linear(8, 5)
x, y = torch.randn(4, 8), torch.randint(0, 5, (4,))
loss = F.cross_entropy(F.softmax(model(x), dim=1), y)
loss.backward()
"""
    [f] = run(prog, "GP304")
    assert ("the loss is squashed and gradients shrink (for example, with 5 classes a prediction wrong by a "
            "logit margin of 19 costs 1.90 instead of 19.0); pass the logits") in f.message
    import torch
    import torch.nn.functional as F
    z, t = torch.tensor([[20.0, 1.0, 1.0, 1.0, 1.0]]), torch.tensor([1])
    assert f"{F.cross_entropy(z.softmax(1), t).item():.2f}" == "1.90"
    assert f"{F.cross_entropy(z, t).item():.1f}" == "19.0"
