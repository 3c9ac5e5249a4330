"""Four analysis gaps closed: an empty parameter list from a filter (GP101 by name, GP107 on models
whose parameters cannot be read), a deep copy trained in place of the optimized model (GP106),
sqrt of a loss that is only logged (GP306), and exp of a log-variance (GP307). Each firing case is
checked against real torch, and each fix is applied and run."""
import textwrap

import pytest

from gp_helpers import apply_fix, codes, run, span_text

torch = pytest.importorskip("torch")

NET = """\
import copy
import torch
import torch.nn as nn
import torch.nn.functional as F


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Linear(6, 8)
        self.classifier = nn.Linear(8, 2)

    def forward(self, x):
        return self.classifier(torch.relu(self.features(x)))


"""


def exec_program(text: str) -> dict:
    ns = {"__name__": "__main__"}
    exec(compile(text, "prog.py", "exec"), ns)
    return ns


def line_of(text: str, needle: str) -> int:
    return next(i for i, ln in enumerate(text.split("\n"), 1) if needle in ln)


# -- GP101: a name filter that no parameter passes ------------------------------------------------
def test_gp101_name_filter_matches_nothing_and_the_fix_names_the_layer():
    text = NET + textwrap.dedent("""\
        model = Net()
        opt = torch.optim.Adam([p for n, p in model.named_parameters() if "classifer" in n], lr=0.1)
        """)
    [f] = run(text, "GP1")
    assert f.code == "GP101" and f.severity == "error"
    assert span_text(text, f.span) == '[p for n, p in model.named_parameters() if "classifer" in n]'
    assert f.message == (
        'Adam gets the parameters of model for which `"classifer" in n` holds, but none of its 4 parameter names '
        "(features.weight, features.bias, classifier.weight and classifier.bias) match, so the list is empty: "
        "PyTorch raises ValueError: optimizer got an empty parameter list when it is constructed "
        "(did you mean `classifier`?)")
    with pytest.raises(ValueError, match="empty parameter list"):
        exec_program(text)
    (fix,) = f.fixes
    assert not fix.safe
    fixed = apply_fix(text, fix)
    assert '"classifier" in n' in fixed
    assert codes(fixed, "GP1") == []
    assert len(exec_program(fixed)["opt"].param_groups[0]["params"]) == 2


def test_gp101_name_filter_through_a_name_points_at_the_list():
    text = NET + textwrap.dedent("""\
        model = Net()
        head = [p for name, p in model.named_parameters() if name.startswith(("fc", "head"))]
        opt = torch.optim.SGD(head, lr=0.1)
        """)
    [f] = run(text, "GP1")
    assert f.code == "GP101" and span_text(text, f.span) == "head"
    assert [r.span.line for r in f.related][0] == line_of(text, "head = [p")
    assert f.fixes == []
    with pytest.raises(ValueError, match="empty parameter list"):
        exec_program(text)


@pytest.mark.parametrize("test", [
    '"classifier" in n', 'n.startswith("features")', 'not n.endswith("bias")', 'n in ("features.weight",)',
    'any(k in n for k in ("bias", "norm"))', 'n.split(".")[0] == "features"', '"x" in n or p.requires_grad',
])
def test_gp101_name_filter_quiet_when_something_passes_or_it_cannot_be_told(test):
    text = NET + f"model = Net()\nopt = torch.optim.SGD([p for n, p in model.named_parameters() if {test}], lr=0.1)\n"
    assert codes(text, "GP1") == []
    assert exec_program(text)["opt"].param_groups[0]["params"]


# -- GP107: a whole model frozen before a requires_grad filter, parameters unknown -----------------
OPAQUE = """\
import torch
import torch.optim as optim


def probe(model):
    {freeze}
    return optim.SGD({params}, lr=0.1)
"""


@pytest.mark.parametrize("freeze,params", [
    ("for p in model.parameters():\n        p.requires_grad = False",
     "[p for p in model.parameters() if p.requires_grad]"),
    ("model.requires_grad_(False)", "filter(lambda q: q.requires_grad, model.parameters())"),
    ("for n, p in model.named_parameters():\n        p.requires_grad_(False)",
     "(p for n, p in model.named_parameters() if p.requires_grad == True)"),
])
def test_gp107_whole_model_frozen_with_unknown_parameters(freeze, params):
    text = OPAQUE.format(freeze=freeze, params=params)
    [f] = run(text, "GP1")
    assert f.code == "GP107" and span_text(text, f.span) == params
    assert f.message == (f"SGD gets only the parameters of model that require grad, but every one of them is frozen "
                         f"(line 6): PyTorch raises ValueError: optimizer got an empty parameter list")
    assert [r.span.line for r in f.related] == [6]
    ns = exec_program(text)
    with pytest.raises(ValueError, match="empty parameter list"):
        ns["probe"](torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 1)))


def test_gp107_inside_a_param_group_dict_says_pytorch_raises_nothing():
    """An empty list in a param-group dict is accepted by PyTorch (no ValueError): the message must
    not claim it raises; the group just never trains."""
    text = NET + ("model = Net()\nfor p in model.parameters():\n    p.requires_grad = False\n"
                  'opt = torch.optim.SGD([{"params": [p for p in model.parameters() if p.requires_grad]}], lr=0.1)\n')
    [f] = run(text, "GP1")
    assert f.code == "GP107"
    assert f.message == (f"SGD gets only the parameters of model that require grad, but every one of them is frozen "
                         f"(line {line_of(text, 'for p in')}): every parameter group is empty, and PyTorch raises "
                         "no error for an empty group: nothing trains, silently")
    ns = exec_program(text)  # no exception: PyTorch takes the empty group
    assert [len(g["params"]) for g in ns["opt"].param_groups] == [0]


@pytest.mark.parametrize("freeze", [
    "for p in model.backbone.parameters():\n        p.requires_grad = False",
    "model.requires_grad_(False)\n    model.head.requires_grad_(True)",
    "model.requires_grad_(False)\n    model.head = torch.nn.Linear(2, 1)",
    "for p in model.parameters():\n        p.requires_grad = False\n"
    "    for p in model.head.parameters():\n        p.requires_grad = True",
    "for n, p in model.named_parameters():\n        if 'head' in n:\n            continue\n"
    "        p.requires_grad = False",
    "if getattr(model, 'freeze_all', False):\n        model.requires_grad_(False)",
])
def test_gp107_quiet_when_something_stays_trainable(freeze):
    text = OPAQUE.format(freeze=freeze, params="[p for p in model.parameters() if p.requires_grad]")
    assert codes(text, "GP1") == []
    ns = exec_program(text)
    model = torch.nn.Module()
    model.backbone, model.head = torch.nn.Linear(2, 2), torch.nn.Linear(2, 1)
    assert ns["probe"](model).param_groups[0]["params"]


# -- GP106: a deep copy trained instead of the optimized model -------------------------------------
COPY_TRAIN = NET + """\
model = Net()
optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
model2 = copy.deepcopy(model)
w0 = model2.classifier.weight.detach().clone()
for step in range(3):
    loss = F.cross_entropy(model2(torch.randn(8, 6)), torch.randint(0, 2, (8,)))
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
"""


def test_gp106_deepcopy_into_a_new_name_after_the_optimizer():
    [f] = run(COPY_TRAIN, "GP1")
    assert f.code == "GP106" and f.severity == "error"
    assert span_text(COPY_TRAIN, f.span) == "model2 = copy.deepcopy(model)"
    assert f.message == ("model2 is a deep copy of model made after SGD took the parameters of model (line 18), and "
                         "model2 is the model trained here: SGD keeps updating model's tensors and model2 never "
                         "changes")
    assert [r.span.line for r in f.related] == [18, line_of(COPY_TRAIN, "loss.backward()"),
                                                line_of(COPY_TRAIN, "optimizer.step()")]
    assert f.data["model"] == "model2" and f.data["optimizer"] == "optimizer"
    ns = exec_program(COPY_TRAIN)
    assert torch.equal(ns["w0"], ns["model2"].classifier.weight)  # the bug: the trained copy never changes
    (fix,) = f.fixes
    assert not fix.safe
    fixed = apply_fix(COPY_TRAIN, fix)
    assert "model2 = copy.deepcopy(model)\noptimizer = torch.optim.SGD(model2.parameters(), lr=0.5)\n" in fixed
    assert codes(fixed, "GP1") == []
    ns = exec_program(fixed)
    assert not torch.equal(ns["w0"], ns["model2"].classifier.weight)


def test_gp106_deepcopy_moved_to_a_device_is_still_the_copy():
    text = COPY_TRAIN.replace("model2 = copy.deepcopy(model)", "model2 = copy.deepcopy(model).to('cpu').train()")
    [f] = run(text, "GP1")
    assert f.code == "GP106"
    assert span_text(text, f.span) == "model2 = copy.deepcopy(model).to('cpu').train()"
    assert f.message.startswith("model2 is a deep copy of model made after SGD took the parameters of model")
    ns = exec_program(text)
    assert torch.equal(ns["w0"], ns["model2"].classifier.weight)  # really never trains


@pytest.mark.parametrize("program", [
    # the copy is made first and the optimizer is built on it
    """model = copy.deepcopy(Net())
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
for step in range(2):
    loss = model(torch.randn(4, 6)).sum()
    optimizer.zero_grad(); loss.backward(); optimizer.step()
""",
    # an EMA copy, updated under no_grad and never backwarded
    """model = Net()
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
ema = copy.deepcopy(model)
for step in range(2):
    loss = model(torch.randn(4, 6)).sum()
    optimizer.zero_grad(); loss.backward(); optimizer.step()
    with torch.no_grad():
        for e, p in zip(ema.parameters(), model.parameters()):
            e.mul_(0.9).add_(p, alpha=0.1)
    score = ema(torch.randn(4, 6)).sum().item()
""",
    # a target network moved to the device, updated by copying weights, used under no_grad
    """model = Net()
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
target = copy.deepcopy(model).to("cpu").eval()
for step in range(2):
    x = torch.randn(4, 6)
    with torch.no_grad():
        goal = target(x)
    loss = F.mse_loss(model(x), goal)
    optimizer.zero_grad(); loss.backward(); optimizer.step()
    target.load_state_dict(model.state_dict())
""",
    # a teacher copy whose output reaches the same loss as the trained student
    """student = Net()
optimizer = torch.optim.SGD(student.parameters(), lr=0.1)
teacher = copy.deepcopy(student)
for step in range(2):
    x = torch.randn(4, 6)
    loss = F.mse_loss(student(x), teacher(x))
    optimizer.zero_grad(); loss.backward(); optimizer.step()
""",
    # the copy gets its own optimizer
    """model = Net()
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
model2 = copy.deepcopy(model)
opt2 = torch.optim.SGD(model2.parameters(), lr=0.1)
for step in range(2):
    loss = model2(torch.randn(4, 6)).sum()
    opt2.zero_grad(); loss.backward(); opt2.step()
""",
])
def test_gp106_deepcopy_near_misses(program):
    text = NET + program
    assert codes(text, "GP1") == []
    exec_program(text)


# -- GP306: sqrt of a loss only logged --------------------------------------------------------------
RMSE = """\
import torch
import torch.nn as nn

model = nn.Linear(3, 1)
mse = nn.MSELoss()
opt = torch.optim.SGD(model.parameters(), lr=0.1)
history = []
for step in range(2):
    x, y = torch.randn(4, 3), torch.randn(4, 1)
    loss = mse(model(x), y)
    rmse = {sqrt}
    opt.zero_grad()
    {backward}.backward()
    opt.step()
    print(rmse.item())
    history.append(rmse.item())
    print(f"rmse {{rmse:.3f}}")
"""


@pytest.mark.parametrize("sqrt", ["torch.sqrt(loss)", "loss.sqrt()", "torch.sqrt(loss).mean()"])
def test_gp306_quiet_for_a_logged_rmse_and_fires_when_it_is_backwarded(sqrt):
    quiet = RMSE.format(sqrt=sqrt, backward="loss")
    assert codes(quiet, "GP3") == []
    exec_program(quiet)
    loud = RMSE.format(sqrt=sqrt, backward="rmse")
    assert codes(loud, "GP3") == [(11, "GP306")]
    via_name = RMSE.format(sqrt=sqrt, backward="loss").replace("    opt.zero_grad()", "    loss = rmse\n    opt.zero_grad()")
    assert codes(via_name, "GP3") == [(11, "GP306")]


def test_gp306_real_torch_nan_gradient_when_the_backwarded_rmse_is_at_zero():
    w = torch.zeros(1, 3, requires_grad=True)
    x = torch.randn(4, 3)
    torch.sqrt(torch.nn.functional.mse_loss(x @ w.t(), torch.zeros(4, 1))).backward()
    assert torch.isnan(w.grad).all()


# -- GP307: exp of a log-variance ------------------------------------------------------------------
@pytest.mark.parametrize("expr,fires", [
    ("torch.exp(0.5 * logvar)", False), ("logvar.exp()", False), ("torch.exp(log_var / 2)", False),
    ("log_std.exp()", False), ("torch.exp(logsigma)", False), ("torch.exp(log_scale.clamp(-5, 5))", False),
    ("torch.exp(log_variance)", False), ("torch.exp(out)", True), ("torch.exp(log_rate)", True),
])
def test_gp307_quiet_for_log_scale_heads(expr, fires):
    text = textwrap.dedent(f"""\
        import torch
        import torch.nn as nn

        enc = nn.Linear(10, 16)
        opt = torch.optim.Adam(enc.parameters())
        h = enc(torch.randn(4, 10))
        mu, logvar, log_var, log_std, logsigma, log_scale, log_variance, out = h.chunk(8, dim=1)
        log_rate = out
        loss = (mu + {expr}).sum()
        opt.zero_grad(); loss.backward(); opt.step()
        """)
    assert codes(text, "GP3") == ([(9, "GP307")] if fires else [])
