"""Training loops and the order of what happens in one iteration (the facts behind GP4).

Every scope (module, function, method) is a *root*. Its body is flattened into a list of events in
execution order: `zero_grad`, `backward`, `step`, `sched` (an lr scheduler's step), `train`, `eval`,
`fwd` (a call of a model) and `opaque` (a call we cannot see into that may do any of those). Calls of
functions and methods of the same file are followed (up to MAX_DEPTH levels) and their events are
inlined with names translated to the caller's: `train_step(model, opt)` -> the callee's
`optimizer.step()` becomes a step of `opt`. A closure passed to `optimizer.step(closure)` is inlined
before the step. Each event carries its *path*: the loops, `if` branches, `no_grad` blocks and calls
that enclose it, so a rule can ask "is this in the same iteration of that loop?", "is it
conditional there?", "are these two in exclusive branches?".

Keys are the facts module's keys (`opt`, `self.optimizer`); a key local to a followed callee that the
caller cannot name is prefixed with the callee's name and a colon (`train_step:opt`).

The loop facts of an edited file take over the previous version's events of every function the edit
cannot reach (loop_reuse.py); `_meta` records what each function's events were made from.
"""
from __future__ import annotations

import ast
import builtins
import re
from dataclasses import replace

from gradpath.analysis import effects, frameworks
from gradpath.analysis import loop_guards, loop_reuse
from gradpath.analysis.project import project_view
from gradpath.analysis.facts import unwrap_same_instance, key_of
from gradpath.analysis.project import loop_link as project_link
from gradpath.analysis.loop_events import ACCUM, CALL, CLOSURE, Ev, IF, _IfTest, LOOP, NOGRAD, Unit
from gradpath.analysis.loop_events import (  # noqa: F401 - the GP4 rules import these from here
    MAX_DEPTH, display, exclusive, key_matches, nameable, same_model)
from gradpath.analysis.loop_bindings import LoopBindings, _is_cleared_value

# Bounds on inlining (a file of thousands of small methods calling each other): past them a call
# becomes an opaque event, which only ever silences a rule.
MAX_UNIT_EVENTS = 1500
MAX_TOTAL_COPIES = 60_000

EVENT_METHODS = {"train", "eval", "zero_grad", "step", "backward", "forward"}
# plain functions that clear gradients by their name (fp16 utilities, training helpers)
GRAD_CLEAR_HELPERS = frozenset({"zero_grad", "zero_grads", "zero_gradients", "clear_grad", "clear_grads",
                                "clear_gradients", "reset_grad", "reset_grads", "reset_gradients"})

# a scheduler stepped with a value of one of these names steps on a metric (ReduceLROnPlateau)
_METRIC_NAME = re.compile(r"(?i)(^|_)(loss|losses|metric|metrics|acc|accuracy|score|val)(_|$)")
# calls that can make an event other than `fwd`/`opaque` (zero_/detach_: a hand-written grad reset)
_RELEVANT_METHODS = {"backward", "manual_backward", "zero_grad", "step", "optimizer_step", "train", "eval",
                     "zero_", "detach_"}


# -- the analysis ------------------------------------------------------------------------------------

class _Computing:
    """What a function whose events are being computed used so far (see LoopFacts._meta)."""
    __slots__ = ("deps", "callees", "height", "copies", "pure")

    def __init__(self):
        self.deps: set = set()
        self.callees: set = set()
        self.height = 0
        self.copies = 0
        self.pure = True

    def asked(self, k: int, meta: tuple) -> None:
        self.deps.add(k)
        self.deps |= meta[1]
        self.pure = self.pure and meta[4]


class LoopFacts(LoopBindings):
    MAX_COPIES = MAX_TOTAL_COPIES

    def __init__(self, ctx):
        self.ctx = ctx
        self.facts = ctx.facts
        self.sym = ctx.symbols
        self.scope_by_node = {id(s.node): s for s in self.facts.scopes}
        self._cache: dict[tuple[int, int], list[Ev]] = {}
        self._busy: set[int] = set()
        self._assigns: dict[int, list[tuple[str, ast.AST, int]]] = {}
        self._locals: dict[int, set[str]] = {}
        self._defs: dict[int, dict[str, ast.AST]] = {}
        self._by_key: dict | None = None
        self._complete: dict[int, list[Ev]] = {}
        self._truncations = 0
        self._copies = 0
        self._call_lists: dict[int, list[ast.Call]] = {}
        self._module_name_set: set[str] | None = None
        self._kind_memo: dict[tuple, bool] = {}
        self._dumps: dict[int, str] = {}  # id(if test) -> ast.dump of it
        self._effects_cache: dict = {}  # per-function facts of effects.py (call_literals, element_params)
        # per function computed without a cut: (its node, the functions whose events it asked for,
        # transitively, the levels of inlining it used, the copies its own call sites made, whether
        # it used no cut result, the (function, depth step) of each call it inlined): loop_reuse.py
        self._meta: dict[int, tuple] = {}
        self._poisoned: set = set()  # (function, depth) computed with a cut, in _cache
        self._track: list[_Computing] = []  # the functions being computed, innermost last
        self._view = project_view(ctx) is not None
        self._reuse = loop_reuse.reuse_for(self)
        self.adopted = 0  # functions whose events were taken over from the previous version
        self._build_index()
        relevant = self._relevant_scopes()
        self.units: list[Unit] = []
        for scope in self.facts.scopes:
            if ctx.out_of_time():
                break
            unit = Unit(scope, self, id(scope) in relevant)
            if unit.relevant:
                unit._compute()  # in scope order, as the inlining caches and bounds expect
            self.units.append(unit)
        self._finished = len(self.units) == len(self.facts.scopes)

    @property
    def training_units(self) -> list[Unit]:
        """The units that may hold a training event; the others only ever hold `fwd`/`opaque`."""
        return [u for u in self.units if u.relevant]

    # -- one pass over the file ----------------------------------------------------------------------
    def _build_index(self) -> None:
        """Statements of each scope (its own code, source order), for every node that heads an
        expression the flattening reads, the calls under it, the calls of each scope's own statements
        and the names each def binds: from the node list (and each node's scope) that facts made in
        its one walk of the tree."""
        self._scope_stmts: dict[int, list[ast.stmt]] = {}
        stmt_scope: dict[int, object] = {}
        for scope in self.facts.scopes:
            lst: list[ast.stmt] = []
            stack = list(reversed(scope.body))
            while stack:
                st = stack.pop()
                lst.append(st)
                stmt_scope[id(st)] = scope
                if isinstance(st, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    continue
                children = list(getattr(st, "body", ()))
                for h in getattr(st, "handlers", ()):
                    children += h.body
                children += getattr(st, "orelse", ())
                children += getattr(st, "finalbody", ())
                for c in getattr(st, "cases", ()):
                    children += c.body
                stack.extend(reversed(children))
            self._scope_stmts[id(scope)] = lst
        all_nodes = getattr(self.facts, "all_nodes", None)
        nodes = all_nodes() if all_nodes is not None else ast.walk(self.ctx.tree)
        parents = self.facts.parents
        scope_calls: dict[int, list[ast.Call]] = {}
        own_names: dict[int, set[str]] = {}
        under: dict[int, list[ast.Call]] = {}
        under_get = under.get
        Name, Arg, Call, Load, Stmt, Lambda = ast.Name, ast.arg, ast.Call, ast.Load, ast.stmt, ast.Lambda
        Defs = (ast.FunctionDef, ast.AsyncFunctionDef)
        node_scopes = getattr(self.facts, "node_scopes", None)
        node_scope = node_scopes() if node_scopes is not None else None
        for c in nodes:
            tc = type(c)
            if tc is Name or tc is Arg:
                if tc is Arg:
                    name = c.arg
                elif type(c.ctx) is not Load:
                    name = c.id
                else:
                    continue
                # the def whose `ast.walk` first meets this binding: the scope of the statement
                # holding it, or the def itself for its own parameters (and decorators); facts
                # recorded that scope for every node in its walk
                if node_scope is not None:
                    sc = node_scope.get(id(c))
                    if sc is not None:
                        own_names.setdefault(id(sc.node), set()).add(name)
                        continue
                n = c
                while n is not None:
                    while n is not None and not isinstance(n, Stmt):
                        n = parents.get(id(n))
                    if n is None or isinstance(n, Defs):
                        break
                    sc = stmt_scope.get(id(n))
                    if sc is not None:
                        n = sc.node
                        break
                    n = parents.get(id(n))  # a class body's statement: up to the class
                if n is not None:
                    own_names.setdefault(id(n), set()).add(name)
                continue
            if tc is not Call:
                continue
            n, active = c, True
            while n is not None and not isinstance(n, Stmt):
                if active:
                    if n.__class__ is Lambda:
                        active = False  # a lambda's calls are not its enclosing expression's
                    else:
                        lst = under_get(id(n))
                        if lst is None:
                            under[id(n)] = [c]
                        else:
                            lst.append(c)
                n = parents.get(id(n))
            if n is None:
                continue
            if active:
                under.setdefault(id(n), []).append(c)
            sc = stmt_scope.get(id(n))
            if sc is not None:
                scope_calls.setdefault(id(sc), []).append(c)
        self._under = under
        self._scope_calls = scope_calls
        self._own_names = own_names
        self._child_scopes: dict[int, list] = {}
        for sc in self.facts.scopes:
            if sc.parent is not None:
                self._child_scopes.setdefault(id(sc.parent.node), []).append(sc)

    def scope_stmts(self, scope) -> list[ast.stmt]:
        """Every statement of `scope`'s own code (not of nested defs/classes), in source order."""
        return self._scope_stmts.get(id(scope), [])

    def _relevant_scopes(self) -> set[int]:
        """Scopes whose events may include more than model calls and opaque calls: those that call a
        method named like a training event, write a `.grad`, or call (by name) such a function of
        this file. A name-based over-approximation: a scope left out could only produce `fwd` and
        `opaque` events, which no rule reads without a training event beside them."""
        own, called = {}, {}
        for scope in self.facts.scopes:
            hit = False
            names = set()
            for c in self._scope_calls.get(id(scope), ()):
                f = c.func
                if isinstance(f, ast.Attribute):
                    names.add(f.attr)
                    if f.attr in _RELEVANT_METHODS:
                        hit = True
                elif isinstance(f, ast.Name):
                    names.add(f.id)
                    if (f.id == "backward" or f.id in self.sym.aliases) and \
                            self.sym.qualname(f) == "torch.autograd.backward":
                        hit = True
                if not hit and project_link.may_have_effects(self, c):
                    hit = True  # a helper of another module that trains, clears, steps or switches modes
            if not hit:
                for st in self._scope_stmts.get(id(scope), ()):
                    if isinstance(st, (ast.Assign, ast.AugAssign)):
                        targets = st.targets if isinstance(st, ast.Assign) else [st.target]
                        if any(isinstance(t, ast.Attribute) and t.attr == "grad" for t in targets):
                            hit = True
                            break
            own[id(scope)] = hit
            called[id(scope)] = names
        relevant = {k for k, v in own.items() if v}
        rel_names = {s.name for s in self.facts.scopes if id(s) in relevant and s.kind != "module"}
        changed = True
        while changed:
            changed = False
            for s in self.facts.scopes:
                if id(s) not in relevant and called[id(s)] & rel_names:
                    relevant.add(id(s))
                    if s.kind != "module":
                        rel_names.add(s.name)
                    changed = True
        return relevant

    # -- flattening --------------------------------------------------------------------------------
    def function_events(self, fn: ast.AST, depth: int) -> list[Ev]:
        k = id(fn)
        done = self._complete.get(k)
        if done is None and self._reuse is not None:
            done = loop_reuse.adopt(self, fn, depth)
        if done is not None:
            if self._track:  # (the function being computed asked for this one)
                self._track[-1].asked(k, self._meta[k])
            return done
        ck = (k, depth)
        if ck in self._cache:
            if self._track:
                self._track[-1].pure = False  # (a result with a cut: complete ones are in _complete)
            return self._cache[ck]
        self._busy.add(k)
        me = _Computing()
        self._track.append(me)
        truncated_before = self._truncations
        scope = self.scope_by_node.get(id(fn))
        out: list[Ev] = []
        frames: tuple = ()
        if any(self._is_nograd_ctx(d) for d in getattr(fn, "decorator_list", [])):
            frames = ((NOGRAD, fn),)
        fb = frameworks.body_of(self.ctx, fn)
        if fb is not None and fb.role == frameworks.EVAL_BODY:
            frames = ((NOGRAD, fn),)  # Lightning's validation_step, test_step, predict_step
        if scope is not None:
            self._stmts(fn.body, frames, scope, fn, depth, out)
        self._busy.discard(k)
        self._track.pop()
        self._cache[ck] = out
        if self._truncations == truncated_before:
            self._complete[k] = out  # nothing was cut off: the same at any depth
            meta = self._meta[k] = (fn, frozenset(me.deps), me.height, me.copies, me.pure, frozenset(me.callees))
            if self._track:
                self._track[-1].asked(k, meta)
        else:
            self._poisoned.add(ck)
        return out

    def _stmts(self, body, frames, scope, fn, depth, out) -> None:
        for st in body:
            self._stmt(st, frames, scope, fn, depth, out)

    def _stmt(self, st, frames, scope, fn, depth, out) -> None:
        if isinstance(st, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            return
        if isinstance(st, ast.If):
            self._exprs(st.test, frames, scope, fn, depth, out)
            cond = _IfTest(st.test, self._dumps)
            self._stmts(st.body, frames + ((IF, st, 0, cond),), scope, fn, depth, out)
            self._stmts(st.orelse, frames + ((IF, st, 1, cond),), scope, fn, depth, out)
        elif isinstance(st, (ast.For, ast.AsyncFor)):
            reset = self._grad_reset_loop(st, scope)
            if reset is not None:
                out.append(Ev("zero_grad", reset[0], st, frames, target=reset[1],
                              models=reset[2], fn=fn))
                return
            self._exprs(st.iter, frames, scope, fn, depth, out)
            self._stmts(st.body, frames + ((LOOP, st),), scope, fn, depth, out)
            self._stmts(st.orelse, frames, scope, fn, depth, out)
        elif isinstance(st, ast.While):
            inner = frames + ((LOOP, st),)
            self._exprs(st.test, inner, scope, fn, depth, out)
            self._stmts(st.body, inner, scope, fn, depth, out)
            self._stmts(st.orelse, frames, scope, fn, depth, out)
        elif isinstance(st, (ast.With, ast.AsyncWith)):
            inner = frames
            for item in st.items:
                self._exprs(item.context_expr, frames, scope, fn, depth, out)
                if self._is_nograd_ctx(item.context_expr):
                    inner = inner + ((NOGRAD, st),)
                if loop_guards.is_dist_autograd_context(self.sym, item.context_expr):
                    inner = inner + ((loop_guards.DIST, st),)
                acc = frameworks.accumulate_model(self.sym, item.context_expr,
                                                  lambda r: self.binding_value(key_of(r), scope) if key_of(r) else None)
                if acc is not None:
                    inner = inner + ((ACCUM, st, key_of(acc)),)
                elif self._is_enable_grad_ctx(item.context_expr):
                    inner = tuple(f for f in inner if f[0] != NOGRAD)
            self._stmts(st.body, inner, scope, fn, depth, out)
        elif isinstance(st, ast.Try) or type(st).__name__ == "TryStar":
            self._stmts(st.body, frames, scope, fn, depth, out)
            for i, h in enumerate(st.handlers):
                self._stmts(h.body, frames + ((IF, st, i + 1, id(st)),), scope, fn, depth, out)
            self._stmts(st.orelse, frames, scope, fn, depth, out)
            self._stmts(st.finalbody, frames, scope, fn, depth, out)
        elif isinstance(st, ast.Match):
            self._exprs(st.subject, frames, scope, fn, depth, out)
            for i, case in enumerate(st.cases):
                self._stmts(case.body, frames + ((IF, st, i, id(st)),), scope, fn, depth, out)
        else:
            self._exprs(st, frames, scope, fn, depth, out)
            if isinstance(st, (ast.Assign, ast.AugAssign)):
                targets = st.targets if isinstance(st, ast.Assign) else [st.target]
                for t in targets:
                    if isinstance(t, ast.Attribute) and t.attr == "grad" and not _is_cleared_value(st.value):
                        # gradients written by hand (`p.grad = g`): as good as a backward for a step
                        out.append(Ev("setgrad", key_of(t.value), st, frames, fn=fn))

    def _exprs(self, node, frames, scope, fn, depth, out) -> None:
        calls = self._call_lists.get(id(node))
        if calls is None:
            calls = self._under.get(id(node), [])
            # post-order: arguments (and receivers) before the call that uses them
            calls.sort(key=lambda c: (c.end_lineno or 0, c.end_col_offset or 0, -(c.lineno), -c.col_offset))
            self._call_lists[id(node)] = calls
        for c in calls:
            self._call(c, frames, scope, fn, depth, out)

    def _call(self, call: ast.Call, frames, scope, fn, depth, out) -> None:
        func = call.func
        qn = self.sym.qualname(func)
        if qn in ("torch.autograd.backward",):
            out.append(Ev("backward", key_of(call.args[0]) if call.args else None, call, frames, fn=fn))
            return
        if isinstance(func, ast.Attribute):
            m, recv = func.attr, func.value
            rk = key_of(recv)
            if rk is None and m in ("train", "eval") and isinstance(recv, ast.Call):
                # `model.to(device).train()`, `model.cpu().eval()`: .to()/.cpu() return the module itself
                rk = key_of(unwrap_same_instance(recv))
            target = self._resolve_method(rk, m, scope)
            if target is not None:
                self._inline(call, target, rk, frames, scope, fn, depth, out)
                return
            special = loop_guards.classify_method_call(self, call, m, rk, scope, frames)
            if special == "skip":
                return  # distributed autograd or an engine: gradients never land in .grad here
            if special == "backward":
                out.append(Ev("backward", key_of(call.args[0]) if call.args else rk, call, frames, fn=fn))
            elif special == "opaque":
                out.append(Ev("opaque", m, call, frames, args=("*",) + self._arg_keys(call), fn=fn))
            elif m in ("backward", "manual_backward"):
                out.append(Ev("backward", self._loss_key(call, recv, rk), call, frames, fn=fn))
            elif m == "zero_grad" and rk:
                if self.is_optimizer(rk, scope):
                    out.append(Ev("zero_grad", rk, call, frames, target="optimizer",
                                  models=self.optimizer_models(rk, scope), fn=fn))
                else:
                    out.append(Ev("zero_grad", rk, call, frames, target="model", fn=fn))
            elif m == "step" and rk:
                self._step(call, rk, frames, scope, fn, depth, out)
            elif m == "step":
                # `self.optimizers().step()`, `get_opt().step()`: something steps, we do not know what
                out.append(Ev("step", None, call, frames, target="unknown", fn=fn))
            elif m == "optimizer_step" and call.args and key_of(call.args[0]):
                ok = key_of(call.args[0])
                out.append(Ev("step", ok, call, frames, target="optimizer",
                              models=self.optimizer_models(ok, scope), fn=fn))
            elif m in ("train", "eval") and rk and rk != "self":
                mode = m
                if m == "train":
                    arg = call.args[0] if call.args else next(
                        (k.value for k in call.keywords if k.arg == "mode"), None)
                    if isinstance(arg, ast.Constant) and arg.value is False:
                        mode = "eval"
                out.append(Ev(mode, rk, call, frames, fn=fn))
            else:
                self._maybe_opaque(call, rk, m, frames, scope, fn, out)
        elif isinstance(func, ast.Name) and func.id in GRAD_CLEAR_HELPERS:
            # zero_grad(model.parameters()) / zero_grad(self.master_params): a helper (defined here
            # or imported) that clears gradients; which ones it clears is not known
            out.append(Ev("zero_grad", None, call, frames, target="any", fn=fn))
        elif isinstance(func, ast.Name):
            target = self._resolve_function(func.id, scope)
            if target is not None:
                self._inline(call, target, None, frames, scope, fn, depth, out)
                return
            if func.id in self.sym.classes or (func.id not in self.sym.aliases and hasattr(builtins, func.id)):
                return
            if func.id in self.sym.aliases:
                self._maybe_opaque(call, None, func.id, frames, scope, fn, out)
            elif self._is_local_value(func.id, scope) or func.id in self._module_names():
                # a model or loss module, or a callable handed in (`step_fn(optimizer)`)
                out.append(Ev("fwd", func.id, call, frames, fn=fn))
                keys = self._arg_keys(call)
                if keys:
                    out.append(Ev("opaque", func.id, call, frames, args=keys, fn=fn))
            else:
                self._maybe_opaque(call, None, func.id, frames, scope, fn, out)

    def _maybe_opaque(self, call, rk, name, frames, scope, fn, out) -> None:
        """A call we do not follow: a model call (`self.model(x)`) or something that might clear,
        step or switch modes (`utils.reset(opt)`, an inherited `self.optimize()`)."""
        linked = project_link.linked_events(self, call, scope, frames, fn)
        if linked is not None:  # a function of another module of the project, from its summary
            out.extend(linked)
            return
        func = call.func
        fk = key_of(func)
        if isinstance(func, ast.Attribute) and fk and key_of(func.value) == "self":
            # self.<name>(...) that is no method of a class of this file: a submodule call, or a
            # method inherited from a class we cannot see
            cls = scope.class_name
            if cls and frameworks.framework_method(self.sym, cls, func.attr):
                return  # `self.log(...)`, `self.optimizers()`: the framework's own, no training event
            out.append(Ev("fwd", fk, call, frames, fn=fn))
            if cls and self._class_has_foreign_base(cls) and not (
                    frameworks.class_framework(self.sym, cls) and frameworks.assigns_self_attr(self.sym, cls, func.attr)):
                # (a LightningModule's own attribute, `self.discriminator = ...`, is no inherited method)
                out.append(Ev("opaque", fk, call, frames, args=("*",), fn=fn))
            elif self._arg_keys(call):
                out.append(Ev("opaque", fk, call, frames, args=self._arg_keys(call), fn=fn))
            return
        qn = self.sym.qualname(func)
        if qn and qn.split(".")[0] == "torch":
            return
        if frameworks.quiet_accelerator_call(self.sym, call):
            return  # accelerator.accumulate(model), .prepare(...), .gather(...): no training event
        keys = tuple(k for k in (key_of(a) for a in list(call.args) + [kw.value for kw in call.keywords]) if k)
        if keys:
            out.append(Ev("opaque", name, call, frames, args=keys, fn=fn))

    @staticmethod
    def _arg_keys(call) -> tuple:
        return tuple(k for k in (key_of(a) for a in list(call.args) + [kw.value for kw in call.keywords]) if k)

    def _step(self, call, rk, frames, scope, fn, depth, out) -> None:
        if self.is_scheduler(rk, scope):
            v = self.binding_value(rk, scope)
            qn = (self.sym.qualname(v.func) or "") if isinstance(v, ast.Call) else ""
            # ReduceLROnPlateau steps on a metric and does not check the optimizer's step count
            kind = "plateau" if qn.endswith("ReduceLROnPlateau") else "lr"
            if kind == "lr" and call.args and _METRIC_NAME.search((key_of(call.args[0]) or "").rsplit(".", 1)[-1]):
                kind = "plateau"  # `scheduler.step(val_loss)`: a metric, as ReduceLROnPlateau takes
            out.append(Ev("sched", rk, call, frames, target=kind, opt=self.scheduler_optimizer(rk, scope), fn=fn))
            return
        if self.is_scaler(rk, scope):
            ok = key_of(call.args[0]) if call.args else None
            if ok:
                out.append(Ev("step", ok, call, frames, target="optimizer",
                              models=self.optimizer_models(ok, scope), fn=fn))
            return
        closure = call.args[0] if call.args else next(
            (k.value for k in call.keywords if k.arg == "closure"), None)
        if closure is not None:
            cfn = closure if isinstance(closure, ast.Lambda) else (
                self._resolve_function(closure.id, scope) if isinstance(closure, ast.Name) else None)
            if isinstance(cfn, ast.Lambda):
                self._exprs(cfn.body, frames + ((CLOSURE, call),), scope, fn, depth, out)
            elif cfn is not None:
                self._inline(call, cfn, None, frames, scope, fn, depth, out, closure=True)
        if loop_guards.dist_step(self, rk, scope, frames):
            out.append(Ev("step", rk, call, frames, target="unknown", fn=fn))
        elif self.is_optimizer(rk, scope):
            out.append(Ev("step", rk, call, frames, target="optimizer",
                          models=self.optimizer_models(rk, scope), fn=fn))
        else:
            out.append(Ev("step", rk, call, frames, target="unknown", fn=fn))

    def _loss_key(self, call, recv, rk) -> str | None:
        # accelerator.backward(loss) / self.manual_backward(loss) / fabric.backward(loss)
        if call.args and (isinstance(call.func, ast.Attribute) and call.func.attr == "manual_backward"
                          or (rk and not isinstance(recv, ast.Call)
                              and re.search(r"accelerat|fabric|engine|scaler", rk.split(".")[-1], re.I))):
            return key_of(call.args[0])
        # scaler.scale(loss).backward()
        if isinstance(recv, ast.Call) and isinstance(recv.func, ast.Attribute) and recv.func.attr == "scale" \
                and recv.args:
            return key_of(recv.args[0])
        return rk

    # -- following calls -----------------------------------------------------------------------------
    def _inline(self, call, target, recv_key, frames, scope, fn, depth, out, closure=False) -> None:
        if depth <= 0 or id(target) in self._busy or len(out) > MAX_UNIT_EVENTS \
                or self._copies > MAX_TOTAL_COPIES:
            self._truncations += 1
            keys = tuple(k for k in (key_of(a) for a in list(call.args) + [kw.value for kw in call.keywords]) if k)
            out.append(Ev("opaque", getattr(target, "name", "?"), call, frames, args=("*",) + keys, fn=fn))
            return
        inner = self.function_events(target, depth - (0 if closure else 1))
        meta = self._meta.get(id(target))
        if meta is not None and self._track:  # (what this call used, for loop_reuse)
            top = self._track[-1]
            top.height = max(top.height, meta[2] if closure else meta[2] + 1, 1)
            top.callees.add((id(target), 0 if closure else 1))
        if not closure and all(e.kind == "fwd" for e in inner):
            return  # only model calls inside: nothing that orders a training step
        if not closure and not isinstance(target, ast.Lambda):
            inner = self._specialise(call, target, recv_key, inner)
        if len(out) + len(inner) > MAX_UNIT_EVENTS:
            self._truncations += 1
            out.append(Ev("opaque", getattr(target, "name", "?"), call, frames, args=("*",), fn=fn))
            return
        self._copies += len(inner)
        if self._track:
            self._track[-1].copies += len(inner)
        mapping = {} if closure else self._arg_mapping(call, target, recv_key)
        local = self._local_names(target)
        prefix = getattr(target, "name", "<lambda>")

        def tr(k):
            if not k or ":" in k:
                return k
            head, _, rest = k.partition(".")
            if head in mapping:
                v = mapping[head]
                if v is None:
                    return f"{prefix}:{k}"
                return v + ("." + rest if rest else "")
            if head in local:
                return f"{prefix}:{k}"
            return k

        tag = (CLOSURE, call) if closure else (CALL, call)
        for e in inner:
            out.append(replace(e, key=tr(e.key), path=frames + (tag,) + e.path,
                               models=tuple(tr(m) for m in e.models), opt=tr(e.opt),
                               args=tuple(a if a == "*" else tr(a) for a in e.args)))

    def _specialise(self, call, target, recv_key, inner: list[Ev]) -> list[Ev]:
        """The callee's events for this call: branches its literal arguments rule out dropped
        (`set_mode("eval", models)`), and events on the elements of a list argument repeated for
        each element (`for m in models: m.eval()` with `[a, b]` -> `a.eval()`, `b.eval()`)."""
        lits = effects.call_literals(call, target, skip_first=recv_key is not None, cache=self._effects_cache)
        if lits:
            def alive(e):
                for f in e.path:
                    if f[0] == CALL:
                        return True  # frames of deeper calls are the deeper callee's
                    if f[0] == IF and isinstance(f[1], ast.If):
                        t = effects.branch_taken(f[1].test, lits)
                        if t is not None and t != (f[2] == 0):
                            return False
                return True
            inner = [e for e in inner if alive(e)]
        ek = ("elems", id(target))
        elems = self._effects_cache.get(ek)
        if elems is None:
            elems = self._effects_cache[ek] = effects.element_params(target)
        if not elems:
            return inner
        a = target.args
        params = [p.arg for p in a.posonlyargs + a.args]
        if recv_key is not None:
            params = params[1:]
        given = dict(zip(params, call.args))
        given.update({kw.arg: kw.value for kw in call.keywords if kw.arg})
        out = []
        for e in inner:
            head = (e.key or "").partition(".")[0]
            arg = given.get(elems.get(head, ""))
            items = self._list_items(arg, call) if arg is not None and not any(f[0] == CALL for f in e.path) else None
            if not items:
                out.append(e)
                continue
            rest = e.key[len(head):]
            for it in items:
                out.append(replace(e, key=it + rest))
        return out

    def _list_items(self, arg, call) -> list[str] | None:
        """Keys of the elements of a list/tuple literal argument (or of a name bound to one)."""
        if isinstance(arg, ast.Name):
            sc = self.facts.scopes[0]
            for s in self.facts.scopes:
                if s.node is not None and any(n is call for n in self._scope_calls.get(id(s), ())):
                    sc = s
                    break
            arg = self.binding_value(arg.id, sc)
        if isinstance(arg, (ast.List, ast.Tuple)) and arg.elts:
            keys = [key_of(x) for x in arg.elts]
            if all(keys):
                return keys
        return None

    def _arg_mapping(self, call, target, recv_key) -> dict[str, str | None]:
        a = target.args
        params = [p.arg for p in a.posonlyargs + a.args]
        mapping: dict[str, str | None] = {p.arg: None for p in a.posonlyargs + a.args + a.kwonlyargs}
        if a.vararg:
            mapping[a.vararg.arg] = None
        if a.kwarg:
            mapping[a.kwarg.arg] = None
        if recv_key is not None and params:
            mapping[params[0]] = recv_key
            params = params[1:]
        for p, arg in zip(params, call.args):
            if isinstance(arg, ast.Starred):
                break
            mapping[p] = key_of(arg)
        for kw in call.keywords:
            if kw.arg in mapping:
                mapping[kw.arg] = key_of(kw.value)
        return mapping

    def _local_names(self, fn) -> set[str]:
        """Every name bound anywhere in `fn` (nested defs, lambdas and classes included)."""
        if id(fn) not in self._locals:
            if id(fn) not in self.scope_by_node:
                names = set()
                for n in ast.walk(fn):
                    if isinstance(n, ast.Name) and isinstance(n.ctx, (ast.Store, ast.Del)):
                        names.add(n.id)
                    elif isinstance(n, ast.arg):
                        names.add(n.arg)
            else:
                names = set(self._own_names.get(id(fn), ()))
                for child in self._child_scopes.get(id(fn), ()):
                    names |= self._local_names(child.node)
            self._locals[id(fn)] = names
        return self._locals[id(fn)]

    def _local_defs(self, scope) -> dict[str, ast.AST]:
        if id(scope) not in self._defs:
            d = {}
            for n in self.scope_stmts(scope):
                if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    d[n.name] = n
            self._defs[id(scope)] = d
        return self._defs[id(scope)]

    def _resolve_function(self, name: str, scope):
        s = scope
        while s is not None:
            if s.kind != "module":
                d = self._local_defs(s)
                if name in d:
                    return d[name]
            s = s.parent
        fn = self.sym.functions.get(name)
        if fn is not None and id(fn) in self.scope_by_node:
            return fn
        return None

    def _class_method(self, cls: str, name: str, seen=frozenset()):
        info = self.sym.classes.get(cls)
        if info is None or cls in seen:
            return None
        for st in info.node.body:
            if isinstance(st, (ast.FunctionDef, ast.AsyncFunctionDef)) and st.name == name:
                return st
        for b in info.bases:
            if b in self.sym.classes:
                r = self._class_method(b, name, seen | {cls})
                if r is not None:
                    return r
        return None

    def _class_has_foreign_base(self, cls: str, seen=frozenset()) -> bool:
        info = self.sym.classes.get(cls)
        if info is None or cls in seen:
            return True
        for b in info.bases:
            if b in self.sym.classes:
                if self._class_has_foreign_base(b, seen | {cls}):
                    return True
            elif b not in ("", "object", "torch.nn.Module") and not b.startswith("torch.nn."):
                return True
        return False

    def _resolve_method(self, rk: str | None, m: str, scope):
        if rk is None:
            return None
        if rk == "self" and scope.class_name:
            target = self._class_method(scope.class_name, m)
            if target is not None and (m not in EVENT_METHODS or not self.sym.is_module_class(scope.class_name)):
                return target
            return None
        cls = self._instance_class(rk, scope)
        if cls is not None:
            target = self._class_method(cls, m)
            if target is not None and (m not in EVENT_METHODS or not self.sym.is_module_class(cls)):
                return target
        return None

    def _instance_class(self, key: str, scope) -> str | None:
        v = self.binding_value(key, scope)
        if isinstance(v, ast.Call) and isinstance(v.func, ast.Name) and v.func.id in self.sym.classes:
            return v.func.id
        return None



def loop_facts(ctx) -> LoopFacts:
    return ctx.memo("gp4.loops", lambda: LoopFacts(ctx))


def loop_header_span(src, loop):
    """`for x, y in loader` / `while step < n`: from the keyword to the end of the header expression;
    for a framework body (a function the framework runs once per batch): `def training_step`."""
    from gradpath.analysis.findings import Span
    if isinstance(loop, (ast.FunctionDef, ast.AsyncFunctionDef)):
        kw = "async def " if isinstance(loop, ast.AsyncFunctionDef) else "def "
        col = src.char_col(loop.lineno, loop.col_offset)
        return Span(loop.lineno, col, loop.lineno, col + len(kw) + len(loop.name))
    end_node = loop.iter if isinstance(loop, (ast.For, ast.AsyncFor)) else loop.test
    start = src.span_of(loop)
    end = src.span_of(end_node)
    return Span(start.line, start.col, end.end_line, end.end_col)
