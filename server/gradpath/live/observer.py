"""What the live worker's child sees of one run of the user's script: optimizers, backward calls,
parameters before and after, probed sub-expressions, loops cut, modules built, schedulers, warnings; a
summary of it all goes back to the server at the end.

Worker side: standard library only (torch is passed in); imported by worker.py as
`_gradpath_live.observer` (see worker._load_sibling).
"""
from __future__ import annotations

import math
import sys

from . import leftovers as _leftovers  # gradients not cleared between iterations, per optimizer
from . import probe_values as _probe_values  # where a probed value came from (may the edge run force it?)


MAX_PARAMS_PER_MODULE = 200
SNAPSHOT_FULL_NUMEL = 1_000_000


def _fmt_num(x):
    if x is None:
        return None
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    return x


class Observer:
    def __init__(self, torch, path, request, emit):
        self.torch = torch
        self.path = path
        self.req = request
        self.emit = emit
        self.edge = request.get("edge")
        self.iterations = max(1, int(request.get("iterations", 1)))
        self.modules = []  # [(module, line, class, in_forward)]
        self.module_ids = set()
        self.optimizers = []  # dicts with "obj"
        self.params = {}  # id -> record
        self.events = []
        self.backward_count = 0
        self.step_count = 0
        self.probes = {}
        self.loops = {}
        self.whiles = {}
        self.warnings = []
        self.network = []
        self.processes = []
        self.writes = []
        self.lines = {}
        self.in_backward = False
        self.in_sched = False
        self.tolerated = []
        self.schedulers = []
        self.snapshot_taken = False
        self.model_only = False

    # --- helpers ----------------------------------------------------------------------------
    def user_line(self, depth=2):
        f = sys._getframe(depth)
        while f is not None:
            if f.f_code.co_filename == self.path:
                return f.f_lineno
            f = f.f_back
        return None

    def creation_line(self, inst, depth=2):
        """The user line that built `inst`: past its own class's `__init__` (`super().__init__()` inside
        `Net.__init__` is not where the `Net` was made)."""
        f = sys._getframe(depth)
        while f is not None:
            if f.f_code.co_filename == self.path:
                code = f.f_code
                if not (code.co_name == "__init__" and code.co_argcount and
                        f.f_locals.get(code.co_varnames[0]) is inst):
                    return f.f_lineno
            f = f.f_back
        return None

    def user_func(self, depth=2):
        f = sys._getframe(depth)
        while f is not None:
            if f.f_code.co_filename == self.path:
                return f.f_code.co_name
            f = f.f_back
        return None

    def user_stack(self, depth=2):
        """Lines of every frame in the user's file, outermost first (at most 8)."""
        out = []
        f = sys._getframe(depth)
        while f is not None and len(out) < 8:
            if f.f_code.co_filename == self.path:
                out.append(f.f_lineno)
            f = f.f_back
        return out[::-1]

    def event(self, kind, **data):
        if len(self.events) < 400:
            data["kind"] = kind
            data["stack"] = self.user_stack(3)
            self.events.append(data)

    def opt_label(self, opt):
        for o in self.optimizers:
            if o["obj"] is opt:
                return o["label"]
        return type(opt).__name__

    def roots(self):
        torch = self.torch
        children = set()
        for m, *_ in self.modules:
            for c in m.children():
                children.add(id(c))
        return [entry for entry in self.modules if id(entry[0]) not in children]

    def named_tensors(self, module):
        """(name, tensor, registered) for a root module: its parameters, plus parameters of modules it
        holds in plain lists/dicts/tuples and requires-grad tensors it holds as plain attributes."""
        torch = self.torch
        out = []
        seen = set()
        for name, p in module.named_parameters():
            out.append((name, p, True))
            seen.add(id(p))
        for mname, sub in module.named_modules():
            prefix = mname + "." if mname else ""
            for attr, val in list(vars(sub).items()):
                if attr.startswith("_"):
                    continue
                items = []
                if isinstance(val, (list, tuple)):
                    items = [(f"{attr}[{i}]", v) for i, v in enumerate(val)]
                elif isinstance(val, dict):
                    items = [(f"{attr}[{k!r}]", v) for k, v in val.items()]
                elif isinstance(val, torch.Tensor) and not isinstance(val, torch.nn.Parameter) and val.requires_grad:
                    if id(val) not in seen:
                        out.append((prefix + attr, val, "plain-tensor"))
                        seen.add(id(val))
                    continue
                for iname, v in items[:50]:
                    if isinstance(v, torch.nn.Module):
                        for pn, p in v.named_parameters():
                            if id(p) not in seen:
                                out.append((f"{prefix}{iname}.{pn}", p, "held-module"))
                                seen.add(id(p))
                    elif isinstance(v, torch.Tensor) and v.requires_grad and id(v) not in seen:
                        out.append((f"{prefix}{iname}", v, "held-tensor"))
                        seen.add(id(v))
        return out[:MAX_PARAMS_PER_MODULE]

    def track_all(self):
        for m, *_ in self.roots():
            for name, t, registered in self.named_tensors(m):
                rec = self.params.get(id(t))
                if rec is None:
                    self.params[id(t)] = rec = {"t": t, "name": name, "module": id(m), "registered": registered,
                                                "grad_max": None, "snap": None, "grad_events": []}
        for o in self.optimizers:
            for g in o["obj"].param_groups:
                for p in g["params"]:
                    if id(p) not in self.params:
                        self.params[id(p)] = {"t": p, "name": None, "module": None, "registered": True,
                                              "grad_max": None, "snap": None, "grad_events": []}

    def _snap(self, t):
        torch = self.torch
        with torch.no_grad():
            d = t.detach()
            if d.numel() <= SNAPSHOT_FULL_NUMEL:
                return d.clone()
            flat = d.reshape(-1)
            return (float(flat.double().sum()), flat[:: max(1, flat.numel() // 4096)].clone())

    def _diff(self, t, snap):
        torch = self.torch
        with torch.no_grad():
            d = t.detach()
            if isinstance(snap, tuple):
                flat = d.reshape(-1)
                sample = flat[:: max(1, flat.numel() // 4096)]
                if sample.shape != snap[1].shape:
                    return float("nan")
                return float((sample - snap[1]).abs().max()) + abs(float(flat.double().sum()) - snap[0])
            if snap.shape != d.shape:
                return float("nan")
            return float((d - snap).abs().max()) if d.numel() else 0.0

    def snapshot_new(self):
        self.track_all()
        for m, *_ in self.roots():
            try:
                self.plain_state(m, snap_only=True)
            except Exception:
                pass
        for rec in self.params.values():
            if rec["snap"] is None:
                try:
                    rec["snap"] = self._snap(rec["t"])
                except Exception:
                    rec["snap"] = False

    def plain_state(self, module, snap_only=False):
        """Tensor attributes of a root module (and its children) that are neither parameters nor
        buffers (GP114): in state_dict()? changed since the first snapshot?"""
        torch = self.torch
        snaps = self.__dict__.setdefault("plain_snaps", {})
        out, keys = [], None
        for mname, sub in module.named_modules():
            for attr, val in list(vars(sub).items()):
                if attr.startswith("_") or not isinstance(val, torch.Tensor) or isinstance(val, torch.nn.Parameter):
                    continue
                if snap_only:
                    if id(val) not in snaps:
                        snaps[id(val)] = self._snap(val)
                    continue
                name = (mname + "." if mname else "") + attr
                if keys is None:
                    keys = set(module.state_dict().keys())
                snap, changed = snaps.get(id(val)), None
                if snap is not None:
                    delta = self._diff(val, snap)
                    changed = bool(delta > 0) if math.isfinite(delta) else True
                out.append({"name": name, "shape": list(val.shape), "in_state_dict": name in keys,
                            "requires_grad": bool(val.requires_grad), "changed": changed,
                            "state_keys": len(keys)})
                if len(out) >= 20:
                    return out
        return out

    @staticmethod
    def _gnorm(t):
        g = getattr(t, "grad", None)
        if g is None:
            return None
        try:
            return float(g.detach().double().norm())
        except Exception:
            return None

    def grads_of(self, ids=None):
        return {pid: self._gnorm(rec["t"]) for pid, rec in self.params.items() if ids is None or pid in ids}

    # --- hooks ------------------------------------------------------------------------------
    def install(self):
        torch = self.torch
        obs = self
        import torch.optim.optimizer as optmod

        orig_module_init = torch.nn.Module.__init__

        def module_init(self_, *a, **k):
            orig_module_init(self_, *a, **k)
            if id(self_) not in obs.module_ids and len(obs.modules) < 5000:
                obs.module_ids.add(id(self_))
                obs.modules.append((self_, obs.creation_line(self_), type(self_).__name__, obs.user_func() == "forward"))

        torch.nn.Module.__init__ = module_init
        orig_setstate = torch.nn.Module.__setstate__

        def module_setstate(self_, state):
            orig_setstate(self_, state)
            if id(self_) not in obs.module_ids and len(obs.modules) < 5000:
                obs.module_ids.add(id(self_))
                obs.modules.append((self_, obs.user_line(), type(self_).__name__, False))

        torch.nn.Module.__setstate__ = module_setstate

        orig_opt_init = torch.optim.Optimizer.__init__

        def opt_init(self_, params, *a, **k):
            line = obs.user_line()
            orig_opt_init(self_, params, *a, **k)
            if not any(o["obj"] is self_ for o in obs.optimizers):
                n = sum(1 for o in obs.optimizers if type(o["obj"]) is type(self_))
                label = type(self_).__name__ + (f"#{n + 1}" if n else "")
                obs.optimizers.append({"obj": self_, "line": line, "label": label, "steps": 0, "zero_grads": 0,
                                       "class": type(self_).__name__, "bw_at_last_step": obs.backward_count})
                obs.event("optimizer", line=line, optimizer=label,
                          tensors=sum(len(g["params"]) for g in self_.param_groups))

        torch.optim.Optimizer.__init__ = opt_init

        def pre_step(opt, args, kwargs):
            obs.snapshot_new()
            ids = {id(p) for g in opt.param_groups for p in g["params"]}
            grads = obs.grads_of(ids)
            nonzero = sum(1 for v in grads.values() if v)
            rec = next((o for o in obs.optimizers if o["obj"] is opt), None)
            fresh = rec is None or obs.backward_count > rec["bw_at_last_step"]
            if rec is not None:
                rec["bw_at_last_step"] = obs.backward_count
            try:
                lr = _fmt_num(float(opt.param_groups[0].get("lr")))
            except Exception:
                lr = None
            obs.event("step", line=obs.user_line(3), optimizer=obs.opt_label(opt), grads_nonzero=nonzero,
                      tensors=len(ids), backward_before=obs.backward_count, fresh_backward=fresh, lr=lr)

        def post_step(opt, args, kwargs):
            obs.step_count += 1
            for o in obs.optimizers:
                if o["obj"] is opt:
                    o["steps"] += 1

        if hasattr(optmod, "register_optimizer_step_pre_hook"):
            optmod.register_optimizer_step_pre_hook(pre_step)
            optmod.register_optimizer_step_post_hook(post_step)
        else:  # older torch: wrap each optimizer's step as it is built
            inner_init = torch.optim.Optimizer.__init__

            def opt_init_wrapping_step(self_, *a, **k):
                inner_init(self_, *a, **k)
                orig_step = self_.step

                def step(*sa, **sk):
                    pre_step(self_, sa, sk)
                    out = orig_step(*sa, **sk)
                    post_step(self_, sa, sk)
                    return out
                self_.step = step

            torch.optim.Optimizer.__init__ = opt_init_wrapping_step

        orig_zero = torch.optim.Optimizer.zero_grad

        def opt_zero(self_, *a, **k):
            for o in obs.optimizers:
                if o["obj"] is self_:
                    o["zero_grads"] += 1
            obs.event("zero_grad", line=obs.user_line(), optimizer=obs.opt_label(self_))
            return orig_zero(self_, *a, **k)

        torch.optim.Optimizer.zero_grad = opt_zero
        orig_mzero = torch.nn.Module.zero_grad

        def mod_zero(self_, *a, **k):
            obs.event("zero_grad", line=obs.user_line(), module=type(self_).__name__)
            return orig_mzero(self_, *a, **k)

        torch.nn.Module.zero_grad = mod_zero

        orig_backward = torch.Tensor.backward
        orig_ag_backward = torch.autograd.backward

        def around_backward(call, value, line):
            if obs.in_backward:
                return call()
            obs.in_backward = True
            try:
                obs.snapshot_new()
                before = obs.grads_of()
                ev = {"line": line, "index": obs.backward_count}
                if isinstance(value, torch.Tensor):
                    ev["requires_grad"] = bool(value.requires_grad)
                    ev["grad_fn"] = type(value.grad_fn).__name__ if value.grad_fn is not None else None
                    if value.numel() == 1:
                        try:
                            ev["value"] = _fmt_num(float(value.detach()))
                        except Exception:
                            pass
                    ev["training"] = {type(m).__name__: bool(m.training) for m, *_ in obs.roots()[:10]}
                try:
                    result = call()
                except BaseException as exc:
                    ev["error"] = f"{type(exc).__name__}: {exc}"
                    obs.event("backward", **ev)
                    raise
                obs.backward_count += 1
                after = obs.grads_of()
                for pid, g in after.items():
                    rec = obs.params[pid]
                    if g is not None:
                        rec["grad_max"] = g if rec["grad_max"] is None or not math.isfinite(g) \
                            else max(rec["grad_max"], g)
                    if len(rec["grad_events"]) < 6:
                        rec["grad_events"].append([before.get(pid), g])
                nonfinite = [obs.params[pid]["name"] or "?" for pid, g in after.items()
                             if g is not None and not math.isfinite(g)]
                ev["grads_nonfinite"] = nonfinite[:20]
                left = [(obs.params[pid]["name"] or "?", before.get(pid), g) for pid, g in after.items()
                        if before.get(pid)]
                ev["leftover"] = len(left)
                ev["leftover_examples"] = [[n, _fmt_num(b), _fmt_num(a)] for n, b, a in left[:3]]
                left_ids = [(pid, before.get(pid), g) for pid, g in after.items() if before.get(pid)]
                ev["leftover_held"] = _leftovers.examples(obs, left_ids, _fmt_num)
                ev["leftover_per_optimizer"] = _leftovers.per_optimizer(obs, left_ids)
                ev["grads_none"] = sum(1 for g in after.values() if g is None)
                ev["grads_total"] = len(after)
                obs.event("backward", **ev)
                return result
            finally:
                obs.in_backward = False

        def tensor_backward(self_, *a, **k):
            return around_backward(lambda: orig_backward(self_, *a, **k), self_, obs.user_line())

        def ag_backward(tensors, *a, **k):
            first = tensors[0] if isinstance(tensors, (list, tuple)) and tensors else tensors
            return around_backward(lambda: orig_ag_backward(tensors, *a, **k), first, obs.user_line())

        torch.Tensor.backward = tensor_backward
        torch.autograd.backward = ag_backward

        try:
            from torch.optim import lr_scheduler as lrs
            base = getattr(lrs, "LRScheduler", None) or lrs._LRScheduler
            orig_sched_init = base.__init__
            orig_sched_step = base.step

            def sched_init(self_, optimizer, *a, **k):
                line = obs.user_line()
                prev, obs.in_sched = obs.in_sched, True  # its initial step is not a user step
                try:
                    orig_sched_init(self_, optimizer, *a, **k)
                finally:
                    obs.in_sched = prev
                if getattr(self_, "_gp_id", None) is None:
                    self_._gp_id = len(obs.schedulers)
                    try:
                        lr = _fmt_num(float(optimizer.param_groups[0]["lr"]))
                    except Exception:
                        lr = None
                    obs.schedulers.append({"class": type(self_).__name__, "line": line, "initial_lr": lr,
                                           "optimizer": obs.opt_label(optimizer)})

            def sched_step(self_, *a, **k):
                if getattr(self_, "_gp_id", None) is not None and not obs.in_sched:
                    obs.event("sched_step", line=obs.user_line(), scheduler=self_._gp_id,
                              optimizer=obs.opt_label(self_.optimizer))
                obs.in_sched = True
                try:
                    return orig_sched_step(self_, *a, **k)
                finally:
                    obs.in_sched = False

            base.__init__ = sched_init
            base.step = sched_step
        except Exception:
            pass

    def probe(self, pid, value, line):
        torch = self.torch
        rec = self.probes.get(pid)
        if rec is None:
            rec = self.probes[pid] = {"line": line, "count": 0}
        rec["count"] += 1
        _probe_values.note(rec, value, torch)
        try:
            if isinstance(value, torch.Tensor):
                rec["requires_grad"] = bool(value.requires_grad)
                rec["grad_fn"] = type(value.grad_fn).__name__ if value.grad_fn is not None else None
                rec["shape"] = list(value.shape)
                with torch.no_grad():
                    v = value.detach()
                    if v.is_floating_point() or v.is_complex():
                        v = v.double()
                    else:
                        v = v.double()
                    if v.numel():
                        finite = v[torch.isfinite(v)]
                        mn, mx = (float(finite.min()), float(finite.max())) if finite.numel() else (None, None)
                        mabs = float(v.abs().min())
                        rec["min"] = mn if rec.get("min") is None or (mn is not None and mn < rec["min"]) else rec["min"]
                        rec["max"] = mx if rec.get("max") is None or (mx is not None and mx > rec["max"]) else rec["max"]
                        rec["min_abs"] = mabs if rec.get("min_abs") is None else min(rec["min_abs"], mabs)
                        rec["nonfinite"] = rec.get("nonfinite", 0) + int((~torch.isfinite(v)).sum())
                        if v.dim() >= 1 and v.shape[-1] > 1:
                            rs = v.sum(-1)
                            rec["row_sum_min"] = float(rs.min())
                            rec["row_sum_max"] = float(rs.max())
                        rec["in_unit"] = bool(((v >= 0) & (v <= 1)).all()) and rec.get("in_unit", True)
            elif isinstance(value, (int, float)):
                x = float(value)
                rec["min"] = x if rec.get("min") is None else min(rec["min"], x)
                rec["max"] = x if rec.get("max") is None else max(rec["max"], x)
                rec["min_abs"] = abs(x) if rec.get("min_abs") is None else min(rec["min_abs"], abs(x))
            else:
                rec["type"] = type(value).__name__
        except Exception as exc:  # never let an observation break the user's program
            rec["error"] = repr(exc)
        if self.edge and self.edge.get("id") == pid:
            rec["forced"] = self.edge.get("what")
            return self.edge_value(value, self.edge.get("what"))
        return value

    def site(self, pid, value):
        """The expression that consumes a probed value (the division, the log call...)."""
        torch = self.torch
        rec = self.probes.setdefault(pid, {"count": 0})
        s = rec.setdefault("site", {"count": 0, "nonfinite": 0})
        s["count"] += 1
        try:
            if isinstance(value, torch.Tensor) and value.numel():
                with torch.no_grad():
                    v = value.detach().double()
                    bad = int((~torch.isfinite(v)).sum())
                    s["nonfinite"] += bad
                    if bad and "example" not in s:
                        s["example"] = _fmt_num(float(v[~torch.isfinite(v)].reshape(-1)[0]))
            elif isinstance(value, float) and not math.isfinite(value):
                s["nonfinite"] += 1
                s.setdefault("example", _fmt_num(value))
        except Exception as exc:
            s["error"] = repr(exc)
        return value

    def edge_value(self, value, what):
        torch = self.torch
        if isinstance(value, torch.Tensor):
            if what == "loss-input":
                return value
            z = value - value.detach() if value.requires_grad else torch.zeros_like(value)
            if what == "exp-arg":
                z = z + 100.0
            if z.requires_grad:
                rec = self.probes.get(self.edge.get("id")) or {}

                def hook(g, rec=rec):
                    try:
                        ok = bool(torch.isfinite(g).all())
                        rec["edge_grad_finite"] = ok and rec.get("edge_grad_finite", True)
                        if not ok and "edge_grad_example" not in rec:
                            rec["edge_grad_example"] = _fmt_num(float(g[~torch.isfinite(g)].reshape(-1)[0]))
                    except Exception:
                        pass
                z.register_hook(hook)
            return z
        if isinstance(value, (int, float)):
            return 100.0 if what == "exp-arg" else 0.0
        return value

    def iter_cut(self, it, line):
        rec = self.loops.setdefault(line, {"entered": 0, "iterations": 0, "cut": False})
        rec["entered"] += 1
        n = 0
        for x in it:
            if n >= self.iterations:
                rec["cut"] = True
                return
            n += 1
            rec["iterations"] += 1
            yield x

    def while_reset(self, line):
        self.whiles[line] = 0

    def while_check(self, line):
        n = self.whiles.get(line, 0)
        rec = self.loops.setdefault(line, {"entered": 0, "iterations": 0, "cut": False})
        if n == 0:
            rec["entered"] += 1
        if n >= self.iterations:
            rec["cut"] = True
            return False
        self.whiles[line] = n + 1
        rec["iterations"] += 1
        return True

    # --- final report -----------------------------------------------------------------------
    def summary(self):
        torch = self.torch
        try:
            self.track_all()
        except Exception:
            pass
        in_opt = {}
        for o in self.optimizers:
            for g in o["obj"].param_groups:
                for p in g["params"]:
                    in_opt.setdefault(id(p), []).append(o["label"])
        modules = []
        root_ids = {id(m) for m, *_ in self.roots()}
        for m, line, cls, in_forward in self.modules:
            if id(m) not in root_ids and not in_forward:
                continue
            if len(modules) >= 30:
                break
            params = []
            try:
                named = self.named_tensors(m)
            except Exception:
                named = []
            for name, t, registered in named:
                rec = self.params.get(id(t), {})
                snap = rec.get("snap")
                changed = None
                delta = None
                if snap is not None and snap is not False:
                    try:
                        delta = self._diff(t, snap)
                        changed = bool(delta > 0) if math.isfinite(delta) else True
                    except Exception:
                        pass
                params.append({"name": name, "shape": list(t.shape), "requires_grad": bool(t.requires_grad),
                               "registered": registered is True,
                               "kind": "parameter" if registered is True else registered, "grad": _fmt_num(rec.get("grad_max")),
                               "grad_now": _fmt_num(self._gnorm(t)), "changed": changed,
                               "delta": _fmt_num(delta), "optimizers": in_opt.get(id(t), []),
                               "grad_events": [[_fmt_num(a), _fmt_num(b)] for a, b in rec.get("grad_events", [])]})
            layers = sorted({type(s).__name__ for s in m.modules()
                             if isinstance(s, (torch.nn.modules.dropout._DropoutNd,
                                               torch.nn.modules.batchnorm._BatchNorm))})
            hooks = sum(len(getattr(s, "_forward_hooks", {})) + len(getattr(s, "_forward_pre_hooks", {}))
                        for s in m.modules())
            try:
                plain = self.plain_state(m) if id(m) in root_ids else []
            except Exception:
                plain = []
            modules.append({"class": cls, "line": line, "root": id(m) in root_ids, "in_forward": in_forward,
                            "training": bool(m.training), "params": params, "mode_layers": layers,
                            "forward_hooks": hooks, "plain_state": plain})
        created_in_forward = {}
        for m, line, cls, in_forward in self.modules:
            if in_forward:
                created_in_forward.setdefault(f"{cls}@{line}", 0)
                created_in_forward[f"{cls}@{line}"] += 1
        return {
            "modules": modules,
            "created_in_forward": created_in_forward,
            "schedulers": self.schedulers[:20],
            "tolerated": self.tolerated,
            "optimizers": [{"label": o["label"], "class": o["class"], "line": o["line"], "steps": o["steps"],
                            "zero_grads": o["zero_grads"],
                            "tensors": sum(len(g["params"]) for g in o["obj"].param_groups),
                            "groups": [len(g["params"]) for g in o["obj"].param_groups][:50]}
                           for o in self.optimizers],
            "events": self.events,
            "backward_count": self.backward_count,
            "step_count": self.step_count,
            "probes": self.probes,
            "loops": {str(k): v for k, v in self.loops.items()},
            "warnings": self.warnings[:30],
            "network": self.network[:10],
            "processes": self.processes[:10],
            "writes": self.writes[:50],
            "lines": {str(k): v for k, v in list(self.lines.items())[:5000]},
        }
