"""The live step across modules (issue 15, item 7): a finding in a module is confirmed by running the
script at its other end, with real torch, and the verdict lands on the finding where it sits.

`gradpath confirm <folder>` / `gradpath confirm models/net.py`: each script runs once, for its own
findings and for the module findings it is picked for (gradpath.live.reach, project_confirm)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from testpaths import FIXTURES, ROOT, server_env

PROJECTS = FIXTURES / "projects"


def _confirm(*args, cwd=ROOT, tmp_path: Path, timeout=180) -> subprocess.CompletedProcess:
    env = server_env()
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")  # the summary cache: not the user's
    return subprocess.run([sys.executable, "-m", "gradpath", "confirm", "--isolated", *args], capture_output=True,
                          text=True, env=env, timeout=timeout, cwd=str(cwd))


def _by_path(out: dict) -> dict:
    return {(f["path"], f["code"]): f for f in out["findings"]}


def _runs(out: dict) -> list[dict]:
    run = out["run"]
    return run["files"] if "files" in run else [run]


def test_folder_confirm_runs_train_py_for_the_softmax_in_the_models_package(tmp_path):
    """models/mlp.py's forward ends in a softmax; train.py feeds it to CrossEntropyLoss. The folder
    confirm runs train.py (once, and nothing else: data.py and models/ are not scripts), observes the
    loss input there (rows sum to 1) and attaches the verdict to the finding in mlp.py."""
    r = _confirm("--format", "json", "fixtures/projects/models_pkg_softmax_ce", tmp_path=tmp_path)
    assert r.returncode == 1, r.stderr
    out = json.loads(r.stdout)
    [f] = out["findings"]
    assert (f["path"], f["code"], f["line"]) == ("fixtures/projects/models_pkg_softmax_ce/models/mlp.py", "GP304", 13)
    live = f["live"]
    assert live["verdict"] == "confirmed" and live["mode"] == "script", live
    assert live["evidence"].startswith("ran fixtures/projects/models_pkg_softmax_ce/train.py: the loss input is "
                                       "already a probability distribution: every row sums to 1"), live
    assert "(line 15 of train.py)" in live["evidence"]
    assert live["data"]["script"] == "fixtures/projects/models_pkg_softmax_ce/train.py"
    assert live["data"]["reached"] is True and "train.py" in live["data"]["why"]
    probe = live["data"]["probe"]
    assert probe["count"] >= 1 and abs(probe["row_sum_min"] - 1) < 1e-3 and probe["shape"] == [8, 3]
    [run] = _runs(out)
    assert run["path"] == "fixtures/projects/models_pkg_softmax_ce/train.py" and run["status"] == "ok"
    assert run["for"] == ["fixtures/projects/models_pkg_softmax_ce/models/mlp.py"]


def test_confirm_a_module_file_inside_a_project(tmp_path):
    """`gradpath confirm models/mlp.py`: the module named alone still runs through train.py (text).
    (A copy with its own pyproject.toml: the project of a file is found by walking up to it.)"""
    root = tmp_path / "proj"
    shutil.copytree(PROJECTS / "models_pkg_softmax_ce", root)
    (root / "pyproject.toml").write_text('[project]\nname = "proj"\n', encoding="utf-8")
    r = _confirm("models/mlp.py", cwd=root, tmp_path=tmp_path)
    assert r.returncode == 1, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("models/mlp.py:13:16: GP304 `MLP.forward` ends in a softmax")
    assert lines[1].startswith("    live: confirmed (script): ran train.py: the loss input is already a "
                               "probability distribution"), lines[1]
    assert "  run: train.py: ok, " in r.stderr and "(for models/mlp.py)" in r.stderr, r.stderr


def test_two_modules_judged_on_one_run_of_the_script(tmp_path):
    """trainer_base_class: the softmax in models/classifier.py (its loss is in trainers/supervised.py,
    a module too) and the eval() leak in trainers/supervised.py both reach run.py: one run serves
    both, the loss end observed inside supervised.py, the eval-mode backward seen on two iterations."""
    r = _confirm("--format", "json", "fixtures/projects/trainer_base_class", tmp_path=tmp_path)
    assert r.returncode == 1, r.stderr
    out = json.loads(r.stdout)
    got = _by_path(out)
    soft = got[("fixtures/projects/trainer_base_class/models/classifier.py", "GP304")]["live"]
    leak = got[("fixtures/projects/trainer_base_class/trainers/supervised.py", "GP407")]["live"]
    assert soft["verdict"] == "confirmed" and "(line 10 of supervised.py)" in soft["evidence"], soft
    assert leak["verdict"] == "confirmed" and "training was False at backward()" in leak["evidence"], leak
    [run] = _runs(out)
    assert run["path"] == "fixtures/projects/trainer_base_class/run.py"
    assert run["for"] == ["fixtures/projects/trainer_base_class/models/classifier.py",
                          "fixtures/projects/trainer_base_class/trainers/supervised.py"]


def test_no_script_reaches_the_module_says_not_run_with_the_reason(tmp_path):
    """relative_import_reexport: pkg/train/loop.py defines `run(batches)` but nothing ever calls it
    from a script: nothing runs, and the verdict says why."""
    r = _confirm("--format", "json", "fixtures/projects/relative_import_reexport", tmp_path=tmp_path)
    assert r.returncode == 1, r.stderr
    out = json.loads(r.stdout)
    [f] = out["findings"]
    assert f["path"].endswith("pkg/models/classifier.py") and f["code"] == "GP304"
    assert f["live"] == {"verdict": "not-run", "mode": "none", "data": {},
                         "evidence": "no script in the project reaches pkg/models/classifier.py: nothing that is "
                                     "run (an `if __name__ == \"__main__\":` block or a top-level training loop) "
                                     "imports it"}
    assert _runs(out) == [] or out["run"] == {"files": []}


def _write(root: Path, files: dict) -> None:
    for name, code in files.items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(code).lstrip("\n"), encoding="utf-8")


NET = """
    import torch.nn as nn
    import torch.nn.functional as F


    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(16, 3)

        def forward(self, x):
            return F.softmax(self.fc(x), dim=1)
"""
DISC = """
    import torch
    import torch.nn as nn


    class Disc(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(16, 1)

        def forward(self, x):
            return torch.sigmoid(self.fc(x))
"""
CRASHING_TRAIN = """
    import torch
    import torch.nn as nn

    from models.net import Net

    cfg = {"lr": 1e-3}
    model = Net()
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg["learning_rate"])
    for x, y in [(torch.randn(8, 16), torch.randint(0, 3, (8,)))]:
        optimizer.zero_grad()
        loss = criterion(model(x), y)
        loss.backward()
        optimizer.step()
"""
TRAIN_DISC = """
    import torch
    import torch.nn as nn

    from models.disc import Disc


    def main():
        disc = Disc()
        bce = nn.BCEWithLogitsLoss()
        opt = torch.optim.SGD(disc.parameters(), lr=0.1)
        for _ in range(3):
            opt.zero_grad()
            loss = bce(disc(torch.randn(8, 16)), torch.ones(8, 1))
            loss.backward()
            opt.step()


    if __name__ == "__main__":
        main()
"""


@pytest.fixture
def crash_project(tmp_path):
    root = tmp_path / "proj"
    _write(root, {"models/__init__.py": "", "models/net.py": NET, "models/disc.py": DISC,
                  "train.py": CRASHING_TRAIN, "train_disc.py": TRAIN_DISC})
    return root


def test_a_crashing_script_is_reported_and_the_other_findings_still_get_verdicts(crash_project, tmp_path):
    """train.py crashes (KeyError) before the model's forward ever runs: the softmax finding in
    models/net.py is not-run, with the error and where it happened; the sigmoid in models/disc.py is
    still confirmed through train_disc.py."""
    r = _confirm(".", cwd=crash_project, tmp_path=tmp_path)
    assert r.returncode == 1, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("models/disc.py:11:16: GP305 ")
    assert lines[1].startswith("    live: confirmed (script): ran train_disc.py: the loss input is already squashed "
                               "into [0, 1]"), lines[1]
    assert lines[2].startswith("models/net.py:11:16: GP304 ")
    assert lines[3] == ("    live: not-run: ran train.py: crashed in user code before reaching line 11 of "
                        "models/net.py: KeyError: 'learning_rate' (train.py, line 9)"), lines[3]
    assert "  run: train.py: exception, " in r.stderr and "  error (line 9): KeyError: 'learning_rate'" in r.stderr
    assert "  run: train_disc.py: ok, " in r.stderr
    assert r.stderr.strip().splitlines()[-1] == "Found 2 problems in 2 files."


ENGINE = """
    import torch.nn as nn


    def fit(model, optimizer, batches):
        criterion = nn.CrossEntropyLoss()
        for x, y in batches:
            optimizer.zero_grad()
            loss = criterion(model(x), y)
            loss.backward()
            optimizer.step()
"""


def _script(body: str) -> str:
    return ("\n    import torch\n\n    from engine import fit\n    from models.net import Net\n\n"
            "    if __name__ == \"__main__\":\n        net = Net()\n"
            "        opt = torch.optim.SGD(net.parameters(), lr=0.1)\n        " + body + "\n")


def test_the_next_script_is_tried_when_the_first_does_not_reach_the_line(tmp_path):
    """The loss end is in engine.py (a module): both scripts import it; a_export.py comes first (both
    name Net and step an optimizer: path order) but only saves the model, so the softmax line never
    runs there; the next
    script, train.py, calls fit(): the finding is judged on that run."""
    root = tmp_path / "proj"
    _write(root, {"pyproject.toml": '[project]\nname = "proj"\n', "models/__init__.py": "", "models/net.py": NET,
                  "engine.py": ENGINE, "a_export.py": _script('opt.step(); torch.save(net.state_dict(), "net.pt")'),
                  "train.py": _script("fit(net, opt, [(torch.randn(8, 16), torch.randint(0, 3, (8,)))])")})
    r = _confirm("--format", "json", "models/net.py", cwd=root, tmp_path=tmp_path)
    assert r.returncode == 1, r.stderr
    out = json.loads(r.stdout)
    [f] = out["findings"]
    assert f["path"] == "models/net.py" and f["code"] == "GP304"
    assert f["live"]["verdict"] == "confirmed", f["live"]
    assert f["live"]["evidence"].startswith("ran train.py: the loss input is already a probability distribution"), \
        f["live"]
    assert "(line 8 of engine.py)" in f["live"]["evidence"]
    assert f["live"]["evidence"].endswith(" (first tried a_export.py: line 11 never ran)")
    assert f["live"]["data"]["tried"] == ["a_export.py"]
    assert [(run["path"], run["for"]) for run in _runs(out)] == [("a_export.py", ["models/net.py"]),
                                                                 ("train.py", ["models/net.py"])]


def test_a_module_line_only_a_later_iteration_reaches_is_judged_on_the_rerun(tmp_path):
    """losses_module_log with a loop that calls the loss only at step 2 (`if step % 3 != 2:
    continue`): the one-iteration run never enters FocalLoss.forward; the rerun with 4 iterations
    does, and the log's input is then forced to 0 with 4 iterations too."""
    root = tmp_path / "proj"
    shutil.copytree(PROJECTS / "losses_module_log", root)
    (root / "pyproject.toml").write_text('[project]\nname = "proj"\n', encoding="utf-8")
    train = (root / "train.py").read_text(encoding="utf-8")
    train = train.replace("for x, y in [(torch.randn(8, 16), torch.randint(0, 4, (8,)))]:\n",
                          "for step, (x, y) in enumerate([(torch.randn(8, 16), torch.randint(0, 4, (8,)))] * 6):\n"
                          "    if step % 3 != 2:\n        continue\n")
    assert "continue" in train
    (root / "train.py").write_text(train, encoding="utf-8")
    r = _confirm("--format", "json", ".", cwd=root, tmp_path=tmp_path)
    assert r.returncode == 1, r.stderr
    out = json.loads(r.stdout)
    [f] = out["findings"]
    assert (f["path"], f["code"]) == ("losses.py", "GP302")
    live = f["live"]
    assert live["verdict"] == "confirmed" and live["data"]["iterations"] == 4, live
    assert live["evidence"].startswith("ran train.py: at probs == 0 (forced by Gradpath): the log = -inf"), live
    [run] = _runs(out)
    assert run["rerun_4_iterations"]["status"] == "ok"
