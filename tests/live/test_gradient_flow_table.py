"""The live step's per-tensor table (flowtable.py in the worker) with real torch: names with the full
module path, grad norm None / 0 / finite / non-finite, |dw|/|w| after the step, requires_grad, the
optimizer, registration and the line where each owning layer is built."""
from __future__ import annotations

import math

import pytest

from gradpath.live.report.view import flow_view
from live_helpers import ROOT, line_of, write

pytestmark = pytest.mark.live

FLOW_FIXTURE = ROOT / "fixtures" / "gp1" / "gp102_flow_partly_optimized.py"


def _rows(report) -> dict:
    table = report.run["flow"]
    assert table and table["rows"], report.run
    return {r["name"]: r for r in table["rows"]}


def test_partly_optimized_autoencoder(live):
    text = FLOW_FIXTURE.read_text()
    report = live.confirm(str(FLOW_FIXTURE), text, [])
    table = report.run["flow"]
    rows = _rows(report)
    assert list(rows) == ["scale", "encoder.embed.weight", "encoder.embed.bias", "encoder.layers.0.weight",
                          "encoder.layers.0.bias", "encoder.layers.2.weight", "encoder.layers.2.bias",
                          "decoder.proj.weight", "decoder.proj.bias", "decoder.out.weight", "decoder.out.bias",
                          "decoder.refine.weight", "decoder.refine.bias"]
    assert table["steps"] == 1 and table["backward"] == 1 and table["mode"] == "script"
    assert table["roots"] == [{"class": "AutoEncoder", "line": line_of(text, "model = AutoEncoder()"), "var": "model",
                               "in_forward": False, "training": True, "modules": table["roots"][0]["modules"]}]
    assert table["roots"][0]["modules"]["encoder.layers"] == ["Sequential", line_of(text, "self.layers = nn.Sequential")]
    assert table["optimizers"] == [{"label": "Adam", "class": "Adam", "line": line_of(text, "torch.optim.Adam("),
                                    "steps": 1, "tensors": 6}]
    enc = rows["encoder.layers.2.weight"]
    assert enc["owner"] == "encoder.layers.2" and enc["owner_class"] == "Linear"
    assert enc["line"] == line_of(text, "self.layers = nn.Sequential")
    assert enc["shape"] == [8, 32] and enc["numel"] == 256 and enc["registered"] is True and enc["kind"] == "parameter"
    assert enc["grad_state"] == "finite" and enc["grad"] > 0
    assert enc["optimizers"] == [] and enc["changed"] is False and enc["update"] == 0.0
    out = rows["decoder.out.weight"]
    assert out["optimizers"] == ["Adam"] and out["optimizer_classes"] == ["Adam"] and out["changed"] is True
    # Adam's first step moves every weight by about lr: |dw|/|w| is about lr * sqrt(n) / |w|
    assert 1e-3 < out["update"] < 1.0
    assert rows["decoder.proj.weight"]["requires_grad"] is False and rows["decoder.proj.weight"]["grad_state"] == "none"
    assert rows["decoder.refine.bias"]["grad_state"] == "none" and rows["decoder.refine.bias"]["optimizers"] == ["Adam"]
    assert rows["decoder.refine.bias"]["line"] == line_of(text, "self.refine = nn.Linear")
    assert rows["scale"]["grad_state"] == "zero" and rows["scale"]["grad"] == 0.0
    assert rows["scale"]["owner"] == "" and rows["scale"]["line"] == line_of(text, "model = AutoEncoder()")
    v = flow_view(table)
    assert v["summary"] == "3 of 13 tensors updated; 7 never reach Adam: encoder.*, scale; 1 frozen, 2 without a gradient"


def test_non_finite_unregistered_and_bare_tensors(live, tmp_path):
    path, text = write(tmp_path, "odd.py", """
        import torch
        import torch.nn as nn


        class Odd(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(4, 4)
                self.blocks = [nn.Linear(4, 4)]
                self.extra = torch.randn(4, requires_grad=True)
                self.origin = nn.Parameter(torch.zeros(4))

            def forward(self, x):
                h = self.blocks[0](self.fc(x)) + self.extra
                return h.sum() + torch.sqrt((self.origin ** 2).sum())


        model = Odd()
        temperature = torch.ones(1, requires_grad=True)
        opt = torch.optim.SGD(list(model.parameters()) + [temperature], lr=0.1)
        loss = model(torch.randn(2, 4)) * temperature
        opt.zero_grad()
        loss.sum().backward()
        opt.step()
    """)
    report = live.confirm(str(path), text, [])
    rows = _rows(report)
    assert rows["origin"]["grad_state"] == "nonfinite" and rows["origin"]["grad"] == "nan"
    assert math.isnan(float(rows["origin"]["update"])) and rows["origin"]["changed"] is True
    assert rows["blocks[0].weight"]["registered"] is False and rows["blocks[0].weight"]["kind"] == "held-module"
    assert rows["blocks[0].weight"]["optimizers"] == [] and rows["blocks[0].weight"]["grad_state"] == "finite"
    assert rows["blocks[0].weight"]["line"] == line_of(text, "self.blocks = [nn.Linear")
    assert rows["extra"]["kind"] == "plain-tensor" and rows["extra"]["registered"] is False
    assert rows["fc.bias"]["changed"] is True and rows["fc.bias"]["optimizers"] == ["SGD"]
    assert rows["temperature"]["kind"] == "bare-tensor" and rows["temperature"]["root"] is None
    assert rows["temperature"]["optimizers"] == ["SGD"] and rows["temperature"]["changed"] is True
    v = flow_view(report.run["flow"])
    flags = {r["name"]: r["flags"] for r in v["rows"]}
    assert flags["origin"] == ["nonfinite"]
    assert flags["blocks[0].weight"] == ["no-optimizer", "unchanged", "unregistered"]
    assert flags["extra"] == ["no-optimizer", "unchanged", "unregistered"]
    assert v["summary"].startswith("4 of 7 tensors updated; 3 never reach SGD: ")
    assert "1 non-finite" in v["summary"] and "3 not registered" in v["summary"]


def test_confirm_report_cli(tmp_path):
    """`gradpath confirm --report`: one HTML file for every file's step, a PNG and an SVG of one step."""
    import subprocess
    import sys

    other = ROOT / "fixtures" / "gp1" / "gp103_encoder_not_optimized.py"
    html = tmp_path / "report.html"
    r = subprocess.run([sys.executable, "-m", "gradpath", "confirm", str(FLOW_FIXTURE), str(other), "--report",
                        str(html)], capture_output=True, text=True, timeout=180, cwd=tmp_path)
    assert r.returncode == 1, r.stderr  # findings
    assert f"gradient-flow report: {html} (2 file(s), 17 tensors)" in r.stderr
    text = html.read_text()
    assert text.count('<tr class="tensor') == 17 and "http" not in text.lower()
    assert "3 of 13 tensors updated; 7 never reach Adam: encoder.*, scale" in text
    assert "2 of 4 tensors updated; 2 never reach Adam: Encoder.*" in text
    png = tmp_path / "flow.png"
    r = subprocess.run([sys.executable, "-m", "gradpath", "confirm", str(FLOW_FIXTURE), "--format", "json",
                        "--report", str(png)], capture_output=True, text=True, timeout=180, cwd=tmp_path)
    assert r.returncode == 1, r.stderr
    assert "gradient-flow image" in r.stderr and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import json
    assert "flow" not in json.loads(r.stdout)["run"]  # the table goes to the report, not the JSON
    r = subprocess.run([sys.executable, "-m", "gradpath", "confirm", str(FLOW_FIXTURE), "--report",
                        str(tmp_path / "x.pdf")], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert r.returncode == 2 and "must end in .html, .svg or .png" in r.stderr


def test_modules_that_took_no_part_are_listed_apart(live, tmp_path):
    """A template layer that nn.TransformerEncoder-style code deep-copies is not 'never reaching Adam'."""
    path, text = write(tmp_path, "template.py", """
        import copy
        import torch
        import torch.nn as nn

        block = nn.Linear(4, 4)
        model = nn.Sequential(copy.deepcopy(block), nn.ReLU(), copy.deepcopy(block))
        opt = torch.optim.Adam(model.parameters(), lr=0.1)
        loss = model(torch.randn(2, 4)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    """)
    table = live.confirm(str(path), text, []).run["flow"]
    assert [r["name"] for r in table["rows"]] == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert table["unused_roots"] == [{"class": "Linear", "line": line_of(text, "block = nn.Linear"), "var": "block",
                                      "tensors": 2}]
    assert flow_view(table)["summary"] == "4 of 4 tensors updated"


def test_nothing_took_part_keeps_every_tensor(live, tmp_path):
    path, text = write(tmp_path, "empty_opt.py", """
        import torch
        import torch.nn as nn

        model = nn.Linear(4, 2)
        opt = torch.optim.SGD([], lr=0.1)
    """)
    rep = live.confirm(str(path), text, [])
    assert rep.run["status"] == "exception"
    table = rep.run["flow"]
    assert [r["name"] for r in table["rows"]] == ["weight", "bias"] and table["unused_roots"] == []
    assert table["optimizers"] == [] and table["steps"] == 0
    assert flow_view(table)["summary"] == "no optimizer was built: none of the 2 tensors can be updated"


def test_a_big_model_is_cut_at_400_rows_and_says_so(live, tmp_path):
    path, text = write(tmp_path, "deep.py", """
        import torch
        import torch.nn as nn

        model = nn.Sequential(*[nn.Linear(2, 2) for _ in range(225)])
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        loss = model(torch.randn(3, 2)).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    """)
    table = live.confirm(str(path), text, []).run["flow"]
    assert table["truncated"] is True and table["tensors_seen"] == 450 and len(table["rows"]) == 400
    assert table["rows"][-1]["name"] == "199.bias" and all(r["root"] == 0 for r in table["rows"])
    v = flow_view(table)
    assert v["summary"].endswith("tensors updated (the first 400 of 450 tensors)"), v["summary"]
