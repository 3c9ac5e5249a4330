"""End to end over the bundled examples: the real analysis finds the bug, the live step confirms it
with PyTorch's own behaviour; the correct example has nothing to confirm. Also `gradpath confirm`
itself (JSON and text) as a user runs it."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from live_helpers import EXAMPLES, ROOT, confirm_analyzed

pytestmark = pytest.mark.live

# example -> {code: (verdict, mode, text the evidence must contain)}
EXPECTED = {
    "frozen_head_partial.py": {"GP102": ("confirmed", "script", "encoder.weight: grad ")},
    "layers_in_list.py": {"GP104": ("confirmed", "script", "hidden[0].weight: grad ")},
    "detached_metric_loss.py": {"GP201": ("confirmed", "script", "RuntimeError: element 0 of tensors does not "
                                          "require grad and does not have a grad_fn (line 16)")},
    "requires_grad_patch.py": {"GP203": ("confirmed", "script", "still have grad None")},
    "relative_error.py": {"GP301": ("confirmed", "script", "`1.0 / (pred - target)` = inf")},
    "manual_bce.py": {"GP302": ("confirmed", "script", "`torch.log(1 - p)` = -inf"),
                      "GP303": ("confirmed", "script", "`torch.log(p)` = -inf")},
    "forgot_zero_grad.py": {"GP401": ("confirmed", "script", "gradients add up across iterations")},
    "scheduler_first.py": {"GP406": ("confirmed", "script", "Detected call of `lr_scheduler.step()` before "
                                     "`optimizer.step()`")},
    "needs_download.py": {"GP102": ("confirmed", "model-only", "fc2.bias: grad ")},
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_confirmed(live, name):
    path = EXAMPLES / name
    text = path.read_text()
    findings, rep = confirm_analyzed(live, path, text)
    got = {f.code: rep.verdicts[f.id] for f in findings}
    assert set(got) == set(EXPECTED[name]), {c: v.evidence for c, v in got.items()}
    for code, (verdict, mode, needle) in EXPECTED[name].items():
        v = got[code]
        assert (v.verdict, v.mode) == (verdict, mode), v
        assert needle in v.evidence, v.evidence


def test_correct_example_has_nothing_to_confirm(live):
    path = EXAMPLES / "correct_training.py"
    findings, rep = confirm_analyzed(live, path, path.read_text())
    assert findings == []
    assert rep.run["status"] == "ok"
    assert rep.run["output"]["stdout"].startswith("epoch 0: loss ")
    assert rep.run["script"]["loops"]  # the epoch and batch loops were cut
    assert all(l["iterations"] <= 1 for l in rep.run["script"]["loops"].values())


CORRECT = ROOT / "fixtures" / "correct"


@pytest.mark.parametrize("name", sorted(p.name for p in CORRECT.glob("*.py")
                                        if "torchvision" not in p.read_text()))
def test_correct_fixtures_really_run_and_only_gp305_is_confirmed(live, name):
    """The correct-code fixtures are real programs: they run under the live step as written, and
    nothing but GP305's structural warning (BCE on a sigmoid output) gets a verdict there."""
    path = CORRECT / name
    findings, rep = confirm_analyzed(live, path, path.read_text())
    assert rep.run["status"] == "ok", rep.run
    assert {f.code for f in findings} <= {"GP305"}
    for f in findings:
        v = rep.verdicts[f.id]
        assert v.verdict == "confirmed" and "already squashed into [0, 1]" in v.evidence, v


def _cli(*args, timeout=120):
    env = dict(os.environ, PYTHONPATH=str(ROOT / "server") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "gradpath", "confirm", *args], capture_output=True, text=True,
                          env=env, timeout=timeout, cwd=str(ROOT))


def test_cli_json_shape():
    r = _cli("--format", "json", "examples/correct_training.py")
    assert r.returncode == 0 and json.loads(r.stdout)["findings"] == [], r.stderr
    r = _cli("--format", "json", "examples/frozen_head_partial.py", "examples/correct_training.py")
    assert r.returncode == 1, r.stderr
    out = json.loads(r.stdout)
    [f] = out["findings"]
    assert f["code"] == "GP102" and f["path"] == "examples/frozen_head_partial.py"
    assert {"line", "column", "end_line", "end_column", "message", "severity", "fixes"} <= set(f)
    assert f["live"]["verdict"] == "confirmed" and f["live"]["mode"] == "script"
    assert set(f["live"]) == {"verdict", "mode", "evidence", "data"}
    assert [r["path"] for r in out["run"]["files"]] == ["examples/frozen_head_partial.py",
                                                        "examples/correct_training.py"]
    assert all(r["status"] == "ok" and r["timings"]["total_ms"] > 0 for r in out["run"]["files"])


def test_cli_text_and_exit_codes(tmp_path):
    r = _cli("examples/detached_metric_loss.py")
    assert r.returncode == 1
    lines = r.stdout.splitlines()
    assert lines[0].startswith("examples/detached_metric_loss.py:16:5: GP201 ")
    assert lines[1] == ("    live: confirmed (script): RuntimeError: element 0 of tensors does not require grad "
                        "and does not have a grad_fn (line 16)")
    # what "confirmed" means, once, before the summary
    assert r.stderr.strip().splitlines()[-2].startswith("  confirmed: the live step showed the bug: PyTorch raised")
    assert "not-run:" not in r.stderr
    # the summary counts the files that have findings, not every file checked
    r = _cli("examples/detached_metric_loss.py", "examples/correct_training.py")
    assert r.returncode == 1 and r.stderr.strip().splitlines()[-1] == "Found 1 problem in 1 file.", r.stderr
    r = _cli("examples/correct_training.py")
    assert r.returncode == 0 and r.stdout == "" and r.stderr.strip().splitlines()[-1] == "No problems found in 1 file."

    # a GP3 finding confirmed by forcing a value to its edge says so in the verdict
    r = _cli("examples/relative_error.py")
    assert r.returncode == 1
    assert ("    live: confirmed by forcing `pred - target` to 0 (script): at pred - target == 0 (forced by "
            "Gradpath): `1.0 / (pred - target)` = inf") in r.stdout
    r = _cli("--python", str(tmp_path / "nope"), "examples/correct_training.py")
    assert r.returncode == 2 and "does not exist" in r.stderr
