"""What a function returns, for its summary (see summaries.py): the activation it ends in
(`ret_act`), the cuts that take its result off the graph (`ret_cut`), the submodule whose output it
returns as it is (`ret_sub`). Functions of a summaries._Fn: its bindings (`assign_nodes`), params,
class and the module's `_Summarizer` (`fn.s`).
"""
from __future__ import annotations

import ast

from gradpath.analysis.project.summaries import (ACT_LAYERS, ACT_METHODS, ACTS, CUTS, SHAPE_METHODS, _Elt,
                                                 _names_in, _span)


def analyse(fn) -> None:
    fn.returns = [fn.vd(r) for r in fn.ret_nodes]
    acts = [act_of(fn, r) for r in fn.ret_nodes]
    if acts and all(a is not None for a in acts):
        kinds = {(a["act"], a.get("layer"), a.get("index")) for a in acts}
        if len(kinds) == 1:
            fn.ret_act = acts[0]
            fn.ret_act["all"] = [a["span"] for a in acts]
    subs = [sub_of(fn, r) for r in fn.ret_nodes]
    if subs and all(x is not None for x in subs) and len({x[0] for x in subs}) == 1:
        fn.ret_sub = subs[0]  # forward returns `self.encoder(x)`: that submodule's output
    cuts = [cut_of(fn, r) for r in fn.ret_nodes]
    if cuts and all(c is not None and c[0] for c in cuts):
        fn.ret_cut = {"spans": [sp for c in cuts for sp in c[0]],
                      "live": sorted({p for c in cuts for p in c[1]})}


def act_of(fn, node, depth=0):
    if depth > 3 or node is None:
        return None
    if isinstance(node, ast.Tuple) and depth == 0:
        # `return F.log_softmax(decoded, dim=1), hidden`: the activation of one element
        for i, e in enumerate(node.elts):
            a = act_of(fn, e, depth + 1)
            if a is not None:
                a["index"] = i
                return a
        return None
    if isinstance(node, ast.Name):
        vals = fn.assign_nodes.get(node.id)
        if vals and len(vals) == 1 and vals[0] is not None:
            return act_of(fn, vals[0], depth + 1)
        return None
    if not isinstance(node, ast.Call):
        return None
    f = node.func
    q = fn.s.qual(f)
    src = fn.s.src
    if q in ACTS:
        inp = node.args[0] if node.args else None
        return {"act": ACTS[q], "span": _span(src, node), "text": src.text_of(node),
                "input": src.text_of(inp) if inp is not None else None}
    if isinstance(f, ast.Attribute) and f.attr in ACT_METHODS and q is None:
        return {"act": ACT_METHODS[f.attr], "span": _span(src, node), "text": src.text_of(node),
                "input": src.text_of(f.value)}
    if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and f.value.id == "self" and fn.cls:
        # self.softmax(x) with self.softmax = nn.Softmax(1), or self.net(x) ending in nn.Softmax
        return {"layer": f.attr, "span": _span(src, node), "text": src.text_of(node),
                "input": src.text_of(node.args[0]) if node.args else None, "act": None}
    return None

def sub_of(fn, node, depth=0):
    """[attr, span] when `node` is `self.<attr>(...)` (reshaped, or through a name bound once)."""
    if depth > 3 or not fn.cls:
        return None
    if isinstance(node, ast.Name):
        vals = fn.assign_nodes.get(node.id)
        return sub_of(fn, vals[0], depth + 1) if vals and len(vals) == 1 and vals[0] is not None else None
    if not isinstance(node, ast.Call):
        return None
    f = node.func
    if isinstance(f, ast.Attribute) and f.attr in SHAPE_METHODS:
        return sub_of(fn, f.value, depth + 1)
    if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and f.value.id == "self" \
            and f.attr not in fn.s.class_methods.get(fn.cls, ()):
        return [f.attr, _span(fn.s.src, node)]
    return None

def cut_of(fn, node):
    """Spans of the cuts when the returned value reaches its parameters only through
    .detach()/.data/.item(); None when it may carry a graph (or we cannot tell)."""
    cuts, live, live_params = [], [], set()
    # a cut of the inputs or of what the function computed from them (`out = fn.fc(x)` ... `out.detach()`)
    inputs = set(fn.params) | {k for k in fn.assign_nodes if "." not in k}

    def visit(n, depth=0):
        if depth > 4 or isinstance(n, _Elt):
            live.append(n)
            return
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr in CUTS:
            if _names_in(n.func.value) & inputs:
                cuts.append(_span(fn.s.src, n))
            return
        if isinstance(n, ast.Attribute) and n.attr == "data":
            if _names_in(n.value) & inputs:
                cuts.append(_span(fn.s.src, n))
            return
        if isinstance(n, ast.Name):
            if n.id in fn.params and n.id not in fn.assign_nodes:
                live_params.add(n.id)  # fine when every caller passes plain data here
            elif n.id in fn.assign_nodes:
                vals = fn.assign_nodes[n.id]
                if len(vals) == 1 and vals[0] is not None:
                    visit(vals[0], depth + 1)
                else:
                    live.append(n)
            return
        if isinstance(n, ast.Call):
            q = fn.s.qual(n.func)
            if not (q and q.startswith("torch.")) and not isinstance(n.func, ast.Attribute):
                live.append(n)  # a call we cannot see into
                return
            if isinstance(n.func, ast.Attribute) and q is None:
                visit(n.func.value, depth)
            for a in list(n.args) + [k.value for k in n.keywords]:
                visit(a, depth)
            return
        for c in ast.iter_child_nodes(n):
            visit(c, depth)

    visit(node)
    if not cuts or live or "self" in live_params:
        return None
    return cuts, sorted(live_params)
