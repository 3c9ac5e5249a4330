"""In-file modelling the dataflow asks about, kept out of dataflow.py: what an `nn.Sequential` holds
when it is filled after construction or given layers by reference, which module a constructor
parameter holds when its default is a module (`def __init__(self, loss=nn.CrossEntropyLoss())`),
what `exp` of a log-probability is, and whether a reduction of probabilities can underflow to 0.

Pure: no torch, no pygls. Functions take the analysis pieces they need (facts, symbols, a flow).
"""
from __future__ import annotations

import ast

from gradpath.analysis.facts import key_of
from gradpath.analysis.symbols import canonical, is_torch_module_qualname


# -- nn.Sequential ---------------------------------------------------------------------------------
def sequential_layers(flow, mod, env, fr) -> list:
    """The layer constructions of a Sequential value, in order: its arguments (a layer given as a
    name or `self.attr` is followed to its construction) and the layers added afterwards in the
    same function (`seq.add_module(name, layer)`, `seq.append(layer)`, `seq.extend([...])`).
    An argument that cannot be followed is kept as is (the caller treats it as unknown)."""
    ctor = mod.module_ctor
    out = []
    for a in mod.module_layers:
        out.append(_follow_layer(flow, a, env, fr))
    if isinstance(ctor, ast.Call):
        out += [_follow_layer(flow, a, env, fr) for a in _added_later(flow.facts, ctor)]
    return out


def _follow_layer(flow, node, env, fr):
    if isinstance(node, (ast.Name, ast.Attribute)):
        k = key_of(node)
        if k:
            v = env.get(k) if env is not None else None
            if v is None and k.startswith("self.") and fr is not None and fr.class_name:
                init = flow._method_scope(fr.class_name, "__init__")
                b = flow.facts.model_at(k, init) if init is not None else None
                if b is not None and isinstance(b.value, ast.Call):
                    return b.value
            if v is None:
                try:
                    v = flow._lookup(k, node, env or {}, fr)
                except Exception:
                    v = None
            if v is not None and getattr(v, "module_ctor", None) is not None:
                return v.module_ctor
    return node


def _added_later(facts, ctor: ast.Call) -> list:
    """Layers added to the Sequential built by `ctor` after it is assigned (same function)."""
    par = facts.parents.get(id(ctor))
    if not isinstance(par, ast.Assign) or len(par.targets) != 1:
        return []
    target = key_of(par.targets[0])
    if not target:
        return []
    scope = facts.scope_of(par)
    calls = []
    for n in scope.walk():
        if not (isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)) or n.lineno <= par.lineno:
            continue
        if key_of(n.func.value) != target:
            continue
        m = n.func.attr
        if m == "add_module" and len(n.args) >= 2:
            calls.append((n.lineno, n.col_offset, [n.args[1]]))
        elif m == "append" and n.args:
            calls.append((n.lineno, n.col_offset, [n.args[0]]))
        elif m == "extend" and n.args and isinstance(n.args[0], (ast.List, ast.Tuple)):
            calls.append((n.lineno, n.col_offset, list(n.args[0].elts)))
    return [x for _l, _c, xs in sorted(calls, key=lambda t: (t[0], t[1])) for x in xs]


# -- module-valued constructor defaults ---------------------------------------------------------------
def default_module(sym, tree, cls: str | None, attr: str, cache: dict | None = None):
    """`self.<attr> = <param>` in `cls.__init__` where the parameter's default constructs a module
    (`loss=nn.CrossEntropyLoss()`) and no construction of `cls` in the file passes that parameter:
    (the default's construction, its class qualname). None otherwise. `cache`: a dict the caller
    keeps for one analysis (the walks of each __init__ and of the file's calls are kept there)."""
    seen = set()
    while cls and cls in sym.classes and cls not in seen:
        seen.add(cls)
        node = sym.classes[cls].node
        init = next((n for n in node.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
                     and n.name == "__init__"), None)
        if init is not None:
            got = _default_in(sym, tree, cls, init, attr, cache)
            if got is not None:
                return got if got is not False else None
        cls = next((b for b in sym.classes[cls].bases if b in sym.classes), None)
    return None


def _walked(cache: dict | None, key, compute):
    if cache is None:
        return compute()
    got = cache.get(key)
    if got is None:
        got = cache[key] = compute()
    return got


def _default_in(sym, tree, cls, init, attr, cache=None):
    pname = None
    # (key, assignment) of the one-target assignments of __init__, in ast.walk order
    assigns = _walked(cache, ("assigns", id(init)), lambda: [
        (key_of(n.targets[0]), n) for n in ast.walk(init) if isinstance(n, ast.Assign) and len(n.targets) == 1])
    target = f"self.{attr}"
    for k, n in assigns:
        if k == target:
            if isinstance(n.value, ast.Name):
                if pname is not None and pname != n.value.id:
                    return False
                pname = n.value.id
            else:
                return False
    if pname is None:
        return None
    args = init.args
    pos = list(args.posonlyargs) + list(args.args)
    defaults = dict(zip([a.arg for a in pos[len(pos) - len(args.defaults):]], args.defaults))
    defaults.update({a.arg: d for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is not None})
    d = defaults.get(pname)
    if not isinstance(d, ast.Call):
        return False
    qn = canonical(sym.qualname(d.func) or "")
    if not is_torch_module_qualname(qn):
        return False
    index = next((i for i, a in enumerate(pos) if a.arg == pname), None)
    if _passed_somewhere(sym, tree, cls, pname, index, cache):
        return False
    return d, qn


def _passed_somewhere(sym, tree, cls, pname, index, cache=None) -> bool:
    """A construction of `cls` (or a subclass) passes the parameter, by keyword or position, or
    with *args/**kwargs."""
    from gradpath.analysis.modclass import class_chain
    subs = {c for c in sym.classes if cls in class_chain(sym, c)}
    # (only calls of a plain name can construct a class of the file: see _passes)
    calls = _walked(cache, ("named_calls", id(tree)), lambda: [
        n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)])
    return any(_passes(n, subs, pname, index) for n in calls)


def _passes(n, subs, pname, index) -> bool:
    if not isinstance(n, ast.Call):
        return False
    f = n.func
    name = f.id if isinstance(f, ast.Name) else None
    if name not in subs:
        return False
    if any(k.arg == pname or k.arg is None for k in n.keywords):
        return True
    if any(isinstance(a, ast.Starred) for a in n.args):
        return True
    return index is not None and len(n.args) >= index  # index counts self: args[index - 1]


# -- probabilities -------------------------------------------------------------------------------------
_LOG_ACTS = {"log_softmax": "softmax", "logsigmoid": "sigmoid", "LogSoftmax": "softmax", "LogSigmoid": "sigmoid"}


def exp_of_logprob(v) -> str | None:
    """`exp(log_softmax(x))` is a softmax and `exp(logsigmoid(x))` a sigmoid: which one, if `v` (the
    exp's argument) is exactly such a log-probability."""
    if v.shape != "logprob" or not isinstance(v.src, ast.Call):
        return None
    f = v.src.func
    name = f.attr if isinstance(f, ast.Attribute) else (f.id if isinstance(f, ast.Name) else "")
    return _LOG_ACTS.get(name)


def _int_arg(call: ast.Call | None, pos: int, kw: str = "dim"):
    if not isinstance(call, ast.Call):
        return None
    for k in call.keywords:
        if k.arg == kw:
            return _literal_int(k.value)
    if len(call.args) > pos:
        return _literal_int(call.args[pos])
    return None


def _literal_int(n):
    if isinstance(n, ast.UnaryOp) and isinstance(n.op, ast.USub) and isinstance(n.operand, ast.Constant):
        return -n.operand.value if isinstance(n.operand.value, int) else None
    if isinstance(n, ast.Constant) and isinstance(n.value, int) and not isinstance(n.value, bool):
        return n.value
    return None


def prob_reduce_shape(recv, node: ast.Call, method: bool) -> str:
    """The shape of a sum/mean of probabilities: "pos" when it cannot be 0 (a softmax summed over
    its own dimension, or over everything), "nonneg" when it can underflow to exactly 0 in float32
    (sigmoids, or softmax entries of one class summed over the batch: `probs.sum(0) / T`)."""
    if recv.act != "softmax":
        return "nonneg"
    has_dim = bool(node.args[0:1] if method else node.args[1:2]) or any(k.arg in ("dim", "axis") for k in node.keywords)
    if not has_dim:
        return "pos"
    rd = _int_arg(node, 0 if method else 1)
    act = recv.act_node
    if isinstance(act, ast.Call) and isinstance(act.func, ast.Attribute) and act.func.attr == "softmax" \
            and not _is_fn(act):
        sd = _int_arg(act, 0)
    else:
        sd = _int_arg(act, 1)
    if rd is not None and sd is not None and rd == sd:
        return "pos"
    if rd is None or sd is None:
        return "pos"  # cannot tell the dimensions apart: keep the old, quiet answer
    return "nonneg"


def _is_fn(call: ast.Call) -> bool:
    """`torch.softmax(x, 1)` / `F.softmax(x, dim=1)` (a function) vs `x.softmax(1)` (a method)."""
    f = call.func
    base = f.value if isinstance(f, ast.Attribute) else None
    return isinstance(base, ast.Name) and base.id in ("torch", "F", "functional", "nn") or \
        isinstance(base, ast.Attribute) and base.attr in ("functional", "special")


# -- a model handed to a call the analysis cannot see ---------------------------------------------------
def opaque_forward(facts, call: ast.AST, later_backwards) -> bool:
    """`loss = compute_loss(model, x)` followed by `loss.backward()`: a call the analysis cannot see
    that is given the model and whose result is backwarded runs the model's forward (a
    `train_epoch(model, opt)` whose result nobody backwards is not one). `later_backwards` are the
    `.backward()` call nodes that follow the call."""
    if not isinstance(call, ast.Call):
        return False
    par = facts.parents.get(id(call))
    names = set()
    if isinstance(par, ast.Assign):
        for t in par.targets:
            if isinstance(t, ast.Name):
                names.add(t.id)
            elif isinstance(t, ast.Tuple):
                names |= {e.id for e in t.elts if isinstance(e, ast.Name)}
    for b in later_backwards:
        if not (isinstance(b, ast.Call) and isinstance(b.func, ast.Attribute) and b.func.attr == "backward"):
            continue
        recv = b.func.value
        while isinstance(recv, ast.Call) and isinstance(recv.func, ast.Attribute):  # loss.mean().backward()
            recv = recv.func.value
        if recv is call or isinstance(recv, ast.Name) and recv.id in names:
            return True
    return False
