"""When a forced edge may count for a GP3 finding. Pure Python (no torch).

The edge run sets a probed value to its edge (0 for a denominator, a log or a sqrt argument, 100 for
an exp) and watches for inf/NaN: evidence of the consequence, not of reachability. The worker's
probe_values.py records where each probed value came from; `unforceable` reads that record.
"""
from __future__ import annotations

# the value the edge run forces, per probe kind
EDGE_VALUE = {"denominator": "0", "log-arg": "0", "sqrt-arg": "0", "std": "0", "exp-arg": "100"}


def unforceable(rec: dict | None, erec: dict | None = None, final: bool = True) -> str | None:
    """Why a forced edge must not count for this probed value (None: it may). Forcing shows what
    PyTorch does at the edge, not that the run can get there, so it is fair only for tensors the run
    computes from data or parameters: not for a Python number (a shape such as `x.size(1) ** 0.5`,
    a hyper-parameter) nor for a tensor that held one value all run long and carries no gradient.
    `rec` is the first run's probe record, `erec` the edge run's (another seed, two iterations: a
    value computed from data differs there). With `final=False` (before the edge run) only what is
    already certain: numbers. Records from workers that do not say where the value came from are
    forced as before."""
    if not rec or "source" not in rec:
        return None
    src = rec.get("source")
    if src == "number":
        return "a Python number, not a tensor computed from data or parameters"
    if src == "other":
        return "not a tensor"
    if not final:
        return None
    if src == "tensor" and not rec.get("grad") and not rec.get("varies"):
        if not erec or "first" not in erec:
            return None  # no edge run got there: cannot tell (the verdict is not-run)
        if erec.get("varies") or erec.get("grad") or erec["first"] != rec.get("first"):
            return None  # it changed with the data: another seed gave another value
        n = rec.get("count", 0)
        return (f"a tensor of one constant value{' (the same in all ' + str(n) + ' evaluations)' if n > 1 else ''}"
                " that depends on no parameter")
    return None
