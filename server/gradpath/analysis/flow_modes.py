"""The interpreter's grad-mode helpers (no_grad contexts and decorators, the loss a framework
backwards for you) and its cuts and patches of the autograd graph (`.detach()`, `requires_grad_()`):
a part of Flow (dataflow.py), split out along that seam."""
from __future__ import annotations

import ast

from gradpath.analysis import frameworks
from gradpath.analysis.flow_values import Cut, _Frame, G, N, NoGrad, replace, _uniq, Val
from gradpath.analysis.flow_vocab import _hides_cut, _NOGRAD_CTX
from gradpath.analysis.symbols import canonical


class FlowModes:
    def _grad_mode(self, expr: ast.AST) -> str | None:
        call = expr if isinstance(expr, ast.Call) else None
        qn = canonical(self._qn(call.func if call else expr) or "")
        if qn in _NOGRAD_CTX:
            if call is not None and call.args and isinstance(call.args[0], ast.Constant) \
                    and call.args[0].value is False:
                return None
            for kw in (call.keywords if call else []):
                if kw.arg == "mode" and isinstance(kw.value, ast.Constant) and kw.value.value is False:
                    return None
            return "off"
        if qn == "torch.set_grad_enabled" and call is not None and call.args:
            a = call.args[0]
            if isinstance(a, ast.Constant) and a.value is False:
                return "off"
            if isinstance(a, ast.Constant) and a.value is True:
                return "on"
        if qn == "torch.enable_grad":
            return "on"
        return None

    def _decorator_nograd(self, fn: ast.AST) -> NoGrad | None:
        for d in getattr(fn, "decorator_list", []):
            if self._grad_mode(d) == "off":
                return NoGrad(d, "@" + self.src.text_of(d), d, decorator_of=fn)
        body = frameworks.body_of(self.ctx, fn)
        if body is not None and body.role == frameworks.EVAL_BODY:
            # Lightning runs validation_step under torch.no_grad()
            return NoGrad(fn, f"the {body.framework} evaluation loop (torch.no_grad)", fn)
        return None

    def _framework_loss(self, st: ast.Return, env: dict, fr: _Frame) -> None:
        """The loss a framework backwards for you (a LightningModule's training_step with automatic
        optimization, a Trainer's compute_loss): recorded as a backward of the returned loss."""
        body = frameworks.body_of(self.ctx, fr.scope.node)
        if body is None or body.role != frameworks.LOSS_BODY:
            return
        node = frameworks.returned_loss(st.value)
        if node is None:
            return
        self._record(fr, env, "backward", node, {"value": self.ev(node, env, fr)}, {"value": node},
                     how="returned", framework=body.framework)

    def _under_nograd(self, val: Val, node: ast.AST, env: dict, model: str | None = None) -> Val:
        ng = env.get("__nograd__")
        if ng is None or val.grad == N or val.kind not in ("tensor", "tuple", "list"):
            return val
        reason = NoGrad(ng.ctx_node, ng.ctx_text, node, model, ng.with_stmt, ng.decorator_of)
        elts = tuple(replace(e, grad=N, origins=frozenset(), nograd=(reason,)) if e.grad > N else e
                     for e in val.elts) if val.elts else val.elts
        return replace(val, grad=N, origins=frozenset(), nograd=(reason,), elts=elts, alts=())

    # -- cuts and patches ----------------------------------------------------------------------
    def _cut(self, recv: Val, node: ast.AST, kind: str, receiver: ast.AST | None, bare: bool,
             out_kind: str = "tensor") -> Val:
        models = recv.origins if recv.grad == G else frozenset()
        c = Cut(node, kind, models, bare, receiver, had_graph=recv.grad == G,
                of_leaf=recv.grad == G and recv.leaf and not recv.origins)
        cuts = _uniq([c] + list(recv.cuts)) if (recv.grad > N or recv.cuts or recv.nograd) else recv.cuts
        if recv.grad == N and not recv.cuts and not recv.nograd and recv.const is None:
            # cutting plain data: nothing to report about it later
            return Val(N, kind=out_kind, src=node, const=None)
        return Val(N, kind=out_kind, cuts=cuts, nograd=recv.nograd, const=recv.const, src=node,
                   model_calls=recv.model_calls, shape=None,
                   alts=tuple(a for a in recv.alts))

    def _patch(self, cur: Val, node: ast.AST, how: str) -> Val:
        if cur.grad != N:
            return cur
        if not _hides_cut(cur):
            # requires_grad on plain data, a constant or a copy of a leaf (`z.detach().clone()`): a new
            # leaf that does get gradients (inputs, weights, an autograd demo)
            return Val(G, leaf=True, src=node)
        return replace(cur, patched=node, patch_kind=how, src=cur.src)
