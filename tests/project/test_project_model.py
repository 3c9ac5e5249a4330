"""The project model: the index, the summary cache, modules that do not parse, a large project."""
import json
import os
import resource
import time
import tracemalloc
from pathlib import Path

import pytest

from gradpath import __version__, cli
from gradpath.analysis.project import Project
from gradpath.analysis.project import cache as cache_mod
from gradpath.analysis.project.index import ProjectIndex
from gradpath.analysis.project.summaries import SCHEMA, summarize
from gradpath.files import iter_python_files

NET = '''
import torch.nn as nn
import torch.nn.functional as F


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return {ret}
'''
TRAIN = '''
import torch
import torch.nn as nn
from models.net import Net

model = Net()
criterion = nn.CrossEntropyLoss()
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
for x, y in [(torch.randn(2, 4), torch.tensor([0, 1]))]:
    optimizer.zero_grad()
    loss = criterion(model(x), y)
    loss.backward()
    optimizer.step()
'''


def _write(root: Path, files: dict) -> None:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)


@pytest.fixture
def proj(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    root = tmp_path / "proj"
    _write(root, {"models/__init__.py": "", "models/net.py": NET.format(ret="F.softmax(self.fc(x), dim=1)"),
                  "train.py": TRAIN})
    return root


def _project(root, **kw) -> Project:
    return Project(str(root), [str(f) for f in iter_python_files([str(root)])], **kw).build()


def _uses(p: Project):
    return [(os.path.basename(u["path"]), u["kind"], [m[1] for m in u["models"]]) for u in p.linker().loss_uses()]


# -- the cache --------------------------------------------------------------------------------------
def test_cache_is_written_and_read_back(proj):
    p1 = _project(proj)
    assert p1.cache.stats["misses"] == 3 and os.path.isfile(p1.cache.path)
    assert os.path.dirname(os.path.dirname(p1.cache.path)).endswith(os.path.join("gradpath", __version__))
    p2 = _project(proj)
    assert p2.cache.stats["hits"] == 3 and p2.cache.stats["misses"] == 0
    assert p2.summaries == p1.summaries


@pytest.mark.parametrize("garbage", [b"", b"{not json", b"\x80\x81\xff", b'{"magic": "x"}', b"[1, 2]",
                                     b'{"magic": "gradpath-summaries", "version": "0.0.0-other", "entries": {}}'])
def test_a_corrupt_or_foreign_cache_file_is_ignored_and_rewritten(proj, garbage):
    p1 = _project(proj)
    path = p1.cache.path
    Path(path).write_bytes(garbage)
    p2 = _project(proj)
    assert p2.cache.stats["misses"] == 3  # nothing trusted from the bad file
    assert _uses(p2) == [("train.py", "ce", ["Net"])]
    data = json.loads(Path(path).read_text())
    assert data["magic"] == cache_mod.MAGIC and data["version"] == __version__ and len(data["entries"]) == 3


def test_a_version_change_uses_another_cache_folder(proj, monkeypatch):
    p1 = _project(proj)
    monkeypatch.setattr(cache_mod, "__version__", "999.0")
    p2 = _project(proj)
    assert p2.cache.path != p1.cache.path and "999.0" in p2.cache.path
    assert p2.cache.stats["misses"] == 3


def test_a_cache_entry_from_another_schema_is_not_used(proj):
    p1 = _project(proj)
    data = json.loads(Path(p1.cache.path).read_text())
    data["schema"] = SCHEMA + 100
    Path(p1.cache.path).write_text(json.dumps(data))
    assert _project(proj).cache.stats["misses"] == 3


def test_an_edited_module_gets_a_new_summary_and_the_rest_comes_from_the_cache(proj):
    _project(proj)
    (proj / "models" / "net.py").write_text(NET.format(ret="self.fc(x)"))
    p = _project(proj)
    assert p.cache.stats["hits"] == 2 and p.cache.stats["misses"] == 1
    net = str(proj / "models" / "net.py")
    assert p.linker().forward_act(net, "Net") is None


def test_no_cache_reads_and_writes_nothing(proj):
    p = _project(proj, use_cache=False)
    assert p.cache.path is None
    assert not (proj.parent / "cache").exists()


def test_update_reports_whether_the_summary_changed(proj):
    p = _project(proj, use_cache=False)
    net = str(proj / "models" / "net.py")
    text = (proj / "models" / "net.py").read_text()
    assert p.update(net, text + "\n# a comment\n") is False  # same summary: nothing to re-check
    assert p.update(net, NET.format(ret="self.fc(x)")) is True
    assert p.dependents(net) == {str(proj / "train.py")}


# -- modules that do not parse --------------------------------------------------------------------
def test_a_module_that_does_not_parse_keeps_its_last_good_summary(proj):
    p = _project(proj, use_cache=False)
    net = str(proj / "models" / "net.py")
    good = p.summaries[net]
    assert p.update(net, "class Net(nn.Module:\n    def forward(self, x) return\n") is False
    assert p.summaries[net] is good and net in p.broken
    assert not p.holds(net, "class Net(nn.Module:\n")
    assert _uses(p) == [("train.py", "ce", ["Net"])]


def test_cli_reports_gp000_for_the_broken_module_and_still_analyses_the_others(proj, capsys):
    (proj / "broken.py").write_text("def f(:\n    pass\n")
    rc = cli.main(["check", str(proj), "--format", "json", "-q", "--isolated", "-j", "1"])
    items = json.loads(capsys.readouterr().out)
    got = sorted((Path(i["path"]).name, i["code"]) for i in items)
    assert got == [("broken.py", "GP000"), ("net.py", "GP304")]
    assert rc == 1


# -- the index ------------------------------------------------------------------------------------
def test_module_names_from_layouts(tmp_path):
    root = tmp_path
    _write(root, {"src/pkg/__init__.py": "", "src/pkg/sub/__init__.py": "", "src/pkg/sub/m.py": "",
                  "scripts/run.py": "", "scripts/helpers.py": "", "ns/inner/mod.py": "", "a/utils.py": "",
                  "b/utils.py": "", "a/train.py": "", "b/train.py": ""})
    idx = ProjectIndex(str(root), [str(f) for f in iter_python_files([str(root)])])
    m = str(root / "src/pkg/sub/m.py")
    assert idx.name_of(m) == "pkg.sub.m"
    assert idx.resolve_module("pkg.sub.m", str(root / "scripts/run.py")) == m
    assert idx.resolve_module("helpers", str(root / "scripts/run.py")) == str(root / "scripts/helpers.py")
    assert idx.resolve_module("ns.inner.mod", str(root / "x.py")) == str(root / "ns/inner/mod.py")
    assert idx.resolve_module("utils", str(root / "a/train.py")) == str(root / "a/utils.py")
    assert idx.resolve_module("utils", str(root / "b/train.py")) == str(root / "b/utils.py")
    assert idx.resolve_relative(2, "m", str(root / "src/pkg/sub/m.py")) is None
    assert idx.resolve_relative(1, "m", str(root / "src/pkg/sub/__init__.py")) == m
    assert idx.split_ref("pkg.sub.m.Net.forward", str(root / "scripts/run.py")) == (m, ["Net", "forward"])


def test_summaries_are_plain_json_data():
    s = summarize(NET.format(ret="F.softmax(self.fc(x), dim=1)"))
    assert json.loads(json.dumps(s)) == s
    assert s["classes"]["Net"]["forward"]["act"] == "softmax"
    assert s["classes"]["Net"]["submodules"] == {"fc": "torch.nn.Linear"}
    assert summarize("def f(:\n") is None


# -- a large generated project -------------------------------------------------------------------
def _generate(root: Path, n: int) -> None:
    """n modules in 50 packages: models, helpers that step/clear, and scripts that import across."""
    for i in range(n):
        pkg = root / f"pkg{i % 50}"
        pkg.mkdir(parents=True, exist_ok=True)
        if i < 50:
            (pkg / "__init__.py").write_text("")
        prev = f"pkg{(i - 1) % 50}.m{i - 1}" if i else "os"
        kind = i % 3
        if kind == 0:
            body = (f"import torch.nn as nn\nimport torch.nn.functional as F\n\n\nclass M{i}(nn.Module):\n"
                    f"    def __init__(self):\n        super().__init__()\n        self.fc = nn.Linear(4, 3)\n\n"
                    f"    def forward(self, x):\n        return F.softmax(self.fc(x), dim=1)\n")
        elif kind == 1:
            body = (f"import {prev} as prev\n\n\ndef step{i}(model, optimizer, x, y, criterion):\n"
                    f"    optimizer.zero_grad()\n    loss = criterion(model(x), y)\n    loss.backward()\n"
                    f"    optimizer.step()\n    return loss\n")
        else:
            body = (f"import torch\nimport torch.nn as nn\nfrom {prev} import step{i - 1}\n"
                    f"from pkg{(i - 2) % 50}.m{i - 2} import M{i - 2}\n\n\ndef main():\n"
                    f"    model = M{i - 2}()\n    opt = torch.optim.SGD(model.parameters(), lr=0.1)\n"
                    f"    crit = nn.CrossEntropyLoss()\n    for x, y in []:\n        step{i - 1}(model, opt, x, y, crit)\n")
        (pkg / f"m{i}.py").write_text(body)


def test_a_5000_module_project_builds_in_bounded_time_and_memory(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    root = tmp_path / "big"
    _generate(root, 5000)
    files = [str(f) for f in iter_python_files([str(root)])]
    assert len(files) == 5050
    tracemalloc.start()
    t0 = time.process_time()
    p = Project(str(root), files).build()
    uses = p.linker().loss_uses()
    cold = time.process_time() - t0
    _cur, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # every script's loss on a softmax model from another package is linked
    assert len(uses) == 5000 // 3 and all(u["kind"] == "ce" for u in uses)
    assert cold < 60, f"cold index took {cold:.1f} s of CPU"
    assert peak < 400 * 2 ** 20, f"peak {peak / 2 ** 20:.0f} MiB"
    t0 = time.process_time()
    p2 = Project(str(root), files).build()
    warm = time.process_time() - t0
    assert p2.cache.stats["misses"] == 0
    assert warm < cold
