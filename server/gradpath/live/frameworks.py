"""The live step's answers for framework loops and gradient accumulation.

- A script that imports a training framework the worker's interpreter lacks (pytorch_lightning,
  lightning, ignite, accelerate, transformers, trl) cannot run: the verdict is `not-run` with
  `needs <package>`, never a crash.
- GP402 across iterations (a clear that runs more often than the step): the worker's event list
  (backward / step / zero_grad in execution order) is played back; a clear that runs while the
  gradients of one or more backward() calls still wait for a step confirms it.

Reads only the observation dict the worker returns; imports neither torch nor any framework.
"""
from __future__ import annotations

import re

FRAMEWORK_PACKAGES = ("pytorch_lightning", "lightning", "ignite", "accelerate", "transformers", "trl", "lightning_fabric")
_NO_MODULE = re.compile(r"No module named '([\w.]+)'")


def missing_framework(exc_type: str | None, message: str | None) -> str | None:
    """`pytorch_lightning` for `ModuleNotFoundError: No module named 'pytorch_lightning.core'`, else None."""
    if exc_type not in ("ModuleNotFoundError", "ImportError"):
        return None
    m = _NO_MODULE.search(message or "")
    if not m:
        return None
    top = m.group(1).split(".")[0]
    return top if top in FRAMEWORK_PACKAGES else None


def missing_reason(obs: dict) -> str | None:
    """`needs pytorch_lightning: ...` when the run stopped on a missing framework import."""
    exc = obs.get("exception") or {}
    pkg = missing_framework(exc.get("type"), exc.get("message"))
    if pkg is None:
        return None
    line = exc.get("line")
    at = f" at line {line}" if line else ""
    return (f"needs {pkg}: the script imports it{at} and the live step's interpreter does not have it "
            f"(install {pkg} there to run the step)")


def accumulation_evidence(finding, events: list[dict]) -> tuple[str, str, dict]:
    """Play back backward/step/zero_grad events: (verdict, evidence, data); "not-run" when the events
    cannot tell (no clear at the finding's line ran, or no step ran and nothing was lost)."""
    clear_line = finding.data.get("clear_line") or finding.span.line
    pending = 0
    steps = backs = clears = 0
    wasted = 0
    first = None
    for e in events:
        k = e.get("kind")
        if k == "backward":
            pending += 1
            backs += 1
        elif k == "step":
            pending = 0
            steps += 1
        elif k == "zero_grad":
            lines = [e.get("line")] + list(e.get("stack") or [])
            if clear_line not in lines and finding.span.line not in lines:
                pending = 0  # another clear (the one after the step)
                continue
            clears += 1
            if pending:
                wasted += pending
                if first is None:
                    first = (e.get("line"), pending, steps)
            pending = 0
    data = {"backward": backs, "steps": steps, "clears_at_line": clears, "wasted_backwards": wasted}
    if clears == 0:
        return "not-run", f"the clear at line {clear_line} never ran in this step", data
    if first is not None:
        line, n, before = first
        return "confirmed", (f"the clear at line {line} ran with the gradients of {n} backward() call(s) that no step had "
                      f"used yet (after {before} step(s)); over the run {wasted} of {backs} backward() results were "
                      f"cleared before any step() applied them ({steps} step(s) ran)"), data
    if steps == 0:  # the live step bounds loops: the run ended before the step's condition held
        return "not-run", (f"the loop ran {backs} backward() call(s) and no step() before the run ended; no clear "
                           f"met gradients waiting for a step"), data
    return "not-reproduced", f"every clear at line {clear_line} ran after a step() had used the gradients ({steps} step(s), " \
                  f"{backs} backward() call(s))", data
