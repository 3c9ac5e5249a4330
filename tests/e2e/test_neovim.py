"""A second real editor: Neovim's built-in LSP client (headless) gets the same diagnostics from
`gradpath serve` as `gradpath check --format json` prints for the same files."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import pytest

from e2e_helpers import ARTIFACTS, E2E, ROOT, SETUP_HINT, VENV_PYTHON, require

pytestmark = pytest.mark.e2e

SEVERITY = {"error": 1, "warning": 2, "info": 3, "information": 3, "hint": 4}


def nvim_version() -> tuple[int, int, int]:
    nvim = shutil.which("nvim")
    if nvim is None:
        pytest.fail(f"nvim missing: {SETUP_HINT}")
    out = subprocess.run([nvim, "--version"], capture_output=True, text=True, timeout=30).stdout
    m = re.search(r"NVIM v(\d+)\.(\d+)\.(\d+)", out)
    assert m, out
    return tuple(int(x) for x in m.groups())


def corpus() -> list[str]:
    # fixtures/projects/ are multi-file projects whose cross-module findings the editor publishes
    # after its background index (tests/lsp/test_project_index_lsp.py); here, one file at a time
    projects = ROOT / "fixtures" / "projects"
    files = sorted(str(p) for p in (ROOT / "fixtures").rglob("*.py") if projects not in p.parents)
    files += sorted(str(p) for p in (ROOT / "examples").rglob("*.py"))
    return files


def byte_column(path: str, line: int, char_col: int) -> int:
    """CLI columns count characters; Neovim's count bytes (1-based both)."""
    with open(path, encoding="utf-8", errors="replace") as f:
        lines = f.read().split("\n")
    text = lines[line - 1] if 0 < line <= len(lines) else ""
    return len(text[: char_col - 1].encode("utf-8")) + 1


def test_neovim_builtin_lsp_gets_the_cli_diagnostics(tmp_path):
    require(VENV_PYTHON, "the project's .venv")
    # Debian bookworm ships 0.7.2: its built-in client (vim.lsp.start_client, vim.diagnostic) is
    # what the Lua script uses; vim.lsp.start (0.8+) is not needed.
    assert nvim_version() >= (0, 7, 0)
    files = corpus()
    assert any(f.endswith("seed1_ex2_empty_list.py") for f in files)

    cli = subprocess.run([str(VENV_PYTHON), "-m", "gradpath", "check", "--format", "json", *files],
                         capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert cli.returncode in (0, 1), cli.stderr
    expected: dict[str, set] = {f: set() for f in files}
    messages: dict[tuple, str] = {}
    for d in json.loads(cli.stdout):
        path = os.path.abspath(os.path.join(ROOT, d["path"]))
        key = (d["code"], d["line"], byte_column(path, d["line"], d["column"]), d["end_line"],
               byte_column(path, d["end_line"], d["end_column"]), SEVERITY[d["severity"]])
        expected[path].add(key)
        messages[(path, *key)] = d["message"]
    assert sum(len(v) for v in expected.values()) > 0

    out = tmp_path / "nvim.json"
    env = dict(os.environ, GP_PYTHON=str(VENV_PYTHON), GP_OUT=str(out), GP_ROOT=str(ROOT),
               GP_FILES="\n".join(files), GP_TIMEOUT_MS="60000",
               XDG_CONFIG_HOME=str(tmp_path / "cfg"), XDG_DATA_HOME=str(tmp_path / "data"),
               XDG_STATE_HOME=str(tmp_path / "state"), XDG_CACHE_HOME=str(tmp_path / "cache"))
    r = subprocess.run(["nvim", "--headless", "--clean", "-u", str(E2E / "nvim_lsp.lua")], env=env,
                       capture_output=True, text=True, timeout=240, stdin=subprocess.DEVNULL)
    assert out.exists(), f"nvim wrote no report (exit {r.returncode}): {r.stdout[-2000:]} {r.stderr[-2000:]}"
    report = json.loads(out.read_text())
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "neovim-diagnostics.json").write_text(json.dumps(report, indent=2))
    assert r.returncode == 0, r.stderr[-2000:]
    assert report["errors"] == [], report["errors"]
    assert report["all_received"], [f["file"] for f in report["files"] if not f["received"]]
    assert report["capabilities"] == {"hover": True, "codeAction": True}

    got = {f["file"]: f for f in report["files"]}
    assert set(got) == set(files)
    mismatches = []
    for path in files:
        diags = got[path]["diagnostics"]
        assert all(d["source"] == "gradpath" for d in diags), diags
        have = {(d["code"], d["line"], d["column"], d["end_line"], d["end_column"], d["severity"]) for d in diags}
        if have != expected[path]:
            mismatches.append((os.path.relpath(path, ROOT), sorted(have - expected[path]),
                               sorted(expected[path] - have)))
        for d in diags:
            key = (path, d["code"], d["line"], d["column"], d["end_line"], d["end_column"], d["severity"])
            if key in messages:
                assert messages[key] in d["message"], (d["message"], messages[key])
    assert not mismatches, "file, only in Neovim, only in the CLI:\n" + "\n".join(map(str, mismatches))

    seed = got[str(ROOT / "fixtures" / "seeds" / "seed1_ex2_empty_list.py")]["diagnostics"]
    assert [(d["code"], d["line"], d["column"]) for d in seed] == [("GP101", 22, 24)]
