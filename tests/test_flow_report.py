"""The gradient-flow picture outside the editor (gradpath.live.report): the view model (flags, module
tree, log-scale bars, summary line, finding subjects), the self-contained HTML report, the SVG and the
PNG. Input: a table in the worker's format (flowtable.py); tests/live/ checks the worker makes it."""
from __future__ import annotations

import re
import struct
import xml.etree.ElementTree as ET
import zlib
from html.parser import HTMLParser

import pytest

from gradpath.live.report.html import render_html
from gradpath.live.report.layout import WIDTH, layout
from gradpath.live.report.output import ReportError, write_report
from gradpath.live.report.png import render_png
from gradpath.live.report.svg import render_svg
from gradpath.live.report.view import LogScale, flow_view


def _row(name, root=0, grad=0.1, update=0.01, changed=True, optimizers=("Adam",), requires_grad=True,
         registered=True, kind="parameter", line=10, owner_class="Linear", shape=(4, 4)):
    state = "none" if grad is None else ("nonfinite" if isinstance(grad, str) else ("zero" if grad == 0 else "finite"))
    return {"root": root, "name": name, "owner": name.rsplit(".", 1)[0] if "." in name else "",
            "owner_class": owner_class, "line": line, "shape": list(shape), "numel": 16,
            "requires_grad": requires_grad, "registered": registered, "kind": kind, "grad": grad, "grad_state": state,
            "update": update, "changed": changed, "optimizers": list(optimizers),
            "optimizer_classes": sorted({o.split("#")[0] for o in optimizers}), "in_forward": False}


def table() -> dict:
    rows = [
        _row("encoder.layers.0.attn.q_proj.weight", grad=0.3, update=0.0, changed=False, optimizers=(), line=12),
        _row("encoder.layers.0.attn.q_proj.bias", grad=0.02, update=0.0, changed=False, optimizers=(), line=12),
        _row("encoder.norm.weight", grad=None, update=0.0, changed=False, optimizers=(), requires_grad=False, line=14),
        _row("decoder.fc.weight", grad=1.5, update=0.004, line=20),
        _row("decoder.fc.bias", grad=0.0, update=0.0, changed=False, line=20),
        _row("decoder.gate", grad="nan", update="nan", changed=True, owner_class="Decoder", line=30),
        _row("decoder.blocks[0].weight", grad=0.5, update=0.0, changed=False, optimizers=(), registered=False,
             kind="held-module", line=22),
        _row("head.weight", grad=None, update=0.0, changed=False, line=25),
    ]
    return {"version": 1, "roots": [{"class": "Seq2Seq", "line": 40, "var": "model", "in_forward": False,
                                     "training": True, "modules": {"": ["Seq2Seq", 40], "encoder": ["Encoder", 41]}}],
            "rows": rows, "optimizers": [{"label": "Adam", "class": "Adam", "line": 45, "steps": 1, "tensors": 4}],
            "steps": 1, "backward": 1, "iterations": 1, "model_only": False, "truncated": False, "mode": "script"}


FINDING = {"id": "GP102:45:12", "code": "GP102", "message": "Adam gets 4 of 8 tensors of model",
           "line": 45, "col": 12, "end_line": 45, "end_col": 40, "data": {}}


def view():
    return flow_view(table(), [FINDING], title="train.py")


def test_flags_summary_and_subjects():
    v = view()
    flags = {r["name"]: r["flags"] for r in v["rows"]}
    assert flags == {
        "encoder.layers.0.attn.q_proj.weight": ["no-optimizer", "unchanged"],
        "encoder.layers.0.attn.q_proj.bias": ["no-optimizer", "unchanged"],
        "encoder.norm.weight": ["frozen"],
        "decoder.fc.weight": [],
        "decoder.fc.bias": ["zero-grad", "unchanged"],
        "decoder.gate": ["nonfinite"],
        "decoder.blocks[0].weight": ["no-optimizer", "unchanged", "unregistered"],
        "head.weight": ["no-grad", "unchanged"],
    }
    assert v["summary"] == ("2 of 8 tensors updated; 3 never reach Adam: encoder.layers.*, decoder.blocks[0].weight; "
                            "1 frozen, 1 without a gradient, 1 non-finite, 1 not registered")
    subjects = [r["name"] for r in v["rows"] if r["findings"]]
    assert subjects == ["encoder.layers.0.attn.q_proj.weight", "encoder.layers.0.attn.q_proj.bias",
                        "decoder.blocks[0].weight"]
    assert [f["id"] for f in v["findings"]] == ["GP102:45:12"]
    legend = {x["flag"]: x["count"] for x in v["legend"]}
    assert legend == {"no-optimizer": 3, "frozen": 1, "no-grad": 1, "zero-grad": 1, "nonfinite": 1, "unchanged": 5,
                      "unregistered": 1}


def test_module_tree_groups():
    v = view()
    groups = [(it["depth"], it["path"], it["class"]) for it in v["items"] if it["type"] == "group"]
    assert groups[:5] == [(0, "", "Seq2Seq"), (1, "encoder", "Encoder"), (2, "encoder.layers", None),
                          (3, "encoder.layers.0", None), (4, "encoder.layers.0.attn", None)]
    assert (5, "encoder.layers.0.attn.q_proj", "Linear") in groups
    assert (2, "decoder.blocks[0]", "Linear") in groups
    rows_in_order = [v["rows"][it["index"]]["name"] for it in v["items"] if it["type"] == "row"]
    assert rows_in_order == [r["name"] for r in table()["rows"]]


def test_summary_without_optimizer_or_step():
    t = table()
    t["optimizers"] = []
    assert flow_view(t)["summary"] == "no optimizer was built: none of the 8 tensors can be updated"
    t = table()
    t["steps"] = 0
    for r in t["rows"]:
        r["changed"] = False
    assert flow_view(t)["summary"].startswith("no optimizer step ran: 0 of 8 tensors updated; 3 never reach Adam")


def test_log_scale():
    s = LogScale([1e-4, 0.3, 2.0, None, 0.0, float("nan")])
    assert (s.lo, s.hi) == (-4, 1)
    fr = [s.frac(x) for x in (1e-4, 1e-3, 0.3, 2.0)]
    assert fr == sorted(fr) and fr[0] == pytest.approx(0.04) and fr[-1] < 1.0
    assert s.frac(0.0) == 0.0 and s.frac(None) is None and s.frac(float("inf")) == 1.0
    assert LogScale([None, 0.0]).frac(1.0) is None
    assert [t["label"] for t in s.ticks()] == ["1e-4", "1e-3", "1e-2", "1e-1", "1e0", "1e1"]


class _Tags(HTMLParser):
    VOID = {"meta", "br", "img", "input", "link", "hr", "rect", "line"}

    def __init__(self):
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.tensor_rows: list[dict] = []
        self.tags: set[str] = set()
        self.attrs_with_urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        a = dict(attrs)
        for k, val in attrs:
            if k in ("src", "href") and val and not val.startswith("#"):
                self.attrs_with_urls.append(f"{tag} {k}={val}")
        if tag == "tr" and "tensor" in (a.get("class") or "").split():
            self.tensor_rows.append(a)
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.tags.add(tag)

    def handle_endtag(self, tag):
        if tag in self.VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:]}")
            return
        self.stack.pop()


def test_html_report_is_self_contained_with_one_row_per_tensor(tmp_path):
    v1, v2 = view(), flow_view(table(), [], title="other.py")
    html = render_html([v1, v2])
    p = _Tags()
    p.feed(html)
    p.close()
    assert p.errors == [] and p.stack == [], (p.errors, p.stack)
    assert len(p.tensor_rows) == 16  # every tensor of both files' steps
    assert [r["data-qualname"] for r in p.tensor_rows[:8]] == [r["name"] for r in table()["rows"]]
    assert sum("subject" in r["class"] for r in p.tensor_rows) == 3  # only the first file has the finding
    assert "http" not in html.lower()
    assert not (p.tags & {"script", "link", "img", "iframe", "object"}) and p.attrs_with_urls == []
    assert "svg" in p.tags and "@import" not in html and "url(" not in html
    assert v1["summary"] in html and "not registered in parameters()" in html
    assert html.count('class="flag flag-no-optimizer"') == 2 + 6  # a legend chip and 3 rows in each file


def test_svg_image(tmp_path):
    svg = render_svg(view())
    root = ET.fromstring(svg)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    c = layout(view())
    assert (root.get("width"), root.get("height")) == (str(WIDTH), str(c.height))
    assert c.height == 44 + 16 + 14 + 20 * 2 + 10 + 34 + 18 * len(view()["items"]) + 14  # summary on 2 lines
    texts = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert texts[1] + " " + texts[2] == view()["summary"]
    assert "weight (4, 4)" in texts and "no optimizer" in texts and "grad None" in texts
    fills = {r.get("fill") for r in root.iter("{http://www.w3.org/2000/svg}rect")}
    assert {"#c62828", "#546e7a", "#ef6c00", "#b8860b", "#ad1457", "#6a1b9a", "#1565c0"} <= fills
    assert [u for u in re.findall(r"https?://[^\"' ]+", svg) if u != "http://www.w3.org/2000/svg"] == []


def _png_chunks(data: bytes):
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos = 8
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        crc = struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])[0]
        assert zlib.crc32(kind + body) & 0xFFFFFFFF == crc
        yield kind, body
        pos += 12 + n


def test_png_image(tmp_path):
    from PIL import Image  # pinned in requirements-test.txt (the `report` extra)
    out = tmp_path / "flow.png"
    v = view()
    w, h = render_png(v, str(out))
    c = layout(v)
    assert (w, h) == (WIDTH, c.height)
    chunks = list(_png_chunks(out.read_bytes()))
    assert chunks[0][0] == b"IHDR" and struct.unpack(">II", chunks[0][1][:8]) == (w, h)
    assert chunks[-1][0] == b"IEND"
    img = Image.open(out)
    img.verify()
    img = Image.open(out).convert("RGB")
    colours = img.getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 50  # text antialiasing, bars and flags: not blank
    present = {rgb for _, rgb in colours}
    for hexc in ("#c62828", "#2f6fde", "#1a7f37", "#6a1b9a"):  # no-optimizer, grad bar, update bar, unchanged
        assert tuple(int(hexc[i:i + 2], 16) for i in (1, 3, 5)) in present, hexc
    white = next(n for n, rgb in colours if rgb == (255, 255, 255))
    assert white < 0.95 * w * h
    w2, h2 = render_png(v, str(tmp_path / "x2.png"), scale=2.0)
    assert (w2, h2) == (2 * w, 2 * h)


def test_write_report_by_extension(tmp_path):
    v = view()
    msg = write_report(str(tmp_path / "r.html"), [v])
    assert "1 file(s), 8 tensors" in msg and (tmp_path / "r.html").read_text().startswith("<!DOCTYPE html>")
    assert "train.py" in write_report(str(tmp_path / "r.svg"), [flow_view({}), v])
    assert (tmp_path / "r.svg").read_text().startswith("<svg")
    with pytest.raises(ReportError, match=r"\.html, \.svg or \.png"):
        write_report(str(tmp_path / "r.pdf"), [v])


def test_html_says_where_an_empty_step_stopped():
    v = flow_view(None, title="finetune.py", stopped="ModuleNotFoundError: No module named 'torchvision' (line 4)")
    html = render_html([v])
    assert v["summary"] == "no parameter tensors were seen" and v["rows"] == []
    assert "The run stopped at ModuleNotFoundError: No module named &#x27;torchvision&#x27; (line 4)" in html
    assert html.count('<tr class="tensor') == 0


def test_summary_patterns_for_plain_lists():
    t = table()
    t["rows"] = [_row(f"hidden[{i}].{w}", optimizers=(), changed=False, update=0.0, registered=False,
                      kind="held-module") for i in range(3) for w in ("weight", "bias")] + [_row("out.weight")]
    assert flow_view(t)["summary"] == "1 of 7 tensors updated; 6 never reach Adam: hidden[*]; 6 not registered"
