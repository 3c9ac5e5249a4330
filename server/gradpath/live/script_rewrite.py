"""The live worker's rewrite of the user's script: loops cut short, probes around flagged sub-expressions,
line marks and tolerated statements, compiled for one run.

Worker side: standard library only; imported by worker.py as `_gradpath_live.script_rewrite` (see
worker._load_sibling); tests/live/test_rewrite.py reaches it through worker.py.
"""
from __future__ import annotations

import ast


STRUCTURAL_ITER_ATTRS = {"parameters", "named_parameters", "modules", "named_modules", "children",
                         "named_children", "buffers", "named_buffers", "param_groups", "state_dict",
                         "values", "items", "keys"}


def _char_col(lines: list[bytes], lineno: int, byte_col: int) -> int:
    try:
        return len(lines[lineno - 1][:byte_col].decode("utf-8", errors="replace"))
    except IndexError:
        return byte_col


def _node_span(node, lines):
    if not hasattr(node, "lineno") or getattr(node, "end_lineno", None) is None:
        return None
    return (node.lineno, _char_col(lines, node.lineno, node.col_offset),
            node.end_lineno, _char_col(lines, node.end_lineno, node.end_col_offset))


def _is_module_class(cls: ast.ClassDef) -> bool:
    if any(isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef)) and s.name == "forward" for s in cls.body):
        return True
    for b in cls.bases:
        name = b.attr if isinstance(b, ast.Attribute) else getattr(b, "id", "")
        if name in ("Module", "Sequential", "ModuleList", "ModuleDict"):
            return True
    return False


def _structural_iter(it: ast.AST) -> bool:
    """Loops over a model's own structure (parameters, layers) are not cut: cutting them would change
    the model, not shorten training."""
    node = it
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in (
            "enumerate", "zip", "list", "reversed", "sorted", "tuple"):
        return any(_structural_iter(a) for a in node.args)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        if node.func.attr in STRUCTURAL_ITER_ATTRS:
            return True
        node = node.func.value
    if isinstance(node, ast.Attribute):
        if node.attr in STRUCTURAL_ITER_ATTRS:
            return True
        base = node
        while isinstance(base, ast.Attribute):
            base = base.value
        if isinstance(base, ast.Name) and base.id == "self":
            return True
    return False


class Rewriter(ast.NodeTransformer):
    def __init__(self, lines: list[bytes], probes: list[dict], cut_loops: bool = True):
        self.lines = lines
        self.cut_loops = cut_loops
        self.probes = {}
        for p in probes:
            sp = p.get("span") or {}
            try:
                key = (int(sp["line"]), int(sp["col"]), int(sp["end_line"]), int(sp["end_col"]))
            except (KeyError, TypeError, ValueError):
                continue
            self.probes.setdefault(key, []).append(p["id"])
        self.placed: dict[str, tuple] = {}
        self.site_wanted = {p["id"] for p in probes if p.get("what") in self.SITE_KINDS}
        self.probe_what = {p["id"]: p.get("what") for p in probes}
        self.sites: dict[str, bool] = {}
        self._in_module_class = 0
        self._func_stack: list[str] = []

    # --- probes -----------------------------------------------------------------------------
    def _wrap(self, node):
        if not isinstance(node, ast.expr) or not isinstance(getattr(node, "ctx", ast.Load()), ast.Load):
            return node
        if isinstance(node, (ast.Starred, ast.Slice)):
            return node
        sp = _node_span(node, self.lines)
        ids = self.probes.get(sp) if sp else None
        if not ids:
            return node
        for pid in ids:
            if pid in self.placed:
                continue
            self.placed[pid] = sp
            if self.probe_what.get(pid) == "accumulated" and isinstance(node, ast.Call) and node.args and \
                    isinstance(node.func, ast.Attribute) and node.func.attr in ("append", "extend", "add"):
                # `losses.append(loss)`: what is kept is the argument
                node.args[0] = ast.Call(func=ast.Name("__gp_probe__", ast.Load()),
                                        args=[ast.Constant(pid), node.args[0], ast.Constant(sp[0])], keywords=[])
                continue
            node = ast.Call(func=ast.Name("__gp_probe__", ast.Load()),
                            args=[ast.Constant(pid), node, ast.Constant(sp[0])], keywords=[])
        return node

    SITE_KINDS = ("denominator", "log-arg", "sqrt-arg", "exp-arg", "std")

    def _probe_child(self, node):
        """The probe id whose wrapped value is a direct operand of `node` (the "site": the division,
        the log/sqrt/exp call that consumes it)."""
        cands = list(ast.iter_child_nodes(node))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            cands.append(node.func.value)  # p.log(), s.sqrt()
        for c in cands:
            if isinstance(c, ast.Call) and isinstance(c.func, ast.Name) and c.func.id == "__gp_probe__" \
                    and c.args and isinstance(c.args[0], ast.Constant):
                return c.args[0].value
        return None

    def generic_visit(self, node):
        super().generic_visit(node)
        if isinstance(node, ast.expr):
            if isinstance(node, (ast.BinOp, ast.Call)) and isinstance(getattr(node, "ctx", ast.Load()), ast.Load):
                pid = self._probe_child(node)
                if pid is not None and pid in self.site_wanted and pid not in self.sites:
                    self.sites[pid] = _node_span(node, self.lines)
                    node = ast.copy_location(ast.Call(func=ast.Name("__gp_site__", ast.Load()),
                                                      args=[ast.Constant(pid), node], keywords=[]), node)
                    return self._wrap(node)
            return self._wrap(node)
        return node

    # --- scopes -----------------------------------------------------------------------------
    def visit_ClassDef(self, node):
        mod = _is_module_class(node)
        self._in_module_class += mod
        try:
            return self.generic_visit(node)
        finally:
            self._in_module_class -= mod

    def visit_FunctionDef(self, node):
        self._func_stack.append(node.name)
        try:
            return self.generic_visit(node)
        finally:
            self._func_stack.pop()

    visit_AsyncFunctionDef = visit_FunctionDef

    def _may_cut(self) -> bool:
        if not self.cut_loops or self._in_module_class:
            return False
        return not any(n in ("__init__", "forward", "_init_weights", "reset_parameters") for n in self._func_stack)

    # --- loops ------------------------------------------------------------------------------
    def visit_For(self, node):
        self.generic_visit(node)
        if self._may_cut() and not _structural_iter(node.iter):
            node.iter = ast.copy_location(ast.Call(
                func=ast.Name("__gp_iter__", ast.Load()),
                args=[node.iter, ast.Constant(node.lineno)], keywords=[]), node.iter)
        return node

    visit_AsyncFor = generic_visit

    def visit_While(self, node):
        self.generic_visit(node)
        if not self._may_cut():
            return node
        if not any(isinstance(n, ast.Call) for st in node.body for n in ast.walk(st)):
            # no call in the body (`while True: pass`, `while n > 0: n -= 1`): not a training loop;
            # it ends by itself or it is a hang, and the wall-clock limit deals with that
            return node
        node.test = ast.copy_location(ast.BoolOp(op=ast.And(), values=[
            ast.Call(func=ast.Name("__gp_while__", ast.Load()), args=[ast.Constant(node.lineno)], keywords=[]),
            node.test]), node.test)
        reset = ast.copy_location(ast.Expr(ast.Call(func=ast.Name("__gp_wreset__", ast.Load()),
                                                    args=[ast.Constant(node.lineno)], keywords=[])), node)
        return [reset, node]


def place_statement_probes(tree: ast.Module, lines, probes: list[dict], rewriter: Rewriter):
    """A probe whose span covers a whole statement (e.g. `total += loss`) observes that statement's value."""
    wanted = {}
    for p in probes:
        if p["id"] in rewriter.placed:
            continue
        sp = p.get("span") or {}
        try:
            wanted[(int(sp["line"]), int(sp["col"]))] = p
        except (KeyError, TypeError, ValueError):
            pass
    if not wanted:
        return
    for node in ast.walk(tree):
        if isinstance(node, (ast.AugAssign, ast.Assign, ast.Expr, ast.Return)) and node.value is not None:
            sp = _node_span(node, lines)
            p = wanted.get(sp[:2]) if sp else None
            if p is None:
                # a call like `losses.append(loss)`: observe its argument
                continue
            value = node.value
            if isinstance(value, ast.Call) and isinstance(value.func, ast.Attribute) and \
                    value.func.attr in ("append", "extend", "add") and value.args:
                value.args[0] = ast.Call(func=ast.Name("__gp_probe__", ast.Load()),
                                         args=[ast.Constant(p["id"]), value.args[0], ast.Constant(sp[0])],
                                         keywords=[])
            else:
                node.value = ast.Call(func=ast.Name("__gp_probe__", ast.Load()),
                                      args=[ast.Constant(p["id"]), value, ast.Constant(sp[0])], keywords=[])
            rewriter.placed[p["id"]] = sp


class _Marker:
    """Put `__gp_mark__(line)` before the innermost statement that holds each watched line, so the
    run reports which flagged lines executed without tracing every line."""

    FIELDS = ("body", "orelse", "finalbody")

    def __init__(self, watch: set[int]):
        self.watch = sorted(watch)

    def visit(self, node):
        self._block(node)
        return node

    def _block(self, node):
        for field in self.FIELDS:
            stmts = getattr(node, field, None)
            if isinstance(stmts, list) and stmts and isinstance(stmts[0], ast.stmt):
                setattr(node, field, self._stmts(stmts))
        for h in list(getattr(node, "handlers", None) or []) + list(getattr(node, "cases", None) or []):
            h.body = self._stmts(h.body)

    def _stmts(self, stmts):
        out = []
        for st in stmts:
            if getattr(st, "lineno", None) is None:
                out.append(st)
                continue
            lo, hi = st.lineno, st.end_lineno or st.lineno
            for line in self.watch:
                if lo <= line <= hi and not self._inner_holds(st, line):
                    m = ast.Expr(ast.Call(func=ast.Name("__gp_mark__", ast.Load()), args=[ast.Constant(line)],
                                          keywords=[]))
                    out.append(ast.copy_location(m, st))
            self._block(st)
            out.append(st)
        return out

    @staticmethod
    def _holds(stmts, line):
        return any(st.lineno <= line <= (st.end_lineno or st.lineno) for st in stmts)

    def _inner_holds(self, st, line):
        for field in self.FIELDS:
            inner = getattr(st, field, None)
            if isinstance(inner, list) and inner and isinstance(inner[0], ast.stmt) and self._holds(inner, line):
                return True
        return any(self._holds(h.body, line)
                   for h in list(getattr(st, "handlers", None) or []) + list(getattr(st, "cases", None) or []))


class _Tolerate(_Marker):
    """Wrap the innermost statement holding each given line in `try: ... except Exception:` so a run can
    go past an error already observed (and confirmed) to reach the findings after it."""

    def _stmts(self, stmts):
        out = []
        for st in stmts:
            lo, hi = st.lineno, st.end_lineno or st.lineno
            self._block(st)
            hit = [l for l in self.watch if lo <= l <= hi and not self._inner_holds(st, l)]
            if hit and not isinstance(st, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.ImportFrom)):
                handler = ast.ExceptHandler(
                    type=ast.Name("Exception", ast.Load()), name="__gp_err",
                    body=[ast.Expr(ast.Call(func=ast.Name("__gp_tolerated__", ast.Load()),
                                            args=[ast.Constant(hit[0]), ast.Name("__gp_err", ast.Load())],
                                            keywords=[]))])
                st = ast.copy_location(ast.Try(body=[st], handlers=[handler], orelse=[], finalbody=[]), st)
            out.append(st)
        return out


def _is_mark(node):
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Call) and \
        isinstance(node.value.func, ast.Name) and node.value.func.id == "__gp_mark__"


def rewrite(source: str, path: str, probes: list[dict], cut_loops: bool = True, watch=(), tolerate=()):
    tree = ast.parse(source, path)
    lines = source.encode("utf-8").split(b"\n")
    if tolerate:
        _Tolerate({int(l) for l in tolerate}).visit(tree)
        ast.fix_missing_locations(tree)
    if watch:
        _Marker({int(l) for l in watch}).visit(tree)
    rw = Rewriter(lines, probes, cut_loops)
    tree = rw.visit(tree)
    place_statement_probes(tree, lines, probes, rw)
    ast.fix_missing_locations(tree)
    return compile(tree, path, "exec", dont_inherit=True), rw.placed, rw.sites
