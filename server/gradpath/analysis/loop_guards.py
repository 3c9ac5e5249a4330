"""What a GP4 rule must know about an event before it may blame it (precision guards).

The flattened events of `loops.py` say what is called in which order; these helpers say whether the
objects involved are what the rule assumes:

- `scheduler_verdict`: is a scheduler that `sched.step()` steps a `torch.optim.lr_scheduler` one
  (only those wrap `optimizer.step` and warn)? From its binding (also through tuple unpacking,
  `accelerator.prepare(...)` and inlined calls), a visible subclass, the factories that return a
  `LambdaLR`, and the `isinstance` guards around the call.
- `share_iteration`: do two events run in one iteration of a loop, in the same call of the code
  holding them (not two functions called one after the other)?
- `is_dist_autograd_*`: `torch.distributed.autograd` backward passes and contexts, and
  `DistributedOptimizer` steps, which keep gradients per context and never touch `.grad`.
- `training_or_eval_loop`: a loop that trains or evaluates (GP405): a backward or an optimizer step
  in it (or in a loop around it), or an iteration over a data loader.

Nothing here imports torch or the frameworks; names are matched by qualified name.
"""
from __future__ import annotations

import ast
import re

from gradpath.analysis import frameworks
from gradpath.analysis.facts import key_of

_TORCH_SCHED = "torch.optim.lr_scheduler."
# not schedulers themselves (bases that third-party schedulers do not share, helpers)
_TORCH_SCHED_BASES = frozenset({"torch.optim.lr_scheduler._LRScheduler", "torch.optim.lr_scheduler.LRScheduler"})
# factories that return a torch.optim.lr_scheduler.LambdaLR (transformers' and diffusers' schedules)
_LAMBDA_FACTORY = re.compile(r"^(transformers|diffusers)(\.[\w.]+)?\.get_\w*schedul\w*$")
# `a, b, c = accelerator.prepare(x, y, z)`: each name is the object passed at its position
_PASS_THROUGH = frozenset({"prepare", "prepare_scheduler", "prepare_optimizer"})


# -- schedulers -------------------------------------------------------------------------------------

def _class_verdict(sym, qn: str | None, seen=frozenset()) -> bool | None:
    """True for a torch lr_scheduler class (or a class of this file deriving from one), False for
    another known class, None when unknown."""
    if not qn:
        return None
    if qn.startswith(_TORCH_SCHED):
        return True
    info = sym.classes.get(qn)
    if info is not None and qn not in seen:
        verdicts = [_class_verdict(sym, b, seen | {qn}) for b in info.bases if b]
        if any(v is True for v in verdicts):
            return True
        if all(v is False for v in verdicts) or not info.bases:
            return False
        return None
    if qn in sym.classes or qn in sym.functions:
        return False
    return False if "." in qn else None


def class_is_torch_scheduler(sym, name: str) -> bool:
    """A class of this file that derives from a torch.optim.lr_scheduler class."""
    return _class_verdict(sym, name) is True


def _value_verdict(ctx, lf, value, scope, line: int, depth: int = 0) -> bool | None:
    sym = ctx.symbols
    if not isinstance(value, ast.Call) or depth > 4:
        return None
    qn = sym.qualname(value.func)
    if frameworks.lightning_optimizer_call(value) == "scheduler" and scope is not None and scope.class_name \
            and scope.class_name in sym.classes:
        # `sch = self.lr_schedulers()`: what the LightningModule's configure_optimizers builds
        return frameworks.lightning_schedulers_are_torch(sym, sym.classes[scope.class_name].node)
    if qn:
        if _LAMBDA_FACTORY.match(qn):
            return True
        if qn.startswith(_TORCH_SCHED):
            return True
        if qn in sym.classes:
            return _class_verdict(sym, qn)
        if qn in sym.functions:
            return _returned_verdict(ctx, lf, value, None, scope, depth)  # a helper of this file
        if "." in qn and qn.split(".")[0] not in ("torch",):
            # an imported class or factory of another library (timm's Scheduler, create_scheduler)
            return False if qn.rsplit(".", 1)[-1][:1].isupper() or "schedul" in qn.lower() else None
    return None


def _returned_verdict(ctx, lf, call, elt, scope, depth: int) -> bool | None:
    """What a helper of this file returns (the element `elt` = (index, count) of the tuple it
    returns, or the whole value when None): a torch scheduler in every `return` (True), not one in
    some (False), or unknown."""
    if depth > 3 or not isinstance(call.func, ast.Name):
        return None
    fn = lf._resolve_function(call.func.id, scope)
    fscope = lf.scope_by_node.get(id(fn)) if fn is not None else None
    if fscope is None:
        return None
    verdicts = []
    for st in lf.scope_stmts(fscope):
        if not isinstance(st, ast.Return):
            continue
        v = st.value
        if elt is not None:
            i, n = elt
            if not isinstance(v, (ast.Tuple, ast.List)) or len(v.elts) != n:
                return None
            v = v.elts[i]
        k = key_of(v)
        arg = _argument_for(fn, call, k) if k is not None and "." not in k else None
        if arg is not None:
            # a parameter handed back (`return epoch, model, optimizer, scheduler` of a resume
            # helper): what the caller passed
            ak = key_of(arg)
            verdicts.append(scheduler_verdict(ctx, lf, ak, scope, call.lineno - 1, depth + 1) if ak else
                            _value_verdict(ctx, lf, arg, scope, call.lineno, depth + 1))
        elif k is not None:
            verdicts.append(scheduler_verdict(ctx, lf, k, fscope, st.lineno, depth + 1))
        else:
            verdicts.append(_value_verdict(ctx, lf, v, fscope, st.lineno, depth + 1))
    if not verdicts:
        return None
    if all(x is True for x in verdicts):
        return True
    return False if any(x is False for x in verdicts) else None


def _argument_for(fn, call, name: str):
    """The argument `call` passes for parameter `name` of `fn` (positional or keyword), or None."""
    a = fn.args
    params = [p.arg for p in a.posonlyargs + a.args]
    if name in params:
        i = params.index(name)
        if i < len(call.args) and not any(isinstance(x, ast.Starred) for x in call.args[:i + 1]):
            return call.args[i]
    for kw in call.keywords:
        if kw.arg == name:
            return kw.value
    return None


def _latest_binding(lf, key: str, scope, line: int):
    """(value, statement) of the last assignment to `key` in `scope` before `line`, through tuple
    unpacking of a pass-through call (`m, o, s = accelerator.prepare(m, o, s)`) or a tuple."""
    best = None
    for st in lf.scope_stmts(scope):
        if not isinstance(st, (ast.Assign, ast.AnnAssign)) or st.value is None or st.lineno > line:
            continue
        targets = st.targets if isinstance(st, ast.Assign) else [st.target]
        for t in targets:
            if key_of(t) == key:
                best = (st.value, st)
            elif isinstance(t, (ast.Tuple, ast.List)):
                names = [key_of(e) for e in t.elts]
                if key not in names or any(isinstance(e, ast.Starred) for e in t.elts):
                    continue
                i = names.index(key)
                v = st.value
                if isinstance(v, (ast.Tuple, ast.List)) and len(v.elts) == len(names):
                    best = (v.elts[i], st)
                elif isinstance(v, ast.Call) and isinstance(v.func, ast.Attribute) and \
                        v.func.attr in _PASS_THROUGH and len(v.args) == len(names) and not v.keywords:
                    best = (("pass", v.args[i]), st)
                elif isinstance(v, ast.Call) and isinstance(v.func, ast.Name):
                    best = (("ret", v, i, len(names)), st)  # `opt, sched = get_train_utils(...)`
                else:
                    best = (None, st)  # something unpacked from a call we do not follow
    return best


def scheduler_verdict(ctx, lf, key: str, scope, line: int, depth: int = 0) -> bool | None:
    """Is `key` (seen from `scope` at `line`) a torch.optim.lr_scheduler scheduler?"""
    if depth > 4 or not key:
        return None
    s = scope
    head = key.split(".")[0]
    while s is not None:
        if s.kind != "module" and head != "self" and head in _params(s.node):
            return None  # a parameter: whatever the caller passes (the caller's unit resolves it)
        hit = _latest_binding(lf, key, s, line if s is scope else 10 ** 9)
        if hit is not None:
            value, st = hit
            if isinstance(value, tuple) and value[0] == "ret":
                return _returned_verdict(ctx, lf, value[1], value[2:], s, depth)
            if isinstance(value, tuple):
                k = key_of(value[1])
                return scheduler_verdict(ctx, lf, k, s, st.lineno - 1, depth + 1) if k else None
            return _value_verdict(ctx, lf, value, s, line, depth)
        if key.startswith("self.") and s.class_name:
            v = lf.binding_value(key, s)
            return _value_verdict(ctx, lf, v, s, line, depth) if v is not None else None
        s = s.parent
    return None


def isinstance_verdict(ctx, ev, recv_key: str | None) -> bool | None:
    """What the `if isinstance(sched, C)` branches around event `ev` say about the receiver: False
    when it runs only for a class that is not torch's (or not for torch's base class), True when
    it runs only for a torch scheduler class, None when no guard names it."""
    if not recv_key:
        return None
    sym = ctx.symbols
    out = None
    for f in ev.path:
        if f[0] != "if" or not isinstance(f[1], ast.If):
            continue
        test, branch = f[1].test, f[2]
        negate = False
        if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
            test, negate = test.operand, True
        if not (isinstance(test, ast.Call) and isinstance(test.func, ast.Name) and test.func.id == "isinstance"
                and len(test.args) == 2 and key_of(test.args[0]) == recv_key):
            continue
        classes = test.args[1].elts if isinstance(test.args[1], ast.Tuple) else [test.args[1]]
        qns = [sym.qualname(c) for c in classes]
        verdicts = [_class_verdict(sym, q) for q in qns]
        inside = (branch == 0) != negate  # the receiver is an instance of one of the classes
        if inside:
            if all(v is False for v in verdicts):
                return False
            if all(v is True for v in verdicts):
                out = True
        elif any(q in _TORCH_SCHED_BASES for q in qns):
            return False  # not a torch scheduler at all
    return out


# -- iterations -------------------------------------------------------------------------------------

def _calls(ev) -> list[int]:
    return [id(f[1]) for f in ev.path if f[0] == "call"]


def share_iteration(a, b) -> bool:
    """Do events a and b run in one iteration of a loop (or, with no loop around either, in one run
    of the same code), in the same call of the code that holds them? A scheduler stepped once before
    the training loop and an optimizer stepped in it share no iteration; neither do two functions
    called one after the other from a loop (each with its own optimizer and scheduler)."""
    ca, cb = _calls(a), _calls(b)
    n = min(len(ca), len(cb))
    if ca[:n] != cb[:n]:
        return False
    la, lb = a.loops(), b.loops()
    if not la and not lb:
        return True
    return any(any(x is y for y in lb) for x in la)


def torch_scheduler_event(ctx, lf, unit, ev) -> bool:
    """Is the scheduler that event `ev` (a `sched` event of `unit`) steps known to be torch's?"""
    call = ev.node
    recv = call.func.value if isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) else None
    guard = isinstance_verdict(ctx, ev, key_of(recv))
    if guard is not None:
        return guard
    first_call = next((f[1] for f in ev.path if f[0] == "call"), None)
    line = first_call.lineno if first_call is not None else call.lineno
    key = ev.key or ""
    if key and ":" not in key and scheduler_verdict(ctx, lf, key, unit.scope, line) is True:
        return True
    own = lf.scope_by_node.get(id(ev.fn)) if ev.fn is not None else None
    rk = key_of(recv) if recv is not None else None
    if own is not None and own is not unit.scope and rk:
        return scheduler_verdict(ctx, lf, rk, own, call.lineno) is True
    return False


def _params(fn) -> set[str]:
    a = getattr(fn, "args", None)
    if a is None:
        return set()
    return {p.arg for p in a.posonlyargs + a.args + a.kwonlyargs + [x for x in (a.vararg, a.kwarg) if x]}


# -- distributed autograd -----------------------------------------------------------------------------

_DIST_AUTOGRAD = "torch.distributed.autograd."
_DIST_OPT = ("torch.distributed.optim.DistributedOptimizer", "torch.distributed.optim.optimizer.DistributedOptimizer")


def is_dist_autograd_backward(sym, call) -> bool:
    """`dist_autograd.backward(context_id, [loss])`: gradients stored per context, not in `.grad`."""
    return (sym.qualname(call.func) or "") == _DIST_AUTOGRAD + "backward"


def is_dist_autograd_context(sym, expr) -> bool:
    """`with dist_autograd.context() as context_id:`."""
    return isinstance(expr, ast.Call) and (sym.qualname(expr.func) or "") == _DIST_AUTOGRAD + "context"


def is_distributed_optimizer(sym, value) -> bool:
    return isinstance(value, ast.Call) and (sym.qualname(value.func) or "") in _DIST_OPT


# -- training and evaluation loops (GP405) ------------------------------------------------------------------

_LOADER_NAME = re.compile(r"(?i)(loader|dataloader|data_loader|batches|batch_iter|train_iter|val_iter|dataset)\w*$")
_LOADER_QN = ("torch.utils.data.DataLoader", "torch.utils.data.dataloader.DataLoader")
_WRAPPERS = frozenset({"enumerate", "tqdm", "iter", "zip", "islice", "trange"})


def iterates_loader(ctx, lf, loop, scope) -> bool:
    """`for x, y in loader`, `enumerate(train_loader)`, `tqdm(dataloader)`, a name bound to a
    `torch.utils.data.DataLoader(...)`."""
    if not isinstance(loop, (ast.For, ast.AsyncFor)):
        return False
    todo = [loop.iter]
    while todo:
        it = todo.pop()
        if isinstance(it, ast.Call):
            f = it.func
            name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
            if (ctx.symbols.qualname(f) or "") in _LOADER_QN:
                return True
            if name in _WRAPPERS or (ctx.symbols.qualname(f) or "").endswith(".tqdm"):
                todo += list(it.args[:2])
            continue
        k = key_of(it)
        if not k:
            continue
        if _LOADER_NAME.search(k.rsplit(".", 1)[-1]):
            return True
        v = lf.binding_value(k, scope)
        if isinstance(v, ast.Call) and (ctx.symbols.qualname(v.func) or "") in _LOADER_QN:
            return True
    return False


def training_or_eval_loop(ctx, lf, unit, loop) -> bool:
    """The accumulation's loop trains (a backward with gradients or an optimizer step in it, or in
    a loop around it) or evaluates (it, or a loop around it, iterates over a data loader)."""
    outer = [loop]
    for a in ctx.facts.ancestors(loop):
        if a is unit.scope.node:
            break
        if isinstance(a, (ast.For, ast.AsyncFor, ast.While)):
            outer.append(a)
    for e in (unit.events if unit.relevant else ()):
        if (e.kind == "backward" and not e.nograd) or (e.kind == "step" and e.target == "optimizer"):
            if any(e.in_loop(l) for l in outer):
                return True
    return any(iterates_loader(ctx, lf, l, unit.scope) for l in outer)


# -- calls that are not what their name suggests (or more than it) ---------------------------------------

DIST = "dist"  # path frame of `with dist_autograd.context():` (see loops.py)
_ENGINE_NAME = re.compile(r"(?i)engine$")
_HELPER_STEP = re.compile(r"(?i)optimi[sz]e|(train|training|update|optim|learn|learner|sgd|opt)_step$")


def is_engine(lf, rk: str | None, scope) -> bool:
    """A DeepSpeed-style engine (`model_engine, optimizer, _, _ = deepspeed.initialize(...)`): its
    `backward` and `step` handle accumulation boundaries and clear gradients themselves."""
    if not rk:
        return False
    if _ENGINE_NAME.search(rk.rsplit(".", 1)[-1]):
        return True
    hit = _latest_binding(lf, rk, scope, 10 ** 9)
    if hit is None:
        return False
    st = hit[1]
    v = st.value
    if isinstance(v, ast.Call):
        qn = lf.sym.qualname(v.func) or ""
        if "deepspeed" in qn.lower() and qn.endswith("initialize"):
            targets = st.targets if isinstance(st, ast.Assign) else [st.target]
            return any(isinstance(t, ast.Tuple) and t.elts and key_of(t.elts[0]) == rk for t in targets)
    return False


def classify_method_call(lf, call, m: str, rk: str | None, scope, frames) -> str | None:
    """For a method call that no class of this file defines: "skip" when a backward is not local
    autograd (`dist_autograd.backward(ctx, [loss])`, any backward inside `with
    dist_autograd.context()`, a DeepSpeed engine's `backward`), "backward" for a method whose name
    ends in `backward` on a helper object (`policy.reinforce_backward()`: it computes gradients),
    "opaque" for `*optimize*` / `*_step` methods of a helper object (`agent.optimize_model()`,
    `trainer.train_step(batch)`: they may clear, step or both), None otherwise."""
    sym = lf.sym
    if m in ("backward", "manual_backward"):
        if is_dist_autograd_backward(sym, call) or any(f[0] == DIST for f in frames):
            return "skip"
        if m == "backward" and is_engine(lf, rk, scope):
            return "skip"
        return None
    if rk is None or rk == "self" or m.startswith("_") or (sym.qualname(call.func) or "").startswith("torch."):
        return None
    if m.endswith("backward") and not m.startswith(("register", "save", "mark", "set", "get", "needs")):
        # (ctx.save_for_backward, register_full_backward_hook: not a backward pass)
        return "backward"
    if m not in ("step", "optimizer_step", "zero_grad") and _HELPER_STEP.search(m) and \
            not lf.is_scheduler(rk, scope):
        return "opaque"
    return None


def dist_step(lf, rk: str, scope, frames) -> bool:
    """`opt.step(context_id)` of a `DistributedOptimizer`, or any step inside `with
    dist_autograd.context()`: it reads the context's gradients, never `.grad`."""
    return any(f[0] == DIST for f in frames) or is_distributed_optimizer(lf.sym, lf.binding_value(rk, scope))


# -- GP405: values that cannot carry a graph across iterations --------------------------------------------

_PLAIN_RETURNS = frozenset({"float", "int", "bool", "str", "None", "np.ndarray", "numpy.ndarray", "ndarray",
                            "list[float]", "tuple[float, float]", "dict"})


def returns_plain_value(fn) -> bool:
    """A function of this file annotated to return a plain number or a numpy array."""
    r = getattr(fn, "returns", None)
    if r is None:
        return False
    try:
        text = ast.unparse(r)
    except Exception:  # pragma: no cover - unparse of a parsed annotation does not fail
        return False
    return text in _PLAIN_RETURNS


def numpy_accumulator(ctx, init) -> bool:
    """`acc = np.zeros(n)` / `np.array(...)`: adding a tensor that requires grad to it raises or
    converts; it never keeps an autograd graph."""
    if isinstance(init, ast.Call):
        qn = ctx.symbols.qualname(init.func) or ""
        return qn.startswith(("numpy.", "np."))
    return False


def rebound_in(loop, name: str) -> bool:
    """Is `name` bound anywhere inside `loop` (assigned, a loop target, `with ... as`)?"""
    for n in ast.walk(loop):
        if isinstance(n, ast.Name) and n.id == name and isinstance(n.ctx, ast.Store):
            return True
    return False


def backwarded_in_loop(ctx, loop, names) -> bool:
    """Is each name backwarded (`name.backward()` with no `retain_graph`) in `loop`'s own body, not under
    a condition? Its graph is freed there, so a later use of what piled up (returned, stacked) cannot
    mean to backward through it again: what is kept alive is waste, not intent."""
    left = set(names)
    for n in ast.walk(loop):
        if not (isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "backward"
                and isinstance(n.func.value, ast.Name) and n.func.value.id in left):
            continue
        if any(k.arg == "retain_graph" for k in n.keywords) or len(n.args) > 1:
            continue
        cond = False
        for a in ctx.facts.ancestors(n):
            if a is loop:
                break
            if isinstance(a, (ast.If, ast.For, ast.AsyncFor, ast.While, ast.Try, ast.FunctionDef,
                              ast.AsyncFunctionDef, ast.Lambda)):
                cond = True
                break
        if not cond:
            left.discard(n.func.value.id)
    return not left


def in_module_forward(ctx, scope) -> bool:
    """A module's `forward` (or a method it is named like: `_forward*`, `forward_*`)."""
    if scope.kind != "method" or not scope.class_name:
        return False
    name = scope.name.lstrip("_")
    return (name == "forward" or name.startswith("forward_")) and ctx.symbols.is_module_class(scope.class_name)


# -- GP407: a backward that trains the model ------------------------------------------------------------

def steps_model_after(events, b, m: str, trained_by) -> bool:
    """Does an optimizer step that may update model `m` follow backward `b` in the same iteration
    (the innermost loop around `b`; with no loop, later in the same code)? A backward run only to
    look at gradients (plotting their norms) trains nothing."""
    from gradpath.analysis.loops import exclusive, same_model  # loops imports this module
    loops = b.loops()
    inner = loops[-1] if loops else None
    after = False
    for e in events:
        if e is b:
            after = True
            continue
        if e.kind != "step" or e.target != "optimizer" or exclusive(e, b):
            continue
        if not any(e is s for s in trained_by):
            continue
        if e.models and not any(same_model(m, x) or same_model(x, m) for x in e.models):
            continue
        if inner is not None and e.in_loop(inner):
            return True
        if inner is None and after:
            return True
    return False


def rebuilt_in_loop(ctx, m: str, loop) -> bool:
    """`model = Net()` (or `copy.deepcopy(...)`) inside `loop`: each iteration starts from a fresh
    module, in training mode."""
    from gradpath.analysis.loops import display
    name = display(m)
    for b in ctx.facts.models:
        if b.key != name or b.origin == "derived":
            continue
        if any(a is loop for a in ctx.facts.ancestors(b.stmt)):
            return True
    return False
