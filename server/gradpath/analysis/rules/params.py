"""GP1: parameters that never reach the optimizer. (Skeleton: GP101 only; to be completed.)"""
from __future__ import annotations

import ast

from gradpath.analysis.rules import rule


@rule("GP101")
def empty_param_list(ctx):
    for opt in ctx.facts.optimizers:
        p = opt.params
        empty = (isinstance(p, (ast.List, ast.Tuple)) and not p.elts) or (
            isinstance(p, ast.Call) and isinstance(p.func, ast.Name) and p.func.id in ("list", "tuple")
            and not p.args and not p.keywords)
        if empty:
            yield ctx.finding("GP101", p, f"{opt.short} is given an empty parameter list: PyTorch raises "
                              "`ValueError: optimizer got an empty parameter list` here")
