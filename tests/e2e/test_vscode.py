"""The extension users install, in a real VS Code: code-server 4.100.3 (VS Code 1.100.3) with the
built .vsix, driven in Debian's headless Chromium. Screenshots of every state: artifacts/e2e/."""
from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from e2e_helpers import ROOT, SEED, VENV_PYTHON, artifacts_dir, code_server, require, run_driver

pytestmark = pytest.mark.e2e


def cli_findings(path) -> list[dict]:
    r = subprocess.run([str(VENV_PYTHON), "-m", "gradpath", "check", "--format", "json", str(path)],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode in (0, 1), r.stderr
    return json.loads(r.stdout)


def write_notebook(path) -> None:
    """The seed split into notebook cells: the model in one, the empty optimizer in another."""
    cells = [
        "import torch\nimport torch.nn as nn\nimport torch.optim as optim",
        "class SimpleModel(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
        "        self.linear = nn.Linear(10, 1)\n\n    def forward(self, x):\n        return self.linear(x)",
        "model = SimpleModel()\noptimizer = optim.Adam([], lr=0.001)",
    ]
    nb = {"nbformat": 4, "nbformat_minor": 5,
          "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                       "language_info": {"name": "python"}},
          "cells": [{"cell_type": "code", "id": f"c{i}", "metadata": {}, "execution_count": None, "outputs": [],
                     "source": src.splitlines(keepends=True)} for i, src in enumerate(cells)]}
    path.write_text(json.dumps(nb, indent=1))


def only_gradpath_installed(cs) -> None:
    exts = cs.list_extensions()
    assert [e.split("@")[0] for e in exts] == ["gradpath.gradpath"], exts
    assert not any(e.lower().startswith("ms-python.") for e in exts)


def test_squiggle_problems_hover_quickfix_status(tmp_path, vsix, code_server_bin, node_modules):
    require(VENV_PYTHON, "the project's .venv")
    ws = tmp_path / "workspace"
    ws.mkdir()
    bug = ws / "bug.py"
    shutil.copy(SEED, bug)
    expected = [f for f in cli_findings(bug) if f["code"] == "GP101"]
    assert len(expected) == 1, expected
    gp101 = expected[0]
    source_lines = bug.read_text().splitlines()
    assert "optim.Adam([]" in source_lines[gp101["line"] - 1]

    write_notebook(ws / "bug.ipynb")
    (ws / "pipeline").mkdir()
    shutil.copy(SEED, ws / "pipeline" / "train_unopened.py")
    shots = artifacts_dir("vscode-main")
    settings = {"gradpath.interpreter": str(VENV_PYTHON), "gradpath.trace.server": "verbose"}
    with code_server(tmp_path, code_server_bin, vsix, settings, shots) as cs:
        only_gradpath_installed(cs)  # no Python extension: code-server's default
        url = cs.start(ws)
        report = run_driver({"url": url, "file": str(bug), "shots": str(shots), "scenario": "main",
                             "timeoutMs": 60000, "notebook": str(ws / "bug.ipynb"),
                             "unopened": "train_unopened.py"})
        logs = cs.extension_host_logs()
    assert report["ok"], f"{report.get('error')}\nscreenshots: {shots}\nconsole: {report['console'][-10:]}"

    # The squiggle is on the GP101 line (and only there).
    assert {s["line"] for s in report["errorSquiggles"]} == {gp101["line"]}, report["errorSquiggles"]
    assert report["warningSquiggles"] == [], report["warningSquiggles"]
    assert report["linesBefore"][str(gp101["line"])] == source_lines[gp101["line"] - 1]

    # The Problems panel lists the code at the CLI's position.
    rows = [r["text"] + " " + r["aria"] for r in report["problemRows"]]
    gp_rows = [r for r in rows if "GP101" in r]
    assert len(gp_rows) == 1, rows
    assert f"Ln {gp101['line']}, Col {gp101['column']}" in gp_rows[0], gp_rows
    assert "empty parameter list" in gp_rows[0]

    # The hover explains it: the diagnostic's message and the rule code with its source.
    hover = report["hoverText"]
    assert "GP101" in hover and "empty parameter list" in hover, hover
    # VS Code shows the diagnostic's message; Gradpath's rule card below it does not repeat it
    assert hover.count(gp101["message"]) == 1, hover
    assert "gradpath" in hover.lower(), hover

    # The live CPU step ran the script: PyTorch's ValueError confirms GP101; the status bar says so.
    live = report["statusLive"]
    assert "live: 1 confirmed" in live["text"], live
    assert any("GP101" in r and "confirmed" in r.lower() for r in report["problemRowsLive"]), report["problemRowsLive"]

    # The quick fix rewrites the line, and the diagnostic goes away.
    assert any("model.parameters()" in q["text"] for q in report["quickFixes"]), report["quickFixes"]
    assert "model.parameters()" in report["quickFixApplied"], report["quickFixApplied"]
    fixed_line = report["linesAfter"][str(gp101["line"])]
    assert fixed_line == "optimizer = optim.Adam(model.parameters(), lr=0.001)  # expect: GP101", fixed_line
    assert report["errorSquigglesAfter"] == []
    assert not any("GP101" in r for r in report["problemRowsAfter"]), report["problemRowsAfter"]
    # ... and the status bar no longer claims "live: 1 confirmed": that finding is gone
    after = report["statusAfter"]
    assert "live:" not in after["text"] and "Gradpath" in after["text"], after

    # The status bar shows the server running.
    status = report["statusRunning"]
    assert "running" in status["ariaLabel"].lower() or "running" in status["text"].lower(), status
    assert any("codicon-check" in c for c in status["icons"]), status
    assert "Gradpath" in status["text"]
    assert "running" in report["statusTooltip"], report["statusTooltip"]
    assert "gradpath serve" in report["statusTooltip"], report["statusTooltip"]

    # The notebook's cell gets the squiggle on the optimizer line, and the Problems panel lists it.
    assert report["notebookSquiggleCellText"] == "optimizer = optim.Adam([], lr=0.001)", report["notebookSquiggleCellText"]
    assert any("GP101" in r for r in report["notebookProblemRows"]), report["notebookProblemRows"]

    # Check Whole Workspace reports the file nobody opened.
    rows = report["workspaceProblemRows"]
    i = next(i for i, r in enumerate(rows) if "train_unopened.py" in r)
    assert any("GP101" in r and f"[Ln {gp101['line']}, Col {gp101['column']}]" in r for r in rows[i + 1:]), rows

    # The extension activated without an error in the extension host.
    assert "Activating extension 'gradpath.gradpath' failed" not in logs
    assert "Interpreter: " + str(VENV_PYTHON) in logs, logs[-3000:]
    assert len(report["shots"]) >= 10


def test_wrong_interpreter_without_python_extension(tmp_path, vsix, code_server_bin, node_modules):
    ws = tmp_path / "workspace"
    ws.mkdir()
    bug = ws / "bug.py"
    shutil.copy(SEED, bug)
    shots = artifacts_dir("vscode-bad-interpreter")
    bogus = "/nonexistent/gradpath-venv/bin/python3"
    with code_server(tmp_path, code_server_bin, vsix, {"gradpath.interpreter": bogus}, shots) as cs:
        only_gradpath_installed(cs)
        url = cs.start(ws)
        report = run_driver({"url": url, "file": str(bug), "shots": str(shots), "scenario": "bad-interpreter",
                             "timeoutMs": 60000, "goodPython": str(VENV_PYTHON)})
        logs = cs.extension_host_logs()
    assert report["ok"], f"{report.get('error')}\nscreenshots: {shots}\nconsole: {report['console'][-10:]}"

    # A clear notification naming the interpreter, with a button that opens the setting.
    note = report["notification"]
    assert bogus in note and "does not exist" in note and "gradpath.interpreter" in note, note
    assert "Open Setting" in report["notificationButtons"], report["notificationButtons"]
    assert "Interpreter" in report["settingsEditor"], report["settingsEditor"]
    assert "Path to the Python interpreter that has gradpath installed" in report["settingsEditor"]

    # The status bar says error; the extension stays alive: its commands and its log work.
    assert "error" in (report["statusError"]["text"] + report["statusError"]["ariaLabel"]).lower(), report["statusError"]
    assert f"Interpreter: {bogus} (from setting)" in report["outputText"], report["outputText"]
    for title in ("Gradpath: Restart Server", "Gradpath: Check Whole Workspace", "Gradpath: Show Output"):
        assert any(title in c for c in report["commandsFound"]), report["commandsFound"]
    assert "Activating extension 'gradpath.gradpath' failed" not in logs

    # Pointing the setting at a good interpreter restarts the server without reloading the window.
    assert "running" in report["statusRecovered"]["ariaLabel"].lower(), report["statusRecovered"]
    assert [s["line"] for s in report["recoveredSquiggles"]] == [22], report["recoveredSquiggles"]
    assert "Restarting the server: gradpath.interpreter changed." in logs


def _logged_json(logs: str, prefix: str) -> list[dict]:
    """The extension's own debug lines: `[debug] <prefix> {json}`."""
    out = []
    for line in logs.splitlines():
        marker = f"[debug] {prefix} "
        if marker in line:
            out.append(json.loads(line.split(marker, 1)[1]))
    return out


def test_untrusted_workspace_runs_static_analysis_only(tmp_path, vsix, code_server_bin, node_modules):
    ws = tmp_path / "workspace"
    (ws / ".vscode").mkdir(parents=True)
    shutil.copy(SEED, ws / "bug.py")
    # A hostile folder's own settings: must not be used while the folder is untrusted.
    evil = "/nonexistent/evil-python"
    (ws / ".vscode" / "settings.json").write_text(json.dumps({"gradpath.live.python": evil,
                                                              "gradpath.live.onSave": True}))
    shots = artifacts_dir("vscode-untrusted")
    settings = {"security.workspace.trust.enabled": True, "security.workspace.trust.startupPrompt": "never",
                "security.workspace.trust.untrustedFiles": "open",
                "gradpath.interpreter": str(VENV_PYTHON), "gradpath.trace.server": "messages"}
    with code_server(tmp_path, code_server_bin, vsix, settings, shots) as cs:
        url = cs.start(ws, trust=True)
        report = run_driver({"url": url, "file": str(ws / "bug.py"), "shots": str(shots), "scenario": "untrusted",
                             "timeoutMs": 60000})
        logs = cs.extension_host_logs()
    assert report["ok"], f"{report.get('error')}\nscreenshots: {shots}\nconsole: {report['console'][-10:]}"

    # Restricted Mode: the extension runs (supported: "limited") and the static analysis works.
    assert report["restrictedBadge"] is True
    assert [s["line"] for s in report["errorSquiggles"]] == [22]
    assert "running" in report["statusRunning"]["ariaLabel"].lower()
    # The server is told never to execute code, and the folder's restricted settings are ignored.
    init = _logged_json(logs, "initializationOptions")
    assert init and init[0]["trusted"] is False, init
    assert init[0]["live"] == {"onSave": False, "timeoutSeconds": 20, "python": None}, init
    assert not any("Gradpath: Confirm Findings" in c for c in report["commandsUntrusted"]), report["commandsUntrusted"]
    assert any("Gradpath: Restart Server" in c for c in report["commandsUntrusted"])

    # Trusting the folder tells the running server (no restart); the folder's settings now apply.
    assert report["restrictedBadgeAfter"] is False
    changes = _logged_json(logs, "didChangeConfiguration")
    assert changes and changes[-1]["trusted"] is True, changes
    assert changes[-1]["live"]["onSave"] is True and changes[-1]["live"]["python"] == evil, changes[-1]
    assert "Restarting the server" not in logs
    assert any("Gradpath: Confirm Findings" in c for c in report["commandsTrusted"]), report["commandsTrusted"]


def test_python_extension_environment_and_switch(tmp_path, vsix, code_server_bin, node_modules):
    """With no gradpath.interpreter, the Python extension's active environment runs the server, and
    switching environments restarts it. A stand-in extension with the id ms-python.python exports
    the same environments API (the real one cannot be downloaded here)."""
    require(VENV_PYTHON, "the project's .venv")
    fake_src = ROOT / "tests" / "e2e" / "fake-python-ext"
    fake_dir = tmp_path / "fake-python-ext"
    shutil.copytree(fake_src, fake_dir)
    fake_vsix = tmp_path / "ms-python.python-fake.vsix"
    r = subprocess.run([str(ROOT / "vscode-client" / "node_modules" / ".bin" / "vsce"), "package", "--no-dependencies",
                        "--allow-missing-repository", "--skip-license", "-o", str(fake_vsix)],
                       cwd=fake_dir, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    # A second "environment": a wrapper around the venv's interpreter at another path.
    second = tmp_path / "other-env" / "bin" / "python"
    second.parent.mkdir(parents=True)
    second.write_text(f'#!/bin/sh\nexec "{VENV_PYTHON}" "$@"\n')
    second.chmod(0o755)

    ws = tmp_path / "workspace"
    ws.mkdir()
    shutil.copy(SEED, ws / "bug.py")
    shots = artifacts_dir("vscode-python-extension")
    settings = {"fakePython.paths": [str(VENV_PYTHON), str(second)], "gradpath.trace.server": "messages"}
    with code_server(tmp_path, code_server_bin, vsix, settings, shots) as cs:
        cs.install(fake_vsix)
        assert sorted(e.split("@")[0] for e in cs.list_extensions()) == ["gradpath.gradpath", "ms-python.python"]
        url = cs.start(ws)
        report = run_driver({"url": url, "file": str(ws / "bug.py"), "shots": str(shots),
                             "scenario": "python-extension", "timeoutMs": 60000, "secondPython": str(second)})
        logs = cs.extension_host_logs()
    assert report["ok"], f"{report.get('error')}\nscreenshots: {shots}\nconsole: {report['console'][-10:]}"
    assert f"Interpreter: {VENV_PYTHON} (from python-extension)." in logs
    assert str(VENV_PYTHON) in report["statusFirst"]["ariaLabel"], report["statusFirst"]
    assert "Restarting the server: the Python extension's active environment changed." in logs
    assert f"Interpreter: {second} (from python-extension)." in logs
    assert "running" in report["statusSwitched"]["ariaLabel"] and str(second) in report["statusSwitched"]["ariaLabel"]
    assert [s["line"] for s in report["errorSquiggles"]] == [22]
