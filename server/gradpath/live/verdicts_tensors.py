"""Which tensors a live verdict's evidence cites. Pure Python (no torch).

- GP401 ("zero_grad() is never called for this optimizer"): a tensor that the finding's optimizer
  holds, from the worker's per-optimizer examples of gradients left over from the previous
  iteration (leftovers.py); an encoder left out of every optimizer keeps its gradients too, but
  that is GP103's business.
- GP103 ("this model is in no optimizer"): the model's tensors named as the user names them, with
  the model's path in front (`encoder.net.0.weight`).
"""
from __future__ import annotations

from gradpath.live import verdicts as V
from gradpath.live.verdicts import CONFIRMED, NOT_REPRODUCED, Verdict


def qualified(finding, rows: list[dict]) -> list[dict]:
    """GP103 is about one model object that no optimizer holds: name its tensors as the user does,
    with the model's own path in front (`encoder.net.0.weight`, not `net.0.weight`), when the rows
    are that model's (a root of the finding's class)."""
    key = finding.data.get("model")
    want = V.short_class(finding.data.get("model_class"))
    if finding.code != "GP103" or not key or not want or not isinstance(key, str):
        return rows
    if not all(r["model"] == want for r in rows):
        return rows
    return [dict(r, name=f"{key}.{r['name']}") for r in rows]


def gp401_held(finding, acc_ev: list[dict], want_opt: str | None, data: dict) -> Verdict:
    """GP401 with the worker's per-optimizer examples: cite a tensor that the finding's optimizer
    holds (an encoder left out of every optimizer keeps its gradients too, but that is GP103's
    business, not this optimizer's missing zero_grad())."""
    def mine(labels) -> bool:
        return any(want_opt is None or l.split("#")[0] == want_opt for l in labels or ())
    for b in acc_ev:
        held = [e for e in b.get("leftover_held") or [] if mine(e[3])]
        if not held:
            continue
        name, before, after, labels, cls = (list(held[0]) + [None])[:5]
        label = next(l for l in labels if want_opt is None or l.split("#")[0] == want_opt)
        n = (b.get("leftover_per_optimizer") or {}).get(label, len(held))
        data["grads"] = [{"name": e[0], "before": e[1], "after": e[2], "optimizers": e[3], "model": e[4]}
                         for e in held]
        data["leftover_tensors"] = n
        owner = f"{cls}, " if cls else ""
        return Verdict(CONFIRMED, "script", f"gradients add up across iterations: before the 2nd backward "
                       f"(line {b.get('line')}) {name}.grad ({owner}in {label}) still had norm {V.fmt(before)} from "
                       f"iteration 1 (nothing cleared it), and {V.fmt(after)} after it; {n} tensor(s) of {label} "
                       "accumulated", data)
    others = sorted({l for b in acc_ev for e in b.get("leftover_held") or [] for l in e[3]})
    where = (f"only in tensors of {', '.join(others)}" if others else "only in tensors no optimizer holds")
    return Verdict(NOT_REPRODUCED, "script", f"the gradients of the tensors {want_opt or 'the optimizer'} holds "
                   f"were cleared between iterations; gradients were left over {where}", data)
