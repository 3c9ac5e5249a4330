"""Modules outside the project found by jedi on sys.path (analysis/project/external.py): a helper in
a sibling library is linked like a project module, within the limits."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from gradpath.analysis.engine import analyze
from gradpath.analysis.project import Project
from gradpath.analysis.project.external import add_externals
from gradpath.batch import ProjectResolver
from gradpath.files import iter_python_files

ENGINE = '''import torch


def evaluate(model, loader):
    model.eval()
    with torch.no_grad():
        for x, _y in loader:
            model(x)
'''
TRAIN = '''import torch
import torch.nn as nn
from mylib.engine import evaluate

model = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.1), nn.Linear(8, 2))
opt = torch.optim.SGD(model.parameters(), lr=0.1)
loader = [(torch.randn(2, 4), torch.tensor([0, 1]))]
for epoch in range(3):
    for x, y in loader:
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
    evaluate(model, loader)
'''


@pytest.fixture
def layout(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    lib = tmp_path / "lib" / "mylib"
    lib.mkdir(parents=True)
    (lib / "__init__.py").write_text("from .engine import evaluate\n")
    (lib / "engine.py").write_text(ENGINE)
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "train.py").write_text(TRAIN)
    return tmp_path


def _codes(proj: Path, p: Project) -> list[tuple[int, str]]:
    train = proj / "train.py"
    res = analyze(train.read_text(), str(train), resolver=ProjectResolver(None, p))
    return [(f.span.line, f.code) for f in res.findings]


def _project(proj: Path) -> Project:
    return Project(str(proj), [str(f) for f in iter_python_files([str(proj)])]).build()


def test_a_helper_in_a_sibling_library_on_sys_path_is_linked(layout):
    proj = layout / "proj"
    before = _project(proj)
    assert (14, "GP407") not in _codes(proj, before)  # the helper is unknown: the call stays opaque
    p = _project(proj)
    added = add_externals(p, sys_path=[str(layout / "lib")])
    assert sorted(os.path.relpath(a, layout) for a in added) == [os.path.join("lib", "mylib", "engine.py")]
    assert p.index.is_external(added[0]) and p.index.name_of(added[0]) == "mylib.engine"
    assert (14, "GP407") in _codes(proj, p)


def test_the_package_re_exporting_a_name_is_added_too(layout):
    proj = layout / "proj"
    (proj / "train.py").write_text(TRAIN.replace("from mylib.engine import evaluate", "from mylib import evaluate"))
    p = _project(proj)
    added = add_externals(p, sys_path=[str(layout / "lib")])
    assert {os.path.basename(a) for a in added} == {"engine.py", "__init__.py"}
    assert (14, "GP407") in _codes(proj, p)


def test_time_spent_giving_way_to_typing_is_not_counted(layout):
    """The editor's index waits while the user types before each lookup: a wait longer than the
    whole time budget still leaves the lookups their budget."""
    import time
    proj = layout / "proj"
    p = _project(proj)
    waits = []

    def give_way():
        waits.append(1)
        time.sleep(0.3)

    added = add_externals(p, sys_path=[str(layout / "lib")], max_seconds=0.25, give_way=give_way)
    assert waits and [os.path.basename(a) for a in added] == ["engine.py"]


def test_limits_and_installed_packages(layout):
    proj = layout / "proj"
    p = _project(proj)
    assert add_externals(p, sys_path=[str(layout / "lib")], max_modules=0) == []
    # an import of an installed package (jedi finds it in site-packages) is not looked into
    (proj / "train.py").write_text(TRAIN + "from pygls.server import LanguageServer\n")
    p = _project(proj)
    added = add_externals(p, sys_path=[str(layout / "lib")])
    assert all("site-packages" not in a for a in added)


def test_cli_with_jedi_links_a_library_on_pythonpath(layout):
    import json
    import subprocess
    import sys
    from testpaths import server_env
    proj = layout / "proj"
    (proj / ".git").mkdir()
    env = server_env()
    env["XDG_CACHE_HOME"] = str(layout / "cache")
    env["PYTHONPATH"] = env.get("PYTHONPATH", "") + os.pathsep + str(layout / "lib")
    out = {}
    for extra in ([], ["--jedi"]):
        for target in (str(proj), str(proj / "train.py")):  # the folder, and the file alone (lazy)
            r = subprocess.run([sys.executable, "-m", "gradpath", "check", target, "--format", "json", "-q",
                                "--isolated", *extra], capture_output=True, text=True, env=env, timeout=120)
            assert r.returncode in (0, 1), r.stderr
            out[(bool(extra), target)] = sorted((it["line"], it["code"]) for it in json.loads(r.stdout))
    assert out[(False, str(proj))] == out[(False, str(proj / "train.py"))] == []
    assert out[(True, str(proj))] == out[(True, str(proj / "train.py"))] == [(14, "GP407")]
