"""The gradient-flow picture's cost: the per-tensor table the worker builds after a live step
(flowtable.build, timed inside the worker), its size on the wire, and the time to turn it into the
view model, HTML, SVG and PNG. Three programs: the README's fixture (13 tensors), a 12-layer
Transformer encoder (146 tensors, 9.5 M parameters) and a 140-block CNN (cut at 400 tensors).
Prints figures; asserts nothing.

    .venv/bin/python benchmarks/bench_flow_report.py
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "server"))

from gradpath.analysis import analyze  # noqa: E402
from gradpath.live.report.html import render_html  # noqa: E402
from gradpath.live.report.png import render_png  # noqa: E402
from gradpath.live.report.svg import render_svg  # noqa: E402
from gradpath.live.report.view import flow_view  # noqa: E402
from gradpath.live.service import LiveService  # noqa: E402

TRANSFORMER = """
import torch
import torch.nn as nn

layer = nn.TransformerEncoderLayer(d_model=256, nhead=8, dim_feedforward=512, batch_first=True)
model = nn.Sequential(nn.TransformerEncoder(layer, num_layers=12, enable_nested_tensor=False), nn.Linear(256, 10))
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
for step in range(2):
    x = torch.randn(8, 32, 256)
    loss = model(x).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
"""

CNN = """
import torch
import torch.nn as nn

blocks = [nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU()) for i in range(140)]
model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), *blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))
opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
for step in range(2):
    x = torch.randn(4, 3, 16, 16)
    loss = nn.functional.cross_entropy(model(x), torch.randint(0, 10, (4,)))
    opt.zero_grad()
    loss.backward()
    opt.step()
"""


def ms(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000, 1)


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="gp-flow-bench-"))
    programs = [("fixture (README image)", ROOT / "fixtures" / "gp1" / "gp102_flow_partly_optimized.py")]
    for name, src in (("transformer", TRANSFORMER), ("cnn", CNN)):
        p = tmp / f"{name}.py"
        p.write_text(textwrap.dedent(src))
        programs.append((name, p))
    print(f"gradpath flow-report benchmark, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
          f"{os.cpu_count()} cores, load {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with LiveService(timeout_s=60) as svc:
        svc.wait_ready()
        print(f"{'program':24} {'tensors':>7} {'params':>10} {'step ms':>8} {'table ms':>8} {'JSON KB':>8} "
              f"{'view ms':>7} {'html ms':>7} {'svg ms':>6} {'png ms':>6} {'png KB':>6}")
        for name, path in programs:
            text = path.read_text()
            findings = analyze(text, str(path)).findings
            runs = []
            for _ in range(3):
                rep = svc.confirm(str(path), text, findings)
                runs.append(rep)
            rep = runs[-1]
            table = rep.run.get("flow") or {}
            rows = table.get("rows") or []
            build = sorted(r.run["flow"]["build_ms"] for r in runs)[1]
            step = sorted(r.run["timings"]["script_ms"] or 0 for r in runs)[1]
            size = len(json.dumps(table)) / 1024
            t0 = time.perf_counter()
            v = flow_view(table, findings, title=path.name)
            t_view = ms(t0)
            t0 = time.perf_counter()
            render_html([v])
            t_html = ms(t0)
            t0 = time.perf_counter()
            render_svg(v)
            t_svg = ms(t0)
            out = tmp / f"{name}.png"
            t0 = time.perf_counter()
            render_png(v, str(out))
            t_png = ms(t0)
            params = sum(r["numel"] for r in rows)
            print(f"{name:24} {len(rows):>7} {params:>10,} {step:>8} {build:>8} {size:>8.1f} {t_view:>7} {t_html:>7} "
                  f"{t_svg:>6} {t_png:>6} {out.stat().st_size / 1024:>6.1f}"
                  + ("  (table cut at 400)" if table.get("truncated") else ""))
            print(f"    summary: {v['summary']}")


if __name__ == "__main__":
    main()
