"""Which modules of a file carry forward hooks (the facts behind GP408).

`module.forward(x)` skips only what `nn.Module.__call__` adds around `forward`: the module's own
forward pre-hooks and hooks (and the global module hooks). Hooks on its submodules still run, since
`forward` calls them as `self.sub(x)`. So a direct `forward` call matters only for a receiver that
is known to carry such hooks:

- `m.register_forward_hook(...)` / `register_forward_pre_hook` / the backward hooks (which
  `__call__` also sets up);
- `torch.nn.utils.prune.<method>(m, ...)` (a forward pre-hook recomputes the masked weight),
  the deprecated hook-based `torch.nn.utils.weight_norm(m)` / `spectral_norm(m)`, FSDP2
  `fully_shard(m)`, composable `checkpoint(m)` / `replicate(m)` (all forward pre-hooks);
  the parametrization-based `torch.nn.utils.parametrizations.*` install no hook (the weight is a
  property recomputed on access), so they do not count;
- every module of `for m in model.modules(): m.register_forward_hook(...)` / `model.apply(fn)`
  with an `fn` that registers one: `model` and its submodules;
- `self.register_forward_hook(...)` in a class of this file: every instance of that class;
- the global `torch.nn.modules.module.register_module_forward_(pre_)hook`: every module the file
  knows to be an `nn.Module`.

A hook registered on a function's parameter counts for the arguments of the calls of that function
in this file, and a receiver that is a function's parameter counts as hooked when a call passes a
hooked module for it. Nothing here imports torch; names are matched by qualified name.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass

from gradpath.analysis.facts import key_of

HOOK_METHODS = frozenset({"register_forward_hook", "register_forward_pre_hook", "register_full_backward_hook",
                          "register_full_backward_pre_hook", "register_backward_hook"})
# functions (by qualified name) that install a forward (pre-)hook on their first argument
_HOOKING_FUNCS = frozenset({
    "torch.nn.utils.weight_norm", "torch.nn.utils.weight_norm.weight_norm",
    "torch.nn.utils.spectral_norm", "torch.nn.utils.spectral_norm.spectral_norm",
    "torch.distributed.fsdp.fully_shard", "torch.distributed._composable.fsdp.fully_shard",
    "torch.distributed._composable.fsdp.fully_shard.fully_shard",
    "torch.distributed._composable.checkpoint", "torch.distributed._composable.checkpoint_activation.checkpoint",
    "torch.distributed._composable.replicate", "torch.distributed._composable.replicate.replicate",
})
_PRUNE = "torch.nn.utils.prune."
_PRUNE_NO_HOOK = frozenset({"remove", "is_pruned", "global_unstructured"})  # global_: see _global_prune
_GLOBAL_HOOKS = frozenset({"register_module_forward_hook", "register_module_forward_pre_hook"})
_MODULE_ITERS = frozenset({"modules", "named_modules", "children", "named_children"})


@dataclass(eq=False)
class Hook:
    key: str  # the module's key where it was installed (`model`, `self.proj`)
    scope: object  # facts.Scope of the installing code
    node: ast.AST  # the call that installs it
    what: str  # for messages: "a forward hook", "pruning's forward pre-hook", ...
    subtree: bool = False  # also every submodule of `key` (`for m in key.modules(): ...`)


class HookFacts:
    def __init__(self, ctx):
        self.ctx = ctx
        self.facts = ctx.facts
        self.sym = ctx.symbols
        self.hooks: list[Hook] = []
        self.class_hooks: dict[str, Hook] = {}  # class of this file -> a hook it installs on self
        self.global_hook: Hook | None = None
        # names of the functions registered as hooks: a direct forward inside one is deliberate
        # (calling the module there would run the hook again)
        self.hook_fns: set[str] = set()
        self._param_fns: dict[str, ast.AST] = {}
        self._collect()
        self._through_calls()

    # -- collection ---------------------------------------------------------------------------------
    def _collect(self) -> None:
        sym = self.sym
        for scope in self.facts.scopes:
            loop_vars: dict[str, tuple[str, ast.AST]] = {}  # `m` of `for m in model.modules()` -> model
            nodes = list(scope.walk())
            for n in nodes:
                if isinstance(n, (ast.For, ast.AsyncFor)):
                    it = n.iter
                    if isinstance(it, ast.Call) and it.func.__class__ is ast.Name and it.func.id in (
                            "enumerate", "list", "tuple", "reversed") and it.args:
                        it = it.args[0]
                    if isinstance(it, ast.Call) and isinstance(it.func, ast.Attribute) and \
                            it.func.attr in _MODULE_ITERS and key_of(it.func.value):
                        owner = key_of(it.func.value)
                        tgt = n.target
                        if isinstance(tgt, ast.Tuple) and tgt.elts:
                            tgt = tgt.elts[-1]
                        if isinstance(tgt, ast.Name):
                            loop_vars[tgt.id] = (owner, n)
            for n in nodes:
                if not isinstance(n, ast.Call):
                    continue
                f = n.func
                if isinstance(f, ast.Attribute) and f.attr in HOOK_METHODS:
                    k = key_of(f.value)
                    if k is None:
                        continue
                    what = "a backward hook" if "backward" in f.attr else (
                        "a forward pre-hook" if "pre" in f.attr else "a forward hook")
                    fn_arg = n.args[0] if n.args else next((kw.value for kw in n.keywords if kw.arg == "hook"), None)
                    if isinstance(fn_arg, ast.Call) and fn_arg.args:  # functools.partial(hook, ...)
                        fn_arg = fn_arg.args[0]
                    if isinstance(fn_arg, (ast.Name, ast.Attribute)):
                        self.hook_fns.add(fn_arg.id if isinstance(fn_arg, ast.Name) else fn_arg.attr)
                    self._add(k, scope, n, what, loop_vars)
                    continue
                if isinstance(f, ast.Attribute) and f.attr == "apply" and n.args and key_of(f.value):
                    fn = self._local_function(n.args[0], scope)
                    if fn is not None and _registers_on_param(fn):
                        self.hooks.append(Hook(key_of(f.value), scope, n, "a forward hook", subtree=True))
                    continue
                qn = sym.qualname(f)
                if not qn:
                    continue
                if qn.rsplit(".", 1)[-1] in _GLOBAL_HOOKS and qn.startswith("torch.nn"):
                    self.global_hook = self.global_hook or Hook("*", scope, n, "a global module hook")
                    continue
                what = _hooking_kind(qn)
                if what is None:
                    continue
                if qn.rsplit(".", 1)[-1] == "global_unstructured":
                    for k in _global_prune_keys(n):
                        self._add(k, scope, n, what, loop_vars)
                    continue
                first = n.args[0] if n.args else next((kw.value for kw in n.keywords if kw.arg == "module"), None)
                k = key_of(first) if first is not None else None
                if k is not None:
                    self._add(k, scope, n, what, loop_vars)
                # `fc = weight_norm(nn.Linear(...))`: the result is the hooked module
                parent = self.facts.parent(n)
                if isinstance(parent, (ast.Assign, ast.AnnAssign)) and parent.value is n:
                    targets = parent.targets if isinstance(parent, ast.Assign) else [parent.target]
                    for t in targets:
                        tk = key_of(t)
                        if tk:
                            self._add(tk, scope, n, what, loop_vars)

    def _add(self, k: str, scope, node, what: str, loop_vars) -> None:
        if k == "self":
            if scope.class_name and scope.class_name not in self.class_hooks:
                self.class_hooks[scope.class_name] = Hook("self", scope, node, what)
            return
        if k in loop_vars:
            owner, _loop = loop_vars[k]
            self.hooks.append(Hook(owner, scope, node, what, subtree=True))
            return
        self.hooks.append(Hook(k, scope, node, what))

    def _local_function(self, expr, scope):
        if isinstance(expr, ast.Name):
            s = scope
            while s is not None:
                for st in getattr(s.node, "body", []):
                    if isinstance(st, (ast.FunctionDef, ast.AsyncFunctionDef)) and st.name == expr.id:
                        return st
                s = s.parent
        if isinstance(expr, ast.Lambda):
            return expr
        return None

    def _through_calls(self) -> None:
        """A hook installed on a parameter of a function of this file: on the arguments of the calls
        of that function (`add_probe(model)` -> `model`)."""
        by_fn: dict[int, object] = {}
        for h in list(self.hooks):
            fn = h.scope.node
            if h.scope.kind == "module" or not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            params = _params(fn)
            head = h.key.split(".")[0]
            if head not in params or head == "self":
                continue
            by_fn[id(fn)] = fn
            for scope, call in self._calls_of(fn):
                arg = _argument(call, fn, head)
                ak = key_of(arg) if arg is not None else None
                if ak:
                    self.hooks.append(Hook(ak + h.key[len(head):], scope, h.node, h.what, h.subtree))

    def _calls_of(self, fn):
        """(scope, call) for every call `fn(...)` by its name in this file."""
        by_name = self.__dict__.get("_by_name")
        if by_name is None:
            by_name = self.__dict__["_by_name"] = {}
            for scope in self.facts.scopes:
                for n in scope.walk():
                    if isinstance(n, ast.Call) and isinstance(n.func, ast.Name):
                        by_name.setdefault(n.func.id, []).append((scope, n))
        return by_name.get(fn.name, [])

    # -- queries ------------------------------------------------------------------------------------
    def hook_on(self, key: str, scope, line: int) -> Hook | None:
        """A hook that the module `key` (as seen from `scope`) carries itself."""
        for h in self.hooks:
            if not _visible(h, key, scope):
                continue
            if h.key == key or (h.subtree and key.startswith(h.key + ".")):
                return h
        b = self.facts.model_at(key, scope, line)
        if b is not None:
            cls = b.cls
            for c, h in self.class_hooks.items():
                if cls == c or self._subclass(cls, c):
                    return h
            if self.global_hook is not None:
                return self.global_hook
        return None

    def hook_through_param(self, key: str, scope, line: int) -> Hook | None:
        """`net.forward(x)` in `def predict(net, ...)`: a hooked module passed for `net` by a call
        of this function in the file."""
        fn = scope.node
        if scope.kind == "module" or not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            return None
        head = key.split(".")[0]
        if head == "self" or head not in _params(fn):
            return None
        for cscope, call in self._calls_of(fn):
            arg = _argument(call, fn, head)
            ak = key_of(arg) if arg is not None else None
            if ak:
                h = self.hook_on(ak + key[len(head):], cscope, call.lineno)
                if h is not None:
                    return h
        return None

    def _subclass(self, cls: str, base: str, seen=frozenset()) -> bool:
        info = self.sym.classes.get(cls)
        if info is None or cls in seen:
            return False
        return any(b == base or self._subclass(b, base, seen | {cls}) for b in info.bases)


def _visible(h: Hook, key: str, scope) -> bool:
    """Is the hook's key the same object as `key` seen from `scope`? Same scope, module level on
    either side, or the same class for `self.` keys."""
    if h.scope is scope or h.scope.kind == "module":
        return True
    if key.startswith("self.") and h.key.startswith("self."):
        return bool(scope.class_name) and h.scope.class_name == scope.class_name
    return False


def _hooking_kind(qn: str) -> str | None:
    if qn.startswith(_PRUNE):
        last = qn.rsplit(".", 1)[-1]
        if last in _PRUNE_NO_HOOK and last != "global_unstructured":
            return None
        return "pruning's forward pre-hook"
    if qn in _HOOKING_FUNCS:
        last = qn.rsplit(".", 1)[-1]
        return {"weight_norm": "weight norm's forward pre-hook", "spectral_norm": "spectral norm's forward pre-hook",
                "fully_shard": "FSDP's forward pre-hook (parameter all-gather)"}.get(last, f"{last}'s forward hooks")
    return None


def _global_prune_keys(call) -> list[str]:
    """prune.global_unstructured([(model.fc, "weight"), ...], ...): the modules in the list."""
    out = []
    arg = call.args[0] if call.args else None
    if isinstance(arg, (ast.List, ast.Tuple)):
        for e in arg.elts:
            if isinstance(e, ast.Tuple) and e.elts and key_of(e.elts[0]):
                out.append(key_of(e.elts[0]))
    return out


def _registers_on_param(fn) -> bool:
    a = fn.args
    params = [p.arg for p in a.posonlyargs + a.args]
    if not params:
        return False
    body = fn.body if isinstance(fn.body, list) else [fn.body]
    for st in body:
        for n in ast.walk(st):
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr in HOOK_METHODS \
                    and key_of(n.func.value) == params[0]:
                return True
    return False


def _params(fn) -> list[str]:
    a = fn.args
    return [p.arg for p in a.posonlyargs + a.args + a.kwonlyargs]


def _argument(call, fn, name: str):
    a = fn.args
    pos = [p.arg for p in a.posonlyargs + a.args]
    for kw in call.keywords:
        if kw.arg == name:
            return kw.value
    if name in pos:
        i = pos.index(name)
        if i < len(call.args) and not any(isinstance(x, ast.Starred) for x in call.args[:i + 1]):
            return call.args[i]
    return None


def hook_facts(ctx) -> HookFacts:
    return ctx.memo("gp408.hooks", lambda: HookFacts(ctx))


# -- test code ------------------------------------------------------------------------------------------

_TEST_DIRS = frozenset({"test", "tests", "testing"})


def is_test_path(path: str | None) -> bool:
    """`test_*.py`, `*_test.py`, `conftest.py`, or a file under a `test/`/`tests/` folder."""
    if not path:
        return False
    parts = path.replace("\\", "/").split("/")
    base = parts[-1]
    if base.startswith("test_") or base.endswith("_test.py") or base == "conftest.py":
        return True
    return any(p in _TEST_DIRS for p in parts[:-1])


def in_test_function(scope) -> bool:
    """Inside a pytest/unittest test: a function `test_*`, or a method of a class `Test*`/`*Test(s)`
    (a training script's `def test(model, loader)` is its evaluation, not a test)."""
    s = scope
    while s is not None and s.kind != "module":
        if s.name.startswith("test_"):
            return True
        cn = s.class_name or ""
        if cn.startswith("Test") or cn.endswith(("Test", "Tests")):
            return True
        s = s.parent
    return False
