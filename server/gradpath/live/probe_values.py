"""Where a probed value came from, so that the live step forces only values that can really move.

Worker side: depends only on the standard library (torch is passed in), and is imported by observer.py
as `_gradpath_live.probe_values` (a private package: see worker._load_sibling). A GP3 finding is "confirmed" either because the
real run hit the edge (a zero denominator, a log of 0) or because the edge run forced the probed
value to its edge and PyTorch gave inf/NaN. Forcing is evidence of the consequence, not of
reachability: it is fair only for a value the run computes from data or parameters. A Python number
(`x.size(1) ** 0.5`, a shape, a hyper-parameter) or a tensor that held one value throughout the run
and carries no gradient is a constant of the program: forcing it to 0 would "confirm" a false alarm.

`note(rec, value, torch)` is called by the worker's probe for every evaluation and keeps in `rec`:
    source      "tensor" | "number" | "other" (the last evaluation's; "mixed" when they differ)
    varies      True once the value differed between evaluations, or between the elements of one
                tensor
    grad        True once the value was a tensor that requires grad (it depends on parameters)
    first       a small fingerprint of the first evaluation (to see whether later ones differ)
    dim1_sum_min/max  for a tensor of 3 or more dimensions, its sums over dim 1 (a softmax over the
                channels of an N, C, H, W output)
"""
from __future__ import annotations

import math


def _fingerprint(value, torch):
    if isinstance(value, torch.Tensor):
        with torch.no_grad():
            v = value.detach()
            if not v.numel():
                return ["tensor", list(v.shape)]
            v = v.double()
            fin = v[torch.isfinite(v)]
            if not fin.numel():
                return ["tensor", list(v.shape), "nonfinite"]
            return ["tensor", list(v.shape), float(fin.min()), float(fin.max()), float(fin.sum())]
    if isinstance(value, bool):
        return ["number", int(value)]
    if isinstance(value, (int, float)):
        x = float(value)
        return ["number", x if math.isfinite(x) else repr(x)]
    return ["other", type(value).__name__]


def note(rec: dict, value, torch) -> None:
    """Record one evaluation of a probed value (never raises into the user's program)."""
    try:
        fp = _fingerprint(value, torch)
        kind = fp[0]
        prev = rec.get("source")
        rec["source"] = kind if prev in (None, kind) else "mixed"
        if "first" not in rec:
            rec["first"] = fp
        elif fp != rec["first"]:
            rec["varies"] = True
        if kind == "tensor":
            if bool(getattr(value, "requires_grad", False)):
                rec["grad"] = True
            if len(fp) == 5 and fp[2] != fp[3]:
                rec["varies"] = True  # its elements differ: computed from data, not a filled constant
        rec.setdefault("varies", False)
        rec.setdefault("grad", False)
        if kind == "tensor" and value.dim() >= 3 and value.shape[1] > 1 and value.is_floating_point():
            # a softmax over the channel dimension (segmentation: N, C, H, W): sums over dim 1
            with torch.no_grad():
                s1 = value.detach().double().sum(1)
                lo, hi = float(s1.min()), float(s1.max())
            rec["dim1_sum_min"] = min(lo, rec.get("dim1_sum_min", lo))
            rec["dim1_sum_max"] = max(hi, rec.get("dim1_sum_max", hi))
    except Exception as exc:  # pragma: no cover - an observation must not break the user's program
        rec["source_error"] = repr(exc)
