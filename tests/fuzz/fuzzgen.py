"""Input generators for fuzzing the analysis: a small grammar of PyTorch training code (models,
optimizers, losses, loops in every order, Trainer classes, frozen layers, detaches...) and
mutations of real programs (the fixtures): truncations, deletions, junk insertions, deep nesting,
huge literals, CRLF/CR, tabs, NUL bytes, BOMs, lone surrogates, non-ASCII identifiers.

`check_result(text, result)` states what must hold for every input. Used by test_fuzz_engine.py
(in the suite) and long_fuzz.py (a longer run, not collected by pytest).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import random

from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "fixtures"
sys.path.insert(0, str(ROOT / "benchmarks"))

# -- the grammar -------------------------------------------------------------------------------

IMPORTS = [
    "import torch", "import torch.nn as nn", "import torch.optim as optim",
    "import torch.nn.functional as F", "from torch import nn, optim", "from torch.optim import Adam, SGD",
    "import torch.optim as o", "from torch.nn import Linear as L", "import itertools", "import copy",
    "from torch.optim.lr_scheduler import StepLR", "from models import Net as ImportedNet",
    "import numpy as np", "from torch.optim import *", "import torch as th",
]
MODELS = ["model", "net", "self.model", "encoder", "decoder", "gen", "disc", "模型", "modèle", "m"]
OPTS = ["optimizer", "opt", "self.optimizer", "opt_g", "opt_d", "optimiseur"]
LOSSES = ["loss", "l", "total_loss", "d_loss", "self.loss", "损失"]
OUTS = ["out", "outputs", "pred", "logits", "y_hat", "fake"]
DATA = ["x", "inputs", "batch", "y", "targets", "x_é"]
CLASSES = ["Net", "MLP", "Encoder", "Generator", "ImportedNet", "Modèle"]
LAYERS = ["nn.Linear({a}, {b})", "nn.Linear({a}, {b}, bias=False)", "L({a}, {b})",
          "nn.Conv2d({a}, {b}, 3)", "nn.LSTM({a}, {b})", "nn.Sequential(nn.Linear({a}, {b}), nn.ReLU())",
          "nn.BatchNorm1d({a})", "nn.Embedding(100, {a})", "torch.nn.LayerNorm({a})", "nn.ReLU()",
          "nn.Dropout(0.1)"]
OPT_CLASSES = ["optim.Adam", "optim.SGD", "torch.optim.AdamW", "Adam", "SGD", "o.RMSprop", "th.optim.Adam"]


def _pick(r, seq):
    return r.choice((seq))


def module_expr(r):
    kind = r.randint(0, 4)
    if kind <= 1:
        return r.choice(CLASSES) + "()"
    a, b = r.randint(1, 64), r.randint(1, 64)
    return r.choice(LAYERS).format(a=a, b=b)


def params_expr(r):
    m = r.choice(MODELS)
    m2 = r.choice(MODELS)
    return r.choice([
        f"{m}.parameters()", f"{m}.parameters", m, f"[{m}.linear.weight]", "[]", "list()", "()",
        f"{m}.fc.parameters()", f"itertools.chain({m}.parameters(), {m2}.parameters())",
        f'[{{"params": {m}.parameters(), "lr": 1e-3}}, {{"params": {m2}.head.parameters()}}]',
        f"filter(lambda p: p.requires_grad, {m}.parameters())", f"Net().parameters()",
        f"list({m}.parameters()) + list({m2}.parameters())", "params", f"params=[{m}.weight]",
        f"[p for p in {m}.parameters() if p.requires_grad]",
    ])


def loss_expr(r, depth=0):
    out, y, m = r.choice(OUTS), r.choice(DATA), r.choice(MODELS)
    leaves = [f"criterion({out}, {y})", f"F.mse_loss({out}, {y})", f"nn.MSELoss()({m}({y}), {y})",
              f"1 / ({out} - {y})", f"torch.log(torch.softmax({out}, dim=1)).mean()",
              f"torch.sqrt((({out} - {y}) ** 2).sum())", f"{out}.detach().mean()", f"{out}.data.sum()",
              f"torch.tensor({out}.mean().item(), requires_grad=True)", f"(({y} - {y}.mean(0)) / {y}.std(0)).sum()",
              f"torch.exp({out}).sum()", f"F.cross_entropy(torch.softmax({out}, -1), {y})",
              f"nn.BCELoss()({out}, {y})", f"F.binary_cross_entropy(torch.sigmoid({out}), {y})",
              f"torch.log({out})", f"{out}.log().mean()", f"float({out}.sum())", f"{out}.sum() / {y}.sum()",
              f"torch.argmax({out}).float()", f"{m}.forward({y}).sum()", f"{out}.sum() ** 0.5"]
    if depth >= 2 or (r.random() < 0.5):
        return r.choice(leaves)
    a = loss_expr(r, depth + 1)
    b = loss_expr(r, depth + 1)
    op = r.choice(["+", "-", "*", "/", "**"])
    return r.choice([f"({a}) {op} ({b})", f"({a}).mean()", f"({a}).detach()", f"torch.clamp({a}, min=1e-8)",
                        f"{a} + 1e-8"])


def simple_stmt(r):
    m, o, l = r.choice(MODELS), r.choice(OPTS), r.choice(LOSSES)
    out, x = r.choice(OUTS), r.choice(DATA)
    choice = r.randint(0, 27)
    return [
        lambda: f"{m} = {module_expr(r)}",
        lambda: f"{o} = {r.choice(OPT_CLASSES)}({params_expr(r)}, lr={r.choice((['1e-3', '0.1', 'lr']))})",
        lambda: f"{out} = {m}({x})",
        lambda: f"{out} = {m}.forward({x})",
        lambda: f"{l} = {loss_expr(r)}",
        lambda: f"{l}.backward()",
        lambda: f"{o}.step()",
        lambda: f"{o}.zero_grad()",
        lambda: f"{o}.zero_grad(set_to_none=True)",
        lambda: f"{m}.zero_grad()",
        lambda: "scheduler.step()",
        lambda: f"scheduler = StepLR({o}, step_size=1)",
        lambda: f"{m}.eval()",
        lambda: f"{m}.train()",
        lambda: f"total += {l}",
        lambda: f"losses.append({l})",
        lambda: f"{l}.requires_grad = True",
        lambda: f"{l} = {l}.requires_grad_()",
        lambda: f"{m} = copy.deepcopy({m})",
        lambda: f"{x} = torch.randn({r.randint(1, 64)}, {r.randint(1, 64)})",
        lambda: f"{m}.to('cuda')",
        lambda: f"{m} = {m}.cuda()",
        lambda: f"p = {m}.parameters()",
        lambda: f"print({l}.item())",
        lambda: f"del {o}",
        lambda: f"{m}.requires_grad_(False)",
        lambda: "pass",
        lambda: f"{out}, {x} = {m}({x}), {x}.detach()",
    ][choice]()


def block(r, depth=0):
    n = r.randint(1, 6 if depth else 10)
    lines: list[str] = []
    for _ in range(n):
        if depth < 3 and r.randint(0, 4) == 0:
            head = r.choice([
                "for epoch in range(3):", "for step, (x, y) in enumerate(loader):", "while True:",
                "with torch.no_grad():", "with torch.inference_mode():", "if step % 4 == 0:",
                "if (step + 1) % accumulate == 0:", "try:", "with torch.set_grad_enabled(False):",
                "for p in model.parameters():", "with torch.autocast('cpu'):", "else:" if False else "if True:",
            ])
            body = block(r, depth + 1)
            lines.append(head)
            lines += ["    " + b for b in body]
            if head == "try:":
                lines += ["except Exception:", "    pass"]
            if head == "while True:":
                lines.append("    break")
        else:
            lines.append(simple_stmt(r))
    return lines


def class_def(r):
    name = r.choice(CLASSES)
    base = r.choice(["nn.Module", "torch.nn.Module", "ImportedNet", "object", "Net"])
    init = ["super().__init__()"]
    for i in range(r.randint(0, 5)):
        init.append(r.choice([
            f"self.layer{i} = {module_expr(r)}",
            f"self.layers = [nn.Linear(4, 4) for _ in range({i + 1})]",
            f"self.heads = {{'a': nn.Linear(4, 2)}}",
            f"self.blocks = nn.ModuleList([nn.Linear(4, 4)])",
            f"self.w = torch.randn(4, 4, requires_grad=True)",
            f"self.v = nn.Parameter(torch.zeros(4)).double()",
            f"self.scale = nn.Parameter(torch.ones(1))",
            f"self.layers.append(nn.Linear(4, 4))",
        ]))
    fwd = [r.choice([
        "x = self.layer0(x)", "x = nn.Linear(4, 4)(x)", "x = F.relu(x)", "x = x @ self.w",
        "for layer in self.layers:\n        x = layer(x)", "x = self.blocks[0](x)",
    ]) for _ in range(r.randint(0, 4))]
    lines = [f"class {name}({base}):", "    def __init__(self):"]
    lines += ["        " + s for s in init]
    lines += ["", "    def forward(self, x):"]
    lines += ["        " + s for s in fwd] + ["        return x"]
    return lines


def trainer_def(r):
    lines = ["class Trainer:", "    def __init__(self, model):", "        self.model = model",
             f"        self.optimizer = {r.choice(OPT_CLASSES)}({params_expr(r)}, lr=1e-3)",
             "        self.criterion = nn.MSELoss()", "", "    def train_step(self, x, y):"]
    lines += ["        " + b for b in block(r, 1)]
    return lines


def training_program(r) -> str:
    lines = r.sample(IMPORTS, r.randint(0, 7))
    for _ in range(r.randint(0, 3)):
        lines += [""] + class_def(r)
    if (r.random() < 0.5):
        lines += [""] + trainer_def(r)
    if (r.random() < 0.5):
        lines += ["", f"def {r.choice(['train', 'fit', 'entraîner', 'main'])}(model, loader, accumulate=2):"]
        lines += ["    " + b for b in block(r, 1)]
    lines += [""] + block(r, 0)
    if (r.random() < 0.5):
        lines += ["", 'if __name__ == "__main__":', "    main()"]
    return "\n".join(lines) + r.choice((["\n", "", "\n\n"]))


# -- mutations -----------------------------------------------------------------------------------

def seed_texts() -> list[str]:
    texts = [p.read_text(encoding="utf-8") for p in sorted(FIXTURES.rglob("*.py"))]
    try:
        from gen_corpus import generate
        texts.append(generate(200, seed=3))
        texts.append(generate(120, seed=4))
    except Exception:  # pragma: no cover - benchmarks/ missing in a partial checkout
        pass
    return texts


JUNK = ["(", ")", "[", "]", "{", "}", ":", "\n", "    ", "\t", "\x00", "\r", "'''", '"""', '"', "'",
        "#", "\\", "\\\n", "é", "😀", "\u0301", "𝔘𝔫𝔦", "中文", "\ud800", "\udfff", "\ufeff", "\u2028",
        "\x0c", "\x1b", "lambda", "yield", "def ", "class ", "async ", "await ", "return", ",", ".",
        "=", "+=", ":=", "->", "**", "@", "...", "if", "else", "0x", "1e", "f'{", "}'", "b'\\x",
        ".backward()", ".step()", ".zero_grad()", "optim.Adam([])", "with torch.no_grad():\n    ",
        "model.parameters", "\n    ", "\n        ", "\ndef f(:\n", "match x:\n    case 1:\n        pass\n"]


def _deep_nest(kind: str, depth: int, inner: str) -> str:
    if kind == "parens":
        return "x = " + "(" * depth + "1" + ")" * depth + "\n" + inner
    if kind == "lists":
        return "x = " + "[" * depth + "]" * depth + "\n" + inner
    if kind == "unary":
        return "x = " + "-" * depth + "1\n" + inner
    if kind == "binop":
        return "x = " + " + ".join(["a"] * depth) + "\n" + inner
    if kind == "attr":
        return "x = a" + ".b" * depth + "\n" + inner
    if kind == "calls":
        return "x = " + "f(" * depth + ")" * depth + "\n" + inner
    head = {"if": "if x:", "def": "def f():", "class": "class C:", "with": "with a:",
            "for": "for i in r:", "defif": None}[kind]
    lines = []
    for i in range(depth):
        h = head or ("def f%d():" % i if i % 2 else "if x:")
        lines.append("    " * i + h)
    body = inner.splitlines() or ["pass"]
    lines += ["    " * depth + b for b in body]
    return "\n".join(lines) + "\n"


def mutated_program(r, seeds: list[str], heavy: float = 1.0) -> str:
    """1-4 mutations of a seed (or of a generated program). `heavy` scales how often the costly
    ones (deep expressions, huge literals, repetition) are picked: the suite uses 0.25."""
    text = r.choice((seeds)) if r.randint(0, 3) else training_program(r)
    for _ in range(r.randint(1, 4)):
        op = r.randint(0, 15)
        if op in (9, 10, 15) and r.random() > heavy:
            op = r.randint(0, 8)
        n = len(text)
        if op == 0 and n:  # truncate
            text = text[:r.randint(0, n)]
        elif op == 1 and n:  # delete a range
            a = r.randint(0, n)
            b = min(n, a + r.randint(1, 80))
            text = text[:a] + text[b:]
        elif op in (2, 3):  # insert junk
            a = r.randint(0, n)
            text = text[:a] + r.choice((JUNK)) + text[a:]
        elif op == 4:  # duplicate or swap lines
            lines = text.split("\n")
            i, j = r.randint(0, len(lines) - 1), r.randint(0, len(lines) - 1)
            if (r.random() < 0.5):
                lines.insert(j, lines[i])
            else:
                lines[i], lines[j] = lines[j], lines[i]
            text = "\n".join(lines)
        elif op == 5:
            text = text.replace("\n", r.choice((["\r\n", "\r"])))
        elif op == 6:
            text = text.replace("    ", "\t")
        elif op == 7:
            for a, b in [("model", "模型"), ("optimizer", "optimiseur"), ("loss", "lôss"), ("x", "𝔵")]:
                if (r.random() < 0.5):
                    text = text.replace(a, b)
        elif op == 8:
            kind = r.choice((["if", "def", "class", "with", "for", "defif"]))
            text = _deep_nest(kind, r.randint(1, 60), text)
        elif op == 9:
            kind = r.choice((["parens", "lists", "unary", "binop", "attr", "calls"]))
            text = _deep_nest(kind, r.choice(([10, 100, 250, 1000, 3000])), text)
        elif op == 10:  # huge literals
            lit = r.choice(([
                "s = '" + "a" * 100_000 + "'\n", "n = " + "9" * 5000 + "\n", "n = " + "9" * 4000 + "\n",
                "xs = [" + ", ".join(["1"] * 10_000) + "]\n", "d = {" + ", ".join(f"{i}: {i}" for i in range(3000)) + "}\n",
                "t = '''" + "line\n" * 5000 + "'''\n", "b = b'" + "\\x00" * 20000 + "'\n"]))
            a = r.choice(([0, n]))
            text = text[:a] + lit + text[a:]
        elif op == 11:
            text = "\ufeff" + text if (r.random() < 0.5) else text + "\x00" * r.randint(1, 5)
        elif op == 12 and n:  # strip a trailing newline / add trailing spaces
            text = text.rstrip("\n") + r.choice((["", "   ", "\\", "  # end"]))
        elif op == 13:  # random unicode soup somewhere
            a = r.randint(0, n)
            text = text[:a] + _unicode_soup(r) + text[a:]
        elif op == 14:  # dedent or indent a random line
            lines = text.split("\n")
            i = r.randint(0, len(lines) - 1)
            lines[i] = lines[i].lstrip() if (r.random() < 0.5) else "  " + lines[i]
            text = "\n".join(lines)
        elif op == 15:  # repeat the program (long files)
            text = text * r.randint(2, 8)
    return text


def _unicode_soup(r) -> str:
    pools = [(0x20, 0x7e), (0xa0, 0x2ff), (0x300, 0x36f), (0x4e00, 0x4e80), (0x1f600, 0x1f64f),
             (0x1d400, 0x1d47f), (0xd800, 0xdfff), (0x0, 0x1f), (0x2028, 0x202e), (0xfff0, 0xffff)]
    out = []
    for _ in range(r.randint(0, 20)):
        a, b = r.choice(pools)
        out.append(chr(r.randint(a, b)))
    return "".join(out)


# Hypothesis strategies. Generation is driven by a seeded random.Random (one integer drawn per
# example): ~20x faster than drawing every choice through hypothesis, at the price of shrinking.
def programs():
    return st.integers(0, 2**63).map(lambda seed: training_program(random.Random(seed)))


def mutants(seeds: list[str], heavy: float = 1.0):
    return st.integers(0, 2**63).map(lambda seed: mutated_program(random.Random(seed), seeds, heavy))


# -- what must hold ------------------------------------------------------------------------------

def _lines_of(result) -> list[str]:
    return result.source.lines


def span_within(span, lines: list[str]) -> bool:
    n = len(lines)
    if not (1 <= span.line <= n and 1 <= span.end_line <= n):
        return False
    if span.col < 0 or span.end_col < 0:
        return False
    if (span.line, span.col) > (span.end_line, span.end_col):
        return False
    return span.col <= len(lines[span.line - 1]) and span.end_col <= len(lines[span.end_line - 1])


def check_result(text: str, result) -> None:
    """Assertions every analysis result must satisfy, whatever the input."""
    from gradpath.analysis.findings import Finding
    lines = _lines_of(result)
    # the source the positions refer to is the input, give or take NUL->space, a leading BOM and
    # lone surrogates (each replaced one for one)
    expected_len = len(text) - (1 if text.startswith("\ufeff") else 0)
    assert len(result.source.text) == expected_len, "the analysed text lost or gained characters"
    for f in result.findings:
        assert isinstance(f, Finding)
        assert f.code.startswith("GP"), f.code
        assert f.severity in ("error", "warning", "info"), f.severity
        assert isinstance(f.message, str) and f.message
        assert span_within(f.span, lines), f"{f.code} span {f.span} outside the text ({len(lines)} lines)"
        for r in f.related:
            assert span_within(r.span, lines), f"{f.code} related span {r.span} outside the text"
        for fx in f.fixes:
            for e in fx.edits:
                assert span_within(e.span, lines), f"{f.code} fix edit {e.span} outside the text"
        json.dumps(f.to_dict())
