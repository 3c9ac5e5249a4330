"""The live step on framework shapes (real torch): gradient accumulation whose clear runs more often
than the step is confirmed from the worker's events; a script importing a framework the worker's
interpreter lacks is not-run with `needs <package>`, never a crash."""
from __future__ import annotations

import importlib.util

from testpaths import FIXTURES
from gradpath.analysis import analyze

FW = FIXTURES / "frameworks"


def confirm(live, name):
    path = FW / name
    text = path.read_text(encoding="utf-8")
    fs = analyze(text, str(path)).findings
    rep = live.confirm(str(path), text, fs, timeout_s=20.0)
    return fs, rep


def test_accumulation_clear_every_iteration_is_confirmed(live):
    fs, rep = confirm(live, "accumulation_counter_guards.py")
    by_line = {f.span.line: rep.verdicts[f.id] for f in fs}
    v = by_line[22]
    assert v.verdict == "confirmed", v
    assert "the clear at line 22 ran with the gradients of 1 backward() call(s) that no step had used yet" in v.evidence
    assert v.data["wasted_backwards"] >= 1
    # the clear every 2nd iteration meets waiting gradients only after more iterations than the step runs
    assert by_line[31].verdict == "not-run", by_line[31]
    assert by_line[38].verdict == "confirmed", by_line[38]  # GP401: the never-true clear


def test_missing_framework_is_not_run_with_the_package_named(live):
    missing = [m for m in ("pytorch_lightning", "accelerate") if importlib.util.find_spec(m) is None]
    assert missing == ["pytorch_lightning", "accelerate"], "the test expects neither framework installed"
    for name, pkg in (("lightning_manual_accumulation.py", "pytorch_lightning"),
                      ("accelerate_model_zero_grad.py", "accelerate")):
        fs, rep = confirm(live, name)
        assert fs
        for f in fs:
            v = rep.verdicts[f.id]
            assert v.verdict == "not-run", v
            assert v.evidence.startswith(f"needs {pkg}: the script imports it at line"), v.evidence
