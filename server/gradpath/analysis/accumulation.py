"""Counter guards of gradient accumulation: which iterations an `if` around a clear or a step lets
through.

`if (i + 1) % k == 0:`, `if i % k == r:`, `if i % k:` and `if not step % k:` are read as a set of
residues of the counter modulo a period, for a literal `k` or one the caller can resolve to an int
(a module constant, `cfg.accum_steps = 4`). Anything else (a comparison with a value we cannot know,
a call) is not a counter guard: `parse_guard` returns None and the rules say nothing.

Pure functions over the AST; the caller supplies `const(node) -> int | None` for names.
"""
from __future__ import annotations

import ast
import math
from dataclasses import dataclass
from typing import Callable

MAX_PERIOD = 720  # lcm of the moduli of one guard; past it the guard is not evaluated

Const = Callable[[ast.AST], "int | None"]


def _no_const(_node) -> None:
    return None


@dataclass(frozen=True)
class CounterGuard:
    counter: str  # source text of the counter (`batch_idx`, `engine.state.iteration`)
    period: int
    truth: frozenset  # residues c % period for which the test holds

    def holds(self, c: int) -> bool:
        return (c % self.period) in self.truth

    @property
    def never(self) -> bool:
        return not self.truth

    @property
    def always(self) -> bool:
        return len(self.truth) == self.period

    def negate(self) -> "CounterGuard":
        return CounterGuard(self.counter, self.period,
                            frozenset(r for r in range(self.period) if r not in self.truth))


def combine(a: "CounterGuard | None", b: "CounterGuard | None", op: str = "and") -> "CounterGuard | None":
    """Both guards (`and`) or either (`or`), when they test the same counter."""
    if a is None or b is None or a.counter != b.counter:
        return None
    p = a.period * b.period // math.gcd(a.period, b.period)
    if p > MAX_PERIOD:
        return None
    if op == "and":
        truth = frozenset(r for r in range(p) if a.holds(r) and b.holds(r))
    else:
        truth = frozenset(r for r in range(p) if a.holds(r) or b.holds(r))
    return CounterGuard(a.counter, p, truth)


def int_value(node: ast.AST, const: Const = _no_const, depth: int = 0) -> int | None:
    """An int literal, a name the caller resolves to one, or arithmetic of those."""
    if depth > 4 or node is None:
        return None
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        v = int_value(node.operand, const, depth + 1)
        return -v if v is not None else None
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub, ast.Mult, ast.FloorDiv)):
        a, b = int_value(node.left, const, depth + 1), int_value(node.right, const, depth + 1)
        if a is None or b is None:
            return None
        if isinstance(node.op, ast.Add):
            return a + b
        if isinstance(node.op, ast.Sub):
            return a - b
        if isinstance(node.op, ast.Mult):
            return a * b
        return a // b if b else None
    if isinstance(node, (ast.Name, ast.Attribute, ast.Subscript)):
        v = const(node)
        return v if type(v) is int else None
    return None


def _affine(node: ast.AST, const: Const):
    """`c`, `c + a`, `a + c`, `c - a`: (counter node, offset); offsets are int literals."""
    const = _no_const
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub)):
        r = int_value(node.right, const)
        if r is not None:
            inner = _affine(node.left, const)
            if inner is not None:
                return inner[0], inner[1] + (r if isinstance(node.op, ast.Add) else -r)
        l = int_value(node.left, const)
        if l is not None and isinstance(node.op, ast.Add):
            inner = _affine(node.right, const)
            if inner is not None:
                return inner[0], inner[1] + l
        return None
    if isinstance(node, (ast.Name, ast.Attribute)):
        return node, 0  # the counter (`it = 0` before the loop does not make it a constant)
    return None


def _modulo(node: ast.AST, const: Const):
    """`(counter + a) % k` with a known k > 0: (counter text, k, residue function)."""
    if not (isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod)):
        return None
    k = int_value(node.right, const)
    if k is None or k <= 0 or k > MAX_PERIOD:
        return None
    aff = _affine(node.left, const)
    if aff is None:
        return None
    counter, off = aff
    return ast.unparse(counter), k, (lambda c, off=off, k=k: (c + off) % k)


def parse_guard(test: ast.AST, const: Const = _no_const) -> CounterGuard | None:
    """The residues for which `test` holds, or None when it is not a counter guard."""
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        g = parse_guard(test.operand, const)
        return g.negate() if g is not None else None
    if isinstance(test, ast.BoolOp):
        out = None
        for i, v in enumerate(test.values):
            g = parse_guard(v, const)
            if g is None:
                return None
            out = g if i == 0 else combine(out, g, "and" if isinstance(test.op, ast.And) else "or")
            if out is None:
                return None
        return out
    m = _modulo(test, const)
    if m is not None:  # truthiness: `if i % k:`
        name, k, f = m
        return CounterGuard(name, k, frozenset(r for r in range(k) if f(r) != 0))
    if isinstance(test, ast.Compare) and len(test.ops) == 1 and \
            isinstance(test.ops[0], (ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE)):
        left, right, op = test.left, test.comparators[0], test.ops[0]
        m, v = _modulo(left, const), int_value(right, const)
        if m is None:
            m, v = _modulo(right, const), int_value(left, const)
            op = {ast.Lt: ast.Gt, ast.Gt: ast.Lt, ast.LtE: ast.GtE, ast.GtE: ast.LtE}.get(type(op), type(op))()
        if m is None or v is None:
            return None
        name, k, f = m
        cmp = {ast.Eq: lambda a: a == v, ast.NotEq: lambda a: a != v, ast.Lt: lambda a: a < v,
               ast.LtE: lambda a: a <= v, ast.Gt: lambda a: a > v, ast.GtE: lambda a: a >= v}[type(op)]
        return CounterGuard(name, k, frozenset(r for r in range(k) if cmp(f(r))))
    return None


def never_true(test: ast.AST, const: Const = _no_const) -> bool:
    """A test no counter value satisfies (`i % 1 == 1`, `step % k == k` for a known k); a
    conjunction with one such part counts too (`use_amp and i % 1 == 1`)."""
    if isinstance(test, ast.BoolOp) and isinstance(test.op, ast.And):
        return any(never_true(v, const) for v in test.values)
    g = parse_guard(test, const)
    return g is not None and g.never
