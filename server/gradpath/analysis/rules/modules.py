"""GP113 (a registered submodule nothing uses) and GP114 (a plain tensor attribute that forward reads):
state of an nn.Module class that training never touches, read from the class as written in this file.

Both stay quiet when the file reads the attribute in a way the analysis cannot follow: any other
mention of the attribute's name (another method, the training code, a string such as
`register_buffer("x", ...)` or a name filter), or a method that reads attributes without naming them
(`self.children()`, `getattr(self, name)`, `self._modules`).
"""
from __future__ import annotations

import ast

from gradpath.analysis import modclass as mc
from gradpath.analysis.findings import Edit, Fix, Related
from gradpath.analysis.rules import rule
from gradpath.analysis.rules._gp1 import nn_prefix
from gradpath.analysis.symbols import canonical

# RULES.md's factory list: a fresh tensor with requires_grad=False unless asked
_FACTORIES = frozenset({"torch.randn", "torch.rand", "torch.zeros", "torch.ones", "torch.empty", "torch.eye"})
_CHAIN = frozenset({"to", "cuda", "cpu", "float", "double", "half", "bfloat16", "contiguous", "normal_",
                    "uniform_", "fill_", "zero_", "t"})


def _names_text(names: list[str], limit: int = 4) -> str:
    if len(names) <= 1:
        return "".join(names)
    if len(names) > limit:
        return ", ".join(names[:limit - 1]) + f" and {len(names) - limit + 1} more"
    return ", ".join(names[:-1]) + " and " + names[-1]


def _clip(text: str, limit: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _module_classes(ctx):
    sym = ctx.symbols
    for name in sym.classes:
        if sym.is_module_class(name):
            yield name


def _text_facts(ctx) -> mc.TextFacts:
    # from the whole text, also when an incremental re-analysis runs the rules on a part of the tree
    return ctx.memo("modclass:text", lambda: mc.TextFacts(ctx.src.text))


def _dynamic(sym, tf: mc.TextFacts, cls: str) -> bool:
    """The class, a base of it, or a subclass of it reads attributes without naming them."""
    return mc.dynamic_access(sym, cls) or bool(tf.subclasses(cls) & tf.dynamic)


# -- GP113 -----------------------------------------------------------------------------------------
@rule("GP113")
def unused_submodule(ctx):
    sym = ctx.symbols
    if not any(sym.is_module_class(c) for c in sym.classes):
        return
    tf = _text_facts(ctx)
    if not tf.trains or tf.penalises:
        return  # nothing is trained in this file / every parameter reaches a loss
    for cls in _module_classes(ctx):
        if not tf.built(cls):
            continue
        attrs = mc.init_attrs(sym, cls)
        if not attrs:
            continue
        cands = [a for a in attrs if not tf.used(a.attr) and not tf.stored_twice(a.attr)]
        if not cands:
            continue
        # (the questions that walk methods last: most classes have no candidate)
        reach = mc.forward_reach(sym, cls)
        if not reach or _dynamic(sym, tf, cls):
            continue
        fwd_cls, fwd = reach[0]
        for a in cands:
            layer = ctx.facts.module_class_of_call(a.value)
            if layer is None:
                continue
            inv = ctx.facts.inventories.of_call(a.value)
            if inv is None or not inv.has_params or mc.opaque_library_class(ctx, a.value, inv):
                continue
            names = [f"{a.attr}.{n}" for n in inv.names]
            if names:
                what = (f"its {len(names)} parameter tensor{'s' if len(names) != 1 else ''} "
                        f"({_names_text(names)})")
            else:
                what = "its parameters"
            text = _clip(ctx.src.text_of(a.value), 48)
            where = f"{cls}.forward" if fwd_cls == cls else f"{cls}.forward (inherited from {fwd_cls})"
            one = len(names) == 1
            msg = (f"self.{a.attr} = {text} is registered in {cls}.__init__ but nothing reachable from {where} "
                   f"or the training code uses it: {what} {'gets' if one else 'get'} no gradient (grad stays None) "
                   f"and never {'changes' if one else 'change'}; "
                   f"under DistributedDataParallel the next iteration raises 'Expected to have finished "
                   f"reduction in the prior iteration'")
            rel = [Related(ctx.span(fwd), f"{where} never calls self.{a.attr}")]
            yield ctx.finding("GP113", a.value, msg, related=rel,
                              data={"model_class": cls, "attribute": a.attr, "params": names[:50],
                                    "layer_class": layer})


# -- GP114 -----------------------------------------------------------------------------------------
def _factory(ctx, value) -> ast.Call | None:
    """The torch factory call a value is (`torch.randn(k, d)`, `torch.zeros(n).to(dev)`, `torch.randn(k, d) * 0.01`)."""
    n = value
    while True:
        if isinstance(n, ast.BinOp) and isinstance(n.op, (ast.Mult, ast.Div, ast.Add, ast.Sub)):
            if isinstance(n.right, ast.Constant) or isinstance(n.right, ast.Name):
                n = n.left
                continue
            if isinstance(n.left, ast.Constant):
                n = n.right
                continue
            return None
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr in _CHAIN \
                and isinstance(n.func.value, (ast.Call, ast.BinOp)):
            if any(k.arg == "requires_grad" for k in n.keywords):
                return None
            n = n.func.value
            continue
        break
    if not isinstance(n, ast.Call):
        return None
    qn = ctx.symbols.qualname(n.func)
    if not qn or canonical(qn) not in _FACTORIES:
        return None
    if any(k.arg == "requires_grad" for k in n.keywords):
        return None  # GP105's business (True), or a deliberate constant (False)
    return n


@rule("GP114")
def plain_tensor_state(ctx):
    sym = ctx.symbols
    tf = None
    nn = nn_prefix(ctx)
    for cls in _module_classes(ctx):
        attrs = mc.init_attrs(sym, cls)
        if not attrs:
            continue
        made = [(a, f) for a in attrs for f in [_factory(ctx, a.value)] if f is not None]
        if not made:
            continue
        reach = mc.forward_reach(sym, cls)
        if not reach:
            continue
        if tf is None:
            tf = _text_facts(ctx)
        reads: dict[str, ast.AST] = {}
        for _c, fn in reach:
            me = fn.args.args[0].arg if fn.args.args else "self"
            for n in mc.walk_body(fn):
                a = mc.self_attr(n, me)
                if a and isinstance(n.ctx, ast.Load):
                    reads.setdefault(a, n)
        fwd_cls, fwd = reach[0]
        for a, call in made:
            if a.attr not in reads or a.attr in tf.strings:
                continue
            if tf.stored_twice(a.attr):
                continue  # state that is rebuilt or replaced (a recurrent hidden state, a lazy cache)
            if _wrapped_later(a, sym, cls):
                continue
            fn_name = canonical(sym.qualname(call.func) or "torch.tensor")
            text = _clip(ctx.src.text_of(a.value), 48)
            read = reads[a.attr]
            msg = (f"self.{a.attr} = {text} is a plain tensor that {cls}.forward reads: it is neither a parameter "
                   f"nor a buffer, so it is missing from {cls}.state_dict() (a checkpoint loses it), .to()/.cuda() "
                   f"do not move it, and no optimizer trains it")
            if fn_name in ("torch.randn", "torch.rand", "torch.empty"):
                msg += " (if it was meant to be learned, it stays at its random start)"
            rel = [Related(ctx.span(read), f"read here: self.{a.attr}")]
            fixes = []
            vt = ctx.src.text_of(a.value)
            if nn:
                fixes.append(Fix(f"Make self.{a.attr} a learned nn.Parameter", False,
                                 (Edit(ctx.span(a.value), f"{nn}.Parameter({vt})"),)))
            stmt = a.stmt
            me = stmt.targets[0].value.id if isinstance(stmt.targets[0].value, ast.Name) else "self"
            fixes.append(Fix(f"Register self.{a.attr} as a buffer (saved and moved with the module, not trained)",
                             False, (Edit(ctx.span(stmt), f'{me}.register_buffer("{a.attr}", {vt})'),)))
            yield ctx.finding("GP114", a.value, msg, related=rel, fixes=fixes,
                              data={"model_class": cls, "attribute": a.attr, "factory": fn_name})


def _wrapped_later(a: mc.InitAttr, sym, cls: str) -> bool:
    """`nn.Parameter(self.x)` / `self.register_buffer(name, self.x)` anywhere in the class chain."""
    for c in mc.class_chain(sym, cls):
        for n in ast.walk(sym.classes[c].node):
            if isinstance(n, ast.Call) and any(mc.self_attr(x) == a.attr for x in n.args):
                f = n.func
                fname = f.attr if isinstance(f, ast.Attribute) else (f.id if isinstance(f, ast.Name) else "")
                if fname in ("Parameter", "register_buffer", "register_parameter", "Buffer"):
                    return True
    return False
