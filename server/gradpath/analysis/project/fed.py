"""What the project feeds its loss functions and models, across modules (for the GP2/GP3 rules that
land inside a loss module or a submodule's `forward` while the training code is elsewhere).

- `fed_losses(lk)`: (path, function) of a loss -- a project loss class's `forward`, or a project
  function called as a loss -- -> the calls that pass it a model's output as first argument:
  {"path", "fn", "input", "loss", "nograd", "models", "act", "passed", "offset"}.
- `cut_models(lk, path, cls)`: the model classes whose output is `cls.forward`'s output (the class
  itself, and classes whose `forward` returns a call of a submodule holding it, a few levels up).
- `backwarded_losses(lk)`: the loss calls whose result is backwarded as it is, with the span of the
  backward.
- `cut_forward_hits(lk, path, cls)` / `cut_forward_sites(lk)`: the losses elsewhere backwarded on
  nothing but the output of a model whose output is a cut `cls.forward`; the modules with such classes.

Unknown stays unknown: a loss that may be either of two things, a model that may be a plain
function, is left out.
"""
from __future__ import annotations

from gradpath.analysis.project.summaries import passed_of

# model classes outside the project whose output carries a graph (what loss_uses links to `extinst`)
_EXT_MODEL_PREFIXES = ("torch.nn.", "torchvision.models.", "timm.", "transformers.")


def _memo(lk, key, build):
    got = lk._memo.get(key)
    if got is None:
        got = lk._memo[key] = build()
    return got


def _models(lk, mv) -> list | None:
    """The models a loss input comes from, or None when one of them is not clearly a model."""
    out = []
    for v in mv:
        if v[0] in ("inst", "self") and lk.is_module_class(v[1], v[2]):
            out.append((v[1], v[2]))
        elif v[0] == "extinst" and v[1].startswith(_EXT_MODEL_PREFIXES) and v[1].rsplit(".", 1)[-1][:1].isupper():
            out.append(("ext", v[1]))
        else:
            return None
    return out or None


def _loss_target(lk, lv):
    """((path, qualname), offset) of the one project function a loss value runs; None otherwise."""
    targets = set()
    for v in lv:
        if v[0] == "inst" and lk.is_module_class(v[1], v[2]):
            m = lk.find_method(v[1], v[2], "forward")
            if m is None:
                return None
            targets.add((m, 1))
        elif v[0] == "fn":
            sm = lk.summary(v[1])
            fn = sm["functions"].get(v[2]) if sm else None
            if fn is None:
                return None
            off = 1 if "." in v[2] and fn["params"][:1] == ["self"] else 0
            targets.add(((v[1], v[2]), off))
        else:
            return None
    return targets.pop() if len(targets) == 1 else None


def _act(lk, models, elt):
    """The activation every model's forward ends in (for this element of its result), or None."""
    acts = []
    for m in models:
        if m[0] == "ext":
            return None
        a = lk.forward_act(*m)
        if a is None or a.get("index") != elt:
            return None
        acts.append(a)
    kinds = {a["act"] for a in acts}
    return acts[0] if len(kinds) == 1 else None


def fed_losses(lk) -> dict:
    return _memo(lk, ("fed-losses",), lambda: _build_fed(lk))


def _build_fed(lk) -> dict:
    out: dict = {}
    for p, sm in lk.s.items():
        if not sm:
            continue
        for fq, fn in sm["functions"].items():
            for loss_vd, model_vd, inp_sp, loss_sp, flags, elt, *extra in fn["loss_uses"]:
                target = _loss_target(lk, lk.eval(loss_vd, p))
                if target is None:
                    continue
                models = _models(lk, lk.eval(model_vd, p))
                if models is None:
                    continue
                (tp, tq), off = target
                ex = extra[0] if extra else [None, None]
                out.setdefault((tp, tq), []).append({
                    "path": p, "fn": fq, "input": inp_sp, "loss": loss_sp, "nograd": "n" in flags,
                    "models": models, "act": _act(lk, models, elt), "elt": elt,
                    "passed": passed_of(ex[0]), "data": ex[1], "offset": off})
    return out


def backwarded_losses(lk) -> dict:
    """(path, span of a loss call) -> [backward span] for losses backwarded as they are."""
    def build():
        d: dict = {}
        for p, sm in lk.s.items():
            if not sm:
                continue
            for fn in sm["functions"].values():
                for _vd, sp, flags, _data, *call in fn["backwards"]:
                    if call and call[0] is not None and "n" not in flags:
                        d.setdefault((p, tuple(call[0])), []).append(sp)
        return d
    return _memo(lk, ("backwarded-losses",), build)


def model_loss_uses(lk) -> dict:
    """(model path, class) -> [{"path", "input", "loss", "nograd", "kind", "data", "elt"}]: every call
    of a torch loss (`nn.MSELoss()`, `F.cross_entropy`) on a model's output, by model class."""
    from gradpath.analysis.project.link import canon

    def build():
        d: dict = {}
        for p, sm in lk.s.items():
            if not sm:
                continue
            for fq, fn in sm["functions"].items():
                for loss_vd, model_vd, inp_sp, loss_sp, flags, elt, *extra in fn["loss_uses"]:
                    lv = lk.eval(loss_vd, p)
                    if not lv or not all(_torch_loss(canon(v[1]) if len(v) > 1 else "", v[0]) for v in lv):
                        continue
                    mv = lk.eval(model_vd, p)
                    for v in mv:
                        if v[0] in ("inst", "self") and lk.is_module_class(v[1], v[2]):
                            ex = extra[0] if extra else [None, None]
                            d.setdefault((v[1], v[2]), []).append({
                                "path": p, "fn": fq, "input": inp_sp, "loss": loss_sp, "nograd": "n" in flags,
                                "data": ex[1], "elt": elt, "only": len(mv) == 1})
        return d
    return _memo(lk, ("model-loss-uses",), build)


def _torch_loss(qn: str, kind: str) -> bool:
    """A torch loss: `nn.XLoss()` called (an instance) or `F.x_loss`/`F.cross_entropy` itself."""
    if kind == "extinst":
        return qn.startswith("torch.nn.") and qn.endswith("Loss")
    if kind == "ext":
        return qn.startswith("torch.nn.functional.") and (qn.endswith("_loss") or qn.rsplit(".", 1)[-1] in (
            "cross_entropy", "binary_cross_entropy", "binary_cross_entropy_with_logits", "kl_div"))
    return False


def cut_models(lk, path: str, cls: str, depth: int = 3) -> list[tuple]:
    """[(model path, model class, [(path, span) of the submodule calls on the way])]: classes whose
    forward's output is `cls.forward`'s output: the class itself, its subclasses that keep its
    forward, and classes whose forward returns `self.<attr>(...)` with `attr` holding one of these."""
    def build():
        out = [((path, cls), [])]
        todo = [((path, cls), [])]
        seen = {(path, cls)}
        for _ in range(depth):
            nxt = []
            for (p, c), chain in todo:
                for (hp, hc), attr_sp in _holders(lk, p, c):
                    if (hp, hc) in seen:
                        continue
                    seen.add((hp, hc))
                    item = ((hp, hc), chain + [(hp, attr_sp)])
                    out.append(item)
                    nxt.append(item)
            todo = nxt
        # subclasses that inherit the forward
        for (p, c), chain in list(out):
            for sp, sc in lk.subclasses().get((p, c), []):
                if lk.forward_owner(sp, sc) == lk.forward_owner(p, c) and (sp, sc) not in seen:
                    seen.add((sp, sc))
                    out.append(((sp, sc), chain))
        return [(p, c, chain) for (p, c), chain in out]
    return _memo(lk, ("cut-models", path, cls), build)


def _holders(lk, path: str, cls: str) -> list:
    """((path, class), span of the call) for classes whose forward returns `self.<attr>(...)` only,
    where `self.<attr>` holds an instance of (path, cls) and nothing else."""
    def build():
        d: dict = {}
        for p, sm in lk.s.items():
            if not sm:
                continue
            for cname, info in sm["classes"].items():
                fwd = sm["functions"].get(f"{cname}.forward")
                if not fwd or not fwd.get("ret_sub"):
                    continue
                attr, sp = fwd["ret_sub"]
                vals = lk.attr_of(p, cname, attr)
                if len(vals) == 1:
                    (v,) = vals
                    if v[0] == "inst":
                        d.setdefault((v[1], v[2]), []).append(((p, cname), sp))
        return d
    return _memo(lk, ("holders",), build).get((path, cls), [])


def cut_forward_hits(lk, path: str, cname: str) -> list:
    """[(loss use, backward span, (model path, model class), submodule chain)] for a module class
    whose forward (in `path`) returns a value cut from the graph, with nothing else reaching it: the
    losses in other modules computed from nothing but the output of a model whose output that is
    (see cut_models), with plain data for their other arguments, backwarded as they are."""
    sm = lk.summary(path)
    fn = sm["functions"].get(f"{cname}.forward") if sm else None
    if not fn or not fn.get("ret_cut") or fn["ret_cut"]["live"] or not lk.is_module_class(path, cname):
        return []
    hits = []
    for mp, mc, chain in cut_models(lk, path, cname):
        if lk.forward_owner(mp, mc) is None:
            continue
        for use in model_loss_uses(lk).get((mp, mc), []):
            if use["path"] == path or use["nograd"] or not use["only"]:
                continue  # the same file: its own analysis sees both ends
            data = use["data"] or []
            if len(data) < 2 or not all(data[1:]):
                continue  # a target that may carry a graph of its own (a teacher's output)
            bws = backwarded_losses(lk).get((use["path"], tuple(use["loss"])))
            if bws:
                hits.append((use, bws[0], (mp, mc), chain))
    hits.sort(key=lambda h: (h[0]["path"], h[1]))
    return hits


def cut_forward_sites(lk) -> set:
    """Modules holding a class for which cut_forward_hits finds something."""
    def build():
        out = set()
        for p, sm in lk.s.items():
            if not sm:
                continue
            for cname in sm["classes"]:
                fn = sm["functions"].get(f"{cname}.forward")
                if fn and fn.get("ret_cut") and not fn["ret_cut"]["live"] and cut_forward_hits(lk, p, cname):
                    out.add(p)
                    break
        return out
    return _memo(lk, ("cut-forward-sites",), build)
