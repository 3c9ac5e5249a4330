"""A single-file check reads only what the file's findings can depend on (analysis/project/lazy.py),
and finds exactly what the folder check finds in that file."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from testpaths import FIXTURES
from gradpath import batch, cli
from gradpath.analysis.project import Project
from gradpath.analysis.project.lazy import ImportGraph, build_for_files, text_imports
from gradpath.files import iter_python_files

PROJECTS = sorted(p for p in (FIXTURES / "projects").iterdir() if p.is_dir())


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("GRADPATH_LAZY_INDEX", raising=False)


def _check(args, capsys) -> list[dict]:
    rc = cli.main(["check", *args, "--format", "json", "-q", "--isolated", "-j", "1"])
    out = capsys.readouterr().out
    assert rc in (0, 1), out
    return json.loads(out)


def _key(it: dict) -> tuple:
    return (os.path.realpath(it["path"]), it["line"], it["column"], it["code"], it["message"],
            json.dumps(it.get("fixes"), sort_keys=True))


@pytest.mark.parametrize("project", PROJECTS, ids=[p.name for p in PROJECTS])
def test_each_file_alone_gives_what_the_folder_check_gives_it(project, tmp_path, capsys):
    root = tmp_path / "proj"
    shutil.copytree(project, root)
    (root / ".git").mkdir()  # the top of the project for a single file
    whole = _check([str(root)], capsys)
    compared = 0
    for f in iter_python_files([str(root)]):
        assert batch.single_files([str(f)]) == {str(root): [str(f)]}  # the lazy build is used
        alone = _check([str(f)], capsys)
        want = sorted(_key(it) for it in whole if os.path.realpath(it["path"]) == os.path.realpath(f))
        got = sorted(_key(it) for it in alone)
        assert got == want, f"{f.relative_to(root)}:\nalone {got}\nfolder {want}"
        compared += len(want)
    assert compared == len(whole)  # every finding of the folder check was compared


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)


NET = ("import torch.nn as nn\nimport torch.nn.functional as F\n\n\nclass Net(nn.Module):\n"
       "    def __init__(self):\n        super().__init__()\n        self.fc = nn.Linear(4, 3)\n\n"
       "    def forward(self, x):\n        return F.softmax(self.fc(x), dim=1)\n")
TRAIN = ("import torch\nimport torch.nn as nn\nfrom models import Net\n\nmodel = Net()\n"
         "opt = torch.optim.SGD(model.parameters(), lr=0.1)\ncriterion = nn.CrossEntropyLoss()\n"
         "for x, y in [(torch.randn(2, 4), torch.tensor([0, 1]))]:\n    opt.zero_grad()\n"
         "    loss = criterion(model(x), y)\n    loss.backward()\n    opt.step()\n")


@pytest.fixture
def proj(tmp_path):
    root = tmp_path / "p"
    _write(root, {
        "models/__init__.py": "from .net import Net\nfrom .other import Other\n",
        "models/net.py": NET,
        "models/other.py": "import torch.nn as nn\n\n\nclass Other(nn.Module):\n    pass\n",
        "train.py": TRAIN,
        "tools/unrelated.py": "import json\nprint(json.dumps({}))\n",
        "tools/plot.py": "from tools.unrelated import *\n",
    })
    return root


def _lazy(root: Path, target: str) -> Project:
    p = Project(str(root), [str(f) for f in iter_python_files([str(root)])])
    build_for_files(p, [str(root / target)])
    return p


def _names(p: Project) -> set[str]:
    return {os.path.relpath(x, p.root) for x in p.summaries}


def test_a_script_reads_what_it_imports_and_only_the_names_a_package_passes_on(proj):
    p = _lazy(proj, "train.py")
    # `from models import Net`: the package for that name, and net.py; not other.py nor tools/
    assert _names(p) == {"train.py", "models/__init__.py", "models/net.py"}
    assert len(p.index.modules) == 6  # every module keeps its name
    uses = p.linker().loss_uses()
    assert [(os.path.basename(u["path"]), u["kind"]) for u in uses] == [("train.py", "ce")]


def test_a_model_module_reads_the_scripts_that_reach_it(proj):
    p = _lazy(proj, "models/net.py")
    # train.py imports the package that re-exports Net: it is read, with what it imports
    assert {"models/net.py", "models/__init__.py", "train.py"} <= _names(p)
    assert "tools/unrelated.py" not in _names(p)


def test_warm_single_file_check_decodes_only_the_entries_it_needs(proj):
    whole = Project(str(proj), [str(f) for f in iter_python_files([str(proj)])]).build()
    whole.save_cache()
    p = Project(str(proj), [str(f) for f in iter_python_files([str(proj)])])
    build_for_files(p, [str(proj / "train.py")])
    assert p.cache.stats["hits"] == 3 and p.cache.stats["misses"] == 0
    assert len(p.cache._spans) == 3  # the other three entries were never decoded
    # and a later whole build still finds all six (the undecoded entries were kept)
    p.cache.save(keep=None)
    again = Project(str(proj), [str(f) for f in iter_python_files([str(proj)])]).build()
    assert again.cache.stats["misses"] == 0 and again.cache.stats["hits"] == 6


def test_registering_modules_join_the_set(tmp_path):
    root = tmp_path / "r"
    _write(root, {
        "registry.py": "class Registry:\n    def register(self):\n        return lambda c: c\n\nMODELS = Registry()\n",
        "zoo.py": ("import torch.nn as nn\nfrom registry import MODELS\n\n\n@MODELS.register()\n"
                   "class Mlp(nn.Module):\n    pass\n"),
        "train.py": "from registry import MODELS\nmodel = MODELS.get('Mlp')()\n",
    })
    p = _lazy(root, "train.py")
    assert "zoo.py" in _names(p)


def test_import_statements_read_from_the_text():
    text = ("from a.b import (c,\n    d as e)  # x\nimport x.y as z, w\nfrom . import k\nfrom .m import *\n"
            "import pkg\nv = pkg.sub.f()\ns = 'no import here'\n")
    got = text_imports(text, lambda qn: qn == "pkg")
    assert got == ["a.b.c", "a.b.d", "x.y", "w", ".k", ".m", "pkg", "pkg.sub.f"]


def test_the_graph_finds_importers_through_relative_imports(proj):
    p = Project(str(proj), [str(f) for f in iter_python_files([str(proj)])])
    g = ImportGraph(p.index, lambda x: Path(x).read_text(), p.paths())
    net = str(proj / "models" / "net.py")
    assert g.users([net]) == {net, str(proj / "models" / "__init__.py"), str(proj / "train.py")}


def test_a_package_passes_on_only_the_names_it_takes_from_the_module(proj):
    _write(proj, {"use_other.py": "from models import Other\nm = Other()\n",
                  "zoo/__init__.py": "from .beasts import *\n",
                  "zoo/beasts.py": "from models.net import Net\n\n\nclass Cat(Net):\n    pass\n",
                  "pet.py": "from zoo import Cat\n",
                  "no_pet.py": "from zoo import Dog\n"})
    p = _lazy(proj, "models/net.py")
    names = _names(p)
    assert "train.py" in names and "use_other.py" not in names  # Other is not from net.py
    # a star import passes on what beasts.py defines: pet.py takes Cat, no_pet.py a name it lacks
    assert {"zoo/beasts.py", "zoo/__init__.py", "pet.py"} <= names and "no_pet.py" not in names
