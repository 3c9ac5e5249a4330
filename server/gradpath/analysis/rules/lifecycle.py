"""GP106, GP107: the optimizer and the model's lifetime: a model rebound after the optimizer took its
parameters, and every parameter frozen before an optimizer filtered on requires_grad."""
from __future__ import annotations

import ast

from gradpath.analysis.facts import _is_requires_grad_test, _param_rg_set, const_value, key_of, path_parts
from gradpath.analysis.findings import Edit, Fix, Related, Span
from gradpath.analysis.rules import rule
from gradpath.analysis.rules._gp1 import model_data, short
from gradpath.analysis.symbols import canonical


# -- GP106 ----------------------------------------------------------------------------------
@rule("GP106")
def stale_optimizer(ctx):
    facts = ctx.facts
    for opt in facts.optimizers:
        cov = facts.coverage(opt)
        models = list(cov.models().values())
        if len(models) != 1 or opt.key is None or opt.stmt is None:
            continue
        old = models[0]
        later = sorted((b for b in facts.models if b.key == old.key and b.scope is opt.scope and b.line > opt.line
                        and b.origin in ("new", "copy")), key=lambda b: b.line)
        for new in later:
            if new.origin == "new" and _wraps(new.value, old.key):
                continue  # nn.DataParallel(model), Wrapper(model): shares the old instance's tensors
            # the optimizer is rebuilt after the rebinding: fine
            rebuilt = any(a.line > new.line and a.scope is opt.scope for a in _assignments(facts, opt.key, opt.scope))
            if rebuilt:
                break
            steps = [c for c in facts.calls if c.receiver == opt.key and c.method == "step" and c.scope is opt.scope
                     and c.line > new.line]
            used = [c for c in facts.model_calls(new.key) if c.lineno > new.line]
            helper = None  # a local function trains both: train_iter(new_model, optimizer, x)
            if not steps or not used:
                helper = _trained_by_helper(ctx, opt.key, new.key, opt.scope, new.line)
                if helper is None:
                    continue
            what = "a copy" if new.origin == "copy" else f"a new {short(new.cls)}"
            msg = (f"{new.key} is rebound to {what} after {opt.short} took the parameters of the previous instance "
                   f"(line {opt.line}): {opt.short} keeps updating the old tensors and the new {new.key} never changes")
            if helper is not None:
                step_at = Related(ctx.span(helper), f"{ctx.src.text_of(helper.func)}() steps {opt.key} on the old "
                                                    "instance here")
            else:
                step_at = Related(ctx.span(steps[0].call), f"{opt.key}.step() updates the old instance here")
            related = [Related(ctx.span(opt.call), f"{opt.short} takes the parameters of the old {old.key} here"),
                       step_at]
            fixes = _move_after(ctx, opt.stmt, new.stmt, opt)
            yield ctx.finding("GP106", new.stmt, msg, fixes=fixes, related=related,
                              data=model_data(new, opt))
            break
    yield from _copy_trained_instead(ctx)


def _trained_by_helper(ctx, opt_key: str, model_key: str, scope, after_line: int):
    """A call, after `after_line` in `scope`, of a function defined in this file that receives both
    the optimizer and the model (`train_iter(model, optimizer, x)`) and, in its own body, calls the
    model and steps the optimizer it received: the model and optimizer are trained together there."""
    defs = {s.node.name: s for s in ctx.facts.scopes
            if isinstance(s.node, (ast.FunctionDef, ast.AsyncFunctionDef)) and s.class_name is None}
    for n in scope.walk():
        if not (isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in defs
                and n.lineno > after_line):
            continue
        fn_scope = defs[n.func.id]
        fn = fn_scope.node
        params = [a.arg for a in fn.args.posonlyargs + fn.args.args]
        bound = {params[i]: key_of(a) for i, a in enumerate(n.args) if i < len(params)
                 and not isinstance(a, ast.Starred)}
        bound.update({k.arg: key_of(k.value) for k in n.keywords if k.arg})
        pm = next((p for p, k in bound.items() if k == model_key), None)
        po = next((p for p, k in bound.items() if k == opt_key), None)
        if pm is None or po is None:
            continue
        body = list(fn_scope.walk())
        steps = any(isinstance(x, ast.Call) and isinstance(x.func, ast.Attribute) and x.func.attr == "step"
                    and isinstance(x.func.value, ast.Name) and x.func.value.id == po for x in body)
        calls = any(isinstance(x, ast.Call) and isinstance(x.func, ast.Name) and x.func.id == pm for x in body)
        rebound = any(isinstance(x, ast.Name) and x.id in (pm, po) and isinstance(x.ctx, ast.Store)
                      for x in body)
        if steps and calls and not rebound:
            return n
    return None


def _copy_trained_instead(ctx):
    """`model2 = copy.deepcopy(model)` after the optimizer took model's parameters, then model2 is
    the one trained (its output reaches the backwarded loss, model's no longer does): model2 never
    changes. A copy kept as an EMA/target network (updated under no_grad, never backwarded, or
    backwarded together with the trained model) is not this."""
    facts = ctx.facts
    opts = [o for o in facts.optimizers if o.stmt is not None]
    done: set[int] = set()
    for opt in opts:
        models = list(facts.coverage(opt).models().values())
        if len(models) != 1:
            continue
        # an optimizer here we cannot read, or parameters added to one later, may hold the copy
        if any(facts.coverage(o).unknown for o in opts if o.scope is opt.scope) or any(
                c.method == "add_param_group" and c.scope is opt.scope for c in facts.calls):
            continue
        old = models[0]
        for new in sorted(facts.models, key=lambda b: b.line):
            if new.origin != "copy" or new.key == old.key or new.scope is not opt.scope or new.line <= opt.line \
                    or id(new) in done or not isinstance(new.value, ast.Call) \
                    or canonical(ctx.symbols.qualname(new.value.func) or "") != "copy.deepcopy":
                continue
            src = facts.model_at(new.source_key, new.scope, new.line - 1) if new.source_key else None
            if src is None or not (facts.same_instance(src, old) or src.key == old.key):
                continue
            if facts.model_at(old.key, opt.scope, new.line) is not facts.model_at(old.key, opt.scope, opt.line):
                continue  # the old name was rebound in between (that is the GP106 above)
            if _held_anywhere(facts, new) or facts.escapes(new) or any(
                    o.line > new.line and o.scope is opt.scope for o in opts):
                continue
            trained = [b for b in facts.reaches_backward(new) if b.scope is opt.scope and b.line > new.line]
            if not trained:
                continue
            later = [b for b in facts.backwards() if b.scope is opt.scope and b.line > new.line]
            if any(old.key in b.deps for b in later):
                continue  # the original is still trained (distillation, a target network)
            bw = trained[0]
            steps = [c for c in facts.calls if c.receiver == opt.key and c.method == "step" and c.scope is opt.scope
                     and c.line > bw.line] if opt.key else []
            if not steps:
                continue
            done.add(id(new))
            msg = (f"{new.key} is a deep copy of {old.key} made after {opt.short} took the parameters of {old.key} "
                   f"(line {opt.line}), and {new.key} is the model trained here: {opt.short} keeps updating "
                   f"{old.key}'s tensors and {new.key} never changes")
            related = [Related(ctx.span(opt.call), f"{opt.short} takes the parameters of {old.key} here"),
                       Related(ctx.span(bw.node), f"the loss that {new.key}'s output reaches is backwarded here"),
                       Related(ctx.span(steps[0].call), f"{opt.key}.step() updates {old.key}, not {new.key}")]
            yield ctx.finding("GP106", new.stmt, msg, fixes=_retarget_after(ctx, opt, old, new), related=related,
                              data=model_data(new, opt))


def _held_anywhere(facts, model) -> bool:
    """Some optimizer holds this instance (or the same name in the same scope)."""
    for o in facts.optimizers:
        cov = facts.coverage(o)
        for m in [pt.model for pt in cov.parts if pt.model is not None] + [m for _n, m, _p in cov.modules]:
            if facts.same_instance(m, model) or (m.key == model.key and m.scope is model.scope):
                return True
    return False


def _retarget_after(ctx, opt, old, new) -> list[Fix]:
    """Build the optimizer after the copy, on the copy's parameters (unsafe)."""
    src = ctx.src
    stmt = opt.stmt
    if stmt.lineno != stmt.end_lineno or opt.params is None or src.text_of(opt.params) != f"{old.key}.parameters()":
        return []
    line = src.line_text(stmt.lineno)
    if not line.isascii() or line[:stmt.col_offset].strip() or line[stmt.end_col_offset:].strip()[:1] not in ("", "#"):
        return []
    ps = ctx.span(opt.params)
    text = line[stmt.col_offset:ps.col] + f"{new.key}.parameters()" + line[ps.end_col:stmt.end_col_offset]
    after = new.stmt
    a1 = after.end_lineno or after.lineno
    end_len = len(src.line_text(a1))
    nl = src.newline
    delete = Edit(Span(stmt.lineno, 0, stmt.lineno + 1, 0), "")
    insert = Edit(Span(a1, end_len, a1, end_len), nl + src.indent_of(after.lineno) + text)
    return [Fix(f"Build {opt.key or opt.short} on {new.key}.parameters() after the copy", False, (delete, insert),
                preferred=True)]


def _wraps(call, key: str) -> bool:
    return any(key_of(n) == key for n in ast.walk(call) if isinstance(n, (ast.Name, ast.Attribute)))


def _assignments(facts, key, scope):
    out = []
    for node in scope.walk():
        if isinstance(node, ast.Assign) and any(key_of(t) == key for t in node.targets):
            out.append(node)
            node.line = node.lineno  # type: ignore[attr-defined]
            node.scope = scope  # type: ignore[attr-defined]
    return out


def _move_after(ctx, stmt, after, opt) -> list[Fix]:
    src = ctx.src
    s0, s1 = stmt.lineno, stmt.end_lineno or stmt.lineno
    if src.line_text(s0)[:stmt.col_offset].strip() or src.line_text(s1)[stmt.end_col_offset:].strip().startswith(";"):
        return []
    lines = [src.line_text(i) for i in range(s0, s1 + 1)]
    old_indent = src.indent_of(s0)
    new_indent = src.indent_of(after.lineno)
    moved = []
    for ln in lines:
        moved.append(new_indent + ln[len(old_indent):] if ln.startswith(old_indent) else ln)
    a1 = after.end_lineno or after.lineno
    end_len = len(src.line_text(a1))
    nl = src.newline
    delete = Edit(Span(s0, 0, s1 + 1, 0), "")
    insert = Edit(Span(a1, end_len, a1, end_len), nl + nl.join(moved))
    return [Fix(f"Build {opt.key} after {after.targets[0].id if isinstance(after, ast.Assign) and isinstance(after.targets[0], ast.Name) else 'the rebinding'}",
                False, (delete, insert), preferred=True)]


def _empty_outcome(opt, every: bool, when: str = "") -> str:
    """What PyTorch does with the empty list: `ValueError` when it is the whole parameter argument;
    nothing at all when it sits inside a param-group dict (an empty group is accepted, and the
    parameters meant for it just never train)."""
    node = opt.params
    if isinstance(node, (ast.List, ast.Tuple)) and any(isinstance(e, ast.Dict) for e in node.elts):
        if every:
            return ("every parameter group is empty, and PyTorch raises no error for an empty group: "
                    "nothing trains, silently")
        return ("that parameter group is empty, and PyTorch raises no error for an empty group: the "
                "parameters meant for it never train")
    return "PyTorch raises ValueError: optimizer got an empty parameter list" + when


# -- GP107 ----------------------------------------------------------------------------------
@rule("GP107")
def all_frozen(ctx):
    facts = ctx.facts
    reported: set[int] = set()
    for opt in facts.optimizers:
        cov = facts.coverage(opt)
        if cov.unknown or not cov.parts or cov.modules:
            continue
        if not all(pt.kind == "grad-filter" for pt in cov.parts):
            continue
        models = {id(pt.model): pt.model for pt in cov.parts}
        all_frozen_ = True
        freezes = []
        for model in models.values():
            inv = facts.inventory_of(model)
            if inv is None or not inv.complete or not inv.params:
                all_frozen_ = False
                break
            if _changed_after_build(facts, model):
                all_frozen_ = False
                break
            frozen, uncertain = facts.frozen_names(model, before_line=opt.line, scope=opt.scope)
            covered = cov.names_of(model)
            if uncertain or not covered or (covered - frozen):
                all_frozen_ = False
                break
            visible = facts.visible_scopes(opt.scope)
            freezes += [fz for fz in facts.freezes() if not fz.value
                        and (facts.same_instance(fz.model, model)
                             or (fz.model.key == model.key and any(fz.scope is v for v in visible)))
                        and (fz.scope is not opt.scope or fz.line < opt.line)]
        if not all_frozen_ or not freezes:
            continue
        model = next(iter(models.values()))
        fz = freezes[0]
        msg = (f"{opt.short} gets only the parameters of {model.key} that require grad, but every one of them is "
               f"frozen (line {fz.line}): {_empty_outcome(opt, True)}")
        related = [Related(ctx.span(f.node), f"{f.model.key}{'.' + f.prefix if f.prefix else ''} is frozen here")
                   for f in freezes[:3]]
        reported.add(id(opt))
        yield ctx.finding("GP107", opt.params, msg, related=related, data=model_data(model, opt, []))
    # a model whose parameter list we cannot read (torchvision, torch.load, an unresolved import, a
    # function parameter): a blanket freeze of it right before the filter is enough
    for opt in facts.optimizers:
        if id(opt) in reported:
            continue
        hit = _blanket_frozen(ctx, opt)
        if hit is None:
            continue
        recv, fz = hit
        key = ctx.src.text_of(recv)
        msg = (f"{opt.short} gets only the parameters of {key} that require grad, but every one of them is "
               f"frozen (line {fz.lineno}): {_empty_outcome(opt, True)}")
        data = {"model": key_of(recv)} if key_of(recv) else {}
        data.update(model_data(None, opt, []))
        yield ctx.finding("GP107", opt.params, msg, related=[Related(ctx.span(fz), f"{key} is frozen here")],
                          data=data)


# A statement that may give a frozen model trainable parameters again sits between the freeze and
# the optimizer: anything we cannot see into is treated as such.
_KEEPS_FREEZE = frozenset({"to", "cuda", "cpu", "train", "eval", "float", "double", "half", "bfloat16",
                           "parameters", "named_parameters", "children", "named_children", "modules",
                           "named_modules", "buffers", "named_buffers", "state_dict", "load_state_dict",
                           "zero_grad", "forward", "__call__", "share_memory"})


_HARMLESS_FUNCS = frozenset({"print", "len", "isinstance", "type", "id", "repr", "str", "format", "hasattr"})


def _unwrap_iter(e):
    while isinstance(e, ast.Call) and isinstance(e.func, ast.Name) and e.func.id in ("list", "tuple", "iter") \
            and len(e.args) == 1 and not e.keywords:
        e = e.args[0]
    return e


def _params_iter(it) -> tuple[ast.AST, str] | None:
    """`X.parameters()` / `X.named_parameters()` with no arguments (or recurse=True): (X, method)."""
    if not (isinstance(it, ast.Call) and isinstance(it.func, ast.Attribute)
            and it.func.attr in ("parameters", "named_parameters") and not it.args):
        return None
    for kw in it.keywords:
        if not (kw.arg == "recurse" and const_value(kw.value) is True):
            return None
    return it.func.value, it.func.attr


def _loop_var(target, method: str) -> str | None:
    if method == "parameters" and isinstance(target, ast.Name):
        return target.id
    if method == "named_parameters" and isinstance(target, ast.Tuple) and len(target.elts) == 2 \
            and isinstance(target.elts[1], ast.Name):
        return target.elts[1].id
    return None


def _rg_test_on(test, var: str) -> bool:
    if not _is_requires_grad_test(test):
        return False
    node = test.left if isinstance(test, ast.Compare) else test
    return isinstance(node.value, ast.Name) and node.value.id == var


def _grad_filter_receiver(e):
    """`[p for p in X.parameters() if p.requires_grad]`, the generator and `named_parameters` forms,
    `filter(lambda p: p.requires_grad, X.parameters())`: X, else None."""
    e = _unwrap_iter(e)
    if isinstance(e, (ast.ListComp, ast.GeneratorExp, ast.SetComp)) and len(e.generators) == 1:
        gen = e.generators[0]
        src = _params_iter(gen.iter)
        if src is None or gen.is_async or not gen.ifs:
            return None
        var = _loop_var(gen.target, src[1])
        if var and all(_rg_test_on(c, var) for c in gen.ifs):
            return src[0]
        return None
    if isinstance(e, ast.Call) and isinstance(e.func, ast.Name) and e.func.id == "filter" and len(e.args) == 2 \
            and not e.keywords:
        pred, it = e.args
        src = _params_iter(it)
        if src is None or src[1] != "parameters" or not isinstance(pred, ast.Lambda):
            return None
        a = pred.args
        if len(a.args) == 1 and not (a.posonlyargs or a.kwonlyargs or a.vararg or a.kwarg) \
                and _rg_test_on(pred.body, a.args[0].arg):
            return src[0]
    return None


def _dominators(facts, stmt, scope) -> list[ast.stmt]:
    """Statements of `scope` that always run before `stmt` on the way to it: the earlier siblings of
    `stmt` and of each enclosing statement (closest first). Branch and handler bodies stop the climb
    at their own block."""
    out: list[ast.stmt] = []
    cur = stmt
    while cur is not None and cur is not scope.node:
        par = facts.parent(cur)
        if par is None:
            break
        block = None
        for name in ("body", "orelse", "finalbody"):
            lst = getattr(par, name, None)
            if isinstance(lst, list) and any(x is cur for x in lst):
                block = lst
                break
        if block is not None:
            i = next(i for i, x in enumerate(block) if x is cur)
            out.extend(reversed(block[:i]))
        if isinstance(par, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            break
        cur = par
    return out


def _is_local_def_call(facts, call) -> bool:
    f = call.func
    names = facts.ctx.memo("gp107.local_defs", lambda: {s.name for s in facts.scopes if s.kind == "function"})
    return isinstance(f, ast.Name) and f.id in names


def _single_def(facts, name: str, opt) -> ast.Assign | None:
    """The one plain assignment of `name` that always runs before the optimizer, with no other
    write, mutation or hand-off of the name in the scope; else None."""
    found = None
    for node in opt.scope.walk():
        if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == name for n0 in targets for t in ast.walk(n0)):
                if found is not None or not isinstance(node, ast.Assign) or len(node.targets) != 1 \
                        or not isinstance(node.targets[0], ast.Name):
                    return None
                found = node
        elif isinstance(node, (ast.For, ast.AsyncFor, ast.With, ast.comprehension, ast.NamedExpr)):
            tgt = getattr(node, "target", None)
            if tgt is not None and any(isinstance(t, ast.Name) and t.id == name for t in ast.walk(tgt)):
                return None
        elif isinstance(node, ast.Call) and node is not opt.call:
            if isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Name) \
                    and node.func.value.id == name:
                return None
            args = list(node.args) + [k.value for k in node.keywords]
            if any(isinstance(a, ast.Name) and a.id == name for a in args):
                return None
    if found is None or found.lineno >= opt.line:
        return None
    if not any(d is found for d in _dominators(facts, opt.stmt, opt.scope)):
        return None
    return found


def _blanket_freeze(ctx, stmt, parts: list[str], depth: int = 0) -> bool:
    """`for p in Y.parameters(): p.requires_grad = False` (every parameter, no exit from the loop)
    or `Y.requires_grad_(False)`, where Y is `parts` or a module that contains it."""
    def covers(y) -> bool:
        yp = path_parts(y)
        return bool(yp) and parts[:len(yp)] == yp
    if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call):
        call = stmt.value
        if isinstance(call.func, ast.Attribute) and call.func.attr == "requires_grad_" and covers(call.func.value):
            arg = call.args[0] if call.args else next((k.value for k in call.keywords if k.arg == "requires_grad"),
                                                      None)
            return arg is not None and const_value(arg) is False
        if isinstance(call.func, ast.Name) and depth == 0:
            return _helper_freezes(ctx, call, covers)
        return False
    if not isinstance(stmt, ast.For) or stmt.orelse:
        return False
    src = _params_iter(stmt.iter)
    if src is None or not covers(src[0]):
        return False
    var = _loop_var(stmt.target, src[1])
    if var is None:
        return False
    if not any(_param_rg_set(s, var) is False for s in stmt.body):
        return False
    for node in ast.walk(stmt):
        if isinstance(node, (ast.Break, ast.Continue, ast.Return, ast.Yield, ast.YieldFrom)):
            return False
        if _sets_requires_grad(node) not in (None, False):
            return False
    return True


def _helper_freezes(ctx, call, covers) -> bool:
    """`freeze(model)` where `def freeze(m): for p in m.parameters(): p.requires_grad = False` is a
    function of this file that freezes all of its argument on every path, and nothing after that."""
    facts = ctx.facts
    defs = [s for s in facts.scopes if s.kind == "function" and s.name == call.func.id]
    if len(defs) != 1 or any(isinstance(a, ast.Starred) for a in call.args):
        return False
    fn = defs[0].node
    if fn.args.vararg or fn.args.kwarg or fn.decorator_list:
        return False
    params = [a.arg for a in fn.args.posonlyargs + fn.args.args]
    names = [params[i] for i, a in enumerate(call.args) if i < len(params) and covers(a)]
    names += [k.arg for k in call.keywords if k.arg in params and covers(k.value)]
    for pname in names:
        for i, st in enumerate(fn.body):
            if _blanket_freeze(ctx, st, [pname], depth=1):
                before = [n for b in fn.body[:i] for n in ast.walk(b)]
                after = [n for b in fn.body[i + 1:] for n in ast.walk(b)]
                if any(isinstance(n, (ast.Return, ast.Yield, ast.YieldFrom)) for n in before):
                    return False
                if any(isinstance(n, ast.Name) and n.id == pname and isinstance(n.ctx, ast.Store) for n in before):
                    return False
                return not _may_unfreeze(ctx, after, [pname])
    return False


def _sets_requires_grad(node):
    """For a requires_grad write (`x.requires_grad = v`, `x.requires_grad_(v)`): v when it is a
    constant, "?" when it is not; None for any other node."""
    if isinstance(node, ast.Assign):
        for t in node.targets:
            if isinstance(t, ast.Attribute) and t.attr == "requires_grad":
                v = const_value(node.value)
                return v if isinstance(v, bool) else "?"
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "requires_grad_":
        arg = node.args[0] if node.args else next((k.value for k in node.keywords if k.arg == "requires_grad"), None)
        if arg is None:
            return True
        v = const_value(arg)
        return v if isinstance(v, bool) else "?"
    return None


def _may_unfreeze(ctx, nodes, parts: list[str]) -> bool:
    facts = ctx.facts

    def related(p) -> bool:
        return bool(p) and (p[:len(parts)] == parts or parts[:len(p)] == p)

    for node in nodes:
        if _sets_requires_grad(node) not in (None, False):
            return True
        if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign, ast.Delete)):
            targets = node.targets if isinstance(node, (ast.Assign, ast.Delete)) else [node.target]
            value = getattr(node, "value", None)
            for t in _flat_targets(targets):
                if not isinstance(t, (ast.Name, ast.Attribute, ast.Subscript)):
                    continue
                tp = path_parts(t)
                if tp is None:  # `model.layers[i] = ...`
                    root = t
                    while isinstance(root, (ast.Attribute, ast.Subscript)):
                        root = root.value
                    if isinstance(root, ast.Name) and root.id == parts[0]:
                        return True
                    continue
                if not related(tp):
                    # `head.fc = nn.Linear(...)` on something that may be part of the model
                    if isinstance(t, (ast.Attribute, ast.Subscript)) and tp[0] != "self" and value is not None \
                            and any(isinstance(c, ast.Call) for c in ast.walk(value)):
                        return True
                    continue
                # the model rebound: only `model = model.to(dev)` keeps the same (frozen) instance
                if isinstance(node, ast.Assign) and tp == parts and path_parts(_unwrap_same(value)) == parts:
                    continue
                return True
        elif isinstance(node, ast.Call):
            f = node.func
            fname = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
            if fname != "requires_grad_" and any(w in fname.lower() for w in ("freeze", "trainable", "requires_grad")):
                return True
            if isinstance(f, ast.Name) and fname in ("setattr", "delattr", "exec", "eval"):
                return True
            if _is_local_def_call(facts, node):
                return True
            if isinstance(f, ast.Attribute):
                rp = path_parts(f.value)
                if rp == ["self"] and parts[0] == "self":
                    return True  # self.setup(): a method that may change self.model
                if rp and related(rp) and f.attr not in _KEEPS_FREEZE:
                    return True
            for a in list(node.args) + [k.value for k in node.keywords]:
                a = a.value if isinstance(a, ast.Starred) else a
                ap = path_parts(a)
                if ap and related(ap) and not (isinstance(f, ast.Name) and f.id in _HARMLESS_FUNCS):
                    return True
    return False


def _flat_targets(targets):
    for t in targets:
        if isinstance(t, (ast.Tuple, ast.List)):
            yield from _flat_targets(t.elts)
        elif isinstance(t, ast.Starred):
            yield from _flat_targets([t.value])
        else:
            yield t


def _unwrap_same(value):
    cur = value
    while isinstance(cur, ast.Call) and isinstance(cur.func, ast.Attribute) and cur.func.attr in (
            "to", "cuda", "cpu", "float", "double", "half", "bfloat16", "train", "eval", "requires_grad_"):
        if cur.func.attr == "requires_grad_":
            return None
        cur = cur.func.value
    return cur


def _blanket_frozen(ctx, opt):
    """(X, the freeze statement) when the optimizer's params are a requires_grad filter over
    `X.parameters()` and every parameter of X was frozen on every path to it, with nothing in between
    that could make one trainable again."""
    facts = ctx.facts
    if opt.params is None or opt.stmt is None:
        return None
    e = _unwrap_iter(opt.params)
    at = opt.stmt
    if isinstance(e, ast.Name):
        d = _single_def(facts, e.id, opt)
        if d is None:
            return None
        e, at = d.value, d
    recv = _grad_filter_receiver(e)
    parts = path_parts(recv) if recv is not None else None
    if not parts:
        return None
    doms = _dominators(facts, at, opt.scope)
    fz = next((d for d in doms if _blanket_freeze(ctx, d, parts)), None)
    if fz is None:
        return None
    # everything that runs between the freeze and the optimizer (a loop around the optimizer that
    # starts after the freeze runs its whole body in between)
    lo, hi = fz.end_lineno or fz.lineno, opt.stmt.lineno
    between = [n for n in opt.scope.walk() if lo < getattr(n, "lineno", 0) < hi or (
        getattr(n, "lineno", 0) == hi and n is not opt.stmt and not _inside(facts, n, opt.stmt))]
    for anc in facts.ancestors(opt.stmt):
        if anc is opt.scope.node:
            break
        if isinstance(anc, (ast.For, ast.AsyncFor, ast.While)) and anc.lineno > lo:
            between += [n for b in anc.body for n in ast.walk(b)]
    if _may_unfreeze(ctx, between, parts):
        return None
    return recv, fz


def _inside(facts, node, container) -> bool:
    return any(a is container for a in facts.ancestors(node))


def _changed_after_build(facts, model) -> bool:
    """`model.fc = nn.Linear(...)` (a new, trainable head) anywhere after the model is built."""
    events = facts.ctx.memo("gp1.attr_assignments", lambda: _attr_assignments(facts))
    n = len(model.key.split("."))
    for parts, line in events:
        if len(parts) > n and ".".join(parts[:n]) == model.key and line > model.line:
            return True
    return False


def _attr_assignments(facts) -> list[tuple[list[str], int]]:
    out = []
    for node in facts.all_nodes():
        if isinstance(node, ast.Assign):
            for t in node.targets:
                parts = path_parts(t)
                if parts and len(parts) >= 2 and parts[-1] != "requires_grad":
                    out.append((parts, node.lineno))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                node.func.attr in ("add_module", "register_module", "register_parameter"):
            parts = path_parts(node.func.value)
            if parts:
                out.append((parts + ["?"], node.lineno))
    return out
