"""Findings whose two ends lie in different modules of the project (see RULES.md, "Where a finding
goes"): reported on the code that must change, in its own file, with related information at the
other end. The facts come from the project model (analysis/project); without a project (one file,
the editor before the index is built) this module says nothing.

- GP304/GP303/GP305: a model class's `forward` ends in a softmax/sigmoid here, and a script elsewhere
  feeds its output to CrossEntropyLoss/NLLLoss/BCEWithLogitsLoss -> on the softmax/sigmoid.
- GP302: a loss module here takes `torch.log` of its input, and the project feeds it a model's
  softmax/sigmoid output -> on the log.
- GP201: a function here returns a value cut from the graph (`.detach()`, `.data`, `.item()`), and
  a caller elsewhere calls `backward()` on its result -> on the cut.
- GP201: a module class's `forward` here returns a cut value, and a loss elsewhere computed from
  nothing but the output of a model whose output that is (the class, or a model returning this
  submodule's output) is backwarded -> on the cut.
"""
from __future__ import annotations

import os

from gradpath.analysis.findings import Edit, Fix, Related, Span
from gradpath.analysis.project import linked_summary
from gradpath.analysis.rules import rule

MAX_RELATED = 3
_LOSS_NAMES = {"ce": "CrossEntropyLoss", "nll": "NLLLoss", "bcel": "BCEWithLogitsLoss", "bce": "BCELoss"}


def _span(sp) -> Span:
    return Span(sp[0], sp[1], sp[2], sp[3])


def _rel(project, path: str) -> str:
    try:
        return os.path.relpath(path, project.root)
    except ValueError:
        return path


def _where(project, path: str, sp) -> str:
    return f"{_rel(project, path)}:{sp[0]}"


@rule("GP303", "GP304", "GP305")
def model_output_to_loss(ctx):
    linked = linked_summary(ctx)
    if linked is None or not linked[3]["classes"]:
        return
    project, path, lk, sm = linked
    # uses of a loss on the output of a class whose forward is written here, in another file
    by_owner: dict[tuple, list] = {}
    for use in lk.loss_uses():
        if use["path"] == path:
            continue  # the same file: the file's own analysis sees both ends
        for mp, mc in use["models"]:
            own = lk.forward_owner(mp, mc)
            if own is None or own[0] != path:
                continue
            by_owner.setdefault(own[1], []).append((use, (mp, mc)))
    for cname, uses in sorted(by_owner.items()):
        fa = lk.forward_act(path, cname)
        if fa is None:
            continue
        if fa.get("layer_span"):
            if fa["owner"][0] != path:
                continue  # the layer is built in another module (a base class): reported there
            fa = dict(fa, text=ctx.src.text_in(_span(fa["span"])))
        act = fa["act"]
        groups = {"ce": [], "nll": [], "bcel": []}
        for use, model in uses:
            if use.get("elt") != fa.get("index"):
                continue  # another element of a tuple the forward returns (or the whole tuple)
            if use["kind"] in groups and not (use["kind"] == "bcel" and use["nograd"]):
                groups[use["kind"]].append((use, model))
        code = None
        if act == "softmax" and groups["ce"]:
            code, kind = "GP304", "ce"
        elif act == "softmax" and groups["nll"]:
            code, kind = "GP303", "nll"
        elif act == "sigmoid" and groups["bcel"]:
            code, kind = "GP305", "bcel"
        if code is None:
            continue
        hits = sorted(groups[kind], key=lambda h: (h[0]["nograd"], h[0]["path"], h[0]["loss"]))
        hits = [h for h in hits if not h[0]["nograd"]]
        if not hits:
            continue  # only evaluation losses: no training gradient is shrunk
        first = hits[0][0]
        lname = _LOSS_NAMES[kind]
        model_name = hits[0][1][1]
        cls_txt = f"`{cname}.forward`" if model_name == cname else f"`{cname}.forward` (used by `{model_name}`)"
        where = _where(project, first["path"], first["loss"])
        more = f" (and {len(hits) - 1} more)" if len(hits) > 1 else ""
        if code == "GP304":
            msg = (f"{cls_txt} ends in a softmax (`{_short(fa['text'])}`), and its output goes to {lname} in "
                   f"{where}{more}, which applies log_softmax itself: the loss is squashed and gradients shrink (for "
                   f"example, with 5 classes a prediction wrong by a logit margin of 19 costs 1.90 instead of 19.0); "
                   f"return the logits")
        elif code == "GP303":
            msg = (f"{cls_txt} ends in a softmax (`{_short(fa['text'])}`), and its output goes to {lname} in "
                   f"{where}{more}, which expects log-probabilities: use `log_softmax` (log(softmax) "
                   f"underflows to -inf)")
        else:
            msg = (f"{cls_txt} ends in a sigmoid (`{_short(fa['text'])}`), and its output goes to {lname} in "
                   f"{where}{more}, which applies sigmoid itself: sigmoid is applied twice and the loss "
                   f"cannot go below ~0.31; return the logits")
        related = [Related(_span(u["input"]), f"the model's output goes to {lname} here", u["path"])
                   for u, _m in hits[:MAX_RELATED]]
        fixes = []
        if fa.get("input") and "\n" not in fa["input"] and fa.get("span"):
            if code == "GP303":
                new = _log_softmax_text(fa["text"])
                if new:
                    fixes.append(Fix(f"Use `log_softmax` in `{cname}.forward`", False, (Edit(_span(fa["span"]), new),)))
            else:
                fixes.append(Fix(f"Return the logits from `{cname}.forward` (removes the {act} there; "
                                 f"other users of the output change too)", False,
                                 (Edit(_span(fa["span"]), fa["input"]),)))
        data = {"cross_module": True, "model": cname,
                "consumers": [{"path": u["path"], "line": u["loss"][0]} for u, _m in hits]}
        yield ctx.finding(code, _span(fa["span"]), msg, fixes=fixes, related=related, data=data)


def _short(t: str) -> str:
    t = " ".join(t.split())
    return t if len(t) <= 60 else t[:57] + "..."


def _log_softmax_text(text: str) -> str | None:
    for a, b in (("F.softmax(", "F.log_softmax("), ("torch.softmax(", "torch.log_softmax("),
                 (".softmax(", ".log_softmax(")):
        if a in text:
            return text.replace(a, b, 1)
    return None


@rule("GP302")
def log_in_loss_module(ctx):
    linked = linked_summary(ctx)
    if linked is None or not linked[3]["classes"]:
        return
    project, path, lk, sm = linked
    for cname in sorted(sm["classes"]):
        fn = sm["functions"].get(f"{cname}.forward")
        if not fn or not fn["logs"] or len(fn["params"]) < 2:
            continue
        inp = fn["params"][1]
        logs = [lg for lg in fn["logs"] if lg[1] == inp and lg[0] in ("log", "log2", "log10")]
        if not logs:
            continue
        feeders = []
        for use in lk.loss_uses():
            if use["kind"] != ("cls", path, cname):
                continue
            acts = [lk.forward_act(mp, mc) for mp, mc in use["models"]]
            if acts and all(a is not None and a["act"] in ("softmax", "sigmoid") and a.get("index") == use.get("elt")
                            for a in acts):
                feeders.append((use, acts[0], use["models"][0]))
        if not feeders:
            continue
        use, act, model = feeders[0]
        lg = logs[0]
        owner = act["owner"]
        msg = (f"`{cname}.forward` takes `{_short(lg[3])}` of its input, and the project feeds it the "
               f"{act['act']} output of `{model[1]}` ({_where(project, owner[0], act['span'])}): once a "
               f"probability underflows to 0, log gives -inf and the gradient NaN; take log_softmax/logsigmoid "
               f"of the logits, or clamp the input")
        related = [Related(_span(act["span"]), f"the {act['act']} is applied here", owner[0]),
                   Related(_span(use["input"]), f"`{cname}` is applied to the model's output here", use["path"])]
        yield ctx.finding("GP302", _span(lg[2]), msg, related=related,
                          data={"cross_module": True, "loss": cname, "model": model[1]})


@rule("GP201")
def cut_return_backwarded(ctx):
    linked = linked_summary(ctx)
    if linked is None:
        return
    project, path, lk, sm = linked
    calls = lk.backward_callers()
    for fq in sorted(sm["functions"]):
        fn = sm["functions"][fq]
        if not fn["ret_cut"] or fq == "<module>":
            continue
        users = [u for u in calls.get((path, fq), []) if u[0] != path]
        live = [fn["params"].index(p) for p in fn["ret_cut"]["live"] if p in fn["params"]]
        # the parameters that still reach the result must get plain data (a batch) at every caller
        if not users or not all(u[2] is not None and all(i < len(u[2]) and u[2][i] for i in live) for u in users):
            continue
        cut = fn["ret_cut"]["spans"][0]
        up, usp, _data = users[0]
        text = ctx.src.text_in(_span(cut))
        msg = (f"`{fq}` returns a value cut from the autograd graph (`{_short(text)}`), and "
               f"{_where(project, up, usp)} calls backward() on its result: PyTorch raises RuntimeError: "
               f"element 0 of tensors does not require grad and does not have a grad_fn; drop the "
               f"`.{text.rsplit('.', 1)[-1].split('(')[0]}` here")
        related = [Related(_span(sp), "backward() on the result is here", p) for p, sp, _d in users[:MAX_RELATED]]
        fixes = []
        for suffix in (".detach()", ".data"):
            if text.endswith(suffix) and "\n" not in text:
                fixes.append(Fix(f"Remove `{suffix}`", False, (Edit(_span(cut), text[: -len(suffix)]),)))
        yield ctx.finding("GP201", _span(cut), msg, fixes=fixes, related=related, data={"cross_module": True})


@rule("GP201")
def cut_forward_backwarded(ctx):
    """A module class's `forward` here returns a value cut from the graph, and a loss elsewhere is
    computed from nothing but the output of a model whose output that is (the class itself, or a
    model whose `forward` returns this submodule's output), with plain data for its other
    arguments, and backwarded as it is: the single-file GP201 of a submodule's forward, on the cut."""
    linked = linked_summary(ctx)
    if linked is None or not linked[3]["classes"]:
        return
    project, path, lk, sm = linked
    from gradpath.analysis.project.fed import cut_forward_hits
    for cname in sorted(sm["classes"]):
        hits = cut_forward_hits(lk, path, cname)
        if not hits:
            continue
        fn = sm["functions"][f"{cname}.forward"]
        use, bw, (mp, mc), chain = hits[0]
        cut = fn["ret_cut"]["spans"][0]
        text = ctx.src.text_in(_span(cut))
        via = ""
        if mc != cname:
            via = f", which `{mc}` ({_rel(project, mp)}) returns as its output"
        more = f" (and {len(hits) - 1} more)" if len(hits) > 1 else ""
        msg = (f"`{cname}.forward` returns a value cut from the autograd graph (`{_short(text)}`){via}, and "
               f"{_where(project, use['path'], bw)}{more} calls backward() on a loss computed from that output "
               f"alone: PyTorch raises RuntimeError: element 0 of tensors does not require grad and does not "
               f"have a grad_fn; drop the `.{text.rsplit('.', 1)[-1].split('(')[0]}` here")
        related = []
        for u, b, _m, _c in hits[:MAX_RELATED]:
            related.append(Related(_span(b), "backward() on the loss is here", u["path"]))
        related.append(Related(_span(use["input"]), f"the output of `{mc}` goes to the loss here", use["path"]))
        for cp, csp in chain[:MAX_RELATED]:
            related.append(Related(_span(csp), f"`{cname}`'s output is returned here", cp))
        fixes = []
        for suffix in (".detach()", ".data"):
            if text.endswith(suffix) and "\n" not in text:
                fixes.append(Fix(f"Remove `{suffix}`", False, (Edit(_span(cut), text[: -len(suffix)]),)))
        yield ctx.finding("GP201", _span(cut), msg, fixes=fixes, related=related,
                          data={"cross_module": True, "model": mc})
