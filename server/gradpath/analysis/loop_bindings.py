"""What the loop facts know of names (see loops.py), as a mixin of `LoopFacts`: the value a key is
bound to in a scope, whether it is an optimizer (and of which models), a scheduler (and of which
optimizer) or an AMP scaler, and which `with` blocks turn gradients off or on."""
from __future__ import annotations

import ast
import re

from gradpath.analysis import frameworks
from gradpath.analysis import loop_guards
from gradpath.analysis.facts import key_of


NOGRAD_CALLS = {"torch.no_grad", "torch.inference_mode", "torch.autograd.no_grad",
                "torch.autograd.inference_mode"}
_OPT_NAME = re.compile(r"^(opt|optim|optimizer|optimiser|Optimizer)([A-Z0-9_]\w*)?$")
_OPT_SUFFIX = re.compile(r"_(opt|optim|optimizer|optimiser)\d*$")


def _is_cleared_value(v) -> bool:
    if isinstance(v, ast.Constant) and v.value is None:
        return True
    if isinstance(v, ast.Call):
        f = v.func
        name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
        return name in ("zeros_like", "zeros")
    return False


class LoopBindings:
    """Mixed into `loops.LoopFacts`: what names are bound to."""

    # -- bindings ------------------------------------------------------------------------------------
    def _scope_assigns(self, scope) -> list[tuple[str, ast.AST, int]]:
        if id(scope) not in self._assigns:
            out = []
            for n in self.scope_stmts(scope):
                if isinstance(n, (ast.Assign, ast.AnnAssign)) and n.value is not None:
                    targets = n.targets if isinstance(n, ast.Assign) else [n.target]
                    if frameworks.is_prepare_call(self.sym, n.value) and len(n.value.args) == 1 and \
                            all(key_of(t) == key_of(n.value.args[0]) for t in targets):
                        continue  # `model = accelerator.prepare(model)`: the same object
                    for t in targets:
                        k = key_of(t)
                        if k:
                            out.append((k, n.value, n.lineno))
            self._assigns[id(scope)] = out
        return self._assigns[id(scope)]

    def binding_value(self, key: str, scope) -> ast.AST | None:
        """The value last assigned to `key` as seen from `scope`: its own assignments, then those
        of the other methods of its class (for `self.` keys), then module level."""
        if self._by_key is None:
            # (key, id(scope)) / (key, class name) / (key, "<module>") -> (line, value) of the last
            # assignment (the first of equal lines, in scope order)
            idx: dict = {}

            def put(k, ln, v):
                old = idx.get(k)
                if old is None or ln > old[0]:
                    idx[k] = (ln, v)

            for s in self.facts.scopes:
                for k, v, ln in self._scope_assigns(s):
                    put((k, id(s)), ln, v)
                    if s.class_name and k.startswith("self."):
                        put((k, "class", s.class_name), ln, v)
                    if s.kind == "module":
                        put((k, "module"), ln, v)
            self._by_key = idx
        idx = self._by_key
        hit = idx.get((key, id(scope)))
        if hit is None and scope.class_name and key.startswith("self."):
            hit = idx.get((key, "class", scope.class_name))
        if hit is None:
            hit = idx.get((key, "module"))
        return hit[1] if hit is not None else None

    def is_optimizer(self, key: str, scope) -> bool:
        mk = ("opt", key, id(scope))
        if mk not in self._kind_memo:
            self._kind_memo[mk] = self._is_optimizer(key, scope)
        return self._kind_memo[mk]

    def _is_optimizer(self, key: str, scope) -> bool:
        if self.facts.optimizer_at(key, scope) is not None:
            return True
        if frameworks.lightning_optimizer_call(self.binding_value(key, scope)) == "optimizer":
            return True  # `opt = self.optimizers()` in a LightningModule
        if self.is_scheduler(key, scope):
            return False
        last = key.rsplit(".", 1)[-1]
        return bool(_OPT_NAME.match(last) or _OPT_SUFFIX.search(last) or "optimizer" in last.lower()
                    or "optimiser" in last.lower())

    def optimizer_models(self, key: str, scope) -> tuple:
        mk = ("models", key, id(scope))
        if mk not in self._kind_memo:
            self._kind_memo[mk] = self._optimizer_models(key, scope)
        return self._kind_memo[mk]

    def _optimizer_models(self, key: str, scope) -> tuple:
        b = self.facts.optimizer_at(key, scope)
        if b is None or b.params is None:
            return ()
        found: list[str] = []
        for n in ast.walk(b.params):
            k = None
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and \
                    n.func.attr in ("parameters", "named_parameters"):
                k = key_of(n.func.value)
            if k and k != "self" and k not in found:
                found.append(k)
        return tuple(found)

    def is_scheduler(self, key: str, scope) -> bool:
        v = self.binding_value(key, scope)
        if frameworks.lightning_optimizer_call(v) == "scheduler":
            return True
        if isinstance(v, ast.Call):
            qn = self.sym.qualname(v.func) or ""
            if qn.startswith("torch.optim.lr_scheduler.") or "schedule" in qn.rsplit(".", 1)[-1].lower() \
                    or (qn in self.sym.classes and loop_guards.class_is_torch_scheduler(self.sym, qn)):
                return True
        return "sched" in key.rsplit(".", 1)[-1].lower()

    def scheduler_optimizer(self, key: str, scope) -> str | None:
        v = self.binding_value(key, scope)
        if isinstance(v, ast.Call):
            arg = v.args[0] if v.args else next((k.value for k in v.keywords if k.arg == "optimizer"), None)
            return key_of(arg) if arg is not None else None
        return None

    def is_scaler(self, key: str, scope) -> bool:
        v = self.binding_value(key, scope)
        if isinstance(v, ast.Call):
            qn = self.sym.qualname(v.func) or ""
            if qn.endswith("GradScaler"):
                return True
        return "scaler" in key.rsplit(".", 1)[-1].lower()

    def _is_local_value(self, name: str, scope) -> bool:
        return scope.kind != "module" and name in self._local_names(scope.node)

    def _module_names(self) -> set[str]:
        if self._module_name_set is None:
            mod = self.facts.scopes[0]
            self._module_name_set = {k for k, _v, _l in self._scope_assigns(mod) if "." not in k}
        return self._module_name_set

    def _is_nograd_ctx(self, expr) -> bool:
        if isinstance(expr, ast.Call):
            qn = self.sym.qualname(expr.func)
            if qn in NOGRAD_CALLS:
                return True
            if qn in ("torch.set_grad_enabled", "torch.autograd.set_grad_enabled") and expr.args:
                a = expr.args[0]
                return isinstance(a, ast.Constant) and a.value is False
            return False
        return self.sym.qualname(expr) in NOGRAD_CALLS

    def _is_enable_grad_ctx(self, expr) -> bool:
        if isinstance(expr, ast.Call):
            qn = self.sym.qualname(expr.func)
            if qn in ("torch.enable_grad", "torch.autograd.enable_grad"):
                return True
            if qn in ("torch.set_grad_enabled", "torch.autograd.set_grad_enabled") and expr.args:
                a = expr.args[0]
                return isinstance(a, ast.Constant) and a.value is True
        return False

    def _grad_reset_loop(self, st, scope):
        """`for p in model.parameters(): p.grad = None` (or `.zero_()`), and the same over
        `opt.param_groups`: (key, "model"|"optimizer", models) or None."""
        it = st.iter
        owner, target = None, None
        if isinstance(it, ast.Call) and isinstance(it.func, ast.Attribute) and \
                it.func.attr in ("parameters", "named_parameters"):
            owner, target = key_of(it.func.value), "model"
        elif isinstance(it, ast.Attribute) and it.attr == "param_groups":
            owner, target = key_of(it.value), "optimizer"
        if owner is None:
            return None
        for n in ast.walk(st):
            if isinstance(n, ast.Assign) and any(isinstance(t, ast.Attribute) and t.attr == "grad"
                                                 for t in n.targets) and _is_cleared_value(n.value):
                break
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and \
                    n.func.attr in ("zero_", "detach_") and "grad" in ast.unparse(n.func.value).split("."):
                break
        else:
            return None
        models = self.optimizer_models(owner, scope) if target == "optimizer" else ()
        return owner, target, models
