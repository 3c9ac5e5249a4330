"""The dataflow's calls and operators (see dataflow.py), as a mixin of `Flow`: binary operations,
calls of functions, methods, tensor operations and torch functions, losses, modules' forwards, and
calls into the file's own functions with the caller's values (the interprocedural part). Pure."""
from __future__ import annotations

import ast
import time

from gradpath.analysis import bounds, frameworks
from gradpath.analysis import modelling
from gradpath.analysis.symbols import canonical, is_torch_module_qualname
from gradpath.analysis.flow_values import (
    combine, _Frame, G, join, N, NoGrad, NONE, replace, same_value, U, _uniq, UNKNOWN, Val
)
from gradpath.analysis.flow_vocab import (
    _CUT_BUILTINS, _CUT_FUNCS, _CUT_METHODS, _default_vals, _fn_name, _FUNCTIONAL_LOSSES, _hides_cut,
    _INDEX_METHODS, _INT_DTYPES, _INT_TENSOR_TYPES, _is_torch, _LINEARISH, LOSS_KINDS, _MODULE_METHODS,
    _PARAMLESS_PREFIX, _PASS_LAYERS, _TENSOR_CTORS, _TENSOR_FACTORIES, _VIEW_METHODS
)


class FlowCalls:
    """Mixed into `dataflow.Flow`: everything about calls and operators."""

    # -- binary operations ---------------------------------------------------------------------
    def _binop(self, op, a: Val, b: Val, node, ln, rn, env, fr) -> Val:
        tensors = a.kind in ("tensor", "numpy") or b.kind in ("tensor", "numpy")
        kind = "tensor" if a.kind == "tensor" or b.kind == "tensor" else (
            "numpy" if "numpy" in (a.kind, b.kind) else a.kind if a.kind == b.kind else "number")
        shape = None
        if isinstance(op, ast.Sub):
            if tensors:
                if self._is_max_of(rn, ln):
                    shape = "shifted"
                else:
                    shape = "diff"
        elif isinstance(op, ast.Add):
            pa, pb = self._positive(a), self._positive(b)
            if tensors and (pa or pb):
                other = b if pa else a
                if other.shape in ("nonneg", "sq", "sumsq", "prob", "norm", "std", "reduce", "pos",
                                   "guarded", "diff", "raw", None) or other.kind == "tensor":
                    shape = "guarded" if other.shape not in ("raw", "diff") or pa and pb else "guarded"
            elif a.shape == "raw" and b.shape == "raw":
                shape = "raw"
            elif a.shape in ("pos", "guarded") and b.shape in ("pos", "guarded", "nonneg", "sq", "sumsq", "prob"):
                shape = "guarded"
            elif b.shape in ("pos", "guarded") and a.shape in ("pos", "guarded", "nonneg", "sq", "sumsq", "prob"):
                shape = "guarded"
            elif a.shape in ("sq", "sumsq") and b.shape in ("sq", "sumsq"):
                shape = "sumsq"
        elif isinstance(op, ast.Mult):
            if a.shape == "raw" and b.kind == "number" or b.shape == "raw" and a.kind == "number":
                shape = "raw"
            elif tensors and ln is not None and rn is not None and self._same(ln, rn):
                shape = "sq"
            elif a.shape == "pos" and b.shape == "pos":
                shape = "pos"
            elif tensors and (a.shape == "pos" and a.kind == "tensor" and b.grad == N and not b.has_reason()
                              or b.shape == "pos" and b.kind == "tensor" and a.grad == N and not a.has_reason()):
                shape = "pos"  # exp(sim) * mask: positive values weighted by data (a mask, class weights)
            elif tensors and a.shape == "norm" and b.shape == "norm":
                shape = "norm"  # a product of norms (cosine similarity by hand): 0 if either is
        elif isinstance(op, ast.Div):
            self._record(fr, env, "div", node, {"num": a, "den": b}, {"num": ln, "den": rn})
            if a.shape == "raw" and b.kind == "number":
                shape = "raw"
            elif a.shape == "nonneg" and tensors and b.kind == "number":
                shape = "nonneg"  # `probs.sum(0) / T`: still 0 wherever the sum underflows
        elif isinstance(op, ast.Pow):
            exp = b.numeric
            if tensors and self._positive(a) and b.kind != "number":
                shape = "pos"  # 2 ** x: positive like exp (base-2 softmax)
            elif exp == 2 and tensors:
                shape = "sq"
            elif exp == 0.5 and tensors:
                self._record(fr, env, "sqrt", node, {"arg": a}, {"arg": ln}, form="pow")
                shape = "guarded" if a.shape in ("guarded", "pos") else "nonneg"
        if kind == "number" and a.numeric is not None and b.numeric is not None:
            try:
                num = {ast.Add: a.numeric + b.numeric, ast.Sub: a.numeric - b.numeric,
                       ast.Mult: a.numeric * b.numeric}.get(type(op))
            except Exception:
                num = None
            if num is not None:
                return Val(N, kind="number", numeric=num, shape="pos" if num > 0 else None, src=node)
        if kind == "number":
            return Val(N, kind="number", src=node, shape="pos" if a.shape == "pos" and b.shape == "pos" else None)
        out = combine([a, b], node, shape=shape, kind=kind)
        r, dist = bounds.binop_range(op, a, b, ln, rn, self._last_ev.get)
        return replace(out, rng=r, dist=dist) if r is not None or dist else out

    def _positive(self, v: Val) -> bool:
        return v.kind == "number" and (v.shape == "pos" or v.eps_name) or v.shape == "pos" and v.kind == "number"

    def _same(self, a: ast.AST, b: ast.AST) -> bool:
        return self._dump(a) == self._dump(b)

    def _dump(self, node: ast.AST) -> str:
        d = self._dumps.get(id(node))
        if d is None:
            d = self._dumps[id(node)] = ast.dump(node)
        return d

    def _is_max_of(self, rn: ast.AST, ln: ast.AST) -> bool:
        """`x - x.max(...)` / `x - x.amax(...)` / `x - torch.max(x, ...)[0]` / `.values`."""
        n = rn
        if isinstance(n, ast.Subscript):
            n = n.value
        if isinstance(n, ast.Attribute) and n.attr == "values":
            n = n.value
        if isinstance(n, ast.Call):
            if isinstance(n.func, ast.Attribute) and n.func.attr in ("max", "amax", "logsumexp"):
                if self._same(n.func.value, ln):
                    return True
                qn = self._qn(n.func)
                if qn and _fn_name(qn) in ("max", "amax", "logsumexp") and n.args and self._same(n.args[0], ln):
                    return True
        return False

    # -- calls ---------------------------------------------------------------------------------
    def _call(self, node: ast.Call, env: dict, fr: _Frame) -> Val:
        func = node.func
        qn = self._qn(func) or None  # (Symbols.qualname gives canonical names already)
        k = self._key(func)
        # a name bound to a module, a local function, a class
        if k is not None:
            callee = env.get(k)
            if callee is None and (qn is None or "." not in k or k.startswith("self.")):
                callee = self._lookup(k, func, env, fr)
            if callee is not None and callee.kind in ("module", "func", "class"):
                args = [self.ev(a, env, fr) for a in node.args]
                kwargs = {kw.arg: self.ev(kw.value, env, fr) for kw in node.keywords}
                return self._call_value(callee, node, args, kwargs=kwargs, env=env, fr=fr)
        if k is None and not isinstance(func, (ast.Name, ast.Attribute)):
            callee = self.ev(func, env, fr)
            args = [self.ev(a, env, fr) for a in node.args]
            kwargs = {kw.arg: self.ev(kw.value, env, fr) for kw in node.keywords}
            if callee.kind in ("module", "func", "class"):
                return self._call_value(callee, node, args, kwargs=kwargs, env=env, fr=fr)
            if isinstance(func, ast.Attribute):
                pass
            return Val(U, src=node)
        if isinstance(func, ast.Attribute) and (qn is None or (k is not None and k.split(".")[0] in env)):
            recv = self.ev(func.value, env, fr)
            if recv.kind != "qual":
                return self._method(recv, node, env, fr)
        args = [self.ev(a, env, fr) for a in node.args]
        kwargs = {kw.arg: self.ev(kw.value, env, fr) for kw in node.keywords}
        if isinstance(func, ast.Name) and qn is None:
            if func.id in _CUT_BUILTINS:
                recv = args[0] if args else NONE
                return self._cut(recv, node, _CUT_BUILTINS[func.id], node.args[0] if node.args else None,
                                 bare=False, out_kind="number")
            return self._builtin(func.id, node, args, env, fr)
        if qn is None:
            self.ev(func, env, fr)
            return self._opaque_call(node, args, kwargs, env)
        if is_torch_module_qualname(qn):
            return self._module_val(node, None, qn)
        v = self._torch_call(qn, node, args, kwargs, env, fr)
        if v is not None:
            if v.kind == "tensor" and not v.torchy:
                v = replace(v, torchy=True)
            return self._under_nograd(v, node, env)
        if qn.startswith(("numpy", "np.", "math")):
            base = combine(args + list(kwargs.values()), node, kind="numpy" if not qn.startswith("math") else "number")
            if base.grad != N:
                base = replace(base, grad=N, origins=frozenset())
            return base
        return self._opaque_call(node, args, kwargs, env)

    def _opaque_call(self, node, args, kwargs, env) -> Val:
        """A call the analysis cannot see. Given a model (`compute_loss(model, x)`), it runs the model's
        forward: under no_grad its result has no graph (GP202 if it is backwarded)."""
        v = Val(U, src=node)
        if "__nograd__" in env:
            mod = next((a for a in list(args) + list(kwargs.values()) if a.kind == "module" and a.module_key
                        and a.module_key != "self" and not a.module_key.endswith("]")), None)
            if mod is not None:
                return self._under_nograd(v, node, env, model=mod.module_key)
        return v

    def _builtin(self, name: str, node, args, env, fr) -> Val:
        if name in ("len", "range", "isinstance", "hasattr", "print", "str", "repr", "id", "type"):
            return Val(N, kind="number" if name == "len" else "none", shape="pos" if name == "len" else None, src=node)
        if name == "abs" and args:
            return combine(args, node, shape="nonneg", kind=args[0].kind)
        if name in ("sum", "max", "min") and args:
            a = args[0]
            if a.elts:
                return combine(list(a.elts), node, kind="tensor")
            return replace(a, kind="tensor" if a.kind == "list" else a.kind, elts=None, src=node)
        if name in ("list", "tuple", "sorted", "reversed", "iter", "next") and args:
            return args[0]
        if name in ("zip", "enumerate", "map", "filter", "dict", "set"):
            return Val(N, kind="list", src=node)
        return Val(U, src=node)

    def _call_value(self, callee: Val, node: ast.Call, args: list, kwargs=None, env=None, fr=None) -> Val:
        kwargs = kwargs or {}
        if callee.kind == "module":
            return self._module_call(callee, node, args, kwargs, env, fr)
        if callee.kind == "func" and callee.func is not None:
            return self._invoke(callee.func, node, args, kwargs, env, fr, self_val=callee.self_val)
        if callee.kind == "class":
            return self._module_val(node, None, callee.module_cls) if self.sym.is_module_class(callee.module_cls or "") else Val(U)
        return Val(U, src=node)

    def _method(self, recv: Val, node: ast.Call, env: dict, fr: _Frame) -> Val:
        func = node.func
        m = func.attr
        args = [self.ev(a, env, fr) for a in node.args]
        kwargs = {kw.arg: self.ev(kw.value, env, fr) for kw in node.keywords}
        if m in ("size", "numel", "dim", "nelement", "ndimension", "element_size") and recv.kind in ("tensor", "module"):
            # sizes are Python ints: `x.size(0)`, `b, d = x.size()`, `self.weight.size(1)`
            return Val(N, kind="shape" if m == "size" and not node.args else "number", shape="pos", src=node)
        if args and frameworks.backward_call(node):
            # self.manual_backward(loss) / accelerator.backward(loss) / fabric.backward(loss)
            self._record(fr, env, "backward", node, {"value": args[0]}, {"value": node.args[0]}, how="framework")
            return NONE
        if recv.kind == "module" and m in bounds.TENSOR_ONLY_METHODS and self._method_scope(recv.module_cls, m) is None:
            # `self.running_var.clamp(self.eps)`: a method only tensors have (a buffer, not a submodule)
            recv = replace(recv, kind="tensor", module_key=None, module_cls=None, module_ctor=None, module_layers=())
        if recv.kind == "module":
            if m == "forward":
                return self._module_call(recv, node, args, kwargs, env, fr)
            if m in ("parameters", "named_parameters"):
                return Val(G, kind="list", origins=frozenset([recv.module_key or "?"]), leaf=True, src=node)
            if m in ("to", "cuda", "cpu", "train", "eval", "float", "double", "half", "requires_grad_"):
                return recv
            # a method of a local class (self.helper(...), model.compute_loss(...))
            cls = recv.module_cls
            s = self._method_scope(cls, m)
            if s is not None:
                return self._invoke(s, node, args, kwargs, env, fr, self_val=recv)
            if m in _MODULE_METHODS or m.startswith(("register_", "named_", "load_", "get_")):
                return Val(U, src=node)
            # `model.encoder(x)`: calling a submodule
            sub = self._submodule(recv, m)
            return self._module_call(sub, node, args, kwargs, env, fr)
        if recv.kind == "tensor" and recv.module_key == "self" or (fr.self_val is not None and self._key(func.value) == "self"):
            s = self._method_scope(fr.class_name, m)
            if s is not None:
                return self._invoke(s, node, args, kwargs, env, fr, self_val=fr.self_val)
        if m == "backward":
            vn = func.value
            if isinstance(vn, ast.Call) and isinstance(vn.func, ast.Attribute) and vn.func.attr == "scale" \
                    and len(vn.args) == 1:
                vn = vn.args[0]  # scaler.scale(loss).backward(): the value is `loss`
            self._record(fr, env, "backward", node, {"value": recv}, {"value": vn}, how="method")
            return NONE
        if m == "scale" and args and recv.kind not in ("tensor", "numpy"):
            return args[0]  # GradScaler.scale(loss)
        if recv.kind == "numpy" or recv.kind == "number":
            return replace(combine([recv] + args, node, kind=recv.kind), grad=N, origins=frozenset())
        if recv.kind in ("list", "tuple", "dict") and m in ("pop", "get", "values", "items", "copy"):
            return replace(recv, kind="tensor" if m in ("pop", "get") else recv.kind, elts=None)
        if recv.kind not in ("tensor",):
            return Val(U, src=node)
        # tensor methods
        if m in _CUT_METHODS:
            out_kind = {"item": "number", "tolist": "list", "numpy": "numpy"}.get(m, "tensor")
            bare = m == "detach" and not node.args and not node.keywords
            return self._cut(recv, node, _CUT_METHODS[m], func.value, bare=bare, out_kind=out_kind)
        if m == "to" or m == "type":
            for a in node.args + [kw.value for kw in node.keywords if kw.arg == "dtype"]:
                aq = canonical(self._qn(a) or "")
                if aq in _INT_DTYPES or aq in _INT_TENSOR_TYPES:
                    return self._cut(recv, node, f".to({self.src.text_of(a)})", func.value, bare=False)
        if m == "requires_grad_":
            flag = not (node.args and isinstance(node.args[0], ast.Constant) and node.args[0].value is False)
            return self._patch(recv, node, "requires_grad_()") if flag else recv
        v = self._ranged(m, self._tensor_op(m, node, recv, func.value, args, kwargs, node.args, env, fr, method=True),
                         recv, args, kwargs)
        return self._under_nograd(v, node, env)

    def _submodule(self, recv: Val, attr: str) -> Val:
        key = f"{recv.module_key}.{attr}" if recv.module_key else None
        cls = recv.module_cls
        if cls and cls in self.sym.classes:
            init = self._method_scope(cls, "__init__")
            if init is not None:
                b = self.facts.model_at(f"self.{attr}", init)
                if b is not None:
                    v = self._module_val(b.value, key, b.cls)
                    return v
            # once per (class, attribute): it walks __init__ and every construction in the file
            memo = self.__dict__.setdefault("_default_modules", {})
            if (cls, attr) not in memo:
                memo[(cls, attr)] = modelling.default_module(self.sym, self.ctx.tree, cls, attr,
                                                             self.__dict__.setdefault("_default_walks", {}))
            d = memo[(cls, attr)]
            if d is not None:  # `def __init__(self, loss=nn.CrossEntropyLoss())`: self.loss = loss
                return self._module_val(d[0], key, d[1])
        return Val(G, kind="module", module_key=key)

    def _method_scope(self, cls: str | None, name: str):
        seen = set()
        while cls and cls not in seen:
            seen.add(cls)
            for s in self.facts.scopes:
                if s.class_name == cls and s.name == name and s.kind == "method":
                    return s
            info = self.sym.classes.get(cls)
            cls = next((b for b in (info.bases if info else []) if b in self.sym.classes), None)
        return None

    def _ranged(self, m: str, v: Val, recv: Val, args: list, kwargs: dict) -> Val:
        """`v` with the range (bounds.Rng) and distribution fact of `recv.m(*args)`."""
        got = bounds.method_range(m, recv, args, kwargs)
        if recv.shape == "prob" and v.shape == "nonneg" and m in ("sum", "nansum", "mean", "nanmean"):
            # entries of a distribution summed across it (one class over the batch): not a
            # distribution's total, and it underflows to exactly 0 in float32 (modelling.prob_reduce_shape)
            got = (bounds.Rng(0.0, bounds.INF if m in ("sum", "nansum") else 1.0), False)
        if got is None and (m in _VIEW_METHODS or m in _INDEX_METHODS):
            got = (bounds.rng_of(recv), recv.dist and m in _VIEW_METHODS)
        if got is None or got[0] is None and not got[1]:
            return v
        return replace(v, rng=got[0], dist=got[1])

    def _tensor_op(self, m: str, node, recv: Val, recv_node, args: list, kwargs: dict, arg_nodes,
                   env, fr, method: bool) -> Val:
        """Shared by `x.op(...)` and `torch.op(x, ...)`; `recv` is the tensor operand."""
        allv = [recv] + args + list(kwargs.values())
        if m in ("softmax", "sigmoid", "expit", "softmin"):
            v = combine(allv, node, shape="prob")
            return replace(v, act="sigmoid" if m in ("sigmoid", "expit") else "softmax", act_node=node,
                           act_input=recv_node, exact=True, act_scope=fr.scope)
        if m in ("log_softmax", "logsigmoid"):
            return combine(allv, node, shape="logprob")
        if m in ("log", "log2", "log10"):
            vals = {"arg": recv}
            if isinstance(recv_node, ast.BinOp) and isinstance(recv_node.op, ast.Sub):
                vals["right"] = self._last_ev.get(id(recv_node.right))  # `log(1 - z)`: what z is here
            self._record(fr, env, "log", node, vals, {"arg": recv_node}, method=method, fn=m)
            return combine(allv, node, shape=None)
        if m == "exp":
            self._record(fr, env, "exp", node, {"arg": recv}, {"arg": recv_node}, method=method)
            act = modelling.exp_of_logprob(recv)
            if act is not None:
                return replace(combine(allv, node, shape="prob"), act=act, act_node=node, act_input=recv_node,
                               exact=True, act_scope=fr.scope)
            return combine(allv, node, shape="pos")
        if m == "exp2" or (m in ("pow", "float_power") and self._positive(recv)):
            # 2 ** x written as torch.exp2(x) / torch.pow(2.0, x): positive like exp
            return combine(allv, node, shape="pos")
        if m in ("sqrt", "rsqrt"):
            if m == "sqrt":
                self._record(fr, env, "sqrt", node, {"arg": recv}, {"arg": recv_node},
                             form="method" if method else "func")
            return combine(allv, node, shape="guarded" if recv.shape in ("guarded", "pos") else "nonneg")
        if m in ("pow", "float_power"):
            e = args[0] if args else kwargs.get("exponent")
            if e is not None and e.numeric == 0.5:
                self._record(fr, env, "sqrt", node, {"arg": recv}, {"arg": recv_node}, form="pow-call")
                return combine(allv, node, shape="guarded" if recv.shape in ("guarded", "pos") else "nonneg")
            if e is not None and e.numeric == 2:
                return combine(allv, node, shape="sq")
            return combine(allv, node)
        if m in ("square",):
            return combine(allv, node, shape="sq")
        if m in ("abs", "relu", "softplus", "relu6"):
            return combine(allv, node, shape="nonneg")
        if m in ("tanh", "hardtanh", "cos", "sin"):
            return combine(allv, node, shape="bounded")
        if m in ("clamp", "clip", "clamp_min", "clamp_", "clamp_min_", "clip_"):
            lo = args[0] if args else kwargs.get("min")
            hi = (args[1] if len(args) > 1 else kwargs.get("max")) if m.startswith(("clamp", "clip")) and not m.startswith("clamp_min") else None
            if m.startswith("clamp_min"):
                lo = args[0] if args else kwargs.get("min")
            if lo is not None and (lo.shape == "pos" or lo.eps_name or lo.numeric is not None and lo.numeric > 0):
                return combine(allv, node, shape="guarded")
            if hi is not None and hi.kind == "number":
                return combine(allv, node, shape="bounded")
            return combine(allv, node)
        if m in ("clamp_max",):
            return combine(allv, node, shape="bounded")
        if m in ("maximum", "fmax"):
            if any(self._positive(a) or a.shape in ("pos", "guarded") for a in args):
                return combine(allv, node, shape="guarded")
            return combine(allv, node)
        if m in ("max", "amax") and args and (self._positive(args[0]) or args[0].shape == "guarded"):
            return combine(allv, node, shape="guarded")
        if m in ("sum", "mean", "nansum", "nanmean"):
            if recv.shape in ("sq", "sumsq"):
                shape = "sumsq"
            elif recv.shape == "prob":
                shape = modelling.prob_reduce_shape(recv, node, method)
            elif recv.shape in ("pos", "guarded"):
                shape = "pos" if recv.shape != "guarded" else "guarded"
            elif recv.kind == "tensor":
                shape = "reduce"
            else:
                shape = None
            return combine(allv, node, shape=shape)
        if m in ("norm",) or m == "vector_norm" or m == "matrix_norm":
            return combine(allv, node, shape="norm")
        if m in ("std", "var"):
            return combine(allv, node, shape="std" if m == "std" else "reduce")
        if m in _VIEW_METHODS or m in _INDEX_METHODS or m in ("__getitem__",):
            # `x.type_as(y)`, `x.view_as(y)`, `x.to(y)`: y gives a dtype/shape/device, never its graph
            v = combine([recv] if m in _VIEW_METHODS else allv, node, shape=recv.shape)
            keep_exact = m in _VIEW_METHODS and m not in ("select", "narrow")
            return replace(v, act=recv.act, act_node=recv.act_node, act_input=recv.act_input,
                           act_scope=recv.act_scope, exact=recv.exact and keep_exact,
                           model_out=recv.model_out and m in _VIEW_METHODS, elts=None)
        if m in ("chunk", "split", "unbind", "tensor_split"):
            v = combine(allv, node, shape=recv.shape if recv.shape in ("raw", "prob", "logprob") else None,
                        kind="tuple")
            return replace(v, act=recv.act, act_node=recv.act_node, act_input=recv.act_input,
                           act_scope=recv.act_scope, exact=False)
        if m in ("normalize",):
            return combine(allv, node)
        if m in ("neg", "negative"):
            return combine(allv, node, shape="raw" if recv.shape == "raw" else None)
        if m in ("sub", "subtract"):
            return combine(allv, node, shape="diff")
        if m in ("add", "add_"):
            if args and (self._positive(args[0]) or args[0].shape == "pos"):
                return combine(allv, node, shape="guarded")
            return combine(allv, node)
        if m in ("masked_fill", "masked_fill_") and len(arg_nodes) >= (2 if method else 3) \
                and bounds.masked_positive_fill(arg_nodes[0 if method else 1], args[1] if len(args) > 1 else None):
            return combine(allv, node, shape="guarded")  # `d.masked_fill(d == 0, 1.0)`
        if m in ("div", "true_divide", "divide"):
            if args:
                self._record(fr, env, "div", node, {"num": recv, "den": args[0]},
                             {"num": recv_node, "den": arg_nodes[0] if method else arg_nodes[1]})
            return combine(allv, node)
        return combine(allv, node)

    def _torch_call(self, qn: str, node: ast.Call, args, kwargs, env, fr) -> Val | None:
        if not _is_torch(qn):
            return None
        name = _fn_name(qn)
        sized = bounds.python_number_call(qn)
        if sized is not None:  # `fan_in, _ = nn.init._calculate_fan_in_and_fan_out(w)`: Python ints
            return Val(N, kind=sized, shape="pos", src=node)
        if qn in ("torch.autograd.backward",):
            target = node.args[0] if node.args else next((kw.value for kw in node.keywords if kw.arg == "tensors"), None)
            tv = args[0] if args else kwargs.get("tensors", UNKNOWN)
            if tv.elts:
                for e, en in zip(tv.elts, getattr(target, "elts", [])):
                    self._record(fr, env, "backward", node, {"value": e}, {"value": en}, how="autograd")
            else:
                self._record(fr, env, "backward", node, {"value": tv}, {"value": target}, how="autograd")
            return NONE
        if qn in _TENSOR_CTORS:
            rg = next((kw.value for kw in node.keywords if kw.arg == "requires_grad"), None)
            data = args[0] if args else kwargs.get("data", NONE)
            rg_true = isinstance(rg, ast.Constant) and rg.value is True
            if data.grad == N and (data.cuts or data.nograd or data.const is not None):
                out = self._cut(data, node, f"{self.src.text_of(node.func)}()", node.args[0] if node.args else None,
                                bare=False)
            elif data.grad > N and data.kind == "tensor" or data.grad == G and data.kind in ("list", "tuple"):
                # torch.tensor([loss_a, loss_b]) copies the values: the graph stays behind
                out = self._cut(data, node, f"{self.src.text_of(node.func)}()", node.args[0] if node.args else None,
                                bare=False)
            elif data.kind in ("number", "none", "bool", "qual") or (node.args and isinstance(node.args[0], (ast.Constant, ast.UnaryOp))):
                out = Val(N, const=node, src=node, shape="pos" if data.shape == "pos" else None)
            elif data.kind in ("numpy", "list") and data.grad == N:
                out = Val(N, const=node, src=node) if not data.has_reason() else \
                    self._cut(data, node, f"{self.src.text_of(node.func)}()", node.args[0] if node.args else None, bare=False)
            else:
                out = Val(N, src=node)
            if rg_true:
                if _hides_cut(out):
                    return replace(out, patched=node, patch_kind="requires_grad=True")
                return Val(G, leaf=True, origins=frozenset(), src=node)
            return out
        if qn in _CUT_FUNCS:
            recv = combine(args, node) if args else NONE
            return self._cut(recv, node, _CUT_FUNCS[qn], node.args[0] if node.args else None, bare=False)
        if qn.startswith("torch.nn.functional.") or qn.startswith("torch.") and name in _FUNCTIONAL_LOSSES:
            if name in _FUNCTIONAL_LOSSES:
                return self._loss_call(qn, node, None, args, kwargs, env, fr)
        if qn.startswith("torch.") and name in _TENSOR_FACTORIES:
            rg = next((kw.value for kw in node.keywords if kw.arg == "requires_grad"), None)
            if isinstance(rg, ast.Constant) and rg.value is True:
                return Val(G, leaf=True, src=node)
            if name.endswith("_like") and args:
                return Val(N, src=node, shape="pos" if name == "ones_like" else None)
            return Val(N, src=node, shape="pos" if name == "ones" else None)
        if qn in ("torch.stack", "torch.cat", "torch.concat", "torch.vstack", "torch.hstack"):
            a = args[0] if args else NONE
            if a.elts:
                return combine(list(a.elts), node)
            return replace(a, kind="tensor", elts=None, src=node)
        if qn in ("torch.nn.Parameter", "torch.nn.parameter.Parameter"):
            return Val(G, leaf=True, src=node)
        if qn in ("torch.maximum", "torch.max", "torch.fmax", "torch.clamp", "torch.clip", "torch.clamp_min") \
                or qn.startswith("torch.") and name in ("softmax", "sigmoid", "log_softmax", "logsigmoid",
                                                        "log", "log2", "log10", "exp", "exp2", "sqrt", "pow", "square",
                                                        "abs", "relu", "softplus", "tanh", "sum", "mean", "norm",
                                                        "std", "var", "vector_norm", "gather", "neg", "sub",
                                                        "div", "true_divide", "add", "expit", "clamp_max",
                                                        "relu6", "nansum", "nanmean", "float_power",
                                                        "squeeze", "unsqueeze", "flatten", "reshape", "amax",
                                                        "index_select", "take_along_dim", "transpose", "permute"):
            if not args:
                return combine(list(kwargs.values()), node)
            if qn in ("torch.max", "torch.maximum", "torch.fmax") and len(args) >= 2:
                return self._tensor_op("maximum", node, args[0], node.args[0], args[1:], kwargs, node.args, env, fr, method=False)
            return self._ranged(name, self._tensor_op(name, node, args[0], node.args[0], args[1:], kwargs, node.args,
                                                      env, fr, method=False), args[0], args[1:], kwargs)
        if qn.startswith("torch.nn.functional.") and name in ("normalize", "dropout", "relu", "gelu", "silu",
                                                              "leaky_relu", "elu", "pad", "interpolate"):
            shape = "nonneg" if name == "relu" else None
            return combine(args + list(kwargs.values()), node, shape=shape)
        return combine(args + list(kwargs.values()), node) if qn.startswith("torch.") and (args or kwargs) else None

    # -- losses --------------------------------------------------------------------------------
    def _loss_call(self, qn: str, node: ast.Call, module: Val | None, args, kwargs, env, fr) -> Val:
        kind = LOSS_KINDS.get(qn)
        inp_node = node.args[0] if node.args else next((kw.value for kw in node.keywords if kw.arg == "input"), None)
        inp = args[0] if args else kwargs.get("input", UNKNOWN)
        self._record(fr, env, "loss", node, {"input": inp}, {"input": inp_node},
                     loss=qn, loss_kind=kind, module=module)
        # targets of unknown origin (a function's parameter) are data: the input decides
        others = [a for a in args[1:] + list(kwargs.values()) if a is not inp]
        others = [replace(a, grad=N) if a.grad == U and not a.origins else a for a in others]
        # a mean (or sum) of squared errors: 0 when the prediction is exact (sqrt of it has NaN grad)
        sq = qn in ("torch.nn.MSELoss", "torch.nn.functional.mse_loss")
        v = combine([inp] + others, node, shape="sumsq" if sq else "reduce")
        return v

    def _module_call(self, mod: Val, node: ast.Call, args, kwargs, env, fr) -> Val:
        cls = mod.module_cls or ""
        short = cls.rsplit(".", 1)[-1]
        if cls.startswith("torch.nn.") and short.endswith("Loss"):
            return self._under_nograd(self._loss_call(cls, node, mod, args, kwargs, env, fr), node, env)
        inp = args[0] if args else (next(iter(kwargs.values())) if kwargs else NONE)
        inp_node = node.args[0] if node.args else None
        if cls.startswith("torch.nn.") and short in ("Softmax", "Sigmoid", "Softmin"):
            v = combine(args, node, shape="prob")
            return self._under_nograd(replace(v, act="sigmoid" if short == "Sigmoid" else "softmax", act_node=node,
                                              act_input=inp_node, exact=True, act_scope=fr.scope), node, env)
        if cls.startswith("torch.nn.") and short in ("LogSoftmax", "LogSigmoid"):
            return self._under_nograd(combine(args, node, shape="logprob"), node, env)
        if cls.startswith("torch.nn.") and short.startswith(_PARAMLESS_PREFIX) and short not in ("PReLU",):
            shape = {"ReLU": "nonneg", "ReLU6": "nonneg", "Softplus": "nonneg", "Tanh": "bounded",
                     "Hardtanh": "bounded"}.get(short, inp.shape if short in _PASS_LAYERS else None)
            return self._under_nograd(combine(args, node, shape=shape), node, env)
        key = mod.module_key or self.src.text_of(node.func)
        out = self._forward_val(mod, node, args, kwargs, env, fr)
        if out.grad == N and out.has_reason():
            res = replace(out, src=node)
        else:
            res = self._as_model_out(out, key, node, args)
        return self._under_nograd(res, node, env, model=key)

    def _as_model_out(self, out: Val, key: str, node, args) -> Val:
        elts = tuple(self._as_model_out(e, key, node, args) for e in out.elts) if out.elts else None
        cuts = _uniq([c for a in args for c in a.cuts] + list(out.cuts))
        # the models whose outputs feed this one keep their path too (`predictor(encoder(x))`)
        up = frozenset().union(*[a.origins for a in args if a.grad == G]) if args else frozenset()
        return Val(G, kind=out.kind if out.kind in ("tensor", "tuple", "list") else "tensor",
                   origins=frozenset([key]) | up, cuts=cuts, shape=out.shape, act=out.act, act_node=out.act_node,
                   act_input=out.act_input, act_scope=out.act_scope, exact=out.exact,
                   model_calls=(node,), model_out=True, src=node, elts=elts, torchy=True)

    def _forward_val(self, mod: Val, node, args, kwargs, env, fr) -> Val:
        """What a module's forward returns: shape and cuts inside it; graph from its parameters."""
        cls = mod.module_cls or ""
        short = cls.rsplit(".", 1)[-1]
        if cls == "torch.nn.Sequential":
            shape, act, act_node = None, None, None
            for layer in modelling.sequential_layers(self, mod, env, fr):
                lq = canonical(self._qn(layer.func) or "") if isinstance(layer, ast.Call) else ""
                ls = lq.rsplit(".", 1)[-1]
                if lq.startswith("torch.nn.") and ls in _LINEARISH:
                    shape, act, act_node = "raw", None, None
                elif ls in ("Softmax", "Sigmoid"):
                    shape, act, act_node = "prob", ("sigmoid" if ls == "Sigmoid" else "softmax"), layer
                elif ls in ("LogSoftmax", "LogSigmoid"):
                    shape, act, act_node = "logprob", None, None
                elif ls in ("ReLU", "Softplus", "ReLU6"):
                    shape, act, act_node = "nonneg", None, None
                elif ls in ("Tanh", "Hardtanh"):
                    shape, act, act_node = "bounded", None, None
                elif ls in _PASS_LAYERS:
                    pass
                elif lq in self.sym.classes and self.sym.is_module_class(lq):
                    sub = self._forward_val(Val(G, kind="module", module_cls=lq, module_key=None), layer, [Val(N)], {}, env, fr)
                    shape, act, act_node = sub.shape, sub.act, sub.act_node
                else:
                    shape, act, act_node = None, None, None
            return Val(G, shape=shape, act=act, act_node=act_node, exact=act is not None,
                       act_input=None, act_scope=None)
        if short in ("DataParallel", "DistributedDataParallel") and cls.startswith("torch.nn.") \
                and mod.module_ctor is not None and mod.module_ctor.args and fr.depth < self.MAX_DEPTH:
            # `nn.DataParallel(Net())`: its forward is the wrapped module's
            inner = mod.module_ctor.args[0]
            iv = None
            if isinstance(inner, ast.Call):
                qn = canonical(self._qn(inner.func) or "")
                if qn:
                    iv = self._module_val(inner, None, qn)
            elif isinstance(inner, (ast.Name, ast.Attribute)):
                k = self._key(inner)
                iv = self._lookup(k, inner, env, fr) if k else None
            if iv is not None and iv.kind == "module" and iv.module_cls and iv.module_cls != cls:
                return self._forward_val(iv, node, args, kwargs, env, fr)
            return Val(G)
        if cls.startswith("torch.nn."):
            if short in _LINEARISH:
                return Val(G, shape="raw")
            if short in ("LSTM", "GRU", "RNN"):
                return Val(G, kind="tuple", elts=(Val(G), Val(G)))
            return Val(G)
        if cls in self.sym.classes and self.sym.is_module_class(cls):
            s = self._method_scope(cls, "forward")
            if s is None:
                return Val(G)
            self_val = Val(G, kind="module", module_key="self", module_cls=cls)
            inner_args = [replace(a, origins=frozenset(), model_calls=()) if a.grad == G else a for a in args]
            return self._invoke(s, node, inner_args, kwargs, env, fr, self_val=self_val, is_forward=True)
        return Val(G)

    # -- interprocedural -----------------------------------------------------------------------
    def _sig(self, v: Val):
        return (v.grad, v.kind, v.shape, v.act, id(v.act_node), v.origins, tuple(id(c.node) for c in v.cuts),
                tuple(id(n.node) for n in v.nograd), id(v.const), id(v.patched), v.module_key, v.module_cls,
                v.exact, v.model_out, len(v.elts) if v.elts else -1, tuple(id(a.val) for a in v.alts))

    def memo_key(self, fn, args, kwargs, self_val, ng, recording) -> tuple:
        return (id(fn), tuple(self._sig(a) for a in args), tuple(sorted((k or "", self._sig(v)) for k, v in kwargs.items())),
                self._sig(self_val) if self_val else None, id(ng) if ng else None, recording)

    def _as_before(self, run, fn, args, kwargs, self_val, ng, recording) -> Val | None:
        """While flow_patch re-runs a function: what its call at this point returned the time
        before, if it called the same function with equal values (a memo key holds ids of values
        made during the run, which differ from one run to the next)."""
        i = len(run.calls)
        if i >= len(run.expect):
            return None
        ret, o_args, o_kwargs, o_self, o_fn, o_ng, o_rec, _child, _node = run.expect[i]
        if o_fn is not fn or o_rec != recording or not isinstance(ret, Val):
            return None
        if same_value((args, kwargs, self_val, ng), (o_args, o_kwargs, o_self, o_ng)):
            return ret
        return None

    def _invoke(self, scope, node, args, kwargs, env, fr, self_val=None, is_forward=False) -> Val:
        if scope is None:
            return Val(U, src=node)
        fn = scope.node
        ng = env.get("__nograd__") if not is_forward else None
        deco = self._decorator_nograd(fn)
        key = self.memo_key(fn, args, kwargs, self_val, ng, fr.recording)
        memo = self._fn_memo.get(key)
        patching = self._patch_scopes
        if memo is None and fr.run is not None and fr.run.expect is not None and (
                patching is None or id(scope) not in patching):
            memo = self._as_before(fr.run, fn, args, kwargs, self_val, ng, fr.recording)
        if memo is not None:
            if fr.run is not None:
                fr.run.calls.append((memo, args, kwargs, self_val, fn, ng, fr.recording, None, node))
            return memo
        if id(scope) in self._active or fr.depth >= self.MAX_DEPTH:
            if fr.run is not None:
                fr.run.calls.append((node, args, kwargs, self_val, fn, ng, fr.recording, None, node))  # cut
            return Val(U, src=node)
        at = len(fr.run.calls) if fr.run is not None else -1
        run = self._new_run(scope, False, node, args, kwargs, ng, fr.recording, fr.depth, self_val, is_forward,
                            frozenset(self._active))
        run.parent = fr.run
        if patching is not None:
            if id(scope) not in patching:
                # a function flow_patch does not re-run: it must, in another round (this one stops)
                self._grow[id(scope)] = scope
                self._stopped = True
            elif run.was is None and fr.run is not None and fr.run.was is not None and at < len(fr.run.was.calls):
                # the run the call at this place made the time before stands for this one
                child = fr.run.was.calls[at][7]
                if child is not None and child.scope is scope:
                    run.was, run.expect = child, child.calls
        self._active.add(id(scope))
        try:
            new_env: dict = {}
            params = list(fn.args.posonlyargs) + list(fn.args.args)
            pos = list(args)
            if scope.kind == "method" and params:
                first = params[0]
                is_static = any(isinstance(d, ast.Name) and d.id == "staticmethod" for d in fn.decorator_list)
                if not is_static:
                    new_env[first.arg] = self_val if self_val is not None else Val(U)
                    params = params[1:]
            defaults = _default_vals(fn.args) if fn.args.defaults or fn.args.kw_defaults else {}
            for i, p in enumerate(params):
                if i < len(pos):
                    new_env[p.arg] = pos[i]
                elif p.arg in kwargs:
                    new_env[p.arg] = kwargs[p.arg]
                else:
                    new_env[p.arg] = defaults.get(p.arg) or Val(U, src=p)
            for p in fn.args.kwonlyargs:
                new_env[p.arg] = kwargs.get(p.arg, defaults.get(p.arg) or Val(U, src=p))
            for k, dv in defaults.items():
                # `group_std(x, groups, self.eps)`: an eps whose default is positive stays a guard
                if k in new_env and new_env[k] is not dv and bounds.positive_default(dv, new_env[k]):
                    new_env[k] = Val(N, kind="number", shape="pos", src=new_env[k].src)
            if fn.args.vararg:
                new_env[fn.args.vararg.arg] = Val(U, kind="tuple", elts=tuple(pos[len(params):]))
            if fn.args.kwarg:
                new_env[fn.args.kwarg.arg] = Val(U, kind="dict")
            if deco is not None:
                new_env["__nograd__"] = deco
            elif ng is not None:
                new_env["__nograd__"] = ng
            sv = self_val if self_val is not None and self_val.kind == "module" else None
            new_fr = _Frame(scope, scope.class_name, sv, fr.recording, fr.depth + 1, run=run)
            t0 = time.thread_time()
            self._exec_body(fn.body, new_env, new_fr)
            run.cost = time.thread_time() - t0
            out = None
            for v, st in new_fr.returns:
                out = join(out, v, st, "branch")
            if out is None:
                out = NONE
            if deco is not None and not is_forward:
                # the call itself is the forward pass that runs with gradients disabled
                r = NoGrad(deco.ctx_node, deco.ctx_text, node, None, None, fn)
                if out.grad == N and out.nograd:
                    out = replace(out, nograd=(r,), alts=())
                else:
                    out = self._under_nograd(out, node, {"__nograd__": r})
        finally:
            self._active.discard(id(scope))
        self._fn_memo[key] = out
        self._memo_keep[key] = (args, kwargs, self_val, ng, run)  # (and the run that made the entry)
        run.result = out
        if fr.run is not None:
            fr.run.calls.append((out, args, kwargs, self_val, fn, ng, fr.recording, run, node))
        return out
