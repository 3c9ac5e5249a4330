"""A small abstract interpreter over every function and module body, for GP2 and GP3.

It answers, per expression: does this value carry a graph back to a model's parameters (`G`), is
that unknown (`U`), or does it certainly not (`N`, with the reasons: a cut such as `.detach()` or
`.item()`, a forward pass under `torch.no_grad()`, a new constant tensor); and what "shape" the
value has for the numerics rules (a probability from softmax/sigmoid, a raw model output, a
difference, a sum of squares, a std, guarded by an eps...).

Values are followed through reassignments, tuples, `if`/`try` branches and loops (every definition
that may reach a use is kept: the other definitions with no graph ride along as `alts`), through
local helper functions (evaluated with the caller's argument values) and through a model class's
`forward` (a softmax applied in `forward` is seen from the training loop).

While it runs it records observations at nodes (`Flow.events`): every `.backward()`, division,
`log`, `sqrt`, `exp` and loss call, with the values involved. The GP2/GP3 rules read those.
Pure: no torch, no pygls.
"""
from __future__ import annotations

import ast
import time

from gradpath.analysis import bounds
from gradpath.analysis.facts import key_of
from gradpath.analysis.symbols import canonical
from gradpath.analysis.flow_calls import FlowCalls
from gradpath.analysis.flow_modes import FlowModes
from gradpath.analysis.flow_values import (
    combine, Event, _Frame, G, join, _join_envs, N, NoGrad, NONE, replace, Run, U, UNKNOWN, Val
)
from gradpath.analysis.flow_vocab import _as_float, _default_vals
from gradpath.analysis.loop_carry import loop_carries

_Name = ast.Name


# what an argument is when nothing is known of it (src aside): as a parameter in its own analysis
_PLAIN_UNKNOWN = dict(Val(U).__dict__)


class Flow(FlowCalls, FlowModes):
    """Runs the interpreter over every scope once; `events` hold what the rules need."""

    MAX_DEPTH = 6

    def __init__(self, ctx):
        self.ctx = ctx
        self.facts = ctx.facts
        self.sym = ctx.symbols
        self.src = ctx.src
        self.events: list[Event] = []
        self._fn_memo: dict = {}
        # memo key -> what it was computed from: its key holds id()s of these values, kept alive with
        # the entry so that no later object can take one of those ids and hit it by accident
        self._memo_keep: dict = {}
        # every execution of a function's body, in order (see Run; flow_patch.py re-runs some)
        self.runs: list[Run] = []
        self._expect = None  # (scope, run): flow_patch re-runs that run of scope's body
        # while flow_patch re-runs functions: the ids of their scopes (None otherwise), and the
        # scopes of other functions the re-runs found they must run too
        self._patch_scopes: set | None = None
        self._grow: dict = {}
        self.module_envs: list[dict] = []  # the environment before each module statement
        self.module_runs: list[Run] = []  # the calls each module statement made
        self._active: set = set()  # ids of the scopes of the functions being executed
        self.scope_by_node = {id(s.node): s for s in self.facts.scopes}
        self.module_env: dict = {}
        self._model_keys = {b.key for b in self.facts.models}
        self._module_scope = self.facts.scopes[0]
        # per-node caches: the tree does not change while the flow runs, and loops / helper calls
        # evaluate the same nodes several times
        self._keys: dict = {}
        self._carries: dict = {}
        self._last_ev: dict = {}
        self._qns: dict = {}
        self._dumps: dict = {}
        self._consts: dict = {}  # id(ast.Constant) -> its Val
        # out_of_time() reads a CPU clock (a system call): asked every _TICK statements, and for
        # good once it said yes
        self._ticks = 0
        self._stopped = False
        # CPU seconds the whole flow took (set where it is built; a patch made from this flow gives
        # up past a share of it), and whether a patch re-ran more than the edited function
        self.cost = 1.0
        self.cascaded = False
        # flow_patch's note on the function a patch re-ran: (its node, the ids of its own body's nodes)
        self.own_body = None

    def _key(self, node) -> str | None:
        k = id(node)
        try:
            return self._keys[k]
        except KeyError:
            r = self._keys[k] = key_of(node)
            return r

    def _qn(self, node) -> str | None:
        k = id(node)
        try:
            return self._qns[k]
        except KeyError:
            r = self._qns[k] = self.sym.qualname(node)
            return r

    @classmethod
    def build(cls, ctx) -> "Flow":
        f = cls(ctx)
        f._run()
        return f

    # -- driver --------------------------------------------------------------------------------
    def _run(self) -> None:
        scopes = self.facts.scopes
        module = scopes[0]
        fr = _Frame(module, None, None, True, 0)
        # the module's statements one by one, each with its own record of the calls it makes and
        # the environment before it (flow_patch.py re-runs an edited statement of the script)
        env: dict | None = {}
        for st in module.body:
            if env is None or self._stopped:
                break
            self._ticks += 1
            if self._ticks >= self._TICK and self._out_of_time():
                break
            self.module_envs.append(env)
            fr.run = Run(module, True)
            self.module_runs.append(fr.run)
            env = self._exec(st, dict(env), fr)
        fr.run = None
        self.module_env = env or {}
        for s in scopes[1:]:
            if self._stopped or self.ctx.out_of_time():
                self._stopped = True
                break
            self._run_scope(s)

    def _run_scope(self, s) -> Run:
        """Runs a function's body on its own: its parameters unknown (a method's `self` is its
        class's instance)."""
        node = s.node
        self_val = self._self_val_for(s)
        env: dict = {}
        args = node.args
        params = list(args.posonlyargs) + list(args.args)
        defaults = _default_vals(args) if args.defaults or args.kw_defaults else {}
        for i, a in enumerate(params):
            if i == 0 and s.kind == "method" and self_val is not None:
                env[a.arg] = self_val
            else:
                env[a.arg] = Val(U, src=a)
        for a in list(args.kwonlyargs) + [x for x in (args.vararg, args.kwarg) if x]:
            env[a.arg] = Val(U, src=a)
        # a number default (`eps=1e-5`): unknown when analysed on its own, except its sign (an
        # eps/smooth term stays a positive guard whatever the caller passes)
        for k, dv in defaults.items():
            if dv.shape == "pos":
                env[k] = Val(U, kind="number", shape="pos", src=dv.src)
        ng = self._decorator_nograd(node)
        if ng is not None:
            env["__nograd__"] = ng
        run = self._new_run(s, True)
        fr = _Frame(s, s.class_name, self_val, True, 0, run=run)
        t0 = time.thread_time()
        self._exec_body(node.body, env, fr)
        run.cost = time.thread_time() - t0
        return run

    def _new_run(self, scope, standalone: bool, *rest) -> Run:
        run = Run(scope, standalone, *rest)
        self.runs.append(run)
        if self._expect is not None and self._expect[0] is scope:  # (flow_patch re-runs this one)
            run.was = self._expect[1]
            run.expect = run.was.calls
            self._expect = None
        return run

    def _self_val_for(self, scope) -> Val | None:
        if scope.kind != "method" or not scope.class_name:
            return None
        is_mod = self.sym.is_module_class(scope.class_name)
        return Val(G if is_mod else U, kind="module" if is_mod else "tensor", module_key="self",
                   module_cls=scope.class_name if is_mod else None)

    # -- recording -----------------------------------------------------------------------------
    def _record(self, fr: _Frame, env: dict, kind: str, node: ast.AST, vals: dict, nodes: dict,
                **info) -> None:
        if not fr.recording:
            return
        self.events.append(Event(kind, node, fr.scope, vals, nodes, info,
                                 nograd=env.get("__nograd__") is not None))

    def events_of(self, kind: str) -> list[Event]:
        return [e for e in self.events if e.kind == kind]

    def value_at(self, node: ast.AST) -> Val | None:
        """The value last computed for `node` (a sub-expression the rules describe)."""
        return self._last_ev.get(id(node))

    # -- statements ----------------------------------------------------------------------------
    def _exec_body(self, body: list, env: dict | None, fr: _Frame) -> dict | None:
        for stmt in body:
            if env is None:
                return None
            if self._stopped:
                return env
            self._ticks += 1
            if self._ticks >= self._TICK and self._out_of_time():
                return env
            env = self._exec(stmt, env, fr)
        return env

    _TICK = 16

    def _out_of_time(self) -> bool:
        self._ticks = 0
        self._stopped = self.ctx.out_of_time()
        return self._stopped

    def _exec(self, st: ast.stmt, env: dict, fr: _Frame) -> dict | None:
        if isinstance(st, (ast.Assign, ast.AnnAssign)):
            if st.value is None:
                return env
            val = self.ev(st.value, env, fr)
            targets = st.targets if isinstance(st, ast.Assign) else [st.target]
            for t in targets:
                self._assign(t, val, env, fr, st)
            return env
        if isinstance(st, ast.AugAssign):
            cur = self.ev(st.target, env, fr)
            rhs = self.ev(st.value, env, fr)
            val = self._binop(st.op, cur, rhs, st, st.target, st.value, env, fr)
            self._assign(st.target, val, env, fr, st)
            return env
        if isinstance(st, ast.Expr):
            self._exec_expr_stmt(st, env, fr)
            return env
        if isinstance(st, ast.If):
            self.ev(st.test, env, fr)
            a = self._exec_body(st.body, dict(env), fr)
            b = self._exec_body(st.orelse, dict(env), fr)
            return _join_envs([a, b], st, "branch")
        if isinstance(st, (ast.For, ast.AsyncFor, ast.While)):
            return self._exec_loop(st, env, fr)
        if isinstance(st, (ast.With, ast.AsyncWith)):
            inner = dict(env)
            ng_before = env.get("__nograd__")
            for item in st.items:
                v = self.ev(item.context_expr, inner, fr)
                mode = self._grad_mode(item.context_expr)
                if mode == "off":
                    inner["__nograd__"] = NoGrad(item.context_expr, self.src.text_of(item.context_expr),
                                                 item.context_expr, with_stmt=st)
                elif mode == "on":
                    inner.pop("__nograd__", None)
                if item.optional_vars is not None:
                    self._assign(item.optional_vars, v, inner, fr, st)
            out = self._exec_body(st.body, inner, fr)
            if out is not None:
                if ng_before is None:
                    out.pop("__nograd__", None)
                else:
                    out["__nograd__"] = ng_before
            return out
        if isinstance(st, ast.Try) or type(st).__name__ == "TryStar":
            body_end = self._exec_body(st.body, dict(env), fr)
            if st.orelse and body_end is not None:
                body_end = self._exec_body(st.orelse, body_end, fr)
            entry = _join_envs([env, body_end], st, "except") or dict(env)
            ends = [body_end]
            for h in st.handlers:
                henv = dict(entry)
                if h.name:
                    henv[h.name] = Val(N, kind="exc")
                ends.append(self._exec_body(h.body, henv, fr))
            out = None
            for h, e in zip([None] + list(st.handlers), ends):
                out = _join_envs([out, e], h or st, "except") if out is not None else (dict(e) if e is not None else None)
            if st.finalbody:
                out = self._exec_body(st.finalbody, out if out is not None else dict(entry), fr)
            return out
        if isinstance(st, ast.Return):
            if st.value is not None:
                fr.returns.append((self.ev(st.value, env, fr), st))
                if fr.depth == 0:
                    self._framework_loss(st, env, fr)
            else:
                fr.returns.append((NONE, st))
            return None
        if isinstance(st, (ast.Raise,)):
            if st.exc is not None:
                self.ev(st.exc, env, fr)
            return None
        if isinstance(st, (ast.Break, ast.Continue)):
            if fr.loop_exits:
                fr.loop_exits[-1].append(dict(env))
            return None
        if isinstance(st, (ast.FunctionDef, ast.AsyncFunctionDef)):
            s = self.scope_by_node.get(id(st))
            for d in st.decorator_list:
                self.ev(d, env, fr)
            env[st.name] = Val(N, kind="func", func=s)
            return env
        if isinstance(st, ast.ClassDef):
            return env
        if isinstance(st, ast.Delete):
            for t in st.targets:
                k = self._key(t)
                if k:
                    env.pop(k, None)
            return env
        if isinstance(st, ast.Match):
            self.ev(st.subject, env, fr)
            outs = [self._exec_body(c.body, dict(env), fr) for c in st.cases]
            return _join_envs(outs + [env], st, "branch")
        return env

    def _exec_expr_stmt(self, st: ast.Expr, env: dict, fr: _Frame) -> None:
        e = st.value
        if isinstance(e, ast.Call) and isinstance(e.func, ast.Attribute):
            attr = e.func.attr
            rk = self._key(e.func.value)
            if attr in ("append", "extend", "add", "insert") and rk is not None and e.args:
                cur = env.get(rk)
                if cur is None or cur.kind == "list":
                    item = self.ev(e.args[-1] if attr == "insert" else e.args[0], env, fr)
                    if attr == "extend" and item.kind in ("list", "tuple") and item.elts:
                        item = combine(list(item.elts), e, kind="list")
                    if cur is not None and (cur.grad != N or cur.has_reason()):
                        env[rk] = combine([cur, item], e, kind="list")
                    else:
                        env[rk] = replace(item, kind="list", elts=None)
                    return
            if attr in ("requires_grad_",) and rk is not None:
                cur = self.ev(e.func.value, env, fr)
                flag = True
                if e.args and isinstance(e.args[0], ast.Constant):
                    flag = bool(e.args[0].value)
                if flag:
                    env[rk] = self._patch(cur, e, "requires_grad_()")
                return
            if attr == "detach_" and rk is not None:
                cur = self.ev(e.func.value, env, fr)
                env[rk] = self._cut(cur, e, ".detach_()", e.func.value, bare=False)
                return
        if isinstance(e, ast.Call):
            qn = self._qn(e.func)
            if qn and canonical(qn) == "torch.set_grad_enabled" and e.args:
                a = e.args[0]
                if isinstance(a, ast.Constant) and a.value is False:
                    env["__nograd__"] = NoGrad(e, self.src.text_of(e), e)
                elif isinstance(a, ast.Constant) and a.value is True:
                    env.pop("__nograd__", None)
                return
        if self._script_call_skipped(e, env, fr):
            return
        self.ev(e, env, fr)

    def _script_call_skipped(self, e, env: dict, fr: _Frame) -> bool:
        """`main()` or `main(args)` as a statement of module-level code: a call of one of the file's
        own functions, whose result is thrown away, outside no_grad, with nothing known of its
        arguments (each one a value of unknown origin and shape, one per parameter, no defaults,
        no decorators). It would run the function with nothing but what its own analysis (every
        function is analysed on its own, after the module's names are known) gives it, at one level
        less of depth: not run again."""
        if fr.depth or fr.scope is not self.facts.scopes[0] or env.get("__nograd__") is not None:
            return False
        if not (isinstance(e, ast.Call) and isinstance(e.func, ast.Name) and not e.keywords):
            return False
        callee = env.get(e.func.id)
        if callee is None or callee.kind != "func" or callee.func is None or callee.self_val is not None:
            return False
        scope = callee.func
        fn = scope.node
        if scope.kind != "function" or fn.decorator_list:
            return False
        a = fn.args
        if a.defaults or a.kw_defaults or a.vararg or a.kwarg or a.kwonlyargs \
                or len(a.posonlyargs) + len(a.args) != len(e.args):
            return False
        if not all(isinstance(arg, ast.Name) for arg in e.args):
            return False  # (a name is read without side effects: reading it again below is the same)
        for arg in e.args:
            v = self.ev(arg, env, fr)
            if any(x != _PLAIN_UNKNOWN.get(k) for k, x in v.__dict__.items() if k != "src"):
                return False
        return True

    def _exec_loop(self, st, env: dict, fr: _Frame) -> dict | None:
        passes = 2 if fr.loop_depth < 3 else 1
        if passes == 2:
            carries = self._carries.get(id(st))
            if carries is None:
                carries = self._carries[id(st)] = loop_carries(st)
            if not carries:
                passes = 1
        recording = fr.recording
        state = dict(env)
        end = None
        fr.loop_depth += 1
        try:
            for i in range(passes):
                fr.recording = recording and i == passes - 1
                fr.loop_exits.append([])
                body_env = dict(state)
                if isinstance(st, ast.While):
                    self.ev(st.test, body_env, fr)
                else:
                    it = self.ev(st.iter, body_env, fr)
                    self._assign(st.target, self._iter_val(st.iter, it), body_env, fr, st)
                end = self._exec_body(st.body, body_env, fr)
                exits = fr.loop_exits.pop()
                end = _join_envs([end] + exits, st, "loop")
                if i < passes - 1:
                    state = _join_envs([state, end], st, "loop") or state
        finally:
            fr.recording = recording
            fr.loop_depth -= 1
        if end is not None and self._runs_at_least_once(st):
            out = end
        else:
            out = _join_envs([env, end], st, "loop")
        if st.orelse and out is not None:
            out = self._exec_body(st.orelse, out, fr)
        return out

    @staticmethod
    def _runs_at_least_once(st) -> bool:
        """`for i in range(3)`, `for x in [a, b]`: no zero-trip path."""
        if isinstance(st, ast.While):
            return isinstance(st.test, ast.Constant) and bool(st.test.value)
        it = st.iter
        if isinstance(it, (ast.List, ast.Tuple)):
            return bool(it.elts) and not any(isinstance(e, ast.Starred) for e in it.elts)
        if isinstance(it, ast.Call) and isinstance(it.func, ast.Name) and it.func.id == "range" \
                and it.args and all(isinstance(a, ast.Constant) and isinstance(a.value, int) for a in it.args):
            vals = [a.value for a in it.args]
            try:
                return len(range(*vals)) > 0
            except (TypeError, ValueError):
                return False
        return False

    def _iter_val(self, it_node: ast.AST, it: Val) -> Val:
        if isinstance(it_node, ast.Call):
            qn = self._qn(it_node.func)
            if qn in ("zip",):
                return Val(it.grad, kind="tuple", elts=tuple(self._iter_val(a, self._last_ev.get(id(a), UNKNOWN))
                                                             for a in it_node.args))
            if qn == "enumerate" and it_node.args:
                inner = self._iter_val(it_node.args[0], self._last_ev.get(id(it_node.args[0]), UNKNOWN))
                return Val(N, kind="tuple", elts=(Val(N, kind="number"), inner))
            if isinstance(it_node.func, ast.Attribute) and it_node.func.attr in ("parameters",):
                return Val(G, leaf=True, origins=it.origins)
        if it.kind in ("list", "tuple") and it.elts:
            v = None
            for e in it.elts:
                v = join(v, e)
            return v or UNKNOWN
        if it.kind == "module" and it.module_cls in ("torch.nn.ModuleList", "torch.nn.Sequential"):
            # `for head in self.heads:`: each element is a module of unknown class (no shape known)
            key = f"{it.module_key}[i]" if it.module_key else None
            return Val(G, kind="module", module_key=key, module_cls="torch.nn.Module")
        if it.grad == G or it.has_reason():
            return replace(it, kind="tensor", elts=None)
        if it.kind == "module":
            return UNKNOWN
        if it.grad == U and it.kind not in ("str", "dict", "number"):
            # the items of something that may carry a graph (`self.critic(obs, act)` returning a
            # tuple of Q-values, `critic(obs).split(1, dim=1)` with `critic` an argument): each
            # may carry it too
            return Val(U, kind="tensor", src=it_node)
        # batches from a loader or any other iterable: data without a graph
        return Val(N, kind="tensor", src=it_node)

    def _assign(self, target: ast.AST, val: Val, env: dict, fr: _Frame, st: ast.AST) -> None:
        if isinstance(target, (ast.Tuple, ast.List)):
            elts = val.elts
            for i, t in enumerate(target.elts):
                if isinstance(t, ast.Starred):
                    self._assign(t.value, replace(val, kind="list", elts=None), env, fr, st)
                    continue
                if elts is not None and i < len(elts):
                    sub = elts[i]
                elif val.kind == "module":
                    sub = UNKNOWN
                elif val.kind == "shape":  # `b, c = x.shape`: sizes
                    sub = Val(N, kind="number", shape="pos", src=t)
                else:
                    sub = replace(val, elts=None, kind="tensor" if val.kind in ("tuple", "list") else val.kind)
                self._assign(t, sub, env, fr, st)
            return
        if isinstance(target, ast.Attribute) and target.attr == "requires_grad":
            rk = self._key(target.value)
            if rk is not None and isinstance(st, ast.Assign) and isinstance(st.value, ast.Constant) \
                    and st.value.value is True:
                env[rk] = self._patch(env.get(rk, UNKNOWN), st, "requires_grad = True")
            return
        k = self._key(target)
        if k is None:
            if isinstance(target, ast.Subscript):
                self.ev(target.value, env, fr)
                bk = self._key(target.value)
                cur = env.get(bk) if bk else None
                if cur is not None and cur.kind == "tensor" and bounds.masked_positive_fill(target.slice, val):
                    env[bk] = replace(cur, shape="guarded")  # `d[d == 0] = 1.0`: its zeros are replaced
                elif cur is not None and cur.kind in ("list", "dict") and val.kind in ("tensor", "number"):
                    # `losses[k + 1] += loss`: a may-update of one element (which one is not known)
                    env[bk] = replace(join(replace(cur, elts=None, const=None), replace(val, kind=cur.kind, elts=None), st),
                                      kind=cur.kind, elts=None)
            return
        if val.kind == "module" and val.module_key is None:
            val = replace(val, module_key=k)
        env[k] = val

    # -- expressions ---------------------------------------------------------------------------
    _last_ev: dict

    def ev(self, node: ast.AST | None, env: dict, fr: _Frame) -> Val:
        if node is None:
            return NONE
        if node.__class__ is _Name:
            # (four expressions in ten are names: _ev's branch for them, without the call)
            name = node.id
            v = env.get(name)
            if v is None:
                v = self._lookup(name, node, env, fr)
            if v is not None:
                if "eps" in name.lower():
                    v = self._eps_name_val(v, node)
            else:
                low = name.lower()
                if "eps" in low or low in ("epsilon", "tiny", "delta"):
                    v = Val(N, kind="number", shape="pos", eps_name=True, src=node)
                else:
                    v = Val(U, src=node)
        else:
            v = self._ev(node, env, fr)
        self._last_ev[id(node)] = v
        return v

    @staticmethod
    def _eps_name_val(v: Val, node: ast.Name) -> Val:
        """The value read through a name with `eps` in it (`v`: what the name is bound to)."""
        if v.kind == "number" and not bounds.known_nonpositive(v):  # (an `eps` passed 0.0 guards nothing)
            return replace(v, shape="pos", eps_name=True)
        if v.grad == U and not v.torchy and bounds.eps_named(node.id) \
                and bounds.rng_of(v) is None and v.kind in ("tensor", "number"):
            # a parameter `eps` (no default): a guard by name
            return Val(N, kind="number", shape="pos", eps_name=True, src=v.src or node)
        return v

    def _lookup(self, k: str, node: ast.AST, env: dict, fr: _Frame) -> Val | None:
        v = env.get(k)
        if v is not None:
            return v
        if k in self._model_keys:
            b = self.facts.model_at(k, fr.scope, getattr(node, "lineno", None))
            if b is not None:
                return self._module_val(b.value, k, b.cls)
        if fr.scope is not self._module_scope:
            mv = self.module_env.get(k)
            if mv is not None:
                return mv
        if k in self.sym.functions:
            s = self.scope_by_node.get(id(self.sym.functions[k]))
            return Val(N, kind="func", func=s)
        if k in self.sym.classes:
            return Val(N, kind="class", module_cls=k)
        return None

    def _module_val(self, ctor: ast.AST, key: str | None, cls: str) -> Val:
        layers = tuple(ctor.args) if isinstance(ctor, ast.Call) and cls == "torch.nn.Sequential" else ()
        return Val(G, kind="module", module_key=key, module_cls=cls,
                   module_ctor=ctor if isinstance(ctor, ast.Call) else None, module_layers=layers)

    def _ev(self, node: ast.AST, env: dict, fr: _Frame) -> Val:
        if node.__class__ is ast.Constant:
            # a constant's value depends on nothing but its node (values are never changed once
            # made): made once, however often loops and helper calls evaluate it
            k = id(node)
            cv = self._consts.get(k)
            if cv is None:
                cv = self._consts[k] = self._constant(node)
            return cv
        if isinstance(node, (ast.Name, ast.Attribute)):
            k = self._key(node)
            if k is not None:
                v = self._lookup(k, node, env, fr)
                if v is not None:
                    if isinstance(node, ast.Name) and v.kind == "number" and "eps" in node.id.lower() \
                            and not bounds.known_nonpositive(v):  # (an `eps` passed 0.0 guards nothing)
                        return replace(v, shape="pos", eps_name=True)
                    if isinstance(node, ast.Name) and v.grad == U and not v.torchy and bounds.eps_named(node.id) \
                            and bounds.rng_of(v) is None and v.kind in ("tensor", "number"):
                        # a parameter `eps` (no default): a guard by name
                        return Val(N, kind="number", shape="pos", eps_name=True, src=v.src or node)
                    return v
                if isinstance(node, ast.Name):
                    if "eps" in node.id.lower() or node.id.lower() in ("epsilon", "tiny", "delta"):
                        return Val(N, kind="number", shape="pos", eps_name=True, src=node)
                    return Val(U, src=node)
            if isinstance(node, ast.Attribute):
                if self._qn(node) is not None:
                    return Val(N, kind="qual", src=node)
                base = self.ev(node.value, env, fr)
                return self._attr(base, node, env, fr)
            return Val(U, src=node)
        if isinstance(node, ast.Call):
            v = self._call(node, env, fr)
            return v
        if isinstance(node, ast.BinOp):
            a = self.ev(node.left, env, fr)
            b = self.ev(node.right, env, fr)
            v = self._binop(node.op, a, b, node, node.left, node.right, env, fr)
            return self._under_nograd(v, node, env)
        if isinstance(node, ast.UnaryOp):
            a = self.ev(node.operand, env, fr)
            if isinstance(node.op, ast.Not):
                return Val(N, kind="bool", src=node)
            if isinstance(node.op, ast.USub) and a.kind == "number" and a.numeric is not None:
                return replace(a, numeric=-a.numeric, shape=None, src=node)
            shape = a.shape if a.shape in ("raw",) else None
            r = bounds.neg(bounds.rng_of(a)) if isinstance(node.op, ast.USub) else None
            return replace(combine([a], node, shape=shape, kind=a.kind), model_out=False, rng=r)
        if isinstance(node, ast.Compare):
            vals = [self.ev(node.left, env, fr)] + [self.ev(c, env, fr) for c in node.comparators]
            if any(v.kind in ("tensor", "numpy") and (v.grad > N or v.has_reason()) for v in vals):
                recv = combine(vals, node)
                return self._cut(recv, node, "comparison", None, bare=False)
            return Val(N, kind="bool", src=node)
        if isinstance(node, ast.BoolOp):
            vals = [self.ev(v, env, fr) for v in node.values]
            out = None
            for v in vals:
                out = join(out, v)
            return out or UNKNOWN
        if isinstance(node, ast.IfExp):
            self.ev(node.test, env, fr)
            return join(self.ev(node.body, env, fr), self.ev(node.orelse, env, fr), node, "branch") or UNKNOWN
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            if len(node.elts) > 64:
                # a data literal: look at what is not a constant, at most 64 of them
                live = [e for e in node.elts if not isinstance(e, ast.Constant)][:64]
                vals = [self.ev(e, env, fr) for e in live]
                return combine(vals, node, kind="list")
            elts = tuple(self.ev(e, env, fr) for e in node.elts)
            grad = max([e.grad for e in elts], default=N)
            base = combine(list(elts), node, kind="tuple" if isinstance(node, ast.Tuple) else "list")
            return replace(base, elts=elts, grad=grad)
        if isinstance(node, ast.Subscript):
            base = self.ev(node.value, env, fr)
            self.ev(node.slice, env, fr)
            if base.elts is not None and isinstance(node.slice, ast.Constant) \
                    and isinstance(node.slice.value, int) and -len(base.elts) <= node.slice.value < len(base.elts):
                return base.elts[node.slice.value]
            if base.kind == "module":
                return Val(G, kind="module", module_key=(base.module_key or "?") + "[]")
            if base.kind in ("tuple", "list") and base.elts:
                out = None
                for e in base.elts:
                    out = join(out, e)
                return out or UNKNOWN
            if base.kind == "shape":  # `x.shape[0]`: a size
                return Val(N, kind="shape" if isinstance(node.slice, ast.Slice) else "number", shape="pos", src=node)
            kind = "tensor" if base.kind in ("tensor", "tuple", "list") else base.kind
            return replace(base, kind=kind, elts=None, src=node, exact=False, model_out=False, dist=False,
                           shape=base.shape if base.shape in ("prob", "raw", "logprob", "sq", "pos", "nonneg",
                                                              "guarded", "bounded") else None)
        if isinstance(node, ast.Starred):
            return self.ev(node.value, env, fr)
        if isinstance(node, ast.NamedExpr):
            v = self.ev(node.value, env, fr)
            self._assign(node.target, v, env, fr, node)
            return v
        if isinstance(node, (ast.ListComp, ast.GeneratorExp, ast.SetComp)):
            inner = dict(env)
            for g in node.generators:
                it = self.ev(g.iter, inner, fr)
                self._assign(g.target, self._iter_val(g.iter, it), inner, fr, node)
            el = self.ev(node.elt, inner, fr)
            return replace(el, kind="list", elts=None, src=node)
        if isinstance(node, ast.DictComp):
            return Val(U, kind="dict", src=node)
        if isinstance(node, ast.Dict):
            vals = [self.ev(v, env, fr) for v in node.values if not isinstance(v, ast.Constant)][:64]
            return replace(combine(vals, node, kind="dict"), grad=max([v.grad for v in vals], default=N))
        if isinstance(node, ast.JoinedStr):
            for v in node.values:
                if isinstance(v, ast.FormattedValue):
                    self.ev(v.value, env, fr)
            return Val(N, kind="str", src=node)
        if isinstance(node, ast.Lambda):
            return Val(N, kind="func", src=node)
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.expr):
                self.ev(child, env, fr)
        return Val(U, src=node)

    @staticmethod
    def _constant(node: ast.Constant) -> Val:
        v = node.value
        if isinstance(v, bool) or v is None:
            return Val(N, kind="none" if v is None else "bool", src=node)
        if isinstance(v, (int, float)):
            return Val(N, kind="number", shape="pos" if v > 0 else ("zero" if v == 0 else None),
                       src=node, numeric=_as_float(v))
        return Val(N, kind="str", src=node)

    def _attr(self, base: Val, node: ast.Attribute, env: dict, fr: _Frame) -> Val:
        a = node.attr
        if isinstance(node.value, ast.Name) and node.value.id == "self" and fr.class_name:
            # `self.eps` assigned `1e-5` / an `eps=1e-5` parameter, `self.sizes = [...]`: not a submodule
            fact = bounds.attr_facts(self.ctx).of(fr.class_name if base.kind != "module" else base.module_cls or fr.class_name, a)
            if fact is not None:
                if fact[0] == "number":
                    lit = fact[2]
                    return Val(N, kind="number", shape="pos" if fact[1] else None, numeric=lit, src=node,
                               eps_name=fact[1] and bounds.eps_named(a))
                return Val(N, kind="list" if fact[0] == "container" else "str", src=node)
        if bounds.eps_named(a) and base.kind in ("module", "tensor") and base.grad != N:
            # `branch.bn.eps`, `layer.norm_eps`: a module's eps is a positive number, not a submodule
            return Val(N, kind="number", shape="pos", eps_name=True, src=node)
        if base.kind == "module":
            return self._submodule(base, a)
        if a == "data" and base.kind == "tensor":
            return self._cut(base, node, ".data", node.value, bare=True)
        if a in ("T", "mT", "real"):
            return replace(base, src=node)
        if a in ("shape", "ndim", "dtype", "device", "requires_grad", "is_leaf"):
            return Val(N, kind="number" if a != "shape" else "shape", src=node)
        if a == "grad":
            return Val(N, src=node)
        return Val(U, src=node)


def flow(ctx) -> Flow:
    return ctx.memo("dataflow", lambda: _make_flow(ctx))


def _make_flow(ctx) -> Flow:
    edit = getattr(ctx, "flow_edit", None)
    if edit is not None:
        from gradpath.analysis import flow_patch
        fl = flow_patch.patched(ctx, edit)
        if fl is not None:
            return fl
    t0 = time.thread_time()
    fl = Flow.build(ctx)
    fl.cost = time.thread_time() - t0
    return fl
