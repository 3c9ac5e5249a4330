"""The live worker's model-only mode: when the script cannot run whole (it needs the network, a dataset,
a GPU...), run only its imports and definitions, build the model class the finding names (or the one
the file constructs) with its constructor arguments as written, feed it a synthetic input, and take one
step with the script's own optimizer call (SGD when that cannot be built).

Worker side: standard library only (torch is passed in); imported by worker.py as
`_gradpath_live.model_only` (see worker._load_sibling).
"""
from __future__ import annotations

import ast
import types

from .observer import Observer  # (annotations)
from .script_rewrite import _is_module_class, _node_span


OPTIMIZER_NAMES = {"SGD", "Adam", "AdamW", "Adamax", "Adagrad", "Adadelta", "RMSprop", "Rprop", "NAdam",
                   "RAdam", "ASGD", "LBFGS", "SparseAdam", "Adafactor", "Muon"}


def _defs_only(tree: ast.Module) -> ast.Module:
    keep = []
    for st in tree.body:
        if isinstance(st, (ast.Import, ast.ImportFrom)):
            # a package the model does not need (`requests`, `torchvision` for the data) must not stop the
            # model-only step: a failed import leaves its names undefined
            handler = ast.ExceptHandler(type=ast.Name("ImportError", ast.Load()), name=None, body=[ast.Pass()])
            guarded = ast.copy_location(ast.Try(body=[st], handlers=[handler], orelse=[], finalbody=[]), st)
            keep.append(ast.fix_missing_locations(guarded))
        elif isinstance(st, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            keep.append(st)
        elif isinstance(st, (ast.Assign, ast.AnnAssign)) and st.value is not None:
            calls = [n for n in ast.walk(st.value) if isinstance(n, ast.Call)]
            if all(isinstance(c.func, ast.Attribute) and c.func.attr == "device" for c in calls):
                keep.append(st)
    return ast.Module(body=keep, type_ignores=[])


def _call_name(call: ast.Call) -> str | None:
    f = call.func
    if isinstance(f, ast.Attribute):
        return f.attr
    if isinstance(f, ast.Name):
        return f.id
    return None


def _contains(outer, sp):
    return outer and (outer[0], outer[1]) <= (sp[0], sp[1]) and (outer[2], outer[3]) >= (sp[2], sp[3])


def _held_modules(torch, model):
    """model.modules() plus modules held in plain list/tuple/dict attributes (unregistered, GP104)."""
    out, seen = [], set()
    todo = [model]  # depth-first, in definition order, like modules(): the first layer is the input layer
    while todo and len(out) < 500:
        m = todo.pop()
        if id(m) in seen:
            continue
        seen.add(id(m))
        out.append(m)
        nxt = list(m.children())
        for v in vars(m).values():
            items = v.values() if isinstance(v, dict) else v if isinstance(v, (list, tuple)) else ()
            nxt.extend(i for i in items if isinstance(i, torch.nn.Module))
        todo.extend(reversed(nxt))
    return out


def synth_input(torch, model):
    nn = torch.nn
    for m in _held_modules(torch, model):
        if isinstance(m, nn.Linear):
            return torch.randn(4, m.in_features), f"randn(4, {m.in_features}) for Linear({m.in_features}, ...)"
        if isinstance(m, nn.Conv2d):
            c = m.in_channels
            return torch.randn(2, c, 32, 32), f"randn(2, {c}, 32, 32) for Conv2d({c}, ...)"
        if isinstance(m, nn.Conv1d):
            c = m.in_channels
            return torch.randn(2, c, 32), f"randn(2, {c}, 32) for Conv1d({c}, ...)"
        if isinstance(m, nn.Conv3d):
            c = m.in_channels
            return torch.randn(1, c, 8, 16, 16), f"randn(1, {c}, 8, 16, 16) for Conv3d({c}, ...)"
        if isinstance(m, nn.Embedding):
            n = m.num_embeddings
            return torch.randint(0, n, (2, 8)), f"token ids randint(0, {n}, (2, 8)) for Embedding({n}, ...)"
        if isinstance(m, nn.RNNBase):
            i = m.input_size
            shape = (2, 5, i) if m.batch_first else (5, 2, i)
            return torch.randn(*shape), f"randn{shape} for {type(m).__name__}({i}, ...)"
    # no standard layer (`x @ self.w`, `x * self.scale`): an input sized by the model's own tensors, the
    # first one its forward accepts
    tensors = [t for _, t in model.named_parameters()]
    for m in model.modules():
        tensors += [v for v in vars(m).values() if isinstance(v, torch.Tensor)]
    tried = set()
    for t in tensors[:20]:
        if t.dim() == 0 or t.shape[0] in tried:
            continue
        n = int(t.shape[0])
        tried.add(n)
        x = torch.randn(4, n)
        try:
            with torch.no_grad():
                model(x)
        except Exception:  # noqa: BLE001 - not this size
            continue
        return x, f"randn(4, {n}) (sized by a {tuple(t.shape)} tensor of the model)"
    return None, None


def run_model_only(torch, req, obs: Observer, ns: dict, tree: ast.Module, lines, info: dict) -> dict:
    """Fills `info` as it goes, so what was built is known even when a later step raises."""
    cls_name = req.get("model_class")
    key = req.get("model_key") or "model"
    hint = req.get("span")
    info["model_class"] = cls_name
    code = compile(_defs_only(tree), req["path"], "exec", dont_inherit=True)
    exec(code, ns)
    if not cls_name:
        classes = [n for n in tree.body if isinstance(n, ast.ClassDef) and _is_module_class(n)]
        called = {_call_name(c) for c in ast.walk(tree) if isinstance(c, ast.Call)}
        pick = next((c for c in classes if c.name in called), classes[0] if classes else None)
        if pick is None:
            chosen = _pick_optimizer_call(tree, lines, req)
            if chosen is not None and req.get("optimizer_alone"):
                # `Adam([], lr=0.1)` needs no model: build the optimizer call as written
                env = dict(ns)
                env.setdefault("torch", torch)
                env.setdefault("optim", torch.optim)
                env.setdefault("nn", torch.nn)
                info["constructed"] = "no model (the optimizer call alone)"
                _build_optimizer(torch, req, chosen, env, info)
                return info
            raise LookupError("no model class to build: the finding names none and the file defines none")
        cls_name = info["model_class"] = pick.name
    cls = ns.get(cls_name) if cls_name else None
    if cls is None and cls_name and "." in cls_name:
        short = cls_name.rsplit(".", 1)[-1]
        cls = ns.get(short) or getattr(torch.nn, short, None)
    if cls is None or not isinstance(cls, type) or not issubclass(cls, torch.nn.Module):
        raise LookupError(f"model class {cls_name!r} is not defined at the top level of the file")
    short = cls_name.rsplit(".", 1)[-1]
    # constructor arguments as written in the code
    model = None
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _call_name(node) == short:
            try:
                args = [eval(compile(ast.Expression(a), req["path"], "eval"), ns) for a in node.args]
                kwargs = {k.arg: eval(compile(ast.Expression(k.value), req["path"], "eval"), ns)
                          for k in node.keywords if k.arg}
                model = cls(*args, **kwargs)
                info["constructed"] = ast.get_source_segment(req["source"], node)
                info["constructed_line"] = node.lineno
                break
            except Exception:
                continue
    if model is None:
        model = cls()
        info["constructed"] = f"{short}() (defaults)"
    x, how = synth_input(torch, model)
    if x is None:
        raise LookupError(f"cannot infer an input for {short}: no Linear/Conv/Embedding/RNN layer found, "
                          "and no input sized by its own tensors runs its forward")
    info["input"] = how
    # the optimizer exactly as the code builds it
    opt_calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and _call_name(n) in OPTIMIZER_NAMES]
    chosen = None
    if hint:
        hsp = (hint["line"], hint["col"], hint["end_line"], hint["end_col"])
        inside = [c for c in opt_calls if _contains(_node_span(c, lines), hsp)]
        if inside:
            chosen = inside[-1]
    if chosen is None and req.get("optimizer_class"):
        want = req["optimizer_class"].rsplit(".", 1)[-1]
        chosen = next((c for c in opt_calls if _call_name(c) == want), None)
    if chosen is None and opt_calls:
        chosen = opt_calls[0]
    env = dict(ns)
    root = key.split(".")[0]
    if "." in key:
        holder = types.SimpleNamespace()
        setattr(holder, key.split(".", 1)[1].split(".")[0], model)
        env[root] = holder
    else:
        env[root] = model
    env.setdefault("torch", torch)
    env.setdefault("optim", torch.optim)
    env.setdefault("nn", torch.nn)
    if chosen is not None:
        # names the optimizer call uses for the model that the defs do not provide: the receiver of
        # `.parameters` (`self.net.parameters()`, `net.parameters`) and a bare first argument (`Adam(net)`)
        receivers = []
        for node in ast.walk(ast.Module(body=[ast.Expr(a) for a in chosen.args], type_ignores=[])):
            if isinstance(node, ast.Attribute) and node.attr in ("parameters", "named_parameters"):
                receivers.append(node.value)
        if chosen.args and isinstance(chosen.args[0], (ast.Name, ast.Attribute)):
            receivers.append(chosen.args[0])
        for r in receivers:
            if isinstance(r, ast.Name) and r.id not in env:
                env[r.id] = model
            elif isinstance(r, ast.Attribute) and isinstance(r.value, ast.Name) and r.value.id not in env:
                holder = types.SimpleNamespace()
                setattr(holder, r.attr, model)
                env[r.value.id] = holder
    opt = None
    if chosen is not None and req.get("fallback_optimizer"):
        try:
            opt = _build_optimizer(torch, req, chosen, env, info)
        except Exception as exc:  # noqa: BLE001 - the finding is not about the optimizer
            info["optimizer_error"] = f"{type(exc).__name__}: {exc}"
            opt = _fallback_sgd(torch, model, info, "the code's optimizer could not be built here")
    elif chosen is not None:
        opt = _build_optimizer(torch, req, chosen, env, info)
    if opt is None and "optimizer" not in info:
        opt = _fallback_sgd(torch, model, info, "no optimizer found in the code")
    model.train()
    for _ in range(obs.iterations):
        if opt is None:  # nothing registered to optimize (GP105 on a model whose only tensor is unregistered)
            model.zero_grad()
            out = model(x)
            while isinstance(out, (tuple, list)) and out:
                out = out[0]
            if isinstance(out, dict):
                out = next(iter(out.values()))
            out.float().pow(2).mean().backward()
            continue
        opt.zero_grad()
        out = model(x)
        while isinstance(out, (tuple, list)) and out:
            out = out[0]
        if isinstance(out, dict):
            out = next(iter(out.values()))
        loss = out.float().pow(2).mean()
        loss.backward()
        opt.step()
    return info


def _fallback_sgd(torch, model, info, why):
    if not any(True for _ in model.parameters()):
        info["optimizer"] = "none (the model has no registered parameters for an optimizer to hold)"
        return None
    info["optimizer"] = f"SGD(model.parameters(), lr=0.01) ({why})"
    return torch.optim.SGD(model.parameters(), lr=0.01)


def _pick_optimizer_call(tree, lines, req):
    hint = req.get("span")
    opt_calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and _call_name(n) in OPTIMIZER_NAMES]
    if hint:
        hsp = (hint["line"], hint["col"], hint["end_line"], hint["end_col"])
        inside = [c for c in opt_calls if _contains(_node_span(c, lines), hsp)]
        if inside:
            return inside[-1]
        on_line = [c for c in opt_calls if c.lineno <= hint["line"] <= (c.end_lineno or c.lineno)]
        if on_line:
            return on_line[-1]
    return None


def _build_optimizer(torch, req, chosen, env, info):
    """The optimizer call exactly as written, evaluated with the model bound to the names it uses."""
    info["optimizer"] = ast.get_source_segment(req["source"], chosen)
    info["optimizer_line"] = chosen.lineno
    try:
        func = eval(compile(ast.Expression(chosen.func), req["path"], "eval"), env)
    except Exception:
        func = getattr(torch.optim, _call_name(chosen), None)
    args = [eval(compile(ast.Expression(a), req["path"], "eval"), env) for a in chosen.args]
    kwargs = {}
    for k in chosen.keywords:
        if not k.arg:
            continue
        try:
            kwargs[k.arg] = eval(compile(ast.Expression(k.value), req["path"], "eval"), env)
        except Exception:
            if k.arg == "params":
                raise
            info.setdefault("dropped_arguments", []).append(k.arg)
    # run it "at" its own line so exceptions map back to the source
    return _at_line(req["path"], chosen.lineno, lambda: func(*args, **kwargs))


def _at_line(path, lineno, fn):
    """Call fn() from a frame whose code claims `path:lineno`, so tracebacks point at the user's line."""
    src = "\n" * (lineno - 1) + "__gp_result__ = __gp_fn__()"
    code = compile(src, path, "exec", dont_inherit=True)
    ns = {"__gp_fn__": fn}
    exec(code, ns)
    return ns["__gp_result__"]
