"""Training-loop events of calls into other modules of the project (the link between the loop facts
of analysis/loops.py and the project model).

`train(model, optimizer, loader)` imported from `engine.py`, `self.validate()` inherited from a base
class in another module: loops.py follows calls within its own file only; for these it asks
`linked_events`, which reads the callee's summary (its ordered zero_grad/backward/step/train/eval on
its parameters or on `self`, through the helpers it calls in turn) and returns the same events
placed at the call in this file (RULES.md: a GP4 event reached through a call is reported at that
call). None when the callee is unknown or its effects cannot be told (a conditional step, a step
with a closure): the call then stays opaque, which only ever silences a rule.
"""
from __future__ import annotations

import ast

from gradpath.analysis.project import linked_summary, project_view


def _callee_vd(sm: dict, func, class_name: str | None):
    """The callee of a call as a summary value descriptor, from this module's imports."""
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "self":
        return ["attr", ["self", "@." + class_name], func.attr] if class_name else None
    parts = []
    cur = func
    while isinstance(cur, ast.Attribute):
        parts.append(cur.attr)
        cur = cur.value
    if not isinstance(cur, ast.Name):
        return None
    head = cur.id
    if head in sm["imports"]:
        base = sm["imports"][head]
    elif head in sm["functions"] or head in sm["classes"]:
        base = "@." + head
    else:
        return None
    return ["ref", ".".join([base] + list(reversed(parts)))]


def _view(lf):
    return project_view(lf.ctx)  # (memoised per analysis)


def may_have_effects(lf, call) -> bool:
    """Cheap pre-check for loops' relevance pass: a call of a project function or inherited method
    that has training effects."""
    got = _effects(lf, call, None)
    return bool(got and got[0])


def _effects(lf, call, scope):
    linked = linked_summary(lf.ctx)
    if linked is None:
        return None
    _project, path, lk, sm = linked
    cls = getattr(scope, "class_name", None) if scope is not None else _enclosing_class(lf, call)
    vd = _callee_vd(sm, call.func, cls)
    if vd is None:
        return None
    for (tp, tq), off in lk._targets(vd, path):
        if tp == path and vd[0] != "attr":
            return None  # a function of this file: loops.py follows it itself
        eff = lk.effects(tp, tq)
        if eff is None:
            return None
        fn = lk.summary(tp)["functions"][tq]
        if not any(e[0] in ("zero_grad", "backward", "step", "train", "eval", "opaque") for e in eff):
            return [], fn["params"][off:], off, vd  # nothing that orders a training step
        return eff, fn["params"][off:], off, vd
    return None


def _enclosing_class(lf, call):
    parents = getattr(lf.facts, "parents", None)
    node = call
    for _ in range(200):
        node = parents.get(id(node)) if isinstance(parents, dict) else None
        if node is None:
            return None
        if isinstance(node, ast.ClassDef):
            return node.name
    return None


def linked_events(lf, call, scope, frames, fn):
    """Events for a call into another module (or an inherited method defined there), or None."""
    from gradpath.analysis.facts import key_of
    from gradpath.analysis.loops import CALL, Ev

    got = _effects(lf, call, scope)
    if got is None:
        return _attribute_call(lf, call, scope, frames, fn)
    eff, params, off, vd = got
    mapping: dict[str, str | None] = {}
    if off:
        mapping["self"] = "self" if vd[0] == "attr" and vd[1][0] == "self" else None
    for p, a in zip(params, call.args):
        if isinstance(a, ast.Starred):
            break
        mapping[p] = key_of(a)
    for kw in call.keywords:
        if kw.arg:
            mapping[kw.arg] = key_of(kw.value)

    def tr(key):
        if key is None:
            return None
        head, _, rest = key.partition(".")
        base = mapping.get(head)
        return (base + ("." + rest if rest else "")) if base else None

    # a helper with a training loop of its own and no clear: its own file reports that; here it is
    # one call that trains (no second report of the same missing zero_grad at every caller)
    own_loop = any(e[0] == "backward" and "l" in e[2] for e in eff)
    if own_loop and not any(e[0] == "zero_grad" for e in eff):
        eff = [["zero_grad", None, "", None]] + list(eff)
    path = frames + ((CALL, call),)
    out = []
    project = _view(lf)[0]
    for e in eff:
        kind, key, _flags, _origin = e[:4]
        n0 = len(out)
        if kind == "opaque":
            keys = tuple(k for k in (tr(k) for k in e[4]) if k)
            if not keys:
                continue
            out.append(Ev("opaque", getattr(call.func, "attr", None) or getattr(call.func, "id", "?"), call, path,
                          args=keys, fn=fn))
            continue
        k = tr(key)
        if kind in ("train", "eval"):
            if k is None or k == "self":
                continue
            out.append(Ev(kind, k, call, path, fn=fn))
        elif kind == "zero_grad":
            if k is not None and lf.is_optimizer(k, scope):
                out.append(Ev("zero_grad", k, call, path, target="optimizer",
                              models=lf.optimizer_models(k, scope), fn=fn))
            elif k is not None:
                out.append(Ev("zero_grad", k, call, path, target="model", fn=fn))
            else:
                out.append(Ev("zero_grad", None, call, path, target="any", fn=fn))
        elif kind == "step":
            if k is not None and lf.is_optimizer(k, scope):
                out.append(Ev("step", k, call, path, target="optimizer", models=lf.optimizer_models(k, scope), fn=fn))
            else:
                out.append(Ev("step", k, call, path, target="unknown", fn=fn))
        elif kind == "backward":
            out.append(Ev("backward", k, call, path, fn=fn))
        elif kind == "fwd" and k is not None:
            if "n" in _flags:
                out.append(Ev("fwd", k, call, path + (("nograd", call),), fn=fn))
            else:
                out.append(Ev("fwd", k, call, path, fn=fn))
        if _origin is not None and len(out) > n0:
            import os
            from gradpath.analysis.findings import Span
            opath, sp = _origin
            out[-1].origin = (os.path.relpath(opath, project.root), Span(*sp), opath)
    return out


_PLAIN_BASES = ("object", "torch.nn.Module", "abc.ABC")


def _attribute_call(lf, call, scope, frames, fn):
    """`self.model(x)` in a class whose bases all lie in the project: `model` is no inherited method,
    so the call is the submodule's forward (loops.py would otherwise treat a base it cannot see as
    one that might do anything)."""
    from gradpath.analysis.facts import key_of
    from gradpath.analysis.loops import Ev

    func = call.func
    cls = getattr(scope, "class_name", None)
    if not (cls and isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "self"):
        return None
    view = _view(lf)
    if view is None:
        return None
    project, path = view
    lk = project.linker()
    if lk.cls_info(path, cls) is None:
        return None
    for c in lk.mro(path, cls):
        if c[0] == "cls":
            continue
        if not (c[0] == "ext" and c[1] in _PLAIN_BASES):
            return None
    if lk.find_method(path, cls, func.attr) is not None:
        return None
    fk = key_of(func)
    out = [Ev("fwd", fk, call, frames, fn=fn)]
    keys = tuple(k for k in (key_of(a) for a in list(call.args) + [kw.value for kw in call.keywords]) if k)
    if keys:
        out.append(Ev("opaque", fk, call, frames, args=keys, fn=fn))
    return out
