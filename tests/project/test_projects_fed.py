"""Issue 15, second round: GP3 inside a loss module fed by another module, GP201 on a cut inside a
submodule's forward in another file, and the linker reading parameter defaults. The fixture
projects themselves run through the CLI in test_projects.py; here: where related information
points, that the split project gives the same GP3 findings as the same code in one file, and the
linker's answers for defaults."""
import os
from pathlib import Path

import pytest

from testpaths import FIXTURES
from gradpath.analysis.engine import analyze
from gradpath.analysis.project import Project
from gradpath.batch import ProjectResolver
from gradpath.files import iter_python_files

PROJECTS = FIXTURES / "projects"


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def _project(root: Path) -> Project:
    return Project(str(root), [str(f) for f in iter_python_files([str(root)])], use_cache=False).build()


def _analyze(project: Project, path: Path):
    return analyze(path.read_text(), str(path), resolver=ProjectResolver(None, project)).findings


def _write(root: Path, files: dict) -> None:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)


def test_loss_module_findings_point_at_the_loss_call_in_the_trainer():
    root = PROJECTS / "losses_sqrt_division"
    p = _project(root)
    got = {(f.code, f.span.line): f for f in _analyze(p, root / "losses" / "distance.py")}
    assert sorted(got) == [("GP301", 19), ("GP306", 10), ("GP308", 25)]
    f = got[("GP306", 10)]
    assert "`EuclideanLoss.forward` is given the output of `Regressor` in trainer.py:18" in f.message
    assert f.data["cross_module"] and f.data["loss"] == "EuclideanLoss.forward"
    assert [(os.path.basename(r.path), r.span.line) for r in f.related] == [("trainer.py", 18)]
    # the in-file fixes come along: vector_norm first, then eps under the root
    assert [fx.edits[-1].new_text for fx in f.fixes] == ["torch.linalg.vector_norm(d, dim=1)",
                                                        "(d ** 2).sum(dim=1) + eps"]
    # the one fed from train.py's own loop names train.py
    assert "train.py:15" in got[("GP308", 25)].message
    (fn,) = _analyze(p, root / "losses" / "functional.py")
    assert fn.code == "GP301" and "`cosine_distance` is given the output of `Regressor`" in fn.message


SPLIT = {
    "models.py": '''import torch.nn as nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(16, 4)

    def forward(self, x):
        return self.fc(x)
''',
    "losses.py": '''import torch
import torch.nn as nn


class EuclidLoss(nn.Module):
    def forward(self, pred, target):
        return torch.sqrt(((pred - target) ** 2).sum(1)).mean()


class RelLoss(nn.Module):
    def forward(self, pred, target):
        return (pred / (pred - target)).mean() + ((pred - target).abs() / target.abs().sum()).mean()


class SafeLoss(nn.Module):
    def forward(self, pred, target, eps=1e-8):
        d = ((pred - target) ** 2).sum(1)
        return torch.sqrt(d + eps).mean() + (pred / pred.norm(dim=1, keepdim=True).clamp(min=eps)).mean()


def log_ratio(pred, target):
    return torch.log(1 - torch.sigmoid(pred)).mean() + (target / pred.std()).mean()
''',
    "train.py": '''import torch

from losses import EuclidLoss, RelLoss, SafeLoss, log_ratio
from models import Net

model = Net()
crits = EuclidLoss(), RelLoss(), SafeLoss()
opt = torch.optim.Adam(model.parameters())
for x, y in [(torch.randn(8, 16), torch.randn(8, 4))]:
    opt.zero_grad()
    out = model(x)
    loss = crits[0](out, y) + log_ratio(out, y)
    loss = loss + EuclidLoss()(out, y)
    loss.backward()
    opt.step()
''',
}


def test_split_project_gives_the_findings_of_the_same_code_in_one_file(tmp_path):
    """The loss functions in their own module find what they find with the loop in the same file
    (the in-file rules run on the loss's body with the model output flowing in)."""
    root = tmp_path / "split"
    files = dict(SPLIT)
    files["train.py"] = files["train.py"].replace("crits[0](out, y)", "EuclidLoss()(out, y) + RelLoss()(out, y) "
                                                  "+ SafeLoss()(out, y)")
    _write(root, files)
    p = _project(root)
    split = sorted((f.code, f.message.split(" (`")[0].split(": there")[0]) for f in _analyze(p, root / "losses.py"))
    # the same code in one file (imports merged, the loss bodies unchanged)
    one = tmp_path / "one.py"
    body = files["models.py"] + files["losses.py"].split("\n", 2)[2] + files["train.py"].split("\n", 4)[4]
    one.write_text("import torch\n" + body)
    single = sorted((f.code, f.message.split(" (`")[0].split(": there")[0])
                    for f in analyze(one.read_text(), str(one)).findings if f.code.startswith("GP3"))
    assert split == single
    assert [c for c, _m in split] == ["GP301", "GP301", "GP302", "GP306", "GP308"]


def test_a_loss_fed_only_under_no_grad_or_from_its_own_file_is_left_to_the_file(tmp_path):
    files = dict(SPLIT)
    files["train.py"] = files["train.py"].replace("for x, y in", "with torch.no_grad():\n  for x, y in") \
        .replace("\n    ", "\n      ")
    root = tmp_path / "nograd"
    _write(root, files)
    p = _project(root)
    got = _analyze(p, root / "losses.py")
    # nothing cross-module, nothing in the losses fed under no_grad (EuclidLoss) or guarded (SafeLoss);
    # RelLoss, fed by nobody, is judged by the file alone: a loss class's forward is loss math (its
    # division by a difference and by a sum, line 12)
    assert not any(f.data.get("cross_module") for f in got)
    assert sorted({(f.code, f.span.line) for f in got}) == [("GP301", 12)]


def test_cut_in_a_submodule_forward_related_information():
    root = PROJECTS / "detach_in_submodule_forward"
    p = _project(root)
    (f,) = _analyze(p, root / "models" / "encoder.py")
    assert f.code == "GP201" and (f.span.line, f.span.col) == (10, 15)
    assert "which `Net` (models/net.py) returns as its output" in f.message and "train.py:13" in f.message
    assert [(os.path.basename(r.path), r.span.line) for r in f.related] == [
        ("train.py", 13), ("train.py", 12), ("net.py", 12)]
    assert [(fx.safe, fx.edits[0].new_text) for fx in f.fixes] == [(False, "self.net(x)")]
    for other in ("models/net.py", "train.py"):
        assert _analyze(p, root / other) == []


def test_cut_forward_needs_the_loss_to_be_backwarded_alone(tmp_path):
    src = PROJECTS / "detach_in_submodule_forward"
    files = {str(f.relative_to(src)): f.read_text() for f in src.rglob("*.py")}
    files["models/encoder.py"] = files["models/encoder.py"].replace("  # expect: GP201", "")
    variants = {
        # another term with a graph: no RuntimeError
        "plus": files["train.py"].replace("loss = criterion(model(x), y)",
                                          "loss = criterion(model(x), y) + x.new_zeros(()).requires_grad_()"),
        # the target is another model's output, which may carry a graph
        "teacher": files["train.py"].replace("criterion(model(x), y)", "criterion(model(x), teacher(x))")
        .replace("model = Net()", "model = Net()\nteacher = nn.Linear(16, 32)"),
        # an evaluation under no_grad
        "eval": files["train.py"].replace("    loss.backward()\n", "").replace(
            "loss = criterion(model(x), y)", "with torch.no_grad():\n        loss = criterion(model(x), y)"),
    }
    for name, train in variants.items():
        root = tmp_path / name
        _write(root, dict(files, **{"train.py": train}))
        p = _project(root)
        assert _analyze(p, root / "models" / "encoder.py") == [], name


def _linker(root: Path):
    return _project(root).linker()


def test_linker_reads_defaults_of_parameters_left_out(tmp_path):
    root = tmp_path / "p"
    _write(root, {
        "engine.py": '''import torch.nn as nn


def train(model, loader, optimizer, loss_fn=nn.CrossEntropyLoss(), *, head="softmax", k=3):
    pass


def fit(model, loss_fn=nn.CrossEntropyLoss()):
    pass
''',
        "main.py": '''import torch.nn as nn
from engine import fit, train

args = ()
train(1, 2, 3)
train(4, 5, 6, k=4)
fit(1, nn.MSELoss())
fit(*args)
''',
    })
    lk = _linker(root)
    engine = str(root / "engine.py")

    def val(fn, name):
        return lk.eval(["param", "@." + fn, name], engine)

    assert val("train", "loss_fn") == frozenset([("extinst", "torch.nn.CrossEntropyLoss")])
    assert val("train", "head") == frozenset([("lit", "softmax")])
    assert val("train", "k") == frozenset([("?",)])  # 3 and 4: the callers disagree
    assert val("fit", "loss_fn") == frozenset([("?",)])  # one passes MSELoss, one passes *args


def test_linker_picks_a_dict_entry_by_a_known_key(tmp_path):
    root = tmp_path / "p"
    _write(root, {
        "models.py": '''class A:
    pass


class B:
    pass


MODELS = {"a": A, "b": B}


def build(name="a"):
    return MODELS[name]()


def build_any(name):
    return MODELS.get(name)()
''',
        "main.py": '''from models import build, build_any

m1 = build()
m2 = build_any(input())
''',
    })
    lk = _linker(root)
    models, main = str(root / "models.py"), str(root / "main.py")
    assert lk.eval(["ref", "@.m1"], main) == frozenset([("inst", models, "A")])
    assert lk.eval(["ref", "@.m2"], main) == frozenset([("inst", models, "A"), ("inst", models, "B")])
