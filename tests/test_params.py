"""GP1 rules: exact messages, ranges, related information, finding data, and fixes that, applied to
the text, give a program that real torch runs correctly."""
import textwrap

import pytest

from gradpath.analysis import analyze

torch = pytest.importorskip("torch")

HEADER = """\
import copy
import torch
import torch.nn as nn


class SimpleModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(10, 1)

    def forward(self, x):
        return self.linear(x)


"""
TRAIN = """
for epoch in range(2):
    loss = ((model(torch.randn(4, 10)) - torch.randn(4, 1)) ** 2).mean()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
"""


def findings(text, code=None):
    res = analyze(text, "prog.py")
    assert not res.failed_rules, res.failed_rules
    return [f for f in res.findings if code is None or f.code == code]


def one(text, code):
    fs = findings(text, code)
    assert len(fs) == 1, [(f.code, f.span.line, f.message) for f in findings(text)]
    return fs[0]


def span_text(text, span):
    lines = text.split("\n")
    if span.line == span.end_line:
        return lines[span.line - 1][span.col:span.end_col]
    return "\n".join([lines[span.line - 1][span.col:]] + lines[span.line:span.end_line - 1]
                     + [lines[span.end_line - 1][:span.end_col]])


def apply(text, fix):
    lines = text.split("\n")
    offs = [0]
    for ln in lines:
        offs.append(offs[-1] + len(ln) + 1)
    out = text
    for e in sorted(fix.edits, key=lambda e: (e.span.line, e.span.col), reverse=True):
        a = offs[e.span.line - 1] + e.span.col
        b = offs[e.span.end_line - 1] + e.span.end_col
        out = out[:a] + e.new_text + out[b:]
    return out


def run_program(text):
    ns = {"__name__": "__main__"}
    exec(compile(text, "prog.py", "exec"), ns)
    return ns


def line_of(text, needle):
    for i, ln in enumerate(text.split("\n"), 1):
        if needle in ln:
            return i
    raise AssertionError(needle)


# -- GP101 ------------------------------------------------------------------------------------
def test_gp101_single_model_safe_fix_runs():
    text = HEADER + "model = SimpleModel()\noptimizer = torch.optim.Adam([], lr=0.01)\n" + TRAIN
    with pytest.raises(ValueError, match="optimizer got an empty parameter list"):
        run_program(text)
    f = one(text, "GP101")
    assert f.message == ("Adam is given an empty parameter list: PyTorch raises ValueError: optimizer got an "
                         "empty parameter list when it is constructed")
    assert f.severity == "error"
    assert span_text(text, f.span) == "[]"
    assert f.data == {"model": "model", "model_class": "SimpleModel", "optimizer": "optimizer",
                      "optimizer_class": "torch.optim.Adam", "missing": []}
    assert [r.span.line for r in f.related] == [line_of(text, "model = SimpleModel()")]
    (fix,) = f.fixes
    assert fix.safe and fix.preferred
    fixed = apply(text, fix)
    assert "torch.optim.Adam(model.parameters(), lr=0.01)" in fixed
    ns = run_program(fixed)
    assert findings(fixed) == []
    assert ns["model"].linear.weight.grad is not None


def test_gp101_two_trained_models_one_unsafe_fix_each():
    text = HEADER + textwrap.dedent("""\
        a = SimpleModel()
        b = SimpleModel()
        optimizer = torch.optim.SGD(params=(), lr=0.1)
        loss = (a(torch.randn(2, 10)) + b(torch.randn(2, 10))).sum()
        loss.backward()
        optimizer.step()
        """)
    f = one(text, "GP101")
    assert [(x.title, x.safe) for x in f.fixes] == [("Pass a.parameters() to SGD", False),
                                                    ("Pass b.parameters() to SGD", False)]
    assert "model" not in f.data


def test_gp101_target_network_not_a_candidate_for_the_safe_fix():
    text = HEADER + textwrap.dedent("""\
        model = SimpleModel()
        target = copy.deepcopy(model)
        optimizer = torch.optim.Adam(list(), lr=1e-3)
        with torch.no_grad():
            y = target(torch.randn(2, 10))
        loss = (model(torch.randn(2, 10)) - y).pow(2).mean()
        loss.backward()
        optimizer.step()
        """)
    f = one(text, "GP101")
    assert [(x.title, x.safe) for x in f.fixes] == [("Pass model.parameters() to Adam", True)]


# -- GP102 ------------------------------------------------------------------------------------
def test_gp102_seed_message_range_fix():
    text = HEADER + "model = SimpleModel()\noptimizer = torch.optim.Adam([model.linear.weight], lr=0.1)\n" + TRAIN
    f = one(text, "GP102")
    assert f.message == "Adam gets 1 of 2 parameter tensors of model; linear.bias is never updated"
    assert f.severity == "warning"
    assert span_text(text, f.span) == "[model.linear.weight]"
    assert f.data["missing"] == ["linear.bias"]
    assert f.data["model"] == "model" and f.data["optimizer_class"] == "torch.optim.Adam"
    rel = {r.span.line: r.message for r in f.related}
    assert rel[line_of(text, "model = SimpleModel()")] == "model (SimpleModel) is created here"
    assert rel[line_of(text, "self.linear = nn.Linear")] == "linear.bias is created here"
    # really: the bias gets a gradient and never changes
    probe = "b0 = model.linear.bias.detach().clone()\nfor epoch in range(2):"
    ns = run_program(text.replace("for epoch in range(2):", probe))
    assert ns["model"].linear.bias.grad is not None
    assert torch.equal(ns["b0"], ns["model"].linear.bias.detach())
    (fix,) = f.fixes
    assert not fix.safe
    fixed = apply(text, fix)
    assert findings(fixed) == []
    torch.manual_seed(0)
    ns = run_program(fixed.replace("for epoch in range(2):", probe))
    assert not torch.equal(ns["b0"], ns["model"].linear.bias.detach())


def test_gp102_names_several_missing_and_counts():
    text = textwrap.dedent("""\
        import torch
        from torch import nn
        net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.LSTM(4, 4, num_layers=2))
        optimizer = torch.optim.SGD(net[0].parameters(), lr=0.1)
        out, _ = net(torch.randn(2, 5, 3))
        out.sum().backward()
        optimizer.step()
        """)
    f = one(text, "GP102")
    assert f.message == ("SGD gets 2 of 10 parameter tensors of net; 2.weight_ih_l0, 2.weight_hh_l0, "
                         "2.bias_ih_l0 and 5 more are never updated")
    assert len(f.data["missing"]) == 8


def test_gp102_quiet_for_frozen_part_and_param_groups():
    text = HEADER + textwrap.dedent("""\
        class Two(nn.Module):
            def __init__(self):
                super().__init__()
                self.a = nn.Linear(10, 10)
                self.b = nn.Linear(10, 1)

            def forward(self, x):
                return self.b(self.a(x))


        model = Two()
        for p in model.a.parameters():
            p.requires_grad = False
        optimizer = torch.optim.Adam(model.b.parameters(), lr=0.1)
        other = Two()
        opt2 = torch.optim.Adam([{"params": other.a.parameters(), "lr": 0.1}, {"params": other.b.parameters()}])
        third = Two()
        opt3 = torch.optim.Adam(p for n, p in third.named_parameters() if not n.startswith("a."))
        loss = model(torch.randn(2, 10)).sum() + other(torch.randn(2, 10)).sum() + third(torch.randn(2, 10)).sum()
        loss.backward()
        """)
    assert findings(text, "GP102") == []


# -- GP103 ------------------------------------------------------------------------------------
def test_gp103_message_fix_runs():
    text = textwrap.dedent("""\
        import torch
        import torch.nn as nn

        encoder = nn.Linear(8, 4)
        decoder = nn.Linear(4, 8)
        optimizer = torch.optim.Adam(decoder.parameters(), lr=0.01)
        for _ in range(2):
            x = torch.randn(3, 8)
            loss = ((decoder(encoder(x)) - x) ** 2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        """)
    f = one(text, "GP103")
    assert f.message == ("encoder (Linear) is in no optimizer, but its output reaches the loss backwarded at "
                         "line 11: its 2 parameter tensors get gradients and never change")
    assert span_text(text, f.span) == "decoder.parameters()"
    assert f.data["model"] == "encoder" and f.data["missing"] == ["weight", "bias"]
    assert {r.span.line for r in f.related} == {4, 11}
    (fix,) = f.fixes
    assert not fix.safe
    fixed = apply(text, fix)
    assert "list(decoder.parameters()) + list(encoder.parameters())" in fixed
    assert findings(fixed, "GP103") == []
    ns = run_program(fixed.replace("for _ in", "w0 = encoder.weight.detach().clone()\nfor _ in"))
    assert not torch.equal(ns["w0"], ns["encoder"].weight.detach())


def test_gp103_quiet_for_detached_no_grad_frozen_eval_and_copies():
    text = textwrap.dedent("""\
        import copy
        import torch
        import torch.nn as nn

        model = nn.Linear(4, 4)
        a = nn.Linear(4, 4)
        b = nn.Linear(4, 4)
        c = nn.Linear(4, 4)
        c.requires_grad_(False)
        d = nn.Linear(4, 4)
        d.eval()
        ema = copy.deepcopy(model)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        x = torch.randn(2, 4)
        with torch.no_grad():
            ya = a(x)
        yb = b(x).detach()
        loss = (model(x) - ya - yb - c(x) - d(x) - ema(x)).pow(2).mean()
        loss.backward()
        optimizer.step()
        """)
    assert findings(text, "GP103") == []


# -- GP104 / GP105 / GP112 --------------------------------------------------------------------
def test_gp104_fix_registers_the_layers():
    text = textwrap.dedent("""\
        import torch.nn as nn


        class MLP(nn.Module):
            def __init__(self):
                super().__init__()
                self.layers = [nn.Linear(4, 4), nn.Linear(4, 2)]

            def forward(self, x):
                for layer in self.layers:
                    x = layer(x)
                return x


        n = len(list(MLP().parameters()))
        """)
    f = one(text, "GP104")
    assert f.message.startswith("self.layers is a plain list of modules: MLP does not register them")
    assert span_text(text, f.span) == "[nn.Linear(4, 4), nn.Linear(4, 2)]"
    assert run_program(text)["n"] == 0
    (fix,) = f.fixes
    assert fix.safe
    fixed = apply(text, fix)
    assert "self.layers = nn.ModuleList([nn.Linear(4, 4), nn.Linear(4, 2)])" in fixed
    assert run_program(fixed)["n"] == 4
    assert findings(fixed) == []


def test_gp105_fixes_register_parameters():
    text = textwrap.dedent("""\
        import torch
        import torch.nn as nn


        class Affine(nn.Module):
            def __init__(self, n):
                super().__init__()
                self.scale = torch.ones(n, requires_grad=True)
                self.gain = nn.Parameter(torch.randn(n)).double()
                self.temp = nn.Parameter(torch.ones(1)) * 0.5

            def forward(self, x):
                return x * self.scale * self.gain * self.temp


        names = [n for n, _ in Affine(3).named_parameters()]
        """)
    fs = findings(text, "GP105")
    assert [span_text(text, f.span) for f in fs] == [
        "torch.ones(n, requires_grad=True)", "nn.Parameter(torch.randn(n)).double()",
        "nn.Parameter(torch.ones(1)) * 0.5"]
    assert fs[0].message == ("self.scale is a plain tensor with requires_grad=True, not an nn.Parameter: Affine "
                             "does not register it, so it is missing from Affine.parameters() and no optimizer "
                             "updates it")
    assert run_program(text)["names"] == []
    fixed = text
    for f in reversed(fs):
        assert f.fixes[0].safe
        fixed = apply(fixed, f.fixes[0])
    assert "nn.Parameter(torch.ones(n))" in fixed
    assert "nn.Parameter(torch.randn(n, dtype=torch.float64))" in fixed
    assert "nn.Parameter(torch.ones(1) * 0.5)" in fixed
    assert run_program(fixed)["names"] == ["scale", "gain", "temp"]
    assert findings(fixed, "GP105") == []


def test_gp112_fix_moves_layer_to_init():
    text = textwrap.dedent("""\
        import torch
        import torch.nn as nn


        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc1 = nn.Linear(10, 32)

            def forward(self, x):
                return nn.Linear(32, 1)(torch.relu(self.fc1(x)))


        n = len(list(Net().parameters()))
        """)
    f = one(text, "GP112")
    assert f.message == ("nn.Linear(32, 1) is built inside forward(): every call creates a fresh weight and "
                         "bias that Net does not register, so no optimizer trains them")
    assert span_text(text, f.span) == "nn.Linear(32, 1)"
    (fix,) = f.fixes
    assert not fix.safe
    fixed = apply(text, fix)
    assert "        self.linear = nn.Linear(32, 1)\n" in fixed
    assert "return self.linear(torch.relu(self.fc1(x)))" in fixed
    assert run_program(fixed)["n"] == 4
    assert findings(fixed) == []


# -- GP106 / GP107 / GP108 --------------------------------------------------------------------
def test_gp106_fix_moves_optimizer_after_rebinding():
    text = HEADER + textwrap.dedent("""\
        model = SimpleModel()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        model = SimpleModel()
        """) + TRAIN
    f = one(text, "GP106")
    assert f.message == ("model is rebound to a new SimpleModel after SGD took the parameters of the previous "
                         "instance (line 16): SGD keeps updating the old tensors and the new model never changes")
    assert span_text(text, f.span) == "model = SimpleModel()"
    assert f.span.line == 17
    assert {r.span.line for r in f.related} == {16, line_of(text, "optimizer.step()")}
    ns = run_program(text)
    (fix,) = f.fixes
    fixed = apply(text, fix)
    assert "model = SimpleModel()\nmodel = SimpleModel()\noptimizer = torch.optim.SGD" in fixed
    assert findings(fixed) == []
    ns = run_program(fixed.replace("for epoch", "w0 = model.linear.weight.detach().clone()\nfor epoch"))
    assert not torch.equal(ns["w0"], ns["model"].linear.weight.detach())


def test_gp106_quiet_for_to_device_and_rebuilt_optimizer():
    text = HEADER + textwrap.dedent("""\
        model = SimpleModel()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        model = model.to("cpu")
        model.train()
        """) + TRAIN
    assert findings(text) == []


def test_gp107_points_to_the_freeze():
    text = HEADER + textwrap.dedent("""\
        model = SimpleModel()
        model.requires_grad_(False)
        optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad])
        """)
    f = one(text, "GP107")
    assert f.message == ("Adam gets only the parameters of model that require grad, but every one of them is "
                         "frozen (line 16): PyTorch raises ValueError: optimizer got an empty parameter list")
    assert f.fixes == []
    assert [r.span.line for r in f.related] == [16]
    with pytest.raises(ValueError, match="empty parameter list"):
        run_program(text)


def test_gp108_uses_the_trained_instance():
    text = HEADER + "model = SimpleModel()\noptimizer = torch.optim.Adam(SimpleModel().parameters(), lr=0.1)\n" + TRAIN
    f = one(text, "GP108")
    assert span_text(text, f.span) == "SimpleModel()"
    assert f.message == ("Adam gets the parameters of a new SimpleModel built right here, not of the trained "
                         "instance model (line 15): model never changes")
    (fix,) = f.fixes
    assert fix.safe
    fixed = apply(text, fix)
    assert "torch.optim.Adam(model.parameters(), lr=0.1)" in fixed
    assert findings(fixed) == []


# -- GP109 / GP110 / GP111 --------------------------------------------------------------------
def test_gp109_gp110_fixes_construct():
    text = HEADER + textwrap.dedent("""\
        model = SimpleModel()
        seq = nn.Sequential(nn.Linear(2, 2))
        o1 = torch.optim.Adam(model.parameters, lr=0.1)
        o2 = torch.optim.SGD(model, lr=0.1)
        o3 = torch.optim.SGD(seq, lr=0.1)
        """)
    f1, = findings(text, "GP109")
    f2, f3 = findings(text, "GP110")
    assert f1.message == ("Adam is given the bound method model.parameters, not its result: PyTorch raises "
                          "TypeError: 'method' object is not iterable")
    assert f2.message == ("SGD is given the module model itself, not its parameters: PyTorch raises TypeError: "
                          "'SimpleModel' object is not iterable")
    assert "optimizer can only optimize Tensors" in f3.message
    with pytest.raises(TypeError, match="'method' object is not iterable"):
        run_program(text)
    fixed = text
    for f in (f3, f2, f1):  # one edit each, on separate lines
        assert f.fixes[0].safe
        fixed = apply(fixed, f.fixes[0])
    assert "torch.optim.Adam(model.parameters(), lr=0.1)" in fixed
    assert "torch.optim.SGD(model.parameters(), lr=0.1)" in fixed
    assert "torch.optim.SGD(seq.parameters(), lr=0.1)" in fixed
    run_program(fixed)
    assert findings(fixed) == []


def test_gp111_fix_keeps_a_list():
    text = HEADER + textwrap.dedent("""\
        model = SimpleModel()
        params = model.parameters()
        print(len(list(params)))
        optimizer = torch.optim.SGD(params, lr=0.1)
        """)
    f = one(text, "GP111")
    assert span_text(text, f.span) == "params"
    assert f.message.startswith("params is a one-shot generator (model.parameters()); it was already consumed by "
                                "list(params) at line 17")
    with pytest.raises(ValueError, match="empty parameter list"):
        run_program(text)
    fixed = apply(text, f.fixes[0])
    assert "params = list(model.parameters())" in fixed
    run_program(fixed)
    assert findings(fixed) == []


# -- Trainer classes and functions ------------------------------------------------------------
def test_trainer_class_across_methods():
    text = HEADER + textwrap.dedent("""\
        class Trainer:
            def __init__(self):
                self.model = SimpleModel()
                self.opt = torch.optim.Adam([self.model.linear.weight])

            def step(self, x):
                loss = self.model(x).sum()
                self.opt.zero_grad()
                loss.backward()
                self.opt.step()
        """)
    f = one(text, "GP102")
    assert f.message == "Adam gets 1 of 2 parameter tensors of self.model; linear.bias is never updated"
    assert f.data["model"] == "self.model"
    assert apply(text, f.fixes[0]).count("torch.optim.Adam(self.model.parameters())") == 1


ODD = [
    "import torch\nopt = torch.optim.Adam()\n",
    "import torch\ngroups = []\nopt = torch.optim.Adam(*groups)\n",
    "import torch\nimport torch.nn as nn\nclass A(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
    "        self.me = A()\n        self.l = nn.Linear(2, 2)\nm = A()\nopt = torch.optim.SGD([m.l.weight], lr=1)\n",
    "import torch.nn as nn\nclass A(B):\n    pass\nclass B(A):\n    pass\nm = A()\n",
    "import torch\nimport torch.nn as nn\nclass N(nn.Module):\n    def __init__(self, *a, **k):\n"
    "        super().__init__()\n        self.l = nn.Linear(*a, **k)\n        setattr(self, 'x', nn.Linear(1, 1))\n"
    "n = N(2, 3)\nopt = torch.optim.Adam(n.l.parameters())\nn(torch.randn(1, 2)).sum().backward()\n",
    "import torch\nm = torch.nn.Linear(2, 2)\nopt = torch.optim.Adam([{'lr': 1}, {'params': []}])\n"
    "opt2 = torch.optim.Adam(params=m)\nopt3 = torch.optim.Adam(m.parameters)\n",
    "import torch\ndef f(model):\n    return torch.optim.Adam(model.parameters)\nf(torch.nn.Linear(1, 1))\nf(3)\n",
    "import torch\nfor i in range(3):\n    def g():\n        def h(model):\n            torch.optim.SGD([], lr=1)\n",
    "import torch\nx = (lambda m: torch.optim.Adam(m))(torch.nn.Linear(1, 1))\n",
    "import torch\nimport torch.nn as nn\nclass M(nn.Module):\n    def forward(self, x):\n"
    "        return nn.Linear(x.shape[-1], 2)(x) + nn.LSTM(x.shape[-1], 4, num_layers=n)(x)[0]\n",
]


@pytest.mark.parametrize("text", ODD, ids=[f"odd{i}" for i in range(len(ODD))])
def test_odd_programs_never_crash_a_rule(text):
    res = analyze(text, "odd.py")
    assert not res.failed_rules, res.failed_rules


def test_gp101_only_for_empty_and_gp110_for_a_module_keyword():
    fs = findings(ODD[5])
    assert [(f.code, f.span.line) for f in fs if f.code.startswith("GP1")] == [("GP110", 4), ("GP109", 5)]


# -- Facts: the single pass over the tree ------------------------------------------------------
import ast as _ast  # noqa: E402

_SINGLETONS = (_ast.expr_context, _ast.operator, _ast.unaryop, _ast.boolop, _ast.cmpop)

def _facts_for(text: str, path: str = "t.py"):
    from gradpath.analysis.engine import Context
    from gradpath.analysis.source import SourceFile
    return Context(SourceFile.parse(text, path), path).facts


def _fixture_texts():
    from pathlib import Path
    root = Path(__file__).resolve().parent.parent / "fixtures"
    out = []
    for p in sorted(root.rglob("*.py")):
        text = p.read_text(encoding="utf-8")
        try:
            import ast
            ast.parse(text)
        except SyntaxError:
            continue
        out.append((str(p), text))
    return out


def test_single_pass_matches_plain_walks_on_every_fixture():
    """Facts.build records parents, scopes, each scope's node list and each node's scope in one
    pass; every one of them must equal what a plain walk over the tree gives."""
    import ast
    texts = _fixture_texts()
    assert len(texts) > 50
    for path, text in texts:
        facts = _facts_for(text, path)
        tree = facts.ctx.tree
        real_parent = {}
        for n in ast.walk(tree):
            for c in ast.iter_child_nodes(n):
                if not isinstance(c, ast.expr_context):
                    real_parent[id(c)] = n
        defs = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
        assert sorted(id(s.node) for s in facts.scopes[1:]) == sorted(id(d) for d in defs), path
        assert [s.node.lineno for s in facts.scopes[1:]] == sorted(s.node.lineno for s in facts.scopes[1:]), path
        for n in ast.walk(tree):
            if isinstance(n, _SINGLETONS) or n is tree:
                continue  # Load/Store, operators: shared objects with no parent of their own
            assert facts.parents[id(n)] is real_parent[id(n)], (path, ast.dump(n)[:60])
            cur, want = real_parent.get(id(n)), facts.scopes[0]
            while cur is not None:
                s = facts.scope_for(cur)
                if s is not None:
                    want = s
                    break
                cur = real_parent.get(id(cur))
            assert facts.scope_of(n) is want, (path, getattr(n, "lineno", None))
        for s in facts.scopes:
            assert [id(x) for x in s.walk()] == [id(x) for x in s._walk_uncached()], (path, s)
        calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)]
        assert sorted(map(id, calls)) == sorted(id(c) for c in facts.__dict__["_all_calls"]), path


def test_tuple_unpacking_binds_each_model_and_optimizer():
    facts = _facts_for(textwrap.dedent("""\
        import torch
        import torch.nn as nn
        enc, (dec, head) = nn.Linear(2, 3), (nn.Linear(3, 2), nn.Linear(2, 1))
        a, *rest = nn.Linear(1, 1), nn.Linear(1, 1)
        opt_e, opt_d = torch.optim.SGD(enc.parameters(), lr=0.1), torch.optim.Adam(dec.parameters())
        """))
    assert sorted((m.key, m.cls, m.line) for m in facts.models) == [
        ("dec", "torch.nn.Linear", 3), ("enc", "torch.nn.Linear", 3), ("head", "torch.nn.Linear", 3)]
    assert [(o.key, o.cls) for o in facts.optimizers] == [("opt_e", "torch.optim.SGD"),
                                                          ("opt_d", "torch.optim.Adam")]
    assert not facts.escapes(facts.models[0])


def test_gp104_list_grown_by_concatenation_fix_registers_the_layers():
    from gp_helpers import apply_fix
    from testpaths import FIXTURES
    text = (FIXTURES / "gp1" / "gp104_list_concatenation.py").read_text()
    found = [f for f in analyze(text, "x.py").findings if f.code == "GP104"]
    assert [span_text(text, f.span) for f in found] == ["[]", "[]"]
    assert run_program(text)["net"].state_dict() == {}  # the bug, for real
    fixed = text
    for f in sorted(found, key=lambda f: f.span.line, reverse=True):
        [fix] = f.fixes
        assert fix.safe
        fixed = apply_fix(fixed, fix)
    assert [f.code for f in analyze(fixed, "x.py").findings if f.code == "GP104"] == []
    ns = run_program(fixed)
    assert sorted(ns["net"].state_dict()) == ["heads.0.bias", "heads.0.weight", "layers.0.bias", "layers.0.weight",
                                              "layers.1.bias", "layers.1.weight"]
