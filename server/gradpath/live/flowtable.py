"""The gradient-flow table of one live step: one row per parameter tensor the run saw.

Worker side: depends only on the standard library and torch, and is imported by the worker as
`_gradpath_live.flowtable` (a private package, so a user's own `flowtable` module is never shadowed:
see worker._load_sibling). The child (child_run.py) calls `build(obs)` once, after the user's code ran, with its Observer; the result goes out as
the `flow` member of the run's final event and is read by gradpath.live.report (HTML, SVG, PNG) and
by the editor's "Gradient flow" view.

A row:
    (modules that took no part in the step, when another did, are in `unused_roots`, not in rows)
    root          index into `roots` (the top-level module holding the tensor: class, line, the
                  user's variable name when a global holds it, `modules`: {path: [class, line]} of
                  its submodules), or None for a bare tensor given to an optimizer
    name          qualified name inside the root, with the full module path
                  (`encoder.layers.0.attn.q_proj.weight`, `blocks[2].weight` for a plain list)
    owner         the owning layer's path (`encoder.layers.0.attn.q_proj`), owner_class its class,
                  line the line of the user's file where that layer was built (None when unknown)
    grad          norm of the gradient: None (never got one), 0.0, a float, or "nan"/"inf"/"-inf";
                  grad_state: "none" | "zero" | "finite" | "nonfinite"
    update        |w_after - w_before| / |w_before| over the run's step(s) (None: not compared;
                  "inf" when |w_before| is 0 and it moved), changed: True/False/None
    requires_grad, registered (in parameters()), kind ("parameter", "held-module", "held-tensor",
                  "plain-tensor", "bare-tensor"), optimizers (labels: "Adam", "Adam#2"),
                  optimizer_classes, shape, numel, in_forward (its layer was built inside forward)
"""
from __future__ import annotations

import math
import sys
import time

MAX_ROWS = 400
MAX_ROOTS = 30
MAX_LAYERS = 1000  # submodule entries ({path: [class, line]}) over all roots


def _num(x):
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else str(x)


def _grad_state(g) -> str:
    if g is None:
        return "none"
    if not math.isfinite(g):
        return "nonfinite"
    return "zero" if g == 0 else "finite"


def _global_names(objs: dict) -> dict:
    """id -> a name the user's module (or an object it holds one attribute down) gives the object."""
    out: dict = {}
    main = sys.modules.get("__main__")
    ns = getattr(main, "__dict__", None) or {}
    items = [(k, v) for k, v in list(ns.items()) if not k.startswith("_")]
    for k, v in items:
        if id(v) in objs and id(v) not in out:
            out[id(v)] = k
    if len(out) < len(objs):
        for k, v in items[:500]:
            d = getattr(v, "__dict__", None)
            if not isinstance(d, dict) or isinstance(v, type) or type(v).__name__ == "module":
                continue
            for a, w in list(d.items())[:200]:
                if id(w) in objs and id(w) not in out and not a.startswith("_"):
                    out[id(w)] = f"{k}.{a}"
    return out


def _relative_update(torch, t, snap):
    """(|Δw|/|w|, changed) between a snapshot taken before the first backward/step and now."""
    if snap is None or snap is False:
        return None, None
    with torch.no_grad():
        d = t.detach()
        if not (d.is_floating_point() or d.is_complex()):
            return None, None
        if isinstance(snap, tuple):  # a huge tensor: its strided sample
            flat = d.reshape(-1)
            now = flat[:: max(1, flat.numel() // 4096)]
            before = snap[1]
        else:
            now, before = d, snap
        if now.shape != before.shape:
            return None, True
        now = now.double()
        before = before.double()
        delta = float((now - before).norm())
        base = float(before.norm())
    if not math.isfinite(delta):
        return delta, True
    if delta == 0:
        return 0.0, False
    if base == 0:
        return float("inf"), True
    return delta / base, True


def _owners(obs) -> tuple[dict, dict]:
    """id(tensor) -> owning module (the module whose own _parameters or attribute holds it);
    id(module) -> (line, class, in_forward) for every module the run built."""
    owner: dict = {}
    info: dict = {}
    for m, line, cls, in_forward in obs.modules:
        info[id(m)] = (line, cls, in_forward)
        try:
            for p in m._parameters.values():
                if p is not None:
                    owner.setdefault(id(p), m)
            for a, v in vars(m).items():
                if not a.startswith("_") and getattr(v, "requires_grad", False) and id(v) not in owner:
                    owner[id(v)] = m
        except Exception:
            continue
    return owner, info


def _named(obs, module) -> list:
    """(name, tensor, registered) of a root module: every registered parameter (the Observer's own list
    stops at 200 per module), then what it holds unregistered (layers in plain lists, plain tensors)."""
    out = [(n, p, True) for n, p in module.named_parameters()]
    have = {id(p) for _, p, _ in out}
    for n, t, reg in obs.named_tensors(module):
        if reg is not True and id(t) not in have:
            out.append((n, t, reg))
            have.add(id(t))
    return out


def _owner_path(name: str) -> str:
    """`encoder.layers.0.weight` -> `encoder.layers.0`; `blocks[2].weight` -> `blocks[2]`."""
    return name.rsplit(".", 1)[0] if "." in name else ""


def build(obs) -> dict:
    t0 = time.perf_counter()
    torch = obs.torch
    try:
        obs.track_all()
    except Exception:
        pass
    in_opt: dict = {}
    for o in obs.optimizers:
        for g in o["obj"].param_groups:
            for p in g["params"]:
                labels = in_opt.setdefault(id(p), [])
                if o["label"] not in [x[0] for x in labels]:
                    labels.append((o["label"], o["class"]))
    owner, info = _owners(obs)
    roots = []
    rows: list[dict] = []
    seen: set = set()
    truncated = False
    root_entries = obs.roots()
    n_layers = 0
    names = _global_names({id(m): m for m, *_ in root_entries})

    def add_row(t, name, root_index, registered, kind, own):
        nonlocal truncated
        if len(rows) >= MAX_ROWS:
            truncated = True
            return
        rec = obs.params.get(id(t)) or {}
        g = rec.get("grad_max")
        if g is None:
            g = obs._gnorm(t)
        try:
            update, changed = _relative_update(torch, t, rec.get("snap"))
        except Exception:
            update, changed = None, None
        line, ocls, in_fwd = info.get(id(own), (None, None, False)) if own is not None else (None, None, False)
        opts = in_opt.get(id(t), [])
        rows.append({
            "root": root_index, "name": name, "owner": _owner_path(name), "owner_class": ocls, "line": line,
            "shape": list(t.shape), "numel": int(t.numel()), "requires_grad": bool(t.requires_grad),
            "registered": registered, "kind": kind, "grad": _num(g), "grad_state": _grad_state(g),
            "update": _num(update), "changed": changed, "optimizers": [lab for lab, _ in opts],
            "optimizer_classes": sorted({cls for _, cls in opts}), "in_forward": bool(in_fwd),
        })

    candidates = []
    for entry in root_entries:
        try:
            named = _named(obs, entry[0])
        except Exception:
            continue
        if named:
            candidates.append((entry, named))

    def took_part(named) -> bool:
        return any(id(t) in in_opt or (obs.params.get(id(t)) or {}).get("grad_max") is not None
                   for _, t, _ in named)

    # a module that took no part in the step (no tensor in an optimizer, none got a gradient: the template
    # layer nn.TransformerEncoder copies, a model built and never trained) is listed apart, when another did
    unused = []
    if any(took_part(named) for _, named in candidates):
        keep = []
        for entry, named in candidates:
            if took_part(named):
                keep.append((entry, named))
            elif len(unused) < MAX_ROOTS:
                m, line, cls, _ = entry
                unused.append({"class": cls, "line": line, "var": names.get(id(m)), "tensors": len(named)})
        candidates = keep
    for (m, line, cls, in_forward), named in candidates:
        named = [(n, t, r) for n, t, r in named if id(t) not in seen]
        if not named:
            continue
        if len(roots) >= MAX_ROOTS:
            truncated = True
            break
        idx = len(roots)
        layers = {}
        try:
            for path, sub in m.named_modules():
                if len(layers) >= MAX_ROWS or n_layers + len(layers) >= MAX_LAYERS:
                    break
                sline, scls, _ = info.get(id(sub), (None, type(sub).__name__, False))
                layers[path] = [scls, sline]
        except Exception:
            pass
        n_layers += len(layers)
        roots.append({"class": cls, "line": line, "var": names.get(id(m)), "in_forward": bool(in_forward),
                      "training": bool(getattr(m, "training", True)), "modules": layers})
        for name, t, registered in named:
            seen.add(id(t))
            add_row(t, name, idx, registered is True, "parameter" if registered is True else str(registered),
                    owner.get(id(t), m))
    # tensors an optimizer holds that no module does (`w = torch.randn(3, requires_grad=True)`)
    bare = [rec["t"] for pid, rec in obs.params.items() if pid not in seen and pid in in_opt]
    bare_names = _global_names({id(t): t for t in bare})
    for i, t in enumerate(bare):
        seen.add(id(t))
        add_row(t, bare_names.get(id(t)) or f"<tensor {i + 1}>", None, False, "bare-tensor", None)
    return {
        "version": 1,
        "roots": roots,
        "rows": rows,
        "optimizers": [{"label": o["label"], "class": o["class"], "line": o["line"], "steps": o["steps"],
                        "tensors": sum(len(g["params"]) for g in o["obj"].param_groups)} for o in obs.optimizers],
        "steps": obs.step_count,
        "backward": obs.backward_count,
        "iterations": obs.iterations,
        "model_only": bool(getattr(obs, "model_only", False)),
        "truncated": truncated,
        "tensors_seen": len(seen),  # more than len(rows) when the table was cut
        "unused_roots": unused,
        "build_ms": round((time.perf_counter() - t0) * 1000, 2),
    }
