"""GP104, GP105, GP112: parameters a module class holds but never registers (submodules in plain
containers, plain tensors made to require grad, layers built inside forward)."""
from __future__ import annotations

import ast

from gradpath.analysis.facts import _TENSOR_FACTORIES, const_value, unwrap_same_instance
from gradpath.analysis.findings import Edit, Fix, Related, Span
from gradpath.analysis.rules import rule
from gradpath.analysis.rules._gp1 import names_text, nn_prefix, short, torch_prefix
from gradpath.analysis.symbols import canonical


# -- GP104 / GP105 / GP112: inside nn.Module classes ------------------------------------------
def _module_classes(ctx):
    for name, info in ctx.symbols.classes.items():
        if ctx.symbols.is_module_class(name):
            yield name, info.node


def _methods(cls_node):
    return [n for n in cls_node.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]


def _is_module_ctor(ctx, e) -> bool:
    return ctx.facts.module_class_of_call(e) is not None


def _has_param_ctor(ctx, e) -> bool:
    """A module construction that certainly has parameters (or whose class may)."""
    if not _is_module_ctor(ctx, e):
        return False
    inv = ctx.facts.inventories.of_call(e)
    return inv is not None and inv.has_params


def _method_nodes(ctx, m):
    """The nodes of method `m`'s own body (the cached walk of its scope when Facts has one)."""
    scope = ctx.facts.scope_for(m)
    return scope.walk() if scope is not None else _walk_no_defs(m)


def _walk_no_defs(node):
    stack = list(ast.iter_child_nodes(node))
    while stack:
        n = stack.pop()
        yield n
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            continue
        stack.extend(ast.iter_child_nodes(n))


@rule("GP104")
def unregistered_submodules(ctx):
    nn = nn_prefix(ctx)
    # (a class that registers by name: `add_module`, `register_module` or `setattr` in its text)
    by_name = any(w in ctx.src.text for w in ("add_module", "register_module", "setattr"))
    for cname, cls in _module_classes(ctx):
        if by_name and any((isinstance(n, ast.Attribute) and n.attr in ("add_module", "register_module")) or
                           (isinstance(n, ast.Name) and n.id == "setattr") for n in ast.walk(cls)):
            continue
        assigns: dict[str, list] = {}
        for m in _methods(cls):
            for n in _method_nodes(ctx, m):
                if isinstance(n, ast.Assign):
                    for t in n.targets:
                        a = _self_attr_name(t)
                        if a and not (len(n.targets) == 1 and _self_concat(n.value, a)):
                            assigns.setdefault(a, []).append(n)
        for attr, nodes in assigns.items():
            if len(nodes) != 1:
                continue  # reassigned (e.g. wrapped into nn.ModuleList later): leave it
            node = nodes[0]
            v = node.value
            kind, elts = _container_kind(v)
            if kind is None:
                continue
            if _wrapped_later(ctx, cls, attr):
                continue  # nn.Sequential(*self.layers) / nn.ModuleList(self.layers) registers them
            modules = [e for e in elts if _is_module_ctor(ctx, e)]
            appended = []
            if not elts:
                appended = _appends(ctx, cls, attr)
                modules = appended
            if not modules:
                continue
            fixes = []
            if nn is not None:
                text = ctx.src.text_of(v)
                wrapper = "ModuleDict" if kind == "dict" else "ModuleList"
                ok = kind != "dict" or all(isinstance(k, ast.Constant) and isinstance(k.value, str)
                                           for k in getattr(v, "keys", []))
                if ok and (kind != "dict" or isinstance(v, ast.Dict)):
                    new = f"{nn}.{wrapper}()" if not elts and not isinstance(v, (ast.ListComp, ast.DictComp)) \
                        else f"{nn}.{wrapper}({text})"
                    fixes.append(Fix(f"Use {nn}.{wrapper} so the submodules are registered", True,
                                     (Edit(ctx.span(v), new),), preferred=True))
            what = {"list": "list", "tuple": "tuple", "dict": "dict"}[kind]
            msg = (f"self.{attr} is a plain {what} of modules: {cname} does not register them, so their "
                   f"parameters are missing from {cname}.parameters(), state_dict() and .to(), so an optimizer "
                   f"built from {cname}.parameters() never sees them and a saved checkpoint leaves them out")
            related = [Related(ctx.span(a), f"a module is added to self.{attr} here") for a in appended[:3]]
            yield ctx.finding("GP104", v, msg, fixes=fixes, related=related,
                              data={"model_class": cname, "attribute": attr})


def _wrapped_later(ctx, cls, attr) -> bool:
    for n in ast.walk(cls):
        if isinstance(n, ast.Call) and _is_module_ctor(ctx, n):
            for a in list(n.args) + [k.value for k in n.keywords]:
                inner = a.value if isinstance(a, ast.Starred) else a
                if _self_attr_name(inner) == attr:
                    return True
    return False


def _self_attr_name(t) -> str | None:
    if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == "self":
        return t.attr
    return None


def _container_kind(v):
    if isinstance(v, ast.List):
        return "list", v.elts
    if isinstance(v, ast.Tuple):
        return "tuple", v.elts
    if isinstance(v, ast.Dict):
        return "dict", v.values
    if isinstance(v, ast.ListComp):
        return "list", [v.elt]
    if isinstance(v, ast.DictComp):
        return "dict", [v.value]
    if isinstance(v, ast.Call) and isinstance(v.func, ast.Name) and v.func.id in ("list", "dict") and not v.args \
            and not v.keywords:
        return v.func.id, []
    return None, []


def _appends(ctx, cls, attr) -> list:
    out = []
    local_mods: dict[str, ast.AST] = {}
    for m in _methods(cls):
        for n in _walk_no_defs(m):
            if isinstance(n, ast.Assign) and len(n.targets) == 1 and isinstance(n.targets[0], ast.Name) \
                    and _is_module_ctor(ctx, n.value):
                local_mods[n.targets[0].id] = n.value
    for m in _methods(cls):
        for n in _walk_no_defs(m):
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr in ("append", "insert") \
                    and _self_attr_name(n.func.value) == attr and n.args:
                a = n.args[-1]
                if _is_module_ctor(ctx, a) or (isinstance(a, ast.Name) and a.id in local_mods):
                    out.append(a)
            elif isinstance(n, ast.Assign) and len(n.targets) == 1 and isinstance(n.targets[0], ast.Subscript) \
                    and _self_attr_name(n.targets[0].value) == attr and _is_module_ctor(ctx, n.value):
                out.append(n.value)
            elif (isinstance(n, ast.Assign) and len(n.targets) == 1 and _self_attr_name(n.targets[0]) == attr
                  and _self_concat(n.value, attr)) or \
                    (isinstance(n, ast.AugAssign) and isinstance(n.op, ast.Add)
                     and _self_attr_name(n.target) == attr and isinstance(n.value, (ast.List, ast.Tuple))):
                # self.layers = self.layers + [nn.Linear(...)] / self.layers += [nn.Linear(...)]
                extra = n.value.right if isinstance(n, ast.Assign) else n.value
                out += [e for e in extra.elts if _is_module_ctor(ctx, unwrap_same_instance(e))
                        or (isinstance(e, ast.Name) and e.id in local_mods)]
    return out


def _self_concat(value, attr: str) -> bool:
    """`self.<attr> + [...]`: the attribute grown by list concatenation (still a plain list)."""
    return (isinstance(value, ast.BinOp) and isinstance(value.op, ast.Add)
            and _self_attr_name(value.left) == attr and isinstance(value.right, (ast.List, ast.Tuple)))


_RG_FACTORY_SKIP = ("torch.tensor",)


@rule("GP105")
def unregistered_tensor(ctx):
    sym = ctx.symbols
    nn = nn_prefix(ctx)
    tp = torch_prefix(ctx)
    for cname, cls in _module_classes(ctx):
        for m in _methods(cls):
            for n in _method_nodes(ctx, m):
                if n.__class__ is not ast.Assign or len(n.targets) != 1:
                    continue
                attr = _self_attr_name(n.targets[0])
                if attr is None:
                    continue
                v = n.value
                res = _gp105(ctx, v, nn, tp)
                if res is None:
                    continue
                msg, new = res
                fixes = [Fix(f"Register self.{attr} as an nn.Parameter", True, (Edit(ctx.span(v), new),),
                             preferred=True)] if new else []
                yield ctx.finding("GP105", v, f"self.{attr} {msg}: {cname} does not register it, so it is missing "
                                  f"from {cname}.parameters() and no optimizer updates it",
                                  fixes=fixes, data={"model_class": cname, "attribute": attr})


def _qn(ctx, f) -> str:
    return canonical(ctx.symbols.qualname(f) or "")


def _is_param_call(ctx, e) -> bool:
    return isinstance(e, ast.Call) and _qn(ctx, e.func) in ("torch.nn.Parameter",)


def _gp105(ctx, v, nn, tp):
    text = ctx.src.text_of
    if not isinstance(v, (ast.Call, ast.BinOp)):
        return None
    if isinstance(v, ast.Call):
        qn = _qn(ctx, v.func)
        # torch.randn(..., requires_grad=True)
        if qn in _TENSOR_FACTORIES:
            kw = next((k for k in v.keywords if k.arg == "requires_grad"), None)
            if kw is None or const_value(kw.value) is not True:
                return None
            new = None
            if nn is not None:
                new = f"{nn}.Parameter({_without_kw(ctx, v, kw)})"
            return "is a plain tensor with requires_grad=True, not an nn.Parameter", new
        f = v.func
        if isinstance(f, ast.Attribute):
            inner = f.value
            if f.attr == "requires_grad_" and isinstance(inner, ast.Call) and _qn(ctx, inner.func) in _TENSOR_FACTORIES:
                if v.args and const_value(v.args[0]) is not True:
                    return None
                new = f"{nn}.Parameter({text(inner)})" if nn else None
                return "is a plain tensor with requires_grad_(), not an nn.Parameter", new
            if _is_param_call(ctx, inner):
                conv = _conversion(ctx, f.attr, v, tp)
                if conv is None:
                    return None
                label, kwtext = conv
                new = None
                pinner = inner.args[0] if inner.args else None
                if kwtext and isinstance(pinner, ast.Call) and _qn(ctx, pinner.func) in _TENSOR_FACTORIES \
                        and "\n" not in text(pinner) and not any(k.arg == kwtext.split("=")[0] for k in pinner.keywords):
                    ft = text(pinner)
                    sep = ", " if (pinner.args or pinner.keywords) else ""
                    new = f"{text(inner.func)}({ft[:-1]}{sep}{kwtext})" + (
                        text(inner)[len(text(inner.func)) + 1 + len(ft):] if False else ")")
                return f"is nn.Parameter(...).{label}", new
        return None
    # arithmetic on a Parameter, or on a requires_grad factory tensor (a non-leaf plain tensor)
    if isinstance(v, ast.BinOp):
        for side in (v.left, v.right):
            if isinstance(side, ast.Call) and _qn(ctx, side.func) in _TENSOR_FACTORIES:
                kw = next((k for k in side.keywords if k.arg == "requires_grad"), None)
                if kw is not None and const_value(kw.value) is True:
                    new = None
                    if nn is not None and "\n" not in text(v):
                        whole = text(v)
                        ss, vs = ctx.span(side), ctx.span(v)
                        a, b = ss.col - vs.col, ss.end_col - vs.col
                        new = f"{nn}.Parameter({whole[:a]}{_without_kw(ctx, side, kw)}{whole[b:]})"
                    return "is arithmetic on a requires_grad tensor: a plain (non-leaf) Tensor, not an nn.Parameter", new
        if _is_param_call(ctx, v.left) and v.left.args:
            p = v.left
            op = ctx.src.text_in(Span(ctx.span(p).end_line, ctx.span(p).end_col, ctx.span(v).end_line, ctx.span(v).end_col))
            new = f"{text(p.func)}({text(p.args[0])}{op})" if len(p.args) == 1 and not p.keywords else None
            return "is arithmetic on an nn.Parameter, which returns a plain Tensor", new
        if _is_param_call(ctx, v.right) and v.right.args:
            p = v.right
            op = ctx.src.text_in(Span(ctx.span(v).line, ctx.span(v).col, ctx.span(p).line, ctx.span(p).col))
            new = f"{text(p.func)}({op}{text(p.args[0])})" if len(p.args) == 1 and not p.keywords else None
            return "is arithmetic on an nn.Parameter, which returns a plain Tensor", new
    return None


_DTYPES = {"double": "float64", "half": "float16", "bfloat16": "bfloat16"}


def _conversion(ctx, attr, call, tp):
    if attr in _DTYPES:
        return f"{attr}(), which returns a plain Tensor", (f"dtype={tp}.{_DTYPES[attr]}" if tp else None)
    if attr == "cuda":
        if call.args:
            return "cuda(...), which returns a plain Tensor", None
        return "cuda(), which returns a plain Tensor", 'device="cuda"'
    if attr == "to":
        if not call.args and not call.keywords:
            return None
        a = call.args[0] if call.args else next((k.value for k in call.keywords if k.arg in ("device", "dtype")), None)
        if a is None:
            return None
        c = const_value(a)
        if isinstance(c, str) and c.startswith("cpu"):
            return None  # Parameter.to('cpu') on a CPU tensor returns the same Parameter
        qn = _qn(ctx, a)
        if qn in ("torch.float32", "torch.float"):
            return None
        atext = ctx.src.text_of(a)
        if qn.startswith("torch.") and qn.rsplit(".", 1)[-1] in ("float64", "double", "float16", "half",
                                                                  "bfloat16", "int64", "long", "int32"):
            return f"to({atext}), which returns a plain Tensor", f"dtype={atext}"
        if len(call.args) > 1 or call.keywords and call.args:
            return f"to({atext}, ...), which returns a plain Tensor whenever it moves or converts the data", None
        return (f"to({atext}), which returns a plain Tensor whenever it moves the data (to a GPU)",
                f"device={atext}")
    return None


def _without_kw(ctx, call, kw) -> str:
    """Source text of `call` without the keyword argument `kw`."""
    full = ctx.span(call)
    items = list(call.args) + list(call.keywords)
    idx = items.index(kw)
    ks = ctx.span(kw)
    if idx > 0:
        prev = ctx.span(items[idx - 1])
        cut = Span(prev.end_line, prev.end_col, ks.end_line, ks.end_col)
    elif len(items) > 1:
        nxt = ctx.span(items[1])
        cut = Span(ks.line, ks.col, nxt.line, nxt.col)
    else:
        cut = ks
    before = ctx.src.text_in(Span(full.line, full.col, cut.line, cut.col))
    after = ctx.src.text_in(Span(cut.end_line, cut.end_col, full.end_line, full.end_col))
    return before + after


@rule("GP112")
def layer_in_forward(ctx):
    from gradpath.analysis.modclass import forward_reach, opaque_library_class, stored_on_self
    done: set = set()
    for cname, cls in _module_classes(ctx):
        methods = _methods(cls)
        init = next((m for m in methods if m.name == "__init__"), None)
        attrs = None  # the attribute names the class's methods use: made for a fix's new name
        # forward and the methods it reaches through self. calls (own or inherited): each def once
        for owner, m in forward_reach(ctx.symbols, cname):
            if id(m) in done or (owner != cname and m.name == "forward"):
                continue
            done.add(id(m))
            where = "forward()" if m.name == "forward" else f"{m.name}() (which forward() calls)"
            parents = ctx.facts.parents
            for n in _method_nodes(ctx, m):
                if n.__class__ is not ast.Call or not _is_module_ctor(ctx, n):
                    continue
                inv = ctx.facts.inventories.of_call(n)
                if inv is None or not inv.has_params or opaque_library_class(ctx, n, inv):
                    continue
                par = parents.get(id(n))
                if stored_on_self(ctx.facts.enclosing_stmt(n)) and _under_if(n, parents, m):
                    continue  # lazy init: `if not self.initialized: self.lin[k] = nn.Linear(...).to(dev)`
                target_name = None
                self_target = None
                if isinstance(par, ast.Assign) and len(par.targets) == 1:
                    t = par.targets[0]
                    if _self_attr_name(t):
                        # self.fc = nn.Linear(...) in forward: lazy init under an `if` is a pattern
                        if _under_if(n, parents, m):
                            continue
                        self_target = _self_attr_name(t)
                    elif isinstance(t, ast.Name):
                        target_name = t.id
                text = ctx.src.text_of(n)
                pnames = names_text(inv.names) if inv.params else "parameters"
                msg = (f"{text if len(text) <= 40 else short(ctx.facts.module_class_of_call(n)) + '(...)'} is built inside "
                       f"{where}: every call creates a fresh {pnames} that {cname} does not register, so no "
                       f"optimizer trains them")
                if owner == cname and attrs is None:
                    attrs = {a for mm in methods for x in ast.walk(mm) for a in [_self_attr_name(x)] if a}
                fixes = _gp112_fix(ctx, n, init, target_name, attrs, par, self_target) if owner == cname else []
                yield ctx.finding("GP112", n, msg, fixes=fixes,
                                  data={"model_class": cname, "layer_class": ctx.facts.module_class_of_call(n)})


def _under_if(node, parents, stop) -> bool:
    cur = parents.get(id(node))
    while cur is not None and cur is not stop:
        if isinstance(cur, ast.If):
            return True
        cur = parents.get(id(cur))
    return False


def _gp112_fix(ctx, call, init, target_name, attrs, parent, self_target=None) -> list[Fix]:
    if init is None or not init.body:
        return []
    # only when the constructor's arguments need nothing from forward()
    for n in ast.walk(call):
        if isinstance(n, ast.Name) and n is not call.func and not _is_root_of_func(n, call):
            if n.id == "self":
                continue
            if n.id in ctx.symbols.aliases or n.id in ctx.symbols.classes:
                continue
            return []
    text = ctx.src.text_of(call)
    if "\n" in text:
        return []
    last = init.body[-1]
    end_line = last.end_lineno or last.lineno
    indent = ctx.src.indent_of(init.body[0].lineno)
    line_len = len(ctx.src.line_text(end_line))
    if self_target is not None:
        # `self.fc = nn.Linear(...)` in forward: move the whole statement to __init__
        ps = ctx.span(parent)
        rest = ctx.src.line_text(ps.end_line)[ps.end_col:].strip()
        if ctx.src.line_text(ps.line)[:ps.col].strip() or (rest and not rest.startswith("#")):
            return []
        stmt = ctx.src.text_of(parent)
        insert = Edit(Span(end_line, line_len, end_line, line_len), f"\n{indent}{stmt}")
        delete = Edit(Span(ps.line, 0, ps.end_line + 1, 0), "")
        return [Fix(f"Build self.{self_target} once in __init__", False, (insert, delete), preferred=True)]
    base = target_name or short(ctx.facts.module_class_of_call(call) or "layer").lower()
    name, i = base, 2
    while name in attrs and not (target_name and name == target_name and False):
        name = f"{base}{i}"
        i += 1
    last = init.body[-1]
    end_line = last.end_lineno or last.lineno
    indent = ctx.src.indent_of(init.body[0].lineno)
    line_len = len(ctx.src.line_text(end_line))
    insert = Edit(Span(end_line, line_len, end_line, line_len), f"\n{indent}self.{name} = {text}")
    replace = Edit(ctx.span(call), f"self.{name}")
    return [Fix(f"Build it once in __init__ as self.{name}", False, (insert, replace), preferred=True)]


def _is_root_of_func(name_node, call) -> bool:
    f = call.func
    while isinstance(f, ast.Attribute):
        f = f.value
    return f is name_node
