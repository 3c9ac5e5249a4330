"""The Gradient flow view in a real VS Code (code-server 4.100.3 with the built .vsix, headless Chromium):
a live CPU step from the code lens on a partly optimized autoencoder (real torch), the view opened from
the "Gradient flow" lens, its rows, flags, legend and summary read from the webview's real DOM, a row
clicked and one activated with Enter reveal the lines where those layers are built, a finding's link
goes to the finding, the command palette opens it, and it follows the theme (screenshots in dark and
light: artifacts/e2e/gradient-flow/)."""
from __future__ import annotations

import json
import shutil
import subprocess
import time

import pytest

from e2e_helpers import E2E, ROOT, VENV_PYTHON, artifacts_dir, code_server, require

pytestmark = [pytest.mark.e2e, pytest.mark.live]

FIXTURE = ROOT / "fixtures" / "gp1" / "gp102_flow_partly_optimized.py"
SUMMARY = "3 of 13 tensors updated; 7 never reach Adam: encoder.*, scale; 1 frozen, 2 without a gradient"


def run_flow_driver(shots, cfg: dict, timeout: float = 300) -> dict:
    t0 = time.monotonic()
    r = subprocess.run(["node", str(E2E / "flow_driver.js"), json.dumps(cfg)], capture_output=True, text=True,
                       cwd=E2E, timeout=timeout)
    lines = [line for line in r.stdout.splitlines() if line.startswith("{")]
    assert lines, f"driver printed no report (exit {r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    report = json.loads(lines[-1])
    report["driver_s"] = round(time.monotonic() - t0, 2)
    (shots / "report.json").write_text(json.dumps(report, indent=2))
    return report


def line_of(lines: list[str], needle: str) -> int:
    return next(i for i, text in enumerate(lines, 1) if needle in text)


def test_gradient_flow_view(tmp_path, vsix, code_server_bin, node_modules):
    require(VENV_PYTHON, "the project's .venv")
    ws = tmp_path / "workspace"
    ws.mkdir()
    bug = ws / "autoencoder.py"
    shutil.copy(FIXTURE, bug)
    lines = bug.read_text().splitlines()
    layers_line = line_of(lines, "self.layers = nn.Sequential(")
    refine_line = line_of(lines, "self.refine = nn.Linear(")
    finding_line = line_of(lines, "torch.optim.Adam(model.decoder.parameters()")
    shots = artifacts_dir("gradient-flow")
    settings = {"gradpath.interpreter": str(VENV_PYTHON), "gradpath.trace.server": "messages",
                "workbench.colorTheme": "Default Dark Modern"}
    with code_server(tmp_path, code_server_bin, vsix, settings, shots) as cs:
        url = cs.start(ws)
        report = run_flow_driver(shots, {"url": url, "file": str(bug), "shots": str(shots), "timeoutMs": 90000,
                                         "revealRow": "encoder.layers.2.weight", "revealLine": layers_line,
                                         "keyboardRow": "decoder.refine.bias", "keyboardLine": refine_line,
                                         "findingLine": finding_line,
                                         "settingsFile": str(cs.user / "User" / "settings.json")})
    assert report["ok"], f"{report.get('error')}\nscreenshots: {shots}\nconsole: {report['console'][-10:]}"

    # opened from the lens that appears after the step, beside the editor
    assert report["flowLens"].strip() == "Gradient flow (3 of 13 tensors updated)", report["flowLens"]
    assert "Gradient flow" in report["statusItem"]
    assert "autoencoder.py" in report["panelTab"], report["panelTab"]

    dark = report["dark"]
    assert dark["summary"] == SUMMARY
    rows = {r["qualname"]: r for r in dark["rows"]}
    assert len(dark["rows"]) == 13, [r["qualname"] for r in dark["rows"]]
    assert rows["encoder.embed.weight"]["flags"] == ["no-optimizer", "unchanged"]
    assert rows["scale"]["flags"] == ["no-optimizer", "zero-grad", "unchanged"]
    assert rows["decoder.proj.weight"]["flags"] == ["frozen"]
    assert rows["decoder.refine.weight"]["flags"] == ["no-grad", "unchanged"]
    assert rows["decoder.out.bias"]["flags"] == []
    # the subjects of GP102 (the tensors that never reach Adam) are highlighted and link to it
    subjects = sorted(q for q, r in rows.items() if r["subject"])
    assert subjects == sorted(["scale"] + [f"encoder.{m}.{w}" for m in ("embed", "layers.0", "layers.2")
                                           for w in ("weight", "bias")]), subjects
    assert all(r["links"] == ["GP102"] for r in rows.values() if r["subject"])
    assert all(r["tabindex"] == "0" for r in rows.values())
    assert float(rows["decoder.out.weight"]["gradBar"].rstrip("%")) > 0
    assert rows["decoder.refine.weight"]["gradBar"] in ("0%", "0px", "")
    assert "gradient norm None" in rows["decoder.refine.weight"]["aria"]
    # grouped by the module tree
    assert any(g.startswith("encoder Encoder") for g in dark["groups"]), dark["groups"]
    assert any(g.startswith("layers Sequential") and f"line {layers_line}" in g for g in dark["groups"]), dark["groups"]
    legend = " | ".join(dark["legend"])
    for text in ("not in any optimizer (7)", "frozen (requires_grad=False) (1)", "no gradient (None) (2)",
                 "zero gradient (1)", "non-finite (NaN/inf) (0)", "unchanged after the step (9)",
                 "not registered in parameters() (0)", "subject of a finding"):
        assert text in legend, legend
    # strict CSP, nothing from the network
    assert dark["csp"].startswith("default-src 'none'; script-src 'nonce-"), dark["csp"]
    ours = [s for s in dark["scripts"] if s["src"]]  # (VS Code injects its own inline host script)
    assert len(ours) == 1 and ours[0]["nonce"] and ours[0]["src"].endswith("/dist/flowView.js"), dark["scripts"]
    assert ".vscode-resource." in ours[0]["src"]  # served by the editor from the extension, not fetched
    assert not [c for c in report["console"] if "Content Security Policy" in c], report["console"]

    # a click and Enter reveal the defining lines; the finding's link goes to the finding
    assert report["cursorAfterClick"].startswith(f"Ln {layers_line},"), report["cursorAfterClick"]
    assert "autoencoder.py" in report["activeTab"]
    assert report["cursorAfterEnter"].startswith(f"Ln {refine_line},"), report["cursorAfterEnter"]
    assert report["cursorAfterFindingLink"].startswith(f"Ln {finding_line},"), report["cursorAfterFindingLink"]

    # it follows the theme
    light = report["light"]
    assert "vscode-dark" in dark["bodyClass"] and "vscode-light" in light["bodyClass"]
    assert dark["background"] != light["background"] and dark["foreground"] != light["foreground"]
    assert light["summary"] == SUMMARY and len(light["rows"]) == 13

    # the live-step hover links to the view
    assert any("gradient flow" in (a["text"] or "").lower() for a in report["hoverLinks"]), report["hoverLinks"]
    names = [p.split("/")[-1] for p in report["shots"]]
    assert any("gradient-flow-dark" in n for n in names) and any("gradient-flow-light" in n for n in names)

