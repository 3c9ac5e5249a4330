"""Value ranges and guards for the dataflow (GP3): what interval the elements of a value lie in, and
which names and attributes are positive guards.

`Rng` is an interval lattice over the elements of a tensor (or a number): a sigmoid/softmax output
lies in [0, 1], `x + eps` with x >= 0 and eps > 0 in (0, inf), `z * (1 - a) + 0.5 * a` with z a
sigmoid and 0 < a < 1 in [a/2, 1 - a/2]. The dataflow computes it through sums, differences,
products, quotients, clamps, powers and reductions, and joins by hull; a rule asks `excludes_zero`
before it calls a denominator or a log's argument "can be 0". A convex mix of two values
(`(1 - g) * a + g * b`, g in [0, 1]) lies in the hull of theirs, and a convex mix of two
distributions (softmax outputs) is still a distribution: its sum along the softmax dim is 1.

It also answers, per class, what `self.<attr>` is when the class assigns it a plain number (`self.eps
= 1e-5`, `self.eps = eps` with `eps=1e-5` in the signature, `self.tau = tau` with `tau=1.0`) or a
Python container: a number, positive or not, never a submodule with a graph. A name or attribute that
ends in `eps`/`epsilon` is a positive guard unless it is known to be <= 0.

Pure: no torch; the dataflow imports this module, never the other way round.
"""
from __future__ import annotations

import ast
import math
import re
from dataclasses import dataclass
from functools import lru_cache

from gradpath.analysis.symbols import walk_statements

INF = math.inf


@dataclass(frozen=True)
class Rng:
    lo: float
    hi: float
    lo_open: bool = False  # lo itself is excluded
    hi_open: bool = False

    def excludes_zero(self) -> bool:
        return self.lo > 0 or (self.lo == 0 and self.lo_open) or self.hi < 0 or (self.hi == 0 and self.hi_open)

    def excludes(self, x: float) -> bool:
        return self.lo > x or (self.lo == x and self.lo_open) or self.hi < x or (self.hi == x and self.hi_open)

    def nonneg(self) -> bool:
        return self.lo >= 0

    def within_unit(self) -> bool:
        return self.lo >= 0 and self.hi <= 1


UNIT = Rng(0.0, 1.0)
NONNEG = Rng(0.0, INF)
POS = Rng(0.0, INF, lo_open=True)
BOUNDED = Rng(-1.0, 1.0)

_EPS_NAME = re.compile(r"(?:^|_)(?:eps|epsilon)\d*$", re.IGNORECASE)


def eps_named(name: str | None) -> bool:
    """`eps`, `self.eps`, `norm_eps`, `layer_norm_epsilon`, `EPS`: a guard by name."""
    return bool(name) and _eps_named(name)


@lru_cache(maxsize=4096)  # (the dataflow asks this of every name it reads; bounded)
def _eps_named(name: str) -> bool:
    return bool(_EPS_NAME.search(name.rsplit(".", 1)[-1]))


# -- ranges of values ------------------------------------------------------------------------------
_SHAPE_RNG = {"prob": UNIT, "nonneg": NONNEG, "sq": NONNEG, "sumsq": NONNEG, "norm": NONNEG, "std": NONNEG}


def rng_of(v) -> Rng | None:
    """The interval of `v` (a dataflow Val): explicit, a number's value, or what its shape implies."""
    if v is None:
        return None
    r = getattr(v, "rng", None)
    if r is not None:
        return r
    if v.kind == "number" and v.numeric is not None:
        return Rng(v.numeric, v.numeric)
    if v.shape == "pos" or v.eps_name:
        return POS
    return _SHAPE_RNG.get(v.shape)


def known_nonpositive(v) -> bool:
    r = rng_of(v)
    return r is not None and r.hi <= 0


def hull(a: Rng | None, b: Rng | None) -> Rng | None:
    if a is None or b is None:
        return None
    if a == b:
        return a
    if a.lo < b.lo:
        lo, lo_open = a.lo, a.lo_open
    elif b.lo < a.lo:
        lo, lo_open = b.lo, b.lo_open
    else:
        lo, lo_open = a.lo, a.lo_open and b.lo_open
    if a.hi > b.hi:
        hi, hi_open = a.hi, a.hi_open
    elif b.hi > a.hi:
        hi, hi_open = b.hi, b.hi_open
    else:
        hi, hi_open = a.hi, a.hi_open and b.hi_open
    return Rng(lo, hi, lo_open, hi_open)


def intersect(a: Rng | None, b: Rng | None) -> Rng | None:
    if a is None:
        return b
    if b is None:
        return a
    lo, lo_open = (a.lo, a.lo_open) if a.lo > b.lo else (b.lo, b.lo_open) if b.lo > a.lo else (a.lo, a.lo_open or b.lo_open)
    hi, hi_open = (a.hi, a.hi_open) if a.hi < b.hi else (b.hi, b.hi_open) if b.hi < a.hi else (a.hi, a.hi_open or b.hi_open)
    if lo > hi:
        return None
    return Rng(lo, hi, lo_open, hi_open)


def neg(a: Rng | None) -> Rng | None:
    return None if a is None else Rng(-a.hi, -a.lo, a.hi_open, a.lo_open)


def add(a: Rng | None, b: Rng | None) -> Rng | None:
    if a is None or b is None:
        return None
    return Rng(a.lo + b.lo, a.hi + b.hi, a.lo_open or b.lo_open, a.hi_open or b.hi_open)


def sub(a: Rng | None, b: Rng | None) -> Rng | None:
    return add(a, neg(b))


def _prod(x: float, y: float) -> float:
    if x == 0 or y == 0:
        return 0.0  # the bound of a set: 0 * (arbitrarily large) stays 0
    return x * y


def mul(a: Rng | None, b: Rng | None) -> Rng | None:
    if a is None or b is None:
        return None
    ps = [_prod(x, y) for x in (a.lo, a.hi) for y in (b.lo, b.hi)]
    lo, hi = min(ps), max(ps)
    # a product is 0 only where a factor is: two factors that exclude 0 give a product that does
    nz = a.excludes_zero() and b.excludes_zero()
    return Rng(lo, hi, nz and lo == 0, nz and hi == 0)


def recip(b: Rng | None) -> Rng | None:
    """1 / b for b that excludes 0 and keeps one sign."""
    if b is None or not b.excludes_zero():
        return None
    if b.lo >= 0:
        return Rng(1 / b.hi if b.hi < INF else 0.0, 1 / b.lo if b.lo > 0 else INF, b.hi == INF or b.hi_open,
                   b.lo == 0 or b.lo_open)
    if b.hi <= 0:
        return neg(recip(neg(b)))
    return None


def div(a: Rng | None, b: Rng | None) -> Rng | None:
    return mul(a, recip(b))


def sqrt(a: Rng | None) -> Rng | None:
    if a is None or a.lo < 0:
        return None
    return Rng(math.sqrt(a.lo), math.sqrt(a.hi) if a.hi < INF else INF, a.lo_open, a.hi_open)


def power(base: Rng | None, exp: float | None) -> Rng | None:
    """base ** exp for a number exponent (None: unknown)."""
    if base is None:
        return None
    if exp == 2:
        sq = [_prod(base.lo, base.lo), _prod(base.hi, base.hi)]
        lo = 0.0 if base.lo <= 0 <= base.hi else min(sq)
        return Rng(lo, max(sq), base.excludes_zero() and lo == 0, False)
    if exp == 0.5:
        return sqrt(base)
    if base.lo >= 0 and base.excludes_zero():
        return POS  # a positive base to any power is positive (like exp)
    if base.lo >= 0:
        return NONNEG if exp is None or exp > 0 else None
    return None


def clamp(a: Rng | None, lo: float | None, hi: float | None, lo_open: bool = False) -> Rng | None:
    box = Rng(-INF if lo is None else lo, INF if hi is None else hi, lo_open, False)
    if a is None:
        return box if lo is not None or hi is not None else None
    return intersect(a, box)


def reduce(a: Rng | None, how: str, dist: bool = False) -> Rng | None:
    """The range of `x.sum()` / `x.mean()` given the range of x's elements."""
    if dist:
        return POS if how == "sum" else Rng(0.0, 1.0, lo_open=True)  # a distribution sums to 1
    if a is None:
        return None
    if how == "mean":
        return a
    if a.lo >= 0:
        return Rng(a.lo, INF, a.lo_open)
    if a.hi <= 0:
        return Rng(-INF, a.hi, False, a.hi_open)
    return None


# -- convex mixes ------------------------------------------------------------------------------------
def _one_minus(node) -> ast.AST | None:
    """`1 - g` / `1. - g` / `(1 - g)`: g; else None."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Sub) and isinstance(node.left, ast.Constant) \
            and node.left.value == 1 and not isinstance(node.left.value, bool):
        return node.right
    return None


def _factors(node) -> list:
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult):
        return [node.left, node.right]
    return []


def convex_parts(left, right) -> tuple | None:
    """`(1 - g) * a + g * b` (in any order of factors and terms): (g, a, b) as nodes, else None."""
    fl, fr = _factors(left), _factors(right)
    if len(fl) != 2 or len(fr) != 2:
        return None
    for i in range(2):
        g = _one_minus(fl[i])
        if g is not None:
            dg = ast.dump(g)
            for j in range(2):
                if ast.dump(fr[j]) == dg:
                    return g, fl[1 - i], fr[1 - j]
        g = _one_minus(fr[i])
        if g is not None:
            dg = ast.dump(g)
            for j in range(2):
                if ast.dump(fl[j]) == dg:
                    return g, fr[1 - i], fl[1 - j]
    return None


# -- attributes and parameters -----------------------------------------------------------------------
def _number_default(fn: ast.AST, name: str) -> float | None:
    """The number default of parameter `name` of `fn` (None when it has none)."""
    args = fn.args
    params = list(args.posonlyargs) + list(args.args)
    pairs = list(zip(params[len(params) - len(args.defaults):], args.defaults)) if args.defaults else []
    pairs += [(a, d) for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is not None]
    for a, d in pairs:
        if a.arg == name:
            return _literal(d)
    return None


def _literal(node) -> float | None:
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        v = _literal(node.operand)
        return None if v is None else (-v if isinstance(node.op, ast.USub) else v)
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        try:
            return float(node.value)
        except OverflowError:
            return INF if node.value > 0 else -INF
    return None


def _is_param(fn, name: str) -> bool:
    a = fn.args
    return any(p.arg == name for p in list(a.posonlyargs) + list(a.args) + list(a.kwonlyargs))


_CONTAINERS = (ast.List, ast.Tuple, ast.Dict, ast.Set, ast.ListComp, ast.DictComp, ast.SetComp)


def _classify(value, fn) -> tuple | None:
    """What one `self.x = value` makes `self.x`: ("number", positive?, literal or None), ("container",),
    ("str",), or None when it may be anything (a module, a tensor)."""
    lit = _literal(value)
    if lit is not None:
        return ("number", lit > 0, lit)
    if isinstance(value, ast.Constant) and isinstance(value.value, str):
        return ("str",)
    if isinstance(value, _CONTAINERS):
        return ("container",)
    if isinstance(value, ast.Name):
        if eps_named(value.id):
            return ("number", True, None)
        if fn is not None and _is_param(fn, value.id):
            d = _number_default(fn, value.id)
            if d is not None:
                return ("number", d > 0, None)
        return None
    if isinstance(value, ast.BinOp) and isinstance(value.op, (ast.Add, ast.Mult, ast.Div, ast.Pow, ast.FloorDiv)):
        a, b = _classify(value.left, fn), _classify(value.right, fn)
        if a and b and a[0] == "number" and b[0] == "number":
            return ("number", a[1] and b[1], None)
    return None


class AttrFacts:
    """Per class: `self.<attr>` assigned only plain numbers (and whether all are positive) or
    containers. Built once per file."""

    def __init__(self, sym):
        self.sym = sym
        self._cache: dict = {}
        self._by_class: dict = {}

    def _index(self, cls: str) -> dict:
        """attr -> [(value or None when unknown, method)] for one class's own body (walked once)."""
        idx = self._by_class.get(cls)
        if idx is not None:
            return idx
        idx = {}
        info = self.sym.classes.get(cls)
        for st in (info.node.body if info is not None else []):
            if isinstance(st, (ast.Assign, ast.AnnAssign)) and st.value is not None:
                for t in (st.targets if isinstance(st, ast.Assign) else [st.target]):
                    if isinstance(t, ast.Name):
                        idx.setdefault(t.id, []).append((st.value, None))
            if not isinstance(st, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for n in walk_statements(st):  # (assignments are statements: no expression visited)
                if isinstance(n, (ast.Assign, ast.AnnAssign)) and n.value is not None:
                    tgt = n.targets if isinstance(n, ast.Assign) else [n.target]
                elif isinstance(n, ast.AugAssign):
                    tgt = [n.target]
                else:
                    continue
                plain = isinstance(n, (ast.Assign, ast.AnnAssign)) and len(tgt) == 1
                for t in tgt:
                    elts = t.elts if isinstance(t, (ast.Tuple, ast.List)) else [t]
                    for e in elts:
                        if isinstance(e, ast.Attribute) and isinstance(e.value, ast.Name) and e.value.id == "self":
                            # `self.a, self.b = ...` / `self.n += 1`: unknown
                            idx.setdefault(e.attr, []).append((n.value if plain and e is t else None, st))
        self._by_class[cls] = idx
        return idx

    def _assignments(self, cls: str, attr: str) -> list:
        out, seen = [], set()
        while cls and cls not in seen:
            seen.add(cls)
            info = self.sym.classes.get(cls)
            if info is None:
                break
            out += self._index(cls).get(attr, [])
            cls = next((b for b in info.bases if b in self.sym.classes), None)
        return out

    def of(self, cls: str | None, attr: str):
        """("number", positive, literal) / ("container",) / ("str",) / None."""
        if not cls:
            return None
        key = (cls, attr)
        if key in self._cache:
            return self._cache[key]
        res = None
        assigns = self._assignments(cls, attr)
        kinds = [_classify(v, fn) if v is not None else None for v, fn in assigns]
        if assigns and all(k is not None for k in kinds):
            if all(k[0] == "number" for k in kinds):
                lits = {k[2] for k in kinds}
                res = ("number", all(k[1] for k in kinds), lits.pop() if len(lits) == 1 else None)
            elif all(k[0] == "container" for k in kinds):
                res = ("container",)
            elif all(k[0] == "str" for k in kinds):
                res = ("str",)
        if eps_named(attr) and (res is None or res[0] == "number") and not (res is not None and res[2] is not None and res[2] <= 0) \
                and not any(k is not None and k[0] == "number" and k[2] is not None and k[2] <= 0 for k in kinds):
            res = ("number", True, res[2] if res else None)
        self._cache[key] = res
        return res


def attr_facts(ctx) -> AttrFacts:
    return ctx.memo("bounds.attrs", lambda: AttrFacts(ctx.symbols))


# -- conditions that guard a division -----------------------------------------------------------------
def _positive_test(test, den_dump: str) -> bool:
    """`if den > 0:`, `if den >= 1:`, `if den != 0:`, `if den:`, `if den.sum() > 0` for `den.sum()`."""
    if isinstance(test, ast.BoolOp) and isinstance(test.op, ast.And):
        return any(_positive_test(v, den_dump) for v in test.values)
    if ast.dump(test) == den_dump:
        return True
    if isinstance(test, ast.Compare) and len(test.ops) == 1:
        left, op, right = test.left, test.ops[0], test.comparators[0]
        lv, rv = _literal(left), _literal(right)
        if ast.dump(left) == den_dump and rv is not None:
            return isinstance(op, ast.Gt) and rv >= 0 or isinstance(op, ast.GtE) and rv > 0 or \
                isinstance(op, (ast.NotEq, ast.IsNot)) and rv == 0
        if ast.dump(right) == den_dump and lv is not None:
            return isinstance(op, ast.Lt) and lv >= 0 or isinstance(op, ast.LtE) and lv > 0 or \
                isinstance(op, ast.NotEq) and lv == 0
    return False


def _zero_test(test, den_dump: str) -> bool:
    """`if den == 0:` / `if den <= 0:` / `if not den:` (the division is in the other branch)."""
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        return ast.dump(test.operand) == den_dump
    if isinstance(test, ast.BoolOp) and isinstance(test.op, ast.Or):
        return any(_zero_test(v, den_dump) for v in test.values)
    if isinstance(test, ast.Compare) and len(test.ops) == 1:
        left, op, right = test.left, test.ops[0], test.comparators[0]
        rv = _literal(right)
        if ast.dump(left) == den_dump and rv is not None:
            return isinstance(op, ast.Eq) and rv == 0 or isinstance(op, ast.LtE) and rv >= 0 or \
                isinstance(op, ast.Lt) and rv > 0
    return False


def guarded_by_test(facts, node, den_node) -> bool:
    """The division `node` only runs where its denominator was tested non-zero: inside `if den > 0:`
    (or its `else` after `if den == 0:`), or after an `if den == 0: return/raise/continue`."""
    den_dump = ast.dump(den_node)
    child = node
    for anc in facts.ancestors(node):
        if isinstance(anc, ast.If):
            if any(child is s for s in anc.body) and _positive_test(anc.test, den_dump):
                return True
            if any(child is s for s in anc.orelse) and _zero_test(anc.test, den_dump):
                return True
        if isinstance(anc, ast.IfExp):
            if child is anc.body and _positive_test(anc.test, den_dump):
                return True
            if child is anc.orelse and _zero_test(anc.test, den_dump):
                return True
        body = getattr(anc, "body", None)
        if isinstance(body, list) and any(child is s for s in body):
            for s in body:
                if s is child:
                    break
                if isinstance(s, ast.If) and _zero_test(s.test, den_dump) and s.body and \
                        isinstance(s.body[-1], (ast.Return, ast.Raise, ast.Continue, ast.Break)):
                    return True
        if isinstance(anc, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            break
        child = anc
    return False


_NONFINITE_CHECKS = {"isinf", "isnan", "isfinite", "nan_to_num", "nan_to_num_", "isposinf", "isneginf"}


def result_checked(facts, node) -> bool:
    """The division's result is stored in a name that the same function then checks for inf/NaN
    (`scale[scale.isinf()] = 1.0`, `torch.nan_to_num(ratio)`): the author handles the zero case."""
    par = facts.parent(node)
    if isinstance(par, ast.AugAssign) and par.value is node:
        target = par.target
    elif isinstance(par, ast.Assign) and par.value is node and len(par.targets) == 1:
        target = par.targets[0]
    else:
        return False
    if not isinstance(target, ast.Name):
        return False
    name = target.id
    scope = facts.scope_of(node)
    after = False
    for n in scope.walk():
        if n is par:
            after = True
            continue
        if not after or not isinstance(n, ast.Call):
            continue
        f = n.func
        fname = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else None
        if fname not in _NONFINITE_CHECKS:
            continue
        subj = [f.value] if isinstance(f, ast.Attribute) else []
        subj += list(n.args[:1])
        if any(isinstance(s, ast.Name) and s.id == name for s in subj):
            return True
    return False


# -- the dataflow's hooks ------------------------------------------------------------------------------
def convex(g: Rng | None, a: Rng | None, b: Rng | None) -> Rng | None:
    """(1 - g) * a + g * b for g in [0, 1]: in the hull of a and b; an end that only a reaches is
    excluded when g > 0 (some weight always goes to b), one that only b reaches when g < 1."""
    if g is None or a is None or b is None or not g.within_unit():
        return None
    g_pos, g_below1 = g.excludes(0.0), g.excludes(1.0)
    if a.lo < b.lo:
        lo, lo_open = a.lo, a.lo_open or g_pos
    elif b.lo < a.lo:
        lo, lo_open = b.lo, b.lo_open or g_below1
    else:
        lo, lo_open = a.lo, a.lo_open and b.lo_open
    if a.hi > b.hi:
        hi, hi_open = a.hi, a.hi_open or g_pos
    elif b.hi > a.hi:
        hi, hi_open = b.hi, b.hi_open or g_below1
    else:
        hi, hi_open = a.hi, a.hi_open and b.hi_open
    return Rng(lo, hi, lo_open, hi_open)


def binop_range(op, a, b, ln, rn, value_of) -> tuple:
    """(range, is a distribution) of `a <op> b` (Vals; `ln`/`rn` their nodes, `value_of(node)` the
    value the dataflow last computed for a node)."""
    ra, rb = rng_of(a), rng_of(b)
    if isinstance(op, ast.Add):
        parts = convex_parts(ln, rn) if ln is not None and rn is not None else None
        if parts is not None:
            g, x, y = (value_of(id(n)) for n in parts)
            if g is not None and x is not None and y is not None:
                r = convex(rng_of(g), rng_of(x), rng_of(y))
                if r is not None:
                    return r, x.dist and y.dist
        return add(ra, rb), False
    if isinstance(op, ast.Sub):
        return sub(ra, rb), False
    if isinstance(op, ast.Mult):
        return mul(ra, rb), False
    if isinstance(op, ast.Div):
        return div(ra, rb), False
    if isinstance(op, ast.Pow):
        return power(ra, b.numeric if b.kind == "number" else None), False
    return None, False


def method_range(m: str, recv, args: list, kwargs: dict) -> tuple | None:
    """(range, distribution) of `recv.m(*args)` / `torch.m(recv, *args)` for the ops whose range is
    known; None for the others."""
    r = rng_of(recv)
    if m in ("softmax", "softmin"):
        return UNIT, True
    if m in ("sigmoid", "expit"):
        return UNIT, False
    if m in ("exp", "exp2"):
        return POS, False
    if m in ("abs", "relu", "relu6", "softplus", "square"):
        return NONNEG, False
    if m in ("tanh", "hardtanh", "cos", "sin"):
        return BOUNDED, False
    if m in ("sqrt",):
        return sqrt(r) or NONNEG, False
    if m in ("clamp", "clip", "clamp_min", "clamp_", "clamp_min_", "clip_", "clamp_max", "clamp_max_"):
        lo_v = hi_v = None
        if m.startswith("clamp_max"):
            hi_v = args[0] if args else kwargs.get("max")
        else:
            lo_v = args[0] if args else kwargs.get("min")
            if not m.startswith("clamp_min"):
                hi_v = args[1] if len(args) > 1 else kwargs.get("max")
        lo_r, hi_r = rng_of(lo_v), rng_of(hi_v)
        lo = lo_r.lo if lo_r is not None else None
        hi = hi_r.hi if hi_r is not None else None
        if lo is None and hi is None:
            return None
        return clamp(r, lo, hi, lo_open=bool(lo_r is not None and lo_r.lo_open)), False
    if m in ("pow", "float_power"):
        e = args[0] if args else kwargs.get("exponent")
        return power(r, e.numeric if e is not None and e.kind == "number" else None), False
    if m in ("sum", "nansum"):
        return reduce(r, "sum", recv.dist), False
    if m in ("mean", "nanmean"):
        return reduce(r, "mean", recv.dist), False
    if m in ("add", "add_"):
        return (add(r, rng_of(args[0])) if args else None), False
    if m in ("sub", "subtract"):
        return (sub(r, rng_of(args[0])) if args else None), False
    if m in ("mul", "multiply", "mul_"):
        return (mul(r, rng_of(args[0])) if args else None), False
    if m in ("div", "true_divide", "divide"):
        return (div(r, rng_of(args[0])) if args else None), False
    if m in ("neg", "negative"):
        return neg(r), False
    return None


def positive_default(default, arg):
    """A parameter with a positive number default keeps "positive" when a caller passes a value not
    known to be <= 0 (an eps forwarded from an attribute or another parameter). Returns True then."""
    if default is None or default.shape != "pos" or arg is None:
        return False
    if arg.grad == 2 or arg.kind not in ("number", "tensor") or arg.torchy or arg.model_out:
        return False  # a tensor with a graph, a container, a module: not an eps
    r = rng_of(arg)
    if r is not None:
        return False  # known: the caller's value decides
    return True


def masked_positive_fill(mask_node, val) -> bool:
    """`d[d == 0] = 1.0` / `d.masked_fill(d < eps, eps)`: elements picked by a comparison are
    replaced by a positive value (the author patches the zeros)."""
    if val is None or not isinstance(mask_node, (ast.Compare, ast.BoolOp)):
        return False
    r = rng_of(val)
    return r is not None and (r.lo > 0 or r.lo == 0 and r.lo_open)


_SIZE_FUNCS = {"torch.nn.init._calculate_fan_in_and_fan_out": "shape", "torch.nn.init._calculate_correct_fan": "number",
               "torch.nn.init.calculate_gain": "number", "torch.numel": "number"}


def python_number_call(qn: str) -> str | None:
    """torch functions that return Python numbers (fans, gains, sizes): "number" / "shape" / None."""
    return _SIZE_FUNCS.get(qn)


# methods that nn.Module does not have: a receiver that calls one is a tensor (a buffer, a parameter)
TENSOR_ONLY_METHODS = frozenset({
    "clamp", "clamp_min", "clamp_max", "clip", "sqrt", "rsqrt", "pow", "sum", "mean", "exp", "log", "abs",
    "softmax", "log_softmax", "sigmoid", "tanh", "norm", "std", "var", "add", "sub", "mul", "div", "neg",
    "view", "reshape", "unsqueeze", "squeeze", "expand", "expand_as", "permute", "transpose", "index_select",
    "gather", "masked_fill", "flatten", "square", "max", "min", "amax", "amin", "matmul", "mm", "bmm"})
