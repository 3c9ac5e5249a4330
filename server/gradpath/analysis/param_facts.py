"""Deeper facts for the GP1 rules (see facts.py): what a model instance's parameters are
(inventories, built from the classes of the file and the resolver), constants of expressions, and
which statements freeze parameters. Computed lazily and cached on the Facts object."""
from __future__ import annotations

import ast
from dataclasses import dataclass, field

from gradpath.analysis import layers as _layers
from gradpath.analysis.facts import key_of, ModelBinding, Scope
from gradpath.analysis.symbols import is_torch_module_qualname, canonical



UNKNOWN = _layers.UNKNOWN

# Methods of a module that are not forward passes (calling them produces no model output).
NON_FORWARD = frozenset({
    "parameters", "named_parameters", "buffers", "named_buffers", "children", "named_children",
    "modules", "named_modules", "state_dict", "load_state_dict", "eval", "train", "to", "cuda", "cpu",
    "float", "double", "half", "bfloat16", "zero_grad", "requires_grad_", "apply", "register_buffer",
    "register_parameter", "add_module", "register_forward_hook", "register_full_backward_hook",
    "register_forward_pre_hook", "get_submodule", "get_parameter", "share_memory", "type",
})
_CUT_METHODS = frozenset({"detach", "detach_", "item", "tolist", "numpy"})
_NO_GRAD = frozenset({"torch.no_grad", "torch.inference_mode", "torch.enable_grad"})
_TENSOR_FACTORIES = frozenset({
    "torch.randn", "torch.rand", "torch.zeros", "torch.ones", "torch.empty", "torch.full",
    "torch.tensor", "torch.eye", "torch.arange", "torch.linspace", "torch.normal", "torch.randint",
    "torch.zeros_like", "torch.ones_like", "torch.randn_like", "torch.rand_like", "torch.empty_like",
    "torch.Tensor", "torch.FloatTensor",
})


@dataclass
class ParamEntry:
    name: str
    shape: tuple | None = None
    node: ast.AST | None = None  # where it is created (the layer construction, nn.Parameter(...))
    path: str | None = None  # the file it is created in when not this one


@dataclass
class ClassSource:
    """A module class definition with the symbols of the file it lives in."""
    node: ast.ClassDef
    symbols: object
    path: str | None = None


@dataclass
class Inventory:
    """The parameters of one module instance (or class)."""
    cls: str
    params: list[ParamEntry] = field(default_factory=list)
    complete: bool = True  # False: some parts could not be read (there may be more parameters)
    maybe_more: bool = False  # an opaque part that does have (unknown) parameters
    frozen: set[str] = field(default_factory=set)  # frozen in the class's own __init__
    frozen_unknown: bool = False  # a conditional freeze in the class's own __init__
    used: set[str] | None = None  # top-level attributes read outside __init__; None = unknown/all
    submodules: dict[str, str] = field(default_factory=dict)  # attribute -> class
    path: str | None = None
    opaque: set[str] = field(default_factory=set)  # attributes built by a factory the analysis cannot read

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.params]

    def under(self, prefix: str) -> list[ParamEntry]:
        if not prefix:
            return list(self.params)
        return [p for p in self.params if p.name == prefix or p.name.startswith(prefix + ".")]

    def is_prefix(self, path: str) -> bool:
        return any(p.name.startswith(path + ".") for p in self.params) or path in self.submodules

    @property
    def has_params(self) -> bool:
        return bool(self.params) or self.maybe_more

    def prefixed(self, prefix: str) -> "Inventory":
        inv = Inventory(self.cls, [ParamEntry(f"{prefix}.{p.name}", p.shape, p.node, p.path) for p in self.params],
                        self.complete, self.maybe_more, {f"{prefix}.{n}" for n in self.frozen},
                        self.frozen_unknown, None, {}, self.path)
        return inv


@dataclass
class CoverPart:
    model: ModelBinding | None
    names: set[str]  # the model's parameter names this part gives the optimizer
    kind: str  # "all" | "submodule" | "tensor" | "grad-filter" | "name-filter"
    node: ast.AST
    prefix: str = ""
    complete: bool = True  # False when the model's inventory is incomplete


@dataclass
class Coverage:
    parts: list[CoverPart] = field(default_factory=list)
    unknown: bool = False  # something we cannot read: it may hold anything
    groups: bool = False  # param-group dicts
    empty: bool = False  # literally an empty list/tuple
    fresh: list[tuple[ast.Call, str]] = field(default_factory=list)  # (Net() call, class) GP108
    bound_methods: list[tuple[ast.Attribute, ModelBinding | None]] = field(default_factory=list)  # GP109
    modules: list[tuple[ast.AST, ModelBinding, str]] = field(default_factory=list)  # GP110 (node, model, path)
    fresh_modules: list[tuple[ast.Call, str]] = field(default_factory=list)  # GP110: Adam(Net())
    sources: list[ast.AST] = field(default_factory=list)  # names followed to their assignments

    def merge(self, other: "Coverage") -> None:
        self.parts += other.parts
        self.unknown = self.unknown or other.unknown
        self.groups = self.groups or other.groups
        self.fresh += other.fresh
        self.bound_methods += other.bound_methods
        self.modules += other.modules
        self.fresh_modules += other.fresh_modules
        self.sources += other.sources

    def models(self) -> dict[str, ModelBinding]:
        return {p.model.key: p.model for p in self.parts if p.model is not None}

    def names_of(self, model: ModelBinding) -> set[str]:
        out: set[str] = set()
        for p in self.parts:
            if p.model is model:
                out |= p.names
        return out

    def deliberate(self, model: ModelBinding) -> bool:
        return any(p.model is model and p.kind == "name-filter" for p in self.parts)


@dataclass
class Freeze:
    model: ModelBinding
    prefix: str  # "" = the whole model
    names: set[str] | None  # None: every parameter under prefix
    value: bool  # requires_grad value set
    conditional: bool
    node: ast.AST
    scope: Scope
    line: int


@dataclass
class Backward:
    scope: Scope
    node: ast.Call
    line: int
    deps: set[str]  # keys of the models whose output reaches the backwarded value


def const_value(node: ast.AST | None, env: dict | None = None):
    """A Python constant for simple expressions, else UNKNOWN."""
    env = env or {}
    if node is None:
        return UNKNOWN
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return env.get(node.id, UNKNOWN)
    if isinstance(node, (ast.Tuple, ast.List)):
        vals = tuple(const_value(e, env) for e in node.elts)
        return UNKNOWN if any(v is UNKNOWN for v in vals) else vals
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        v = const_value(node.operand, env)
        return -v if isinstance(v, (int, float)) and not isinstance(v, bool) else UNKNOWN
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub, ast.Mult, ast.FloorDiv)):
        a, b = const_value(node.left, env), const_value(node.right, env)
        if isinstance(a, int) and isinstance(b, int) and not isinstance(a, bool) and not isinstance(b, bool):
            try:
                return {ast.Add: a + b, ast.Sub: a - b, ast.Mult: a * b}.get(type(node.op), a // b if b else UNKNOWN)
            except Exception:
                return UNKNOWN
    return UNKNOWN


def path_parts(expr: ast.AST) -> list[str] | None:
    """`model.layers[0].fc` -> ["model", "layers", "0", "fc"]; None for anything else."""
    parts: list[str] = []
    node = expr
    while True:
        if isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        elif isinstance(node, ast.Subscript):
            idx = node.slice
            if isinstance(idx, ast.Constant) and isinstance(idx.value, (int, str)) and not isinstance(idx.value, bool):
                parts.append(str(idx.value))
                node = node.value
            else:
                return None
        elif isinstance(node, ast.Name):
            parts.append(node.id)
            return list(reversed(parts))
        else:
            return None


def _self_attr(node: ast.AST) -> str | None:
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self":
        return node.attr
    return None


class InventoryBuilder:
    """Parameter inventories of module constructions and module classes."""

    def __init__(self, ctx):
        self.ctx = ctx
        self._stack: set[int] = set()
        self._cache: dict = {}

    # -- classes -----------------------------------------------------------------------------
    def class_source(self, name: str, symbols) -> ClassSource | None:
        info = symbols.classes.get(name)
        if info is not None:
            return ClassSource(info.node, symbols, getattr(symbols, "path", None))
        imported = getattr(symbols, "imported_classes", None) or {}
        return imported.get(name)

    def is_module_class(self, name: str, symbols) -> bool:
        if symbols.is_module_class(name):
            return True
        src = self.class_source(name, symbols)
        if src is None or src.symbols is symbols:
            return False
        return self.is_module_source(src)

    def is_module_source(self, src: ClassSource, depth: int = 0) -> bool:
        if depth > 8:
            return False
        for b in src.node.bases:
            bq = src.symbols.qualname(b)
            if bq and is_torch_module_qualname(bq):
                return True
            if bq:
                sub = self.class_source(bq, src.symbols)
                if sub is not None and self.is_module_source(sub, depth + 1):
                    return True
        return False

    # -- expressions -------------------------------------------------------------------------
    def of_call(self, node: ast.AST, env: dict | None = None, symbols=None) -> Inventory | None:
        """Inventory of a module-constructing expression, or None when it constructs no module."""
        symbols = symbols or self.ctx.symbols
        env = env or {}
        if not isinstance(node, ast.Call):
            return None
        qn = symbols.qualname(node.func)
        if qn is None:
            return None
        qn = canonical(qn)
        if any(isinstance(a, ast.Starred) for a in node.args) or any(k.arg is None for k in node.keywords):
            args, kwargs, exact = [], {}, False
        else:
            args = [const_value(a, env) for a in node.args]
            kwargs = {k.arg: const_value(k.value, env) for k in node.keywords}
            exact = True
        if qn in ("torch.nn.Sequential", "torch.nn.ModuleList", "torch.nn.ModuleDict"):
            return self._container(qn, node, env, symbols)
        if qn.startswith("torch.nn.") and qn.rsplit(".", 1)[-1] in ("DataParallel", "DistributedDataParallel"):
            inner = self._wrapped(node, env, symbols)
            if inner is not None:  # `model.module` is the wrapped model: its names start with "module."
                inv = Inventory(qn, [], inner.complete, inner.maybe_more)
                inv.submodules["module"] = inner.cls
                self._merge(inv, inner, "module")
                return inv
        if qn.startswith("torch.nn.") and is_torch_module_qualname(qn):
            ps = _layers.layer_params(qn, args, kwargs) if exact else None
            if ps is None:
                hp = _layers.has_parameters(qn)
                if hp is False:
                    return Inventory(qn, [], True)
                return Inventory(qn, [], False, maybe_more=hp is not False)
            return Inventory(qn, [ParamEntry(p.name, p.shape, node, getattr(symbols, "path", None)) for p in ps])
        src = self.class_source(qn, symbols)
        if src is not None and (self.is_module_source(src) or symbols.is_module_class(qn)):
            return self.of_class(src, node, env, symbols)
        if is_torch_module_qualname(qn) or symbols.is_module_class(qn):
            return Inventory(qn, [], False, maybe_more=True)
        return None

    def _wrapped(self, node: ast.Call, env: dict, symbols) -> Inventory | None:
        """The inventory of the module a DataParallel/DDP wraps: a construction, or a name bound to one."""
        a = node.args[0] if node.args else next((k.value for k in node.keywords if k.arg == "module"), None)
        if isinstance(a, ast.Call):
            return self.of_call(a, env, symbols)
        k = key_of(a) if a is not None else None
        if k and symbols is self.ctx.symbols:
            facts = self.ctx.facts
            b = facts.model_at(k, facts.scope_of(node), node.lineno)
            if b is not None and b.value is not node and isinstance(b.value, ast.Call):
                return self.of_call(b.value, env, symbols)
        return None

    def _container(self, qn: str, node: ast.Call, env: dict, symbols) -> Inventory:
        inv = Inventory(qn)
        items: list[tuple[str, ast.AST]] = []
        if qn == "torch.nn.Sequential":
            if len(node.args) == 1 and isinstance(node.args[0], ast.Call) and \
                    (symbols.qualname(node.args[0].func) or "").endswith("OrderedDict"):
                od = node.args[0]
                if od.args and isinstance(od.args[0], (ast.List, ast.Tuple)):
                    for elt in od.args[0].elts:
                        if isinstance(elt, ast.Tuple) and len(elt.elts) == 2 and isinstance(elt.elts[0], ast.Constant):
                            items.append((str(elt.elts[0].value), elt.elts[1]))
                        else:
                            inv.complete = False
                else:
                    inv.complete = False
            else:
                for i, a in enumerate(node.args):
                    if isinstance(a, ast.Starred):
                        inv.complete = False
                        inv.maybe_more = True
                        break
                    items.append((str(i), a))
        elif qn == "torch.nn.ModuleList":
            arg = node.args[0] if node.args else None
            if isinstance(arg, (ast.List, ast.Tuple)):
                items = [(str(i), e) for i, e in enumerate(arg.elts)]
            elif arg is not None:
                inv.complete = False
                inv.maybe_more = True
        else:
            arg = node.args[0] if node.args else None
            if isinstance(arg, ast.Dict):
                for k, v in zip(arg.keys, arg.values):
                    if isinstance(k, ast.Constant):
                        items.append((str(k.value), v))
                    else:
                        inv.complete = False
            elif arg is not None:
                inv.complete = False
                inv.maybe_more = True
        for name, e in items:
            sub = self.of_call(e, env, symbols)
            if sub is None:
                if isinstance(e, ast.Call) or isinstance(e, ast.Name):
                    inv.complete = False
                continue
            inv.submodules[name] = sub.cls
            self._merge(inv, sub, name)
        return inv

    @staticmethod
    def _merge(inv: Inventory, sub: Inventory, prefix: str) -> None:
        p = sub.prefixed(prefix) if prefix else sub
        inv.params += p.params
        inv.complete = inv.complete and sub.complete
        inv.maybe_more = inv.maybe_more or sub.maybe_more
        inv.frozen |= p.frozen
        inv.frozen_unknown = inv.frozen_unknown or sub.frozen_unknown

    def of_class(self, src: ClassSource, call: ast.Call | None, env_outer: dict, symbols=None) -> Inventory:
        init = next((n for n in src.node.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
                     and n.name == "__init__"), None)
        env = {}
        if init is not None:
            params = [a.arg for a in init.args.posonlyargs + init.args.args][1:]
            defaults = init.args.defaults
            for name, d in zip(params[len(params) - len(defaults):], defaults):
                env[name] = const_value(d)
            for name, d in zip([a.arg for a in init.args.kwonlyargs], init.args.kw_defaults):
                if d is not None:
                    env[name] = const_value(d)
            if call is not None:
                for name, a in zip(params, call.args):
                    env[name] = UNKNOWN if isinstance(a, ast.Starred) else const_value(a, env_outer)
                for k in call.keywords:
                    if k.arg:
                        env[k.arg] = const_value(k.value, env_outer)
        key = (id(src.node), tuple(sorted((k, repr(v)) for k, v in env.items())))
        if key in self._cache:
            return self._cache[key]
        if id(src.node) in self._stack:
            return Inventory(src.node.name, [], False)
        self._stack.add(id(src.node))
        try:
            inv = self._build_class(src, init, env)
        finally:
            self._stack.discard(id(src.node))
        self._cache[key] = inv
        return inv

    def _build_class(self, src: ClassSource, init, env: dict) -> Inventory:
        sym = src.symbols
        inv = Inventory(src.node.name, path=src.path)
        base_used: set[str] | None = set()
        for b in src.node.bases:
            bq = sym.qualname(b)
            if bq is None:
                continue
            bq = canonical(bq)
            if bq == "torch.nn.Module":
                continue
            bsrc = self.class_source(bq, sym)
            if bsrc is not None:
                binv = self.of_class(bsrc, None, {}, bsrc.symbols)
                self._merge(inv, binv, "")
                if binv.used is None or base_used is None:
                    base_used = None
                else:
                    base_used |= binv.used
            elif is_torch_module_qualname(bq):
                ps = _layers.layer_params(bq, [], {})
                if ps:
                    inv.params += [ParamEntry(p.name, None, b, src.path) for p in ps]
                inv.complete = False
                base_used = None
            else:
                base_used = None
        locals_: dict[str, Inventory] = {}
        if init is not None:
            for stmt, in_loop, in_if in _flat_stmts(init.body):
                self._init_stmt(inv, stmt, env, sym, src, locals_, in_loop, in_if)
        # attributes the rest of the class reads
        used: set[str] | None = set()
        methods = [n for n in src.node.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
                   and n.name != "__init__"]
        if not methods:
            used = None
        for m in methods:
            call_args = {id(a) for c in ast.walk(m) if isinstance(c, ast.Call) for a in c.args}
            for n, no_grad in _walk_grad_mode(m, sym):
                a = _self_attr(n)
                if a is not None:
                    if a in ("children", "modules", "parameters", "named_parameters", "named_children",
                             "named_modules", "__dict__", "_modules", "state_dict"):
                        used = None
                        break
                    if used is not None and not no_grad:
                        used.add(a)
                if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in ("getattr", "vars") \
                        and n.args and isinstance(n.args[0], ast.Name) and n.args[0].id == "self":
                    used = None
                    break
                if isinstance(n, ast.Name) and n.id == "self" and id(n) in call_args:
                    # self passed to a function (a helper may read any attribute)
                    used = None
                    break
            if used is None:
                break
        if used is not None and base_used is not None:
            inv.used = used | base_used
        else:
            inv.used = None
        return inv

    @staticmethod
    def _parent_call(root, target):
        for n in ast.walk(root):
            if isinstance(n, ast.Call) and any(a is target for a in n.args):
                return n
        return None

    def _init_stmt(self, inv, stmt, env, sym, src, locals_, in_loop, in_if) -> None:
        if isinstance(stmt, (ast.Assign, ast.AnnAssign)) and stmt.value is not None:
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
            for t in targets:
                if isinstance(t, ast.Name):
                    sub = self.of_call(stmt.value, env, sym)
                    if sub is not None:
                        locals_[t.id] = sub
                    continue
                attr = _self_attr(t)
                if attr is None:
                    if isinstance(t, (ast.Attribute, ast.Subscript)) and path_parts(t) and path_parts(t)[0] == "self":
                        inv.complete = False  # self.a.b = ... : changes a submodule
                    continue
                self._add_attr(inv, attr, stmt.value, env, sym, src, locals_, in_loop)
        elif isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call):
            call = stmt.value
            f = call.func
            if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and f.value.id == "self" \
                    and f.attr in ("register_parameter", "add_module", "register_module") and len(call.args) >= 2:
                name = const_value(call.args[0], env)
                if not isinstance(name, str):
                    inv.complete = False
                    inv.maybe_more = True
                    return
                self._add_attr(inv, name, call.args[1], env, sym, src, locals_, in_loop)
            elif isinstance(f, ast.Name) and f.id == "setattr" and call.args and \
                    isinstance(call.args[0], ast.Name) and call.args[0].id == "self":
                inv.complete = False
                inv.maybe_more = True
            elif isinstance(f, ast.Attribute) and f.attr in ("append", "extend", "update", "insert") and \
                    path_parts(f.value) and path_parts(f.value)[0] == "self":
                attr = path_parts(f.value)[1] if len(path_parts(f.value)) > 1 else None
                if attr in inv.submodules:
                    inv.complete = False
                    inv.maybe_more = True
        for fz in freeze_statements(stmt, in_if):
            parts, names, value, cond, node = fz
            if not parts or parts[0] != "self":
                continue
            prefix = ".".join(parts[1:])
            hit = {p.name for p in inv.under(prefix)} if names is None else {f"{prefix}.{n}" if prefix else n for n in names}
            if cond or not hit:
                inv.frozen_unknown = inv.frozen_unknown or (cond and not value) or not hit
            elif value is False:
                inv.frozen |= hit
            else:
                inv.frozen -= hit

    def _add_attr(self, inv, attr, value, env, sym, src, locals_, in_loop) -> None:
        if in_loop:
            inv.complete = False
        sub = None
        if isinstance(value, ast.Name) and value.id in locals_:
            sub = locals_[value.id]
        else:
            sub = self.of_call(value, env, sym)
        if sub is not None:
            inv.params = [p for p in inv.params if not (p.name == attr or p.name.startswith(attr + "."))]
            inv.submodules[attr] = sub.cls
            self._merge(inv, sub, attr)
            return
        if isinstance(value, ast.Call):
            qn = canonical(sym.qualname(value.func) or "")
            if qn in ("torch.nn.Parameter", "torch.nn.parameter.Parameter"):
                shape = None
                inner = value.args[0] if value.args else None
                if isinstance(inner, ast.Call) and canonical(sym.qualname(inner.func) or "") in _TENSOR_FACTORIES:
                    dims = [const_value(a, env) for a in inner.args]
                    if len(dims) == 1 and isinstance(dims[0], tuple):
                        dims = list(dims[0])
                    if canonical(sym.qualname(inner.func) or "") not in ("torch.tensor", "torch.Tensor", "torch.arange",
                                                                          "torch.linspace", "torch.normal", "torch.randint") \
                            and not any(d is UNKNOWN or not isinstance(d, int) for d in dims):
                        shape = tuple(dims)
                    elif not dims or all(d is UNKNOWN for d in dims):
                        shape = None
                    else:
                        shape = tuple(d if isinstance(d, int) else None for d in dims) \
                            if canonical(sym.qualname(inner.func) or "") not in ("torch.tensor",) else None
                inv.params = [p for p in inv.params if p.name != attr]
                inv.params.append(ParamEntry(attr, shape, value, src.path))
                return
            if qn in _TENSOR_FACTORIES or qn.startswith(("torch.", "math.", "numpy.", "np.")):
                return
            if isinstance(value.func, ast.Attribute) and path_parts(value.func.value) and \
                    path_parts(value.func.value)[0] == "self":
                return  # self.x.something(...): not a new module we can see
            # an unknown factory: may build a module
            inv.complete = False
            inv.opaque.add(attr)
            return
        if isinstance(value, ast.Name) and env.get(value.id, UNKNOWN) is UNKNOWN and value.id not in ("None", "True", "False"):
            # a constructor argument stored as an attribute: may be a module passed in
            inv.complete = False


def _walk_grad_mode(fn, sym):
    """(node, under no_grad) for every node of a function; a `with torch.no_grad():` body, and
    the receiver of `.detach()`, count as no_grad."""
    def is_ng(w):
        for item in w.items:
            ce = item.context_expr
            if isinstance(ce, ast.Call):
                qn = canonical(sym.qualname(ce.func) or "")
                if qn in ("torch.no_grad", "torch.inference_mode"):
                    return True
                if qn == "torch.set_grad_enabled" and ce.args and const_value(ce.args[0]) is False:
                    return True
        return False
    decorated = any(canonical(sym.qualname(d.func if isinstance(d, ast.Call) else d) or "") in
                    ("torch.no_grad", "torch.inference_mode") for d in getattr(fn, "decorator_list", []))
    stack = [(c, decorated) for c in reversed(list(ast.iter_child_nodes(fn)))]
    while stack:
        node, ng = stack.pop()
        yield node, ng
        if isinstance(node, (ast.With, ast.AsyncWith)) and is_ng(node):
            kids = [(c, ng) for c in node.items] + [(c, True) for c in node.body]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                node.func.attr in ("detach", "detach_"):
            kids = [(node.func, True)] + [(c, ng) for c in node.args]
        else:
            kids = [(c, ng) for c in ast.iter_child_nodes(node)]
        stack.extend(reversed(kids))


def _flat_stmts(body, in_loop=False, in_if=False):
    """Statements of a function body, entering if/for/while/with/try, not nested defs."""
    for stmt in body:
        yield stmt, in_loop, in_if
        if isinstance(stmt, (ast.For, ast.AsyncFor, ast.While)):
            yield from _flat_stmts(stmt.body, True, in_if)
            yield from _flat_stmts(stmt.orelse, True, in_if)
        elif isinstance(stmt, ast.If):
            yield from _flat_stmts(stmt.body, in_loop, True)
            yield from _flat_stmts(stmt.orelse, in_loop, True)
        elif isinstance(stmt, (ast.With, ast.AsyncWith)):
            yield from _flat_stmts(stmt.body, in_loop, in_if)
        elif isinstance(stmt, ast.Try):
            for b in (stmt.body, stmt.orelse, stmt.finalbody):
                yield from _flat_stmts(b, in_loop, in_if)
            for h in stmt.handlers:
                yield from _flat_stmts(h.body, in_loop, True)


def _rg_value(node: ast.AST) -> bool | None:
    v = const_value(node)
    return v if isinstance(v, bool) else None


def freeze_statements(stmt: ast.stmt, in_if: bool = False):
    """(receiver path parts, names or None, requires_grad value, conditional, node) for freezes in
    one statement: `for p in X.parameters(): p.requires_grad = False`, `X.requires_grad_(False)`,
    `X.weight.requires_grad = False`. Loops are only recognised at their `for` statement."""
    out = []
    if isinstance(stmt, ast.For) and isinstance(stmt.iter, ast.Call) and isinstance(stmt.iter.func, ast.Attribute) \
            and stmt.iter.func.attr in ("parameters", "named_parameters"):
        parts = path_parts(stmt.iter.func.value)
        tgt = stmt.target
        pname = None
        if isinstance(tgt, ast.Name):
            pname = tgt.id
        elif isinstance(tgt, ast.Tuple) and len(tgt.elts) == 2 and isinstance(tgt.elts[1], ast.Name):
            pname = tgt.elts[1].id
        if parts and pname:
            for sub, _loop, cond in _flat_stmts(stmt.body):
                v = _param_rg_set(sub, pname)
                if v is not None:
                    out.append((parts, None, v, in_if or cond, stmt))
        return out
    if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call):
        call = stmt.value
        if isinstance(call.func, ast.Attribute) and call.func.attr == "requires_grad_":
            parts = path_parts(call.func.value)
            arg = call.args[0] if call.args else next((k.value for k in call.keywords if k.arg == "requires_grad"), None)
            v = True if arg is None else _rg_value(arg)
            if parts and v is not None:
                out.append((parts, None, v, in_if, stmt))
    elif isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
        t = stmt.targets[0]
        if isinstance(t, ast.Attribute) and t.attr == "requires_grad":
            parts = path_parts(t.value)
            v = _rg_value(stmt.value)
            if parts and v is not None:
                out.append((parts, None, v, in_if, stmt))
    return out


def _param_rg_set(stmt, pname: str) -> bool | None:
    if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
        t = stmt.targets[0]
        if isinstance(t, ast.Attribute) and t.attr == "requires_grad" and isinstance(t.value, ast.Name) \
                and t.value.id == pname:
            return _rg_value(stmt.value)
    if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call):
        f = stmt.value.func
        if isinstance(f, ast.Attribute) and f.attr == "requires_grad_" and isinstance(f.value, ast.Name) \
                and f.value.id == pname:
            return True if not stmt.value.args else _rg_value(stmt.value.args[0])
    return None
