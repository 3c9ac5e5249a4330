"""GP301/GP306/GP308 (and GP302 on a difference) inside a loss that another module feeds a model's
output: a loss class in `losses.py` whose `forward` takes `torch.sqrt` of a sum of squares or divides
by a norm/sum/difference of its input, with the model and the training loop in `train.py`.

The single-file analysis sees these when the loss and the loop share a file: the dataflow runs the
loss's `forward` with the model's output (a value that carries a graph) as its argument. Across
modules the file holding the loss never sees that call, so its parameters stay unknown and the
numerics rules stay quiet. Here the project model says who feeds the loss (project/fed.py): the
dataflow of this file runs again with those loss functions also invoked on a model-output value (a
graph, the softmax/sigmoid the model's forward ends in when known), and the in-file numerics rules
read that flow (a copy of the file's own, with only the seeded calls run on it). What they find in
the loss (and in helpers it calls) is reported on the expression in this file, with related
information at the loss call in the other module; a finding the file's own analysis also gives
(a class named ...Loss) comes once, with that information. Eps guards
(`sqrt(x + eps)`, `/ (n + 1e-8)`, `clamp(min=...)`) keep them quiet exactly as in-file.
"""
from __future__ import annotations

import copy
import os

from gradpath.analysis.dataflow import G, Flow, Val, _Frame, flow
from gradpath.analysis.findings import Related, Span
from gradpath.analysis.project import linked_summary
from gradpath.analysis.project.fed import fed_losses
from gradpath.analysis.rules import numerics, rule

MAX_RELATED = 3


def _seeded_flow(base: Flow, seeds: list) -> Flow:
    """The file's flow, plus its loss functions invoked with what other modules pass them: a copy
    of the file's own flow (its containers copied, so the rules reading the original see nothing of
    this), on which only the seeded calls run."""
    fl = copy.copy(base)
    for k, v in list(vars(fl).items()):
        if isinstance(v, (dict, list, set)):
            setattr(fl, k, copy.copy(v))
    for scope, args, kwargs in seeds:
        if fl.ctx.out_of_time():
            break
        self_val = fl._self_val_for(scope)
        fr = _Frame(scope, scope.class_name, self_val, True, 0)
        fl._invoke(scope, scope.node, args, kwargs, {}, fr, self_val=self_val)
    return fl


class _Seeded:
    """The analysis context as the numerics rules see it, with the seeded flow as its dataflow."""

    def __init__(self, ctx, fl):
        self._ctx, self._fl = ctx, fl

    def memo(self, key, factory):
        if key == "dataflow":
            return self._fl
        return self._ctx.memo(key, factory)

    def __getattr__(self, name):
        return getattr(self._ctx, name)


def _model_out(use) -> Val:
    """What the model hands the loss: a graph, and the activation its forward ends in when known."""
    names = frozenset(m[1].rsplit(".", 1)[-1] for m in use["models"])
    act = use["act"]
    if act is not None and act["act"] in ("softmax", "sigmoid"):
        return Val(G, kind="tensor", origins=names, model_out=True, torchy=True, shape="prob", act=act["act"],
                   dist=act["act"] == "softmax")
    if act is not None and act["act"] == "log_softmax":
        return Val(G, kind="tensor", origins=names, model_out=True, torchy=True, shape="logprob")
    return Val(G, kind="tensor", origins=names, model_out=True, torchy=True)


def _seed(scope, use):
    """(scope, positional args, kwargs) for one call of the loss: the model's output first, what the
    caller passes elsewhere unknown (parameters it leaves out keep their defaults, as in-file)."""
    passed = use["passed"]
    n, kws = (passed[0], passed[1]) if passed is not None else (1, [])
    args = [_model_out(use)] + [Val(1, kind="tensor") for _ in range(max(0, n - 1))]
    return scope, args, {k: Val(1, kind="tensor") for k in kws}


def _rel(project, path: str) -> str:
    try:
        return os.path.relpath(path, project.root)
    except ValueError:
        return path


def _span(sp) -> Span:
    return Span(sp[0], sp[1], sp[2], sp[3])


@rule("GP301", "GP302", "GP306", "GP308")
def fed_loss_numerics(ctx):
    linked = linked_summary(ctx)
    if linked is None:
        return
    project, path, lk, sm = linked
    fed = fed_losses(lk)
    mine = {fq: [u for u in uses if u["path"] != path and not u["nograd"]]
            for (p, fq), uses in fed.items() if p == path}
    mine = {fq: uses for fq, uses in mine.items() if uses}
    if not mine:
        return
    scopes = {}
    for s in ctx.facts.scopes[1:]:
        if s.kind == "method" and s.class_name and s.parent is not None and s.parent.kind == "module":
            scopes[f"{s.class_name}.{s.name}"] = s
        elif s.kind == "function" and s.parent is not None and s.parent.kind == "module":
            scopes[s.name] = s
    seeds, users = [], {}
    for fq in sorted(mine):
        scope = scopes.get(fq)
        if scope is None:
            continue
        uses = sorted(mine[fq], key=lambda u: (u["path"], u["loss"]))
        seeds.append(_seed(scope, uses[0]))
        users[id(scope)] = (fq, uses)
    if not seeds:
        return
    seeded = _Seeded(ctx, _seeded_flow(flow(ctx), seeds))
    for check in (numerics.unsafe_division, numerics.sqrt_at_zero, numerics.unsafe_log):
        plain = {(f.code, f.span) for f in check(ctx)}
        for f in check(seeded):
            if f.code == "GP303":
                continue  # log of a softmax/sigmoid output: the cross-module GP302 rule's
            # one the file's own analysis reports too (a class named ...Loss is loss math on its own):
            # yielded again inside a fed loss, with the feeder named and related information (the
            # engine keeps one finding per code and span: this rule's, as it runs before numerics.py)
            owner = _owner(ctx, f.span, users, strict=(f.code, f.span) in plain)
            if owner is None:
                continue
            fq, uses = owner
            first = uses[0]
            model = first["models"][0][1].rsplit(".", 1)[-1]
            more = f" (and {len(uses) - 1} more)" if len(uses) > 1 else ""
            f.message += (f" (`{fq}` is given the output of `{model}` in "
                          f"{_rel(project, first['path'])}:{first['loss'][0]}{more})")
            f.related = list(f.related) + [
                Related(_span(u["input"]), f"the output of `{u['models'][0][1].rsplit('.', 1)[-1]}` goes to "
                        f"`{fq.split('.')[0]}` here", u["path"]) for u in uses[:MAX_RELATED]]
            f.data = dict(f.data, cross_module=True, loss=fq)
            yield f


def _owner(ctx, span: Span, users: dict, strict: bool = False):
    """The seeded loss function whose body holds the finding (unless `strict`, one it calls in turn
    counts too: its caller's feeders are named)."""
    best = None
    for s in ctx.facts.scopes[1:]:
        n = s.node
        if (n.lineno, n.col_offset) <= (span.line, span.col) and \
                (span.end_line, span.end_col) <= (n.end_lineno, n.end_col_offset):
            if id(s) in users:
                return users[id(s)]
            best = best or s
    if best is not None and len(users) == 1 and not strict:
        return next(iter(users.values()))  # a helper of the one seeded loss
    return None
