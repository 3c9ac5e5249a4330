"""Every project under fixtures/projects/ through `gradpath check <folder>`: the findings of each file
must be exactly its `# expect:` comments (a cross-module finding lands in the file that must change)."""
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from fixture_expect import expected
from testpaths import FIXTURES, server_env
from gradpath import cli

PROJECTS = sorted(p for p in (FIXTURES / "projects").iterdir() if p.is_dir())


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def _want(project: Path) -> Counter:
    want = Counter()
    for f in sorted(project.rglob("*.py")):
        rel = f.relative_to(project).as_posix()
        for (line, code), n in expected(f.read_text(encoding="utf-8")).items():
            want[(rel, line, code)] += n
    return want


def _check_json(args, capsys) -> list[dict]:
    rc = cli.main(["check", *args, "--format", "json", "-q", "--isolated"])
    out = capsys.readouterr().out
    assert rc in (0, 1), out
    return json.loads(out)


def test_there_are_enough_projects():
    assert len(PROJECTS) >= 20
    quiet = [p for p in PROJECTS if not _want(p)]
    assert len(quiet) >= 4, "correct multi-file projects that must stay quiet"


@pytest.mark.parametrize("project", PROJECTS, ids=[p.name for p in PROJECTS])
def test_project_through_the_cli(project, capsys):
    items = _check_json([str(project), "-j", "1"], capsys)
    got = Counter((Path(it["path"]).resolve().relative_to(project.resolve()).as_posix(), it["line"], it["code"])
                  for it in items)
    want = _want(project)
    missing = sorted((want - got).elements())
    extra = sorted((got - want).elements())
    detail = "\n".join(f"  {it['path']}:{it['line']} {it['code']} {it['message']}" for it in items)
    assert not missing and not extra, f"missing {missing}, unexpected {extra}\nfindings:\n{detail}"


def test_cross_module_finding_points_at_the_other_end(capsys):
    project = FIXTURES / "projects" / "models_pkg_softmax_ce"
    items = _check_json([str(project), "-j", "1"], capsys)
    (it,) = items
    assert it["path"].endswith(os.path.join("models", "mlp.py")) and it["code"] == "GP304"
    assert "train.py:15" in it["message"] and "`MLP.forward`" in it["message"]


def test_related_information_names_the_other_file():
    from gradpath.analysis.engine import analyze
    from gradpath.analysis.project import Project
    from gradpath.batch import ProjectResolver
    from gradpath.files import iter_python_files
    project = FIXTURES / "projects" / "trainer_base_class"
    p = Project(str(project), [str(f) for f in iter_python_files([str(project)])], use_cache=False).build()
    net = project / "models" / "classifier.py"
    res = analyze(net.read_text(), str(net), resolver=ProjectResolver(None, p))
    (f,) = res.findings
    assert f.code == "GP304" and f.span.line == 11
    assert {os.path.basename(r.path) for r in f.related} == {"supervised.py"}
    assert f.fixes and not f.fixes[0].safe and f.fixes[0].edits[0].new_text == "self.head(self.body(x))"
    sup = project / "trainers" / "supervised.py"
    res = analyze(sup.read_text(), str(sup), resolver=ProjectResolver(None, p))
    (f,) = res.findings
    assert f.code == "GP407" and "trainers/base.py:12" in f.message
    assert any(r.path and r.path.endswith("base.py") and r.span.line == 12 for r in f.related)


def test_a_single_file_is_checked_within_its_project(tmp_path, capsys):
    src = FIXTURES / "projects" / "src_layout_package"
    dst = tmp_path / "proj"
    import shutil
    shutil.copytree(src, dst)
    items = _check_json([str(dst / "src" / "tinyseg" / "model.py")], capsys)
    assert [(Path(i["path"]).name, i["line"], i["code"]) for i in items] == [("model.py", 13, "GP304")]


def test_parallel_processes_give_the_same_output_in_the_same_order(tmp_path):
    env = server_env()
    env["XDG_CACHE_HOME"] = str(tmp_path / "c")
    folder = FIXTURES / "projects"
    outs = []
    for jobs in ("1", "2"):
        r = subprocess.run([sys.executable, "-m", "gradpath", "check", str(folder), "--format", "json", "-q",
                            "--isolated", "--no-cache", "-j", jobs], capture_output=True, text=True, env=env,
                           timeout=300)
        assert r.returncode == 1, r.stderr
        outs.append(r.stdout)
    assert outs[0] == outs[1]
    assert len(json.loads(outs[0])) >= 15
