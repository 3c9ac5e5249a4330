"""The AST rewrite the worker applies: which loops are cut, where probes go. Runs the worker module's
functions directly (they need only the standard library)."""
from __future__ import annotations

import ast
import importlib.util

import pytest

from live_helpers import ROOT

spec = importlib.util.spec_from_file_location("gp_worker", ROOT / "server/gradpath/live/worker.py")
worker = importlib.util.module_from_spec(spec)
spec.loader.exec_module(worker)


def calls(code):
    out = set()
    for n in ast.walk(code if isinstance(code, ast.AST) else ast.parse(code)):
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id.startswith("__gp_"):
            out.add((n.func.id, n.lineno))
    return out


def rewritten(src, probes=()):
    tree = ast.parse(src)
    lines = src.encode().split(b"\n")
    rw = worker.Rewriter(lines, list(probes))
    tree = rw.visit(tree)
    worker.place_statement_probes(tree, lines, list(probes), rw)
    ast.fix_missing_locations(tree)
    compile(tree, "x.py", "exec")
    return tree, rw


SRC = '''
import torch.nn as nn
class Net(nn.Module):
    def __init__(self, n):
        super().__init__()
        self.layers = nn.ModuleList()
        for i in range(n):
            self.layers.append(nn.Linear(4, 4))
    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        while x.sum() > 1e9:
            x = x / 2
        return x
def train(model, loader, opt):
    for p in model.parameters():
        p.requires_grad = True
    for name, p in model.named_parameters():
        pass
    for epoch in range(100):
        for x, y in loader:
            pass
    while True:
        step(opt)
    while True:
        pass
for g in opt.param_groups:
    g["lr"] = 0.1
'''


def test_training_loops_are_cut_structural_loops_are_not():
    tree, _ = rewritten(SRC)
    got = calls(tree)
    assert ("__gp_iter__", 20) in got and ("__gp_iter__", 21) in got  # epochs and batches
    assert ("__gp_while__", 23) in got and ("__gp_wreset__", 23) in got  # while True
    lines = {line for _, line in got}
    assert not lines & {7, 10, 12}  # model construction and forward: unchanged
    assert not lines & {16, 18, 27}  # loops over parameters / param_groups: unchanged
    assert not lines & {25}  # `while True: pass` has no call: not a training loop, left alone


def test_probe_and_site_placement_uses_character_columns():
    src = "# é ü\nloss = 1 / (out - y)  # ünïcode\nz = torch.log(p)\n"
    # columns are characters: "out - y" starts at character 12 of line 2
    probes = [{"id": "A", "what": "denominator", "span": {"line": 2, "col": 12, "end_line": 2, "end_col": 19}},
              {"id": "B", "what": "log-arg", "span": {"line": 3, "col": 14, "end_line": 3, "end_col": 15}}]
    tree, rw = rewritten(src, probes)
    assert rw.placed == {"A": (2, 12, 2, 19), "B": (3, 14, 3, 15)}
    assert rw.sites == {"A": (2, 7, 2, 20), "B": (3, 4, 3, 16)}
    text = ast.unparse(tree)
    assert "__gp_site__('A', 1 / __gp_probe__('A', out - y, 2))" in text
    assert "__gp_site__('B', torch.log(__gp_probe__('B', p, 3)))" in text


def test_statement_probe_for_accumulation():
    src = "total = 0\nfor i in range(3):\n    total += loss\n    losses.append(loss)\n"
    probes = [{"id": "T", "what": "accumulated", "span": {"line": 3, "col": 4, "end_line": 3, "end_col": 17}},
              {"id": "L", "what": "accumulated", "span": {"line": 4, "col": 4, "end_line": 4, "end_col": 23}}]
    tree, rw = rewritten(src, probes)
    text = ast.unparse(tree)
    assert "total += __gp_probe__('T', loss, 3)" in text
    assert "losses.append(__gp_probe__('L', loss, 4))" in text
