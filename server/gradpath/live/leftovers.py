"""Gradients left over from an earlier iteration, named so that a verdict can cite the right tensor.

Worker side: depends only on the standard library, and is imported by observer.py as
`_gradpath_live.leftovers` (a private package: see worker._load_sibling). At each backward() the worker knows, per tracked tensor, its gradient
norm before and after. GP401 ("zero_grad() is never called for this optimizer") must cite a tensor
that this optimizer holds: an encoder left out of every optimizer also keeps its gradients, but it
says nothing about the classifier's optimizer. So each example carries the labels of the optimizers
holding the tensor and the class of the model it belongs to, and the examples are picked per
optimizer.

    examples(obs, left)  ->  [[name, before, after, [optimizer labels], model class], ...]
    per_optimizer(obs, left)  ->  {optimizer label: number of its tensors with leftover gradients}

`left` is [(param id, before, after)] for the tensors whose gradient was not cleared.
"""
from __future__ import annotations

PER_OPTIMIZER = 2  # examples kept per optimizer
NOT_HELD = 2  # and for tensors no optimizer holds


def _holders(obs) -> dict:
    out: dict = {}
    for o in obs.optimizers:
        for g in o["obj"].param_groups:
            for p in g["params"]:
                out.setdefault(id(p), []).append(o["label"])
    return out


def _model_classes(obs) -> dict:
    names = {}
    for pid, rec in obs.params.items():
        mod = rec.get("module")
        if mod is not None:
            names[pid] = mod
    classes = {}
    for m, _line, cls, *_ in obs.modules:
        classes[id(m)] = cls
    return {pid: classes.get(mod) for pid, mod in names.items()}


def examples(obs, left, fmt) -> list:
    """Examples of leftover gradients: up to PER_OPTIMIZER per optimizer that holds some of them,
    then up to NOT_HELD held by none."""
    holders = _holders(obs)
    classes = _model_classes(obs)
    taken: dict = {}
    out = []
    for pid, before, after in left:
        labels = holders.get(pid, [])
        keys = labels or [None]
        if all(taken.get(k, 0) >= (PER_OPTIMIZER if k else NOT_HELD) for k in keys):
            continue
        for k in keys:
            taken[k] = taken.get(k, 0) + 1
        rec = obs.params.get(pid) or {}
        out.append([rec.get("name") or "?", fmt(before), fmt(after), labels, classes.get(pid)])
        if len(out) >= 12:
            break
    return out


def per_optimizer(obs, left) -> dict:
    holders = _holders(obs)
    counts: dict = {}
    for pid, _before, _after in left:
        for label in holders.get(pid, []):
            counts[label] = counts.get(label, 0) + 1
    return counts
