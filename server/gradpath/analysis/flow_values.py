"""The dataflow's values (see dataflow.py): whether a value carries a graph to a model's parameters
(`G`), may (`U`) or certainly does not (`N`, with its reasons: cuts, no_grad forwards), its shape for
the numerics rules, and how values of branches and loop iterations join; and what the interpreter
records while it runs (`Event`) with the frames it runs in. Pure: no torch, no pygls."""
from __future__ import annotations

import ast
from dataclasses import dataclass, field, fields as _dc_fields, replace as _dc_replace
from typing import Any, Iterable

from gradpath.analysis import bounds

G, U, N = 2, 1, 0


# -- values ----------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Cut:
    node: ast.AST
    kind: str  # ".detach()", ".data", ".item()", "float()", "torch.tensor()", "comparison", ...
    models: frozenset = frozenset()  # model keys whose output was cut here
    bare: bool = False  # a bare `.detach()` / `.data`: removing it restores the path
    receiver: ast.AST | None = None
    had_graph: bool = False  # the receiver carried a graph
    conditional: bool = False  # only on some paths (one branch of an `if`, a loop that may not run)
    of_leaf: bool = False  # the receiver was a leaf made with requires_grad (`z.detach()`), no model's output


@dataclass(frozen=True, eq=False)
class NoGrad:
    ctx_node: ast.AST  # the with-item / decorator / set_grad_enabled call
    ctx_text: str
    node: ast.AST  # the forward pass (or op) that ran under it
    model: str | None = None
    with_stmt: ast.AST | None = None
    decorator_of: ast.AST | None = None


@dataclass(frozen=True, eq=False)
class Alt:
    """Another definition, with no graph, that may reach the use instead."""
    val: "Val"
    via: ast.AST  # the branch / handler / loop statement
    how: str  # "branch" | "except" | "loop"


@dataclass(frozen=True, eq=False)
class Val:
    grad: int = U
    kind: str = "tensor"  # tensor | number | numpy | list | tuple | module | func | none | bool
    origins: frozenset = frozenset()  # model keys whose output flows in, with a graph
    cuts: tuple = ()
    nograd: tuple = ()
    const: ast.AST | None = None  # torch.tensor(<number>) that started this value
    patched: ast.AST | None = None  # requires_grad patch
    patch_kind: str | None = None
    shape: str | None = None
    act: str | None = None  # "softmax" | "sigmoid" (shape == "prob")
    act_node: ast.AST | None = None
    act_input: ast.AST | None = None
    act_scope: Any = None
    exact: bool = False  # exactly the activation's output
    model_calls: tuple = ()
    model_out: bool = False
    src: ast.AST | None = None
    alts: tuple = ()
    elts: tuple | None = None
    module_key: str | None = None
    module_cls: str | None = None
    module_ctor: ast.AST | None = None
    module_layers: tuple = ()  # nn.Sequential arguments
    func: Any = None  # Scope of a local function
    self_val: Any = None  # bound `self` for methods
    leaf: bool = False
    numeric: float | None = None
    eps_name: bool = False
    torchy: bool = False  # known to be a torch tensor (made by torch, or a model's output)
    rng: Any = None  # bounds.Rng of the elements (None: unknown, or what `shape` implies)
    dist: bool = False  # a distribution along some dim (softmax, a convex mix of them): sums to 1

    def __init__(self, grad: int = U, **fields):
        # Written by hand (dataclass keeps it): the generated __init__ of a frozen dataclass sets
        # each of the 31 fields through object.__setattr__, 5x the cost, and the interpreter makes
        # thousands of values per file. Same fields, same defaults (_VAL_DEFAULTS).
        d = self.__dict__
        d.update(_VAL_DEFAULTS)
        d["grad"] = grad
        if fields:
            if not _VAL_FIELD_NAMES.issuperset(fields):
                raise TypeError(f"Val() got unexpected arguments {sorted(set(fields) - _VAL_FIELD_NAMES)}")
            d.update(fields)

    def primary_cut(self) -> "Cut | None":
        """The cut that took the graph away (its receiver had one), else the latest cut."""
        for c in self.cuts:
            if c.had_graph:
                return c
        return self.cuts[0] if self.cuts else None

    def has_reason(self) -> bool:
        return bool(self.cuts or self.nograd or self.const is not None)


_VAL_DEFAULTS = {f.name: f.default for f in _dc_fields(Val)}
_VAL_FIELD_NAMES = frozenset(_VAL_DEFAULTS)


def replace(v: Val, **changes) -> Val:
    """A faster `dataclasses.replace` for the frozen Val (no __post_init__, no validation)."""
    new = object.__new__(Val)
    d = new.__dict__
    d.update(v.__dict__)
    d.update(changes)
    return new


UNKNOWN = Val(U)
NONE = Val(N, kind="none")


def _uniq(items: Iterable, limit: int = 6) -> tuple:
    out, seen = [], set()
    for it in items:
        k = id(getattr(it, "node", it))
        if k not in seen:
            seen.add(k)
            out.append(it)
        if len(out) >= limit:
            break
    return tuple(out)


def combine(vals: list[Val], node: ast.AST | None, shape: str | None = None, kind: str = "tensor") -> Val:
    """The value of an operation on `vals` (graph if any input has one)."""
    # one pass over the inputs for what most combinations need; the rest only when some input has
    # something to carry (most values carry nothing)
    live = []
    grad = -1
    carry = torchy = False
    const = patched = None
    for v in vals:
        if v is None:
            continue
        live.append(v)
        if v.grad > grad:
            grad = v.grad
        if v.cuts or v.nograd or v.model_calls or v.alts:
            carry = True
        if v.torchy:
            torchy = True
        if const is None and v.const is not None:
            const = v.const
        if patched is None and v.patched is not None:
            patched = v
    if not live:
        return Val(N, kind=kind, shape=shape, src=node)
    vals = live
    origins = frozenset().union(*[v.origins for v in vals]) if grad == G else frozenset()
    alts = []
    if carry:
        cuts = _uniq(c for v in vals for c in v.cuts) if any(v.cuts for v in vals) else ()
        nograd = (_uniq(n for v in vals for n in v.nograd) if any(v.nograd for v in vals) else ()) if grad == N else ()
        mcalls = _uniq((c for v in vals for c in v.model_calls), 3) if any(v.model_calls for v in vals) else ()
        if any(v.alts for v in vals):
            for i, v in enumerate(vals):
                if v.alts and all(o.grad == N for j, o in enumerate(vals) if j != i):
                    alts.extend(v.alts)
    else:
        cuts = nograd = mcalls = ()
    if not (grad == N and not cuts and not nograd):
        const = None
    if grad != N:
        patched = None
    return Val(grad, kind=kind, origins=origins, cuts=cuts, nograd=nograd, const=const,
               torchy=kind == "tensor" and torchy,
               patched=patched.patched if patched else None,
               patch_kind=patched.patch_kind if patched else None,
               shape=shape, model_calls=mcalls, src=node, alts=_uniq(alts, 4) if alts else (),
               numeric=None)


def join(a: Val | None, b: Val | None, via: ast.AST | None = None, how: str = "branch") -> Val | None:
    """Two definitions that may both reach a use."""
    if a is None:
        return b
    if b is None:
        return a
    if a is b:
        return a
    if a.kind == "module" or b.kind == "module":
        return a if a.kind == "module" else b
    grad = max(a.grad, b.grad)
    alts = list(a.alts) + list(b.alts)
    lo, hi = (a, b) if a.grad <= b.grad else (b, a)
    if lo.grad == N and hi.grad > N and via is not None and (lo.cuts or lo.nograd or lo.patched or
                                                              (lo.const is not None and how != "loop")):
        alts.append(Alt(lo, via, how))
    base = hi if hi.grad > lo.grad else a
    other = b if base is a else a
    shape = base.shape if base.shape == other.shape else (base.shape if other.grad < base.grad else None)
    if base.shape == "guarded" or other.shape == "guarded":
        shape = base.shape if base.shape == other.shape else None
    elts = base.elts if (base.elts is not None and other.elts is not None
                         and len(base.elts) == len(other.elts)) else (base.elts if other.kind == "none" else None)
    if elts is not None and other.elts is not None and len(elts) == len(other.elts):
        elts = tuple(join(x, y, via, how) for x, y in zip(base.elts, other.elts))
    if a.cuts or b.cuts:
        ia, ib = {id(c.node) for c in a.cuts}, {id(c.node) for c in b.cuts}
        both = ia & ib
        cuts = _uniq([c if id(c.node) in both or c.conditional else _dc_replace(c, conditional=True)
                      for c in list(a.cuts) + list(b.cuts)])
    else:
        cuts = ()
    return replace(base, grad=grad,
                   origins=(a.origins | b.origins) if grad == G else frozenset(),
                   cuts=cuts,
                   nograd=_uniq(list(a.nograd) + list(b.nograd)) if grad == N else (),
                   alts=_uniq(alts, 4), shape=shape, elts=elts,
                   exact=base.exact and other.exact and base.act_node is other.act_node,
                   model_calls=_uniq(list(a.model_calls) + list(b.model_calls), 3),
                   model_out=a.model_out and b.model_out,
                   rng=bounds.hull(bounds.rng_of(a), bounds.rng_of(b)),
                   numeric=a.numeric if a.numeric == b.numeric else None, dist=a.dist and b.dist)


def _join_envs(envs: list[dict | None], via: ast.AST | None, how: str = "branch") -> dict | None:
    live = [e for e in envs if e is not None]
    if not live:
        return None
    out = dict(live[0])
    for e in live[1:]:
        if e is live[0]:
            continue
        # the entries that differ (values compare by identity: Val and NoGrad have eq=False), found
        # in C: most of an environment is the same object on both paths
        try:
            diff = e.items() - out.items()
        except TypeError:  # pragma: no cover - an unhashable value: the plain loop
            diff = e.items()
        if not diff:
            continue
        new = e.keys() - out.keys()
        for k, v in diff:
            if k not in new:
                cur = out[k]
                out[k] = v if cur is None else join(cur, v, via, how)
        if new:
            for k in e:  # new names keep the order they have in `e`
                if k in new:
                    out[k] = e[k]
    return out


# -- observations ----------------------------------------------------------------------------------
@dataclass(eq=False)
class Event:
    kind: str  # backward | div | log | sqrt | exp | loss | patch
    node: ast.AST
    scope: Any
    vals: dict = field(default_factory=dict)  # role -> Val
    nodes: dict = field(default_factory=dict)  # role -> ast node
    info: dict = field(default_factory=dict)
    nograd: bool = False


class _Dead(Exception):
    pass


@dataclass
class _Frame:
    scope: Any
    class_name: str | None
    self_val: Val | None
    recording: bool
    depth: int
    returns: list = field(default_factory=list)
    loop_exits: list = field(default_factory=list)  # stack of lists of envs (break/continue)
    loop_depth: int = 0
    run: "Run | None" = None  # the record of this execution of a function's body (flow_patch.py)


@dataclass(eq=False)
class Run:
    """One execution of a function's body by the interpreter: on its own (`standalone`, unknown
    arguments) or called with a caller's values (a memo miss in `_invoke`), in the order they ran.
    Kept so that an edit inside the function can re-run just these (flow_patch.py)."""
    scope: Any
    standalone: bool
    node: Any = None  # the call (invoked runs)
    args: list = field(default_factory=list)
    kwargs: dict = field(default_factory=dict)
    ng: Any = None  # the caller's no_grad context
    recording: bool = True
    depth: int = 0
    self_val: Any = None
    is_forward: bool = False
    active: frozenset = frozenset()  # ids of the scopes of the functions being executed when it started
    result: Any = None  # what it returned
    cost: float = 0.0  # CPU seconds its body took (the runs it made included)
    # each call of a function it made directly, in order: (what it returned, or the call node where
    # it was cut; the arguments, keywords and self it passed; the function node; the no_grad context;
    # whether events were recorded; the Run the call made, None when it was not run; the call node)
    calls: list = field(default_factory=list)
    parent: Any = None  # the run that made the call (a statement's of the script, or a function's)
    # while flow_patch re-runs it: the run it stands for in the previous flow, and that run's calls
    was: Any = None
    expect: list | None = None


# -- comparing values (flow_patch.py) ------------------------------------------------------------
def same_value(x, y, seen: set | None = None) -> bool:
    """Whether two values are equal field by field (AST nodes and scopes: the same objects)."""
    if seen is None:
        seen = set()
    if x is y:
        return True
    t = type(x)
    if t is not type(y):
        return False
    if x is None or t in (str, int, float, bool):
        return x == y
    if isinstance(x, ast.AST) or t.__name__ == "Scope":
        return False
    if t in (tuple, list):
        return len(x) == len(y) and all(same_value(p, q, seen) for p, q in zip(x, y))
    if t is frozenset:
        return x == y
    if t is dict:
        return x.keys() == y.keys() and all(same_value(x[k], y[k], seen) for k in x)
    d1 = getattr(x, "__dict__", None)
    if d1 is None:
        return x == y
    pair = (id(x), id(y))
    if pair in seen:
        return True
    seen.add(pair)
    d2 = y.__dict__
    return d1.keys() == d2.keys() and all(same_value(d1[k], d2[k], seen) for k in d1)


def mentions(x, nodes, seen: set) -> bool:
    """Whether value `x` (or anything it holds) refers to one of `nodes` (ids of AST nodes)."""
    if x is None:
        return False
    t = type(x)
    if t in (str, int, float, bool):
        return False
    if isinstance(x, ast.AST):
        return id(x) in nodes
    if t.__name__ == "Scope":
        return False
    if t in (tuple, list, frozenset):
        return any(mentions(y, nodes, seen) for y in x)
    if t is dict:
        return any(mentions(y, nodes, seen) for y in x.values())
    d = getattr(x, "__dict__", None)
    if d is None or id(x) in seen:
        return False
    seen.add(id(x))
    return any(mentions(y, nodes, seen) for y in d.values())
