"""Training loops that a framework runs: the user writes the body, the framework the loop.

Recognised by qualified names only (nothing here imports a framework):
- Lightning (`pytorch_lightning` / `lightning`): a LightningModule's `training_step` is one iteration
  of the training loop. With automatic optimization Lightning clears, backwards the returned loss and
  steps, so the body is not a GP4 loop but its returned loss is backwarded (GP201). With manual
  optimization (`self.automatic_optimization = False`) the body clears, backwards
  (`self.manual_backward`) and steps itself: a loop body for GP401-GP404, counted by `batch_idx`.
  `validation_step` / `test_step` / `predict_step` run under `torch.no_grad()` in eval mode.
- ignite: a function given to `Engine(fn)` is the body of the engine's loop, counted by
  `engine.state.iteration` (1 on the first call).
- transformers (and trl) `Trainer` subclasses: the loss `compute_loss` returns is backwarded by the
  Trainer; the Trainer clears and steps. (An overridden `prediction_step` runs in eval mode but
  not under no_grad unless it says so: it is not treated as an evaluation body.)
- accelerate: `with accelerator.accumulate(model):` skips the prepared optimizers' `step()` and
  `zero_grad()` on non-sync micro-steps (but not `model.zero_grad()`); `accelerator.backward(loss)`
  is a backward; `accelerator.prepare(...)` returns the objects it was given.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass

LIGHTNING_ROOTS = ("pytorch_lightning", "lightning")
HF_ROOTS = ("transformers", "trl")
IGNITE_ENGINES = {"ignite.engine.Engine", "ignite.engine.engine.Engine", "ignite.engine.DeterministicEngine",
                  "ignite.engine.deterministic.DeterministicEngine"}
ACCELERATORS = {"accelerate.Accelerator", "accelerate.accelerator.Accelerator"}
EVAL_HOOKS = {"validation_step", "test_step", "predict_step"}

# a framework body that is a loop of its own (GP4 rules treat the function as one iteration)
LOOP_BODY = "loop"
# the returned value is backwarded by the framework (GP201 applies to it)
LOSS_BODY = "loss"
# runs under torch.no_grad() in eval mode
EVAL_BODY = "eval"


@dataclass(frozen=True)
class Body:
    role: str  # loop | loss | eval
    framework: str  # lightning | ignite | transformers
    fn: ast.AST
    counter: str | None = None  # the iteration counter's source text (`batch_idx`)
    counter_start: int = 0  # its value on the first iteration


def is_lightning_module_qualname(qn: str | None) -> bool:
    return bool(qn) and qn.split(".")[0] in LIGHTNING_ROOTS and qn.rsplit(".", 1)[-1] == "LightningModule"


def is_hf_trainer_qualname(qn: str | None) -> bool:
    return bool(qn) and qn.split(".")[0] in HF_ROOTS and qn.rsplit(".", 1)[-1].endswith("Trainer")


def class_framework(sym, name: str, _seen: frozenset = frozenset()) -> str | None:
    """"lightning" / "transformers" for a class of this file deriving (maybe through other local
    classes) from a LightningModule or a transformers/trl Trainer."""
    info = sym.classes.get(name)
    if info is None or name in _seen:
        return None
    for i, b in enumerate(info.bases):
        if not b and i < len(info.node.bases):
            b = ast.unparse(info.node.bases[i])  # a relative import: only the resolver knows it
        if is_lightning_module_qualname(b):
            return "lightning"
        if is_hf_trainer_qualname(b):
            return "transformers"
        if b in sym.classes:
            r = class_framework(sym, b, _seen | {name})
            if r:
                return r
        # an imported base the resolver followed to its own bases (`class GRPOTrainer(BaseTrainer)`)
        for rb in getattr(sym, "resolved_bases", {}).get(b, ()):
            if is_lightning_module_qualname(rb):
                return "lightning"
            if is_hf_trainer_qualname(rb):
                return "transformers"
    return None


def manual_optimization(sym, name: str, _seen: frozenset = frozenset()) -> bool:
    """`self.automatic_optimization = False` in a method, `automatic_optimization = False` in the
    class body, or a property returning False (own class or a local base)."""
    info = sym.classes.get(name)
    if info is None or name in _seen:
        return False
    for st in info.node.body:
        if isinstance(st, (ast.Assign, ast.AnnAssign)):
            targets = st.targets if isinstance(st, ast.Assign) else [st.target]
            if any(isinstance(t, ast.Name) and t.id == "automatic_optimization" for t in targets):
                return isinstance(st.value, ast.Constant) and st.value.value is False
        if isinstance(st, (ast.FunctionDef, ast.AsyncFunctionDef)):
            if st.name == "automatic_optimization":
                rets = [n for n in ast.walk(st) if isinstance(n, ast.Return)]
                return bool(rets) and all(isinstance(r.value, ast.Constant) and r.value.value is False
                                          for r in rets)
            for n in ast.walk(st):
                if isinstance(n, ast.Assign) and any(
                        isinstance(t, ast.Attribute) and t.attr == "automatic_optimization"
                        and isinstance(t.value, ast.Name) and t.value.id == "self" for t in n.targets):
                    if isinstance(n.value, ast.Constant) and n.value.value is False:
                        return True
    return any(manual_optimization(sym, b, _seen | {name}) for b in info.bases if b in sym.classes)


# methods of a LightningModule / Trainer that neither clear, step, backward nor switch modes
LIGHTNING_QUIET_METHODS = frozenset({
    "optimizers", "lr_schedulers", "log", "log_dict", "print", "save_hyperparameters", "all_gather",
    "toggle_optimizer", "untoggle_optimizer", "clip_gradients", "configure_gradient_clipping"})
HF_QUIET_METHODS = frozenset({"log", "_prepare_inputs", "_prepare_input", "compute_loss_context_manager",
                              "autocast_smart_context_manager", "is_world_process_zero", "store_flos"})


def framework_method(sym, cls: str, name: str) -> bool:
    """A method the framework base class provides that has no GP4 effect (and no own def here)."""
    fw = class_framework(sym, cls)
    if fw == "lightning":
        return name in LIGHTNING_QUIET_METHODS
    if fw == "transformers":
        return name in HF_QUIET_METHODS
    return False


def assigns_self_attr(sym, cls: str, attr: str, _seen: frozenset = frozenset()) -> bool:
    """`self.<attr> = ...` in a method of `cls` or of one of its local bases."""
    info = sym.classes.get(cls)
    if info is None or cls in _seen:
        return False
    for n in ast.walk(info.node):
        if isinstance(n, (ast.Assign, ast.AnnAssign)):
            for t in (n.targets if isinstance(n, ast.Assign) else [n.target]):
                if isinstance(t, ast.Attribute) and t.attr == attr and isinstance(t.value, ast.Name) \
                        and t.value.id == "self":
                    return True
    return any(assigns_self_attr(sym, b, attr, _seen | {cls}) for b in info.bases if b in sym.classes)


def _param(fn, i: int) -> str | None:
    ps = fn.args.posonlyargs + fn.args.args
    return ps[i].arg if len(ps) > i else None


def engine_process_functions(ctx) -> list[ast.AST]:
    """Functions of this file given to an ignite `Engine(...)` as its process function."""
    sym = ctx.symbols
    if not any(v.split(".")[0] == "ignite" for v in sym.aliases.values()):
        return []  # nothing imported from ignite: no Engine to look for
    names = []
    for n in ctx.facts.all_calls():
        if sym.qualname(n.func) in IGNITE_ENGINES:
            arg = n.args[0] if n.args else next((k.value for k in n.keywords if k.arg == "process_function"), None)
            if isinstance(arg, ast.Name):
                names.append(arg.id)
    if not names:
        return []
    return [s.node for s in ctx.facts.scopes if s.kind != "module" and s.node.name in names]


def bodies(ctx) -> dict[int, Body]:
    """id(function node) -> Body for every framework body of the file (memoised per analysis)."""
    return ctx.memo("frameworks.bodies", lambda: _bodies(ctx))


def _bodies(ctx) -> dict[int, Body]:
    sym = ctx.symbols
    out: dict[int, Body] = {}
    for name, info in sym.classes.items():
        fw = class_framework(sym, name)
        if fw is None:
            continue
        manual = fw == "lightning" and manual_optimization(sym, name)
        for st in info.node.body:
            if not isinstance(st, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            if fw == "lightning":
                if st.name == "training_step":
                    if manual:
                        out[id(st)] = Body(LOOP_BODY, fw, st, counter=_param(st, 2))
                    else:
                        out[id(st)] = Body(LOSS_BODY, fw, st)
                elif st.name in EVAL_HOOKS:
                    out[id(st)] = Body(EVAL_BODY, fw, st)
            else:
                if st.name == "compute_loss":
                    out[id(st)] = Body(LOSS_BODY, fw, st)
    for fn in engine_process_functions(ctx):
        eng = _param(fn, 0)
        out.setdefault(id(fn), Body(LOOP_BODY, "ignite", fn,
                                    counter=f"{eng}.state.iteration" if eng else None, counter_start=1))
    return out


def body_of(ctx, fn) -> Body | None:
    return bodies(ctx).get(id(fn))


def uses_framework(ctx) -> bool:
    return bool(bodies(ctx))


# -- accelerate ---------------------------------------------------------------------------------------

def is_accelerator(sym, expr, binding=None) -> bool:
    """`accelerator` / `self.accelerator`: bound to `Accelerator(...)`, or so named."""
    if binding is not None and isinstance(binding, ast.Call) and sym.qualname(binding.func) in ACCELERATORS:
        return True
    last = expr.attr if isinstance(expr, ast.Attribute) else expr.id if isinstance(expr, ast.Name) else ""
    return last.lower().lstrip("_") in ("accelerator", "accel")


def accumulate_model(sym, expr, binding_of=None) -> ast.AST | None:
    """The model of `accelerator.accumulate(model)` (a with-item), else None."""
    if not (isinstance(expr, ast.Call) and isinstance(expr.func, ast.Attribute) and expr.func.attr == "accumulate"):
        return None
    recv = expr.func.value
    binding = binding_of(recv) if binding_of else None
    if not is_accelerator(sym, recv, binding):
        return None
    return expr.args[0] if expr.args else recv


# Accelerator methods that neither clear, step, backward nor switch modes
ACCELERATOR_QUIET_METHODS = frozenset({
    "accumulate", "prepare", "prepare_model", "prepare_optimizer", "prepare_scheduler", "prepare_data_loader",
    "gather", "gather_for_metrics", "reduce", "pad_across_processes", "print", "log", "wait_for_everyone",
    "save_state", "load_state", "save_model", "save", "unwrap_model", "clip_grad_norm_", "clip_grad_value_",
    "autocast", "no_sync", "init_trackers", "end_training", "main_process_first", "local_main_process_first",
    "register_for_checkpointing", "skip_first_batches", "split_between_processes", "free_memory"})


def quiet_accelerator_call(sym, call: ast.Call) -> bool:
    f = call.func
    return isinstance(f, ast.Attribute) and f.attr in ACCELERATOR_QUIET_METHODS and is_accelerator(sym, f.value)


def is_prepare_call(sym, value, binding_of=None) -> bool:
    """`accelerator.prepare(...)` (also `prepare_model` / `prepare_optimizer`)."""
    if not (isinstance(value, ast.Call) and isinstance(value.func, ast.Attribute)
            and value.func.attr in ("prepare", "prepare_model", "prepare_optimizer", "prepare_scheduler")):
        return False
    recv = value.func.value
    binding = binding_of(recv) if binding_of else None
    return is_accelerator(sym, recv, binding)


def lightning_optimizer_call(value) -> str | None:
    """`self.optimizers()` -> "optimizer", `self.lr_schedulers()` -> "scheduler" (also indexed)."""
    if isinstance(value, ast.Subscript):
        value = value.value
    if isinstance(value, ast.Call) and isinstance(value.func, ast.Attribute) and \
            isinstance(value.func.value, ast.Name) and value.func.value.id == "self":
        if value.func.attr == "optimizers":
            return "optimizer"
        if value.func.attr == "lr_schedulers":
            return "scheduler"
    return None


def backward_call(call: ast.Call) -> bool:
    """`self.manual_backward(loss)`, `accelerator.backward(loss)`, `fabric.backward(loss)`,
    `self.accelerator.backward(loss)`: a backward of the first argument."""
    f = call.func
    if not isinstance(f, ast.Attribute) or not call.args:
        return False
    if f.attr == "manual_backward":
        return True
    if f.attr != "backward":
        return False
    recv = f.value
    last = recv.attr if isinstance(recv, ast.Attribute) else recv.id if isinstance(recv, ast.Name) else ""
    return last.lower().lstrip("_") in ("accelerator", "accel", "fabric")


def lightning_optimizer_names(fn, kind: str = "optimizer") -> list[str]:
    """Names bound in `fn`'s body to `self.optimizers()` (also unpacked: `g_opt, d_opt = ...`), or
    with kind="scheduler" to `self.lr_schedulers()`."""
    out = []
    for n in ast.walk(fn):
        if isinstance(n, ast.Assign) and lightning_optimizer_call(n.value) == kind:
            for t in n.targets:
                for e in (t.elts if isinstance(t, (ast.Tuple, ast.List)) else [t]):
                    if isinstance(e, ast.Name) and e.id not in out:
                        out.append(e.id)
    return out


def lightning_schedulers_are_torch(sym, cls_node) -> bool | None:
    """What `self.lr_schedulers()` returns in this LightningModule: True when its
    configure_optimizers builds only torch.optim.lr_scheduler schedulers, False when it builds
    another library's, None when it builds none we can see."""
    fn = next((st for st in cls_node.body if isinstance(st, (ast.FunctionDef, ast.AsyncFunctionDef))
               and st.name == "configure_optimizers"), None)
    if fn is None:
        return None
    verdicts = set()
    for n in ast.walk(fn):
        if isinstance(n, ast.Call):
            qn = sym.qualname(n.func) or ""
            if qn.startswith("torch.optim.lr_scheduler."):
                verdicts.add(True)
            elif "schedul" in qn.lower() and not qn.startswith("torch."):
                verdicts.add(False)
    return verdicts.pop() if len(verdicts) == 1 else None


def returned_loss(value: ast.AST | None) -> ast.AST | None:
    """The loss in what a training_step / compute_loss returns: `loss`, `{"loss": loss, ...}`,
    `(loss, outputs) if return_outputs else loss`, `(loss, outputs)`."""
    if value is None:
        return None
    if isinstance(value, ast.IfExp):
        for b in (value.orelse, value.body):
            if not isinstance(b, (ast.Tuple, ast.Dict)):
                return returned_loss(b)
        return returned_loss(value.body)
    if isinstance(value, ast.Tuple):
        return returned_loss(value.elts[0]) if value.elts else None
    if isinstance(value, ast.Dict):
        for k, v in zip(value.keys, value.values):
            if isinstance(k, ast.Constant) and k.value == "loss":
                return v
        return None
    if isinstance(value, ast.Constant) and value.value is None:
        return None
    return value
