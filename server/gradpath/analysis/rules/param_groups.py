"""GP102 for parameter collections that never reach an optimizer: a list (`no_decay = []`) or a
param-group dict (`head = {"params": []}`) filled in a loop over `model.named_parameters()` /
`parameters()`, while another collection filled from the same model does reach the optimizer (the
classic weight-decay split with one half forgotten). The finding goes on the collection that is
never passed on, naming the parameters it holds (the loop's name test evaluated over the model's
known parameter names).

Quiet when the collection escapes (returned, stored on an attribute, handed to any other call,
used in a way the analysis cannot follow), when the optimizer's params are read elsewhere in a way
the checker cannot follow, or when the model's parameters cannot be listed.
"""
from __future__ import annotations

import ast

from gradpath.analysis.findings import Related
from gradpath.analysis.rules import rule


def _names_text(names: list[str], limit: int = 4) -> str:
    if len(names) <= 1:
        return "".join(names)
    if len(names) > limit:
        return ", ".join(names[:limit - 1]) + f" and {len(names) - limit + 1} more"
    return ", ".join(names[:-1]) + " and " + names[-1]


def _empty_collection(value) -> str | None:
    """"list" for `[]`/`list()`, "group" for `{"params": [], ...}`."""
    if isinstance(value, ast.List) and not value.elts:
        return "list"
    if isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "list" and not value.args:
        return "list"
    if isinstance(value, ast.Dict):
        for k, v in zip(value.keys, value.values):
            if isinstance(k, ast.Constant) and k.value == "params" and isinstance(v, ast.List) and not v.elts:
                return "group"
    return None


def _params_loop(loop) -> tuple[ast.AST, str | None, str] | None:
    """`for n, p in model.named_parameters():` -> (receiver, name var, tensor var)."""
    if not isinstance(loop, ast.For) or not isinstance(loop.iter, ast.Call):
        return None
    it = loop.iter
    f = it.func
    if not isinstance(f, ast.Attribute) or f.attr not in ("parameters", "named_parameters"):
        return None
    t = loop.target
    if f.attr == "named_parameters":
        if isinstance(t, ast.Tuple) and len(t.elts) == 2 and all(isinstance(e, ast.Name) for e in t.elts):
            return f.value, t.elts[0].id, t.elts[1].id
        return None
    if isinstance(t, ast.Name):
        return f.value, None, t.id
    return None


class _Scope:
    def __init__(self, ctx, scope):
        self.ctx = ctx
        self.scope = scope
        self.nodes = list(scope.walk())
        self.parents = ctx.facts.parents

    def collections(self):
        for n in self.nodes:
            if isinstance(n, ast.Assign) and len(n.targets) == 1 and isinstance(n.targets[0], ast.Name):
                kind = _empty_collection(n.value)
                if kind:
                    yield n.targets[0].id, kind, n, n.targets[0]
            elif isinstance(n, ast.Assign) and len(n.targets) == 1 and isinstance(n.targets[0], ast.Tuple) \
                    and isinstance(n.value, ast.Tuple) and len(n.targets[0].elts) == len(n.value.elts):
                for t, v in zip(n.targets[0].elts, n.value.elts):
                    kind = _empty_collection(v)
                    if kind and isinstance(t, ast.Name):
                        yield t.id, kind, n, t

    def fills(self, name: str, kind: str):
        """(loop, the append call, name var, receiver) for each `name.append(p)` / `name["params"].append(p)`
        inside a loop over a model's parameters with `p` its tensor."""
        out = []
        for n in self.nodes:
            if not (isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "append"
                    and len(n.args) == 1 and isinstance(n.args[0], ast.Name)):
                continue
            recv = n.func.value
            if kind == "group":
                if not (isinstance(recv, ast.Subscript) and isinstance(recv.value, ast.Name) and recv.value.id == name
                        and isinstance(recv.slice, ast.Constant) and recv.slice.value == "params"):
                    continue
            elif not (isinstance(recv, ast.Name) and recv.id == name):
                continue
            loop = self._enclosing_params_loop(n, n.args[0].id)
            if loop is not None:
                out.append((loop[0], n, loop[1], loop[2]))
        return out

    def _enclosing_params_loop(self, node, tensor_var):
        cur = self.parents.get(id(node))
        while cur is not None and cur is not self.scope.node:
            got = _params_loop(cur)
            if got is not None and got[2] == tensor_var:
                return cur, got[1], got[0]
            cur = self.parents.get(id(cur))
        return None

    def uses(self, name: str, skip: set):
        """Loads of `name` other than its fills."""
        return [n for n in self.nodes if isinstance(n, ast.Name) and n.id == name and isinstance(n.ctx, ast.Load)
                and id(n) not in skip]


def _conditions(parents, call, loop):
    """The (test, branch taken) pairs between the loop and the append."""
    out = []
    child = call
    cur = parents.get(id(call))
    while cur is not None and cur is not loop:
        if isinstance(cur, ast.If):
            out.append((cur.test, _in_body(cur, child)))
        child = cur
        cur = parents.get(id(cur))
    return out


def _in_body(if_node, child) -> bool:
    return any(child is s or _contains(s, child) for s in if_node.body)


def _contains(stmt, node) -> bool:
    return any(n is node for n in ast.walk(stmt))


@rule("GP102")
def forgotten_param_collection(ctx):
    from gradpath.analysis.rules.params import _name_test  # the name filters GP102 already reads
    facts = ctx.facts
    opts = list(facts.optimizers)
    if not opts:
        return
    for scope in facts.scopes:
        sc = None
        for opt in opts:
            if opt.scope is not scope:
                continue
            if sc is None:
                sc = _Scope(ctx, scope)
                filled = {}
                for name, kind, st, tnode in sc.collections():
                    f = sc.fills(name, kind)
                    if f:
                        filled[name] = (kind, st, f, tnode)
            cov = facts.coverage(opt)
            if len(filled) < 2 or (not cov.unknown and cov.parts):
                continue  # (a params expression GP102's coverage can read is judged in params.py)
            reach = _reaching(sc, opt, set(filled))
            if reach is None:
                continue  # the optimizer's params cannot be followed
            for name, (kind, st, fills, tnode) in filled.items():
                if name in reach:
                    continue
                same_model = {ctx.src.text_of(f[3]) for f in fills}
                fed = {ctx.src.text_of(f[3]) for other, (_k, _s, fs, _t) in filled.items() if other in reach for f in fs}
                if not (same_model & fed):
                    continue
                skip = {id(f[1].func.value if kind == "list" else f[1].func.value.value) for f in fills}
                skip.add(id(tnode))
                if sc.uses(name, skip):
                    continue  # passed on somewhere the checker does not follow: it may reach an optimizer
                model_text = sorted(same_model & fed)[0]
                names = _left_out(ctx, sc, fills, model_text, _name_test)
                what = (f"{_names_text(names)} {'is' if len(names) == 1 else 'are'} never updated" if names
                        else "the parameters appended to it are never updated")
                msg = (f"`{name}` collects parameters of {model_text} but never reaches {opt.short} "
                       f"(nor add_param_group): {what}")
                rel = [Related(ctx.span(opt.call), f"{opt.short} gets the other collections")]
                rel += [Related(ctx.span(f[1]), f"parameters of {model_text} go into `{name}` here") for f in fills[:1]]
                yield ctx.finding("GP102", tnode, msg, related=rel,
                                  data={"model": model_text, "optimizer": opt.key, "optimizer_class": opt.cls,
                                        "missing": names, "collection": name})


def _reaching(sc: _Scope, opt, candidates: set) -> set | None:
    """The collections that reach `opt`: named in its arguments, or in a list / dict that is, or
    handed to `<opt>.add_param_group(...)`; followed through names assigned in the function."""
    call = opt.call
    roots = list(call.args) + [k.value for k in call.keywords if k.arg in ("params", None)]
    for n in sc.nodes:
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "add_param_group":
            roots += list(n.args)
    seen_names: set = set()
    out: set = set()
    todo = list(roots)
    while todo:
        e = todo.pop()
        for x in ast.walk(e):
            if isinstance(x, ast.Name) and x.id not in seen_names:
                seen_names.add(x.id)
                if x.id in candidates:
                    out.add(x.id)
                # what the name holds: its assignments, appends and extends in the function
                for n in sc.nodes:
                    if isinstance(n, ast.Assign) and any(isinstance(t, ast.Name) and t.id == x.id for t in n.targets):
                        todo.append(n.value)
                    elif isinstance(n, ast.AugAssign) and isinstance(n.target, ast.Name) and n.target.id == x.id:
                        todo.append(n.value)
                    elif isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and \
                            n.func.attr in ("append", "extend", "insert") and isinstance(n.func.value, ast.Name) \
                            and n.func.value.id == x.id:
                        todo.extend(n.args)
    return out


def _left_out(ctx, sc, fills, model_text, name_test) -> list[str]:
    """The model's parameter names that the fills' branch conditions send into the collection."""
    loop, call, name_var, recv = fills[0]
    r = ctx.facts.resolve_receiver(recv, sc.scope, getattr(loop, "lineno", 0))
    if r is None:
        return []
    model, path = r
    inv = ctx.facts.inventory_of(model)
    if inv is None or not inv.complete or not inv.params:
        return []
    pnames = [p.name[len(path) + 1:] if path else p.name for p in inv.under(path)]
    out = []
    for pn in pnames:
        hit = False
        for lp, c, nv, _r in fills:
            conds = _conditions(sc.parents, c, lp)
            ok = True
            for test, taken in conds:
                v = name_test(test, nv, pn) if nv else None
                if v is None:
                    return []
                if v != taken:
                    ok = False
                    break
            if ok:
                hit = True
                break
        if hit:
            out.append(pn)
    return out
