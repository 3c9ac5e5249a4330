"""GP4 (training-loop order): messages, ranges, data, fixes applied to text, the CLI on programs
written apart from fixtures/, a GP401 fix checked with real torch, and the quick fix over LSP."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from testpaths import ROOT, server_env
from gradpath.analysis import analyze
from gradpath.analysis.findings import Span

sys.path.insert(0, str(Path(__file__).resolve().parent / "lsp"))


def gp4(text: str, code: str | None = None):
    res = analyze(textwrap.dedent(text))
    assert not res.failed_rules, res.failed_rules
    return [f for f in res.findings if f.code.startswith("GP4") and (code is None or f.code == code)]


def codes_by_line(text: str) -> list[tuple[int, str]]:
    return sorted((f.span.line, f.code) for f in gp4(text))


def text_at(text: str, span: Span) -> str:
    lines = textwrap.dedent(text).split("\n")
    if span.line == span.end_line:
        return lines[span.line - 1][span.col:span.end_col]
    return "\n".join([lines[span.line - 1][span.col:]] + lines[span.line:span.end_line - 1]
                     + [lines[span.end_line - 1][:span.end_col]])


def apply_fix(text: str, fix) -> str:
    """Apply a Fix's edits (1-based lines, character columns, original coordinates)."""
    text = textwrap.dedent(text)
    starts = [0]
    for i, ch in enumerate(text):
        if ch == "\n":
            starts.append(i + 1)

    def off(line, col):
        if line > len(starts):
            return len(text)
        return starts[line - 1] + col

    edits = sorted(((off(e.span.line, e.span.col), off(e.span.end_line, e.span.end_col), e.new_text)
                    for e in fix.edits), reverse=True)
    for s, e, new in edits:
        text = text[:s] + new + text[e:]
    return text


def preferred(f):
    (fx,) = [x for x in f.fixes if x.preferred]
    return fx


MODULE_LOOP = """\
import torch
import torch.nn as nn

model = nn.Linear(4, 1)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
data = [(torch.randn(2, 4), torch.randn(2, 1)) for _ in range(3)]
for x, y in data:
    loss = nn.functional.mse_loss(model(x), y)
    loss.backward()
    opt.step()
"""


# -- GP401 --------------------------------------------------------------------------------------------

def test_gp401_message_range_data_and_related():
    (f,) = gp4(MODULE_LOOP)
    assert f.code == "GP401" and f.severity == "warning"
    assert f.message == "opt.zero_grad() is never called in this loop: gradients of model add up across iterations"
    assert f.span == Span(7, 0, 7, 16)
    assert text_at(MODULE_LOOP, f.span) == "for x, y in data"
    assert f.data == {"optimizer": "opt", "optimizer_class": "SGD", "model": "model", "loop_line": 7,
                      "needs_iterations": 2}
    rel = {r.span.line: r.message for r in f.related}
    assert rel[10].startswith("opt.step() applies the sum") and rel[9].startswith("loss.backward() adds")


def test_gp401_fix_inserts_zero_grad_at_the_top_of_the_body():
    (f,) = gp4(MODULE_LOOP)
    fx = preferred(f)
    assert fx.safe
    new = apply_fix(MODULE_LOOP, fx)
    assert new.split("\n")[7] == "    opt.zero_grad()"
    assert new.split("\n")[8] == "    loss = nn.functional.mse_loss(model(x), y)"
    assert gp4(new) == []


def test_gp401_fix_uses_the_body_indentation_in_a_method_and_after_a_comment():
    src = """\
    import torch


    class Trainer:
        def __init__(self, model):
            self.model = model
            self.optimizer = torch.optim.Adam(model.parameters())

        def fit(self, loader):
            for epoch in range(3):
                for x, y in loader:
                    # forward pass
                    out = self.model(x)
                    loss = ((out - y) ** 2).mean()
                    loss.backward()
                    self.optimizer.step()
    """
    (f,) = gp4(src)
    assert f.code == "GP401" and f.span.line == 11
    assert f.message.startswith("self.optimizer.zero_grad() is never called in this loop")
    new = apply_fix(src, preferred(f)).split("\n")
    assert new[10] == "            for x, y in loader:"
    assert new[11] == "                # forward pass"
    assert new[12] == "                self.optimizer.zero_grad()"
    assert new[13] == "                out = self.model(x)"
    assert gp4("\n".join(new)) == []


def test_gp401_fix_with_tabs():
    src = "import torch\nm = torch.nn.Linear(2, 1)\no = torch.optim.SGD(m.parameters(), lr=0.1)\n" \
          "def train(xs):\n\tfor x in xs:\n\t\tm(x).sum().backward()\n\t\to.step()\n"
    (f,) = gp4(src)
    new = apply_fix(src, preferred(f))
    assert "\tfor x in xs:\n\t\to.zero_grad()\n\t\tm(x).sum().backward()\n" in new
    compile(new, "<fixed>", "exec")
    assert gp4(new) == []


def test_gp401_zero_grad_outside_the_batch_loop_names_it():
    src = """\
    import torch
    net = torch.nn.Linear(3, 1)
    opt = torch.optim.Adam(net.parameters())
    for epoch in range(2):
        opt.zero_grad()
        for x in [torch.randn(2, 3)]:
            net(x).sum().backward()
            opt.step()
    """
    (f,) = gp4(src)
    assert (f.code, f.span.line) == ("GP401", 6)
    assert f.message == ("opt.zero_grad() is called only outside this loop (line 5): gradients of net add up "
                         "across its iterations")
    assert any(r.span.line == 5 for r in f.related)


def test_gp401_zero_grad_on_some_iterations_only_names_the_condition_and_fix_clears_every_one():
    src = """\
    import torch
    net = torch.nn.Linear(3, 1)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    for i, x in enumerate([torch.randn(2, 3)] * 3):
        if i == 0:
            opt.zero_grad()
        net(x).sum().backward()
        opt.step()
    """
    (f,) = gp4(src)
    assert (f.code, f.span.line) == ("GP401", 4)
    assert f.message == ("opt.zero_grad() runs only on some iterations of this loop (only when `i == 0`, line 6) "
                         "while opt.step() runs on every one: on the others gradients of net add up across "
                         "iterations")
    assert any(r.span.line == 6 and "some iterations only" in r.message for r in f.related)
    new = apply_fix(src, preferred(f))
    assert new.split("\n")[4] == "    opt.zero_grad()"
    assert gp4(new) == []
    # the same clear in an else branch too: quiet; a step under a condition of its own is taken for
    # deliberate accumulation (the two conditions are not compared): quiet
    both = src.replace("        opt.zero_grad()\n", "        opt.zero_grad()\n    else:\n        opt.zero_grad()\n")
    assert gp4(both) == []
    accum = src.replace("    opt.step()\n", "    if i % 2 == 1:\n        opt.step()\n")
    assert gp4(accum) == []


def test_gp401_real_torch_fix_stops_gradients_adding_up(tmp_path):
    """Run the program before and after the fix with torch: before, the gradient after two
    iterations is the sum of both; after, it is the second iteration's alone."""
    probe = """
import torch
torch.manual_seed(0)
model = torch.nn.Linear(4, 1)
opt = torch.optim.SGD(model.parameters(), lr=0.0)
data = [(torch.randn(2, 4), torch.randn(2, 1)) for _ in range(2)]
for x, y in data:
    loss = torch.nn.functional.mse_loss(model(x), y)
    loss.backward()
    opt.step()
g = model.weight.grad.clone()
model.weight.grad = None
x, y = data[1]
torch.nn.functional.mse_loss(model(x), y).backward()
print(float((g - model.weight.grad).abs().max()))
"""
    (f,) = gp4(probe)
    fixed = apply_fix(probe, preferred(f))
    (tmp_path / "before.py").write_text(probe)
    (tmp_path / "after.py").write_text(fixed)
    runner = ("import runpy, sys\n"
              "for name in ('before.py', 'after.py'):\n"
              "    runpy.run_path(sys.argv[1] + '/' + name)\n")
    r = subprocess.run([sys.executable, "-c", runner, str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    out = [float(x) for x in r.stdout.split()]
    assert len(out) == 2
    assert out[0] > 1e-4  # accumulated: differs from the last iteration's gradient
    assert out[1] < 1e-7  # fixed: exactly the last iteration's gradient


QUIET = {
    "accumulation": """\
        import torch
        model = torch.nn.Linear(3, 1)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        k = 4
        for i, (x, y) in enumerate([(torch.randn(2, 3), torch.randn(2, 1))] * 8):
            loss = torch.nn.functional.mse_loss(model(x), y) / k
            loss.backward()
            if (i + 1) % k == 0:
                optimizer.step()
                optimizer.zero_grad()
    """,
    "amp": """\
        import torch
        from torch.cuda.amp import GradScaler, autocast
        model = torch.nn.Linear(3, 1)
        opt = torch.optim.AdamW(model.parameters())
        scaler = GradScaler()
        def train(loader):
            model.train()
            for x, y in loader:
                opt.zero_grad(set_to_none=True)
                with autocast():
                    loss = (model(x) - y).pow(2).mean()
                scaler.scale(loss).backward()
                scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                scaler.step(opt)
                scaler.update()
    """,
    "closure": """\
        import torch
        w = torch.nn.Linear(2, 1)
        opt = torch.optim.LBFGS(w.parameters())
        x, y = torch.randn(8, 2), torch.randn(8, 1)
        for _ in range(5):
            def closure():
                opt.zero_grad()
                loss = ((w(x) - y) ** 2).mean()
                loss.backward()
                return loss
            opt.step(closure)
    """,
    "trainer": """\
        import torch
        import torch.nn as nn

        class Trainer:
            def __init__(self, model, lr):
                self.model = model
                self.opt = torch.optim.SGD(model.parameters(), lr=lr)
                self.sched = torch.optim.lr_scheduler.StepLR(self.opt, 10)

            def _clear(self):
                self.opt.zero_grad()

            def train_step(self, batch):
                x, y = batch
                self._clear()
                loss = nn.functional.cross_entropy(self.model(x), y)
                loss.backward()
                self.opt.step()
                return loss.item()

            @torch.no_grad()
            def validate(self, loader):
                self.model.eval()
                total = 0.0
                for x, y in loader:
                    total += nn.functional.cross_entropy(self.model(x), y)
                return total

            def fit(self, train_loader, val_loader, epochs):
                history = []
                for epoch in range(epochs):
                    self.model.train()
                    running = 0.0
                    for batch in train_loader:
                        running += self.train_step(batch)
                    self.sched.step()
                    history.append(self.validate(val_loader))
                return history
    """,
    "zero_grad_at_end_and_model_zero_grad": """\
        import torch
        net = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Dropout(), torch.nn.Linear(3, 1))
        opt = torch.optim.Adam(net.parameters())
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=100)
        for epoch in range(2):
            net.train()
            for x in [torch.randn(2, 3)]:
                net(x).mean().backward()
                opt.step()
                sched.step()
                opt.zero_grad()
            net.eval()
            with torch.no_grad():
                val = sum(net(x).mean().item() for x in [torch.randn(2, 3)])
        for x in [torch.randn(2, 3)]:
            net.zero_grad()
            net(x).mean().backward()
            opt.step()
    """,
}


@pytest.mark.parametrize("name", sorted(QUIET))
def test_correct_loops_stay_quiet(name):
    assert gp4(QUIET[name]) == []


# -- GP402 / GP403 / GP404 / GP406 ---------------------------------------------------------------------

def test_gp402_message_range_and_fix_moves_zero_grad_before_backward():
    src = """\
    import torch
    model = torch.nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for x in [torch.randn(3, 2)]:
        loss = model(x).pow(2).mean()
        loss.backward()
        optimizer.zero_grad()
        optimizer.step()
    """
    (f,) = gp4(src)
    assert f.code == "GP402" and f.severity == "error"
    assert text_at(src, f.span) == "optimizer.zero_grad()"
    assert f.message.startswith("optimizer.zero_grad() clears the gradients that loss.backward() (line 6) "
                                "computed before optimizer.step() (line 8) uses them")
    new = apply_fix(src, preferred(f))
    assert new.split("\n")[4:8] == ["    loss = model(x).pow(2).mean()", "    optimizer.zero_grad()",
                                    "    loss.backward()", "    optimizer.step()"]
    assert gp4(new) == []


def test_gp403_step_before_backward_and_fix():
    src = """\
    import torch
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for x in [torch.randn(3, 2)]:
        opt.zero_grad()
        opt.step()
        loss = model(x).pow(2).mean()
        loss.backward()
    """
    (f,) = gp4(src)
    assert (f.code, f.span.line, text_at(src, f.span)) == ("GP403", 6, "opt.step()")
    assert f.data["needs_iterations"] == 2 and f.data["loop_line"] == 4
    new = apply_fix(src, preferred(f))
    assert new.split("\n")[4:8] == ["    opt.zero_grad()", "    loss = model(x).pow(2).mean()",
                                    "    loss.backward()", "    opt.step()"]
    assert gp4(new) == []


def test_gp404_backward_and_scheduler_but_no_step():
    src = """\
    import torch
    def train(model, loader, optimizer, scheduler, epochs):
        for epoch in range(epochs):
            for x, y in loader:
                optimizer.zero_grad()
                loss = torch.nn.functional.mse_loss(model(x), y)
                loss.backward()
            scheduler.step()
    """
    (f,) = gp4(src)
    assert (f.code, f.span.line, text_at(src, f.span)) == ("GP404", 7, "loss.backward()")
    assert f.message == ("loss.backward() computes gradients but optimizer.step() is never called in this "
                         "loop: the weights of model never change")
    (fx,) = f.fixes
    assert not fx.safe
    new = apply_fix(src, fx)
    assert "            loss.backward()\n            optimizer.step()\n        scheduler.step()" in new
    assert gp4(new) == []


def test_gp406_scheduler_first_and_fix_moves_it_after_the_batch_loop():
    src = """\
    import torch
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[2])
    for epoch in range(3):
        sched.step()
        for x in [torch.randn(3, 2)]:
            opt.zero_grad()
            model(x).sum().backward()
            opt.step()
        print(epoch)
    """
    (f,) = gp4(src)
    assert (f.code, f.span.line, text_at(src, f.span)) == ("GP406", 6, "sched.step()")
    assert "sched.step() runs before opt.step() (line 10)" in f.message
    new = apply_fix(src, preferred(f))
    assert new.split("\n")[4:11] == ["for epoch in range(3):", "    for x in [torch.randn(3, 2)]:",
                                     "        opt.zero_grad()", "        model(x).sum().backward()",
                                     "        opt.step()", "    sched.step()", "    print(epoch)"]
    assert gp4(new) == []


# -- GP405 --------------------------------------------------------------------------------------------

def test_gp405_tells_graph_from_detached_values():
    src = """\
    import torch
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    running, a, b, c, d = 0.0, 0.0, 0.0, 0.0, []
    for x in [torch.randn(3, 2)] * 3:
        opt.zero_grad()
        loss = model(x).pow(2).mean()
        loss.backward()
        opt.step()
        running += loss
        a += loss.item()
        b += loss.detach()
        with torch.no_grad():
            val = model(x).pow(2).mean()
        c += val
        d.append(float(loss))
    """
    (f,) = gp4(src)
    assert (f.code, f.span.line, text_at(src, f.span)) == ("GP405", 10, "running += loss")
    assert f.message.startswith("running += loss keeps the autograd graph of loss alive across iterations")
    assert f.data["loop_line"] == 5
    new = apply_fix(src, preferred(f))
    assert "\n    running += loss.item()\n" in new
    assert gp4(new) == []


def test_gp405_attribute_and_dict_entry_accumulators():
    src = """\
    import torch
    class Fit:
        def __init__(self, model):
            self.model, self.total = model, 0.0
            self.opt = torch.optim.SGD(model.parameters(), lr=0.1)
        def run(self, data):
            stats = {"loss": 0.0}
            for x in data:
                self.opt.zero_grad()
                loss = self.model(x).pow(2).mean()
                loss.backward()
                self.opt.step()
                self.total += loss
                stats["loss"] += loss
                fresh = {"loss": 0.0}
                fresh["loss"] += loss
            print(stats, fresh)
    """
    found = [(f.span.line, text_at(src, f.span)) for f in gp4(src, "GP405")]
    assert found == [(13, "self.total += loss"), (14, 'stats["loss"] += loss')]
    f = gp4(src, "GP405")[1]
    assert f.message.startswith('stats["loss"] += loss keeps the autograd graph of loss alive')
    assert f.data["accumulator"] == 'stats["loss"]'
    new = apply_fix(src, preferred(f))
    assert '\n            stats["loss"] += loss.item()\n' in new
    assert [g.span.line for g in gp4(new, "GP405")] == [13]


# -- GP407 --------------------------------------------------------------------------------------------

def test_gp407_eval_in_epoch_loop_never_undone_and_fix():
    src = """\
    import torch
    def fit(model, train_loader, val_loader, optimizer, epochs):
        for epoch in range(epochs):
            for x, y in train_loader:
                optimizer.zero_grad()
                torch.nn.functional.mse_loss(model(x), y).backward()
                optimizer.step()
            model.eval()
            with torch.no_grad():
                for x, y in val_loader:
                    print(torch.nn.functional.mse_loss(model(x), y).item())
    """
    (f,) = gp4(src)
    assert (f.code, f.span.line, text_at(src, f.span)) == ("GP407", 8, "model.eval()")
    assert f.data == {"model": "model", "loop_line": 3, "needs_iterations": 2}
    new = apply_fix(src, preferred(f))
    assert new.split("\n")[2:4] == ["    for epoch in range(epochs):", "        model.train()"]
    assert gp4(new) == []


# -- GP408 --------------------------------------------------------------------------------------------

def test_gp408_direct_forward_and_fix():
    src = """\
    import torch.nn as nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.enc = nn.utils.weight_norm(nn.Linear(4, 4))

        def forward(self, x):
            return super().forward(x) if False else self.enc.forward(x)

    net = Net(); net.register_forward_hook(lambda m, i, o: None)
    y = net.forward(None)
    z = net(None)
    """
    fs = gp4(src)
    assert [(f.span.line, text_at(src, f.span)) for f in fs] == [(9, "self.enc.forward"), (12, "net.forward")]
    assert all(f.severity == "info" for f in fs)
    assert "weight norm's forward pre-hook that self.enc carries" in fs[0].message
    assert [r.span.line for r in fs[1].related] == [11, 11] and fs[1].data["hook_line"] == 11
    new = apply_fix(src, preferred(fs[1]))
    assert "y = net(None)" in new
    new = apply_fix(new, preferred(gp4(new)[0]))
    assert "else self.enc(x)" in new and gp4(new) == []


def test_gp408_needs_hooks_and_stays_out_of_tests():
    src = textwrap.dedent("""\
        import torch.nn as nn
        from torch.nn.utils import prune

        model = nn.Linear(4, 4)
        prune.random_unstructured(model, "weight", amount=0.3)
        bare = nn.Linear(4, 4)
        y = model.forward(None)
        z = bare.forward(None)
        """)
    assert [f.span.line for f in analyze(src, path="train.py").findings if f.code == "GP408"] == [7]
    for path in ("tests/test_model.py", "pkg/model_test.py", "test/models/helpers.py", "test_prune.py"):
        assert [f for f in analyze(src, path=path).findings if f.code == "GP408"] == [], path
    # hooks on every module of the model (a feature-extraction loop) reach the model itself
    src2 = textwrap.dedent("""\
        import torch.nn as nn
        model = nn.Sequential(nn.Linear(4, 4))
        for name, m in model.named_modules():
            m.register_forward_hook(lambda mod, i, o: None)
        y = model.forward(None)
        """)
    assert [f.span.line for f in analyze(src2, path="extract.py").findings if f.code == "GP408"] == [5]


# -- the CLI on programs written apart from fixtures/ ---------------------------------------------------

INDEPENDENT = {
    "kws_epoch.py": ("""\
        import torch
        import torch.nn as nn
        import torchaudio


        class KeywordSpotter(nn.Module):
            def __init__(self, n_mels=40, n_classes=12):
                super().__init__()
                self.conv = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                                          nn.MaxPool2d(2))
                self.gru = nn.GRU(16 * (n_mels // 2), 64, batch_first=True)
                self.out = nn.Linear(64, n_classes)

            def forward(self, spec):
                h = self.conv(spec.unsqueeze(1))
                b, c, f, t = h.shape
                h, _ = self.gru(h.permute(0, 3, 1, 2).reshape(b, t, c * f))
                return self.out(h[:, -1])


        def run_epoch(net, loader, opt, device):
            net.train()
            correct = 0
            for waveform, label in loader:
                spec = torchaudio.transforms.MelSpectrogram(n_mels=40)(waveform).to(device)
                logits = net(spec)
                loss = nn.functional.cross_entropy(logits, label.to(device))
                loss.backward()
                opt.step()
                correct += (logits.argmax(-1) == label).sum().item()
            return correct
        """, [(24, "GP401")]),
    "outside_batch.py": ("""\
        import torch
        from torch.utils.data import DataLoader

        def train(model, dataset, epochs=5):
            optim = torch.optim.RMSprop(model.parameters(), lr=1e-3)
            loader = DataLoader(dataset, batch_size=32, shuffle=True)
            for epoch in range(epochs):
                optim.zero_grad()
                for batch in loader:
                    loss = model(batch).mean()
                    loss.backward()
                    optim.step()
        """, [(9, "GP401")]),
    "no_step.py": ("""\
        import torch

        net = torch.nn.Sequential(torch.nn.Linear(10, 10), torch.nn.ReLU(), torch.nn.Linear(10, 1))
        optimizer = torch.optim.Adam(net.parameters(), lr=3e-4)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=50)
        for epoch in range(50):
            optimizer.zero_grad()
            loss = net(torch.randn(16, 10)).pow(2).mean()
            loss.backward()
            scheduler.step()
        """, [(9, "GP404")]),
    "sched_first.py": ("""\
        import torch
        from torch.optim.lr_scheduler import StepLR

        model = torch.nn.Linear(5, 2)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        scheduler = StepLR(optimizer, step_size=30, gamma=0.1)

        def train(loader):
            for x, y in loader:
                optimizer.zero_grad()
                torch.nn.functional.cross_entropy(model(x), y).backward()
                optimizer.step()

        for epoch in range(100):
            scheduler.step()
            train([])
        """, [(15, "GP406")]),
    "eval_never_undone.py": ("""\
        import torch
        import torch.nn as nn

        model = nn.Sequential(nn.Linear(8, 32), nn.Dropout(0.5), nn.Linear(32, 2))
        opt = torch.optim.Adam(model.parameters())
        train_batches = [(torch.randn(4, 8), torch.randint(0, 2, (4,)))] * 3
        model.train()
        for epoch in range(10):
            for x, y in train_batches:
                opt.zero_grad()
                nn.functional.cross_entropy(model(x), y).backward()
                opt.step()
            model.eval()
            with torch.no_grad():
                acc = (model(train_batches[0][0]).argmax(1) == train_batches[0][1]).float().mean()
            print(epoch, acc.item())
        """, [(13, "GP407")]),
    "running_loss.py": ("""\
        import torch

        model = torch.nn.Linear(3, 1)
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        running = 0
        for step in range(100):
            x, y = torch.randn(8, 3), torch.randn(8, 1)
            opt.zero_grad()
            loss = torch.nn.functional.smooth_l1_loss(model(x), y)
            loss.backward()
            opt.step()
            running += loss
            if step % 10 == 9:
                print(running / 10)
                running = 0
        """, [(12, "GP405")]),
    "quiet_mixed.py": ("""\
        import torch
        import torch.nn as nn

        class Trainer:
            def __init__(self, model, accum=2):
                self.model, self.accum = model, accum
                self.optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
                self.scaler = torch.amp.GradScaler("cpu", enabled=False)

            def step(self, i, x, y):
                with torch.autocast("cpu", enabled=False):
                    loss = nn.functional.mse_loss(self.model(x), y) / self.accum
                self.scaler.scale(loss).backward()
                if (i + 1) % self.accum == 0:
                    self.scaler.step(self.optimizer)
                    self.scaler.update()
                    self.optimizer.zero_grad(set_to_none=True)
                return loss.detach()

            def fit(self, batches):
                total = 0.0
                for i, (x, y) in enumerate(batches):
                    total += self.step(i, x, y)
                return total

        def lbfgs_fit(model, x, y):
            opt = torch.optim.LBFGS(model.parameters())
            for _ in range(10):
                def closure():
                    opt.zero_grad()
                    loss = nn.functional.mse_loss(model(x), y)
                    loss.backward()
                    return loss
                opt.step(closure)
        """, []),
}


def test_cli_json_on_independent_programs(tmp_path):
    for name, (src, _) in INDEPENDENT.items():
        (tmp_path / name).write_text(textwrap.dedent(src))
    r = subprocess.run([sys.executable, "-m", "gradpath", "check", "--select", "GP4", "--format", "json",
                        str(tmp_path)], capture_output=True, text=True, env=server_env(), cwd=ROOT, timeout=120)
    assert r.returncode in (0, 1), r.stderr
    got: dict[str, list] = {name: [] for name in INDEPENDENT}
    for f in json.loads(r.stdout):
        got[Path(f["path"]).name].append((f["line"], f["code"]))
    for name, (_, want) in INDEPENDENT.items():
        assert sorted(got[name]) == sorted(want), (name, got[name])


# -- the GP401 quick fix over LSP ----------------------------------------------------------------------

from lsp_helpers import Recorder, apply_edits, client, open_doc, uri_of  # noqa: E402,F401
from lsprotocol import types  # noqa: E402


async def test_lsp_gp401_quick_fix_inserts_zero_grad(client, tmp_path):  # noqa: F811
    rec = Recorder(client)
    uri = uri_of(tmp_path / "loop.py")
    open_doc(client, uri, MODULE_LOOP)
    p = await rec.wait_for(lambda p: p.uri == uri)
    (d,) = [d for d in p.diagnostics if d.code == "GP401"]
    assert (d.range.start.line, d.range.start.character, d.range.end.character) == (6, 0, 16)
    assert d.message.startswith("opt.zero_grad() is never called in this loop")
    result = await client.text_document_code_action_async(types.CodeActionParams(
        text_document=types.TextDocumentIdentifier(uri=uri), range=d.range,
        context=types.CodeActionContext(diagnostics=[d])))
    fixes = [a for a in result or [] if isinstance(a, types.CodeAction) and a.is_preferred and a.edit]
    assert len(fixes) == 1, [getattr(a, "title", a) for a in result or []]
    new = apply_edits(MODULE_LOOP, fixes[0].edit.changes[uri])
    assert new.split("\n")[7] == "    opt.zero_grad()"
    assert [f.code for f in analyze(new).findings] == []


def test_gp405_prefers_detach_when_the_value_may_not_be_a_scalar():
    src = """\
    import torch
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    kept = []
    for x, y in [(torch.randn(3, 2), torch.randn(3, 1))] * 2:
        opt.zero_grad()
        per_sample = torch.nn.functional.mse_loss(model(x), y, reduction="none")
        per_sample.mean().backward()
        opt.step()
        kept.append(per_sample)
    """
    (f,) = gp4(src)
    assert (f.code, f.span.line, text_at(src, f.span)) == ("GP405", 10, "kept.append(per_sample)")
    by_title = {fx.title: fx for fx in f.fixes}
    assert by_title["Accumulate per_sample.detach()"].safe and by_title["Accumulate per_sample.detach()"].preferred
    assert not by_title["Accumulate per_sample.item()"].safe
    assert "kept.append(per_sample.detach())" in apply_fix(src, preferred(f))


def test_gp407_through_chained_mode_calls_fix_and_run(tmp_path, monkeypatch):
    """`model.to(device).train()` restores training mode (quiet); `model.cpu().eval()` inside a
    function's loop fires, and the safe fix puts `model.train()` at the top of that loop, even though
    module-level code calls the function (the function's own unit reports it, with its names)."""
    from gp_helpers import apply_fix
    text = (ROOT / "fixtures" / "gp4" / "gp407_chained_mode_calls.py").read_text()
    [f] = gp4(text, "GP407")
    assert text_at(text, f.span) == "model.cpu().eval()"
    [fix] = f.fixes
    assert fix.safe
    fixed = apply_fix(text, fix)
    assert "    for step in range(steps):\n        model.train()\n        opt.zero_grad()" in fixed
    assert gp4(fixed, "GP407") == []
    monkeypatch.chdir(tmp_path)  # the program saves a checkpoint
    torch = pytest.importorskip("torch")
    seen = []
    ns = {"__name__": "__main__"}
    orig = torch.nn.Module.__call__

    def spy(self, *a, **k):
        if isinstance(self, torch.nn.Sequential) and torch.is_grad_enabled():
            seen.append(self.training)
        return orig(self, *a, **k)
    monkeypatch.setattr(torch.nn.Module, "__call__", spy)
    exec(compile(fixed, "fixed.py", "exec"), ns)
    assert seen and all(seen)  # every forward that trains runs in training mode


# -- precision guards (issue 17) ---------------------------------------------------------------------

def test_call_literals_keep_defaults_and_flags_derived_from_them():
    import ast
    from gradpath.analysis import effects
    fn = ast.parse(textwrap.dedent("""\
        def run(model, loader, optimizer=None, mode="train", *, log=False):
            is_train = optimizer is not None
            verbose = not log
            for x in loader:
                pass
        """)).body[0]
    call = ast.parse("run(net, data)").body[0].value
    assert effects.call_literals(call, fn) == {"optimizer": None, "mode": "train", "log": False,
                                               "is_train": False, "verbose": True}
    call = ast.parse("run(net, data, opt, log=True)").body[0].value
    assert effects.call_literals(call, fn) == {"mode": "train", "log": True, "verbose": False}
    # *args / **kwargs: which parameters are given is not known
    assert effects.call_literals(ast.parse("run(*a)").body[0].value, fn) == {}


def test_gp406_message_and_fix_for_a_visible_subclass():
    src = """\
    import torch
    from torch.optim.lr_scheduler import LambdaLR

    class Warmup(LambdaLR):
        pass

    model = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    warm = Warmup(opt, lambda s: 1.0)
    for i in range(3):
        warm.step()
        opt.zero_grad()
        model(torch.randn(1, 2)).sum().backward()
        opt.step()
    """
    (f,) = gp4(src, "GP406")
    assert (f.span.line, text_at(src, f.span)) == (11, "warm.step()")
    assert "warm.step() runs before opt.step() (line 14)" in f.message
    new = apply_fix(src, preferred(f))
    assert gp4(new, "GP406") == []
