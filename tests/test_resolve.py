"""Cross-module resolution: model classes imported from the user's other modules."""
import ast
import os
import subprocess
import sys
import textwrap
import time

from testpaths import server_env
from gradpath.analysis import analyze
from gradpath.analysis.resolve import Resolver

MODELS = """
import torch.nn as nn


class Base(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Linear(10, 10)


class Net(Base):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(10, 1)

    def forward(self, x):
        return self.linear(self.stem(x))
"""

TRAIN = """
import torch
{imp}

model = {ctor}
opt = torch.optim.Adam([model.linear.weight], lr=0.1)
loss = model(torch.randn(2, 10)).sum()
loss.backward()
opt.step()
"""


def _write(root, files):
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text))


def _gp102(path, resolver):
    text = path.read_text()
    res = analyze(text, str(path), resolver=resolver)
    return [f for f in res.findings if f.code == "GP102"]


def test_without_resolver_imported_class_is_unknown(tmp_path):
    _write(tmp_path, {"models.py": MODELS, "train.py": TRAIN.format(imp="from models import Net", ctor="Net()")})
    assert _gp102(tmp_path / "train.py", None) == []


def test_sibling_module(tmp_path):
    _write(tmp_path, {"models.py": MODELS, "train.py": TRAIN.format(imp="from models import Net", ctor="Net()")})
    r = Resolver(root=str(tmp_path), use_jedi=False)
    found = _gp102(tmp_path / "train.py", r)
    assert len(found) == 1
    f = found[0]
    assert f.message == ("Adam gets 1 of 4 parameter tensors of model; stem.weight, stem.bias and linear.bias "
                         "are never updated")
    assert f.data["model_class"] == "models.Net"
    assert f.data["missing"] == ["stem.weight", "stem.bias", "linear.bias"]
    # related information points into models.py? no: only this file's spans; the model construction
    assert f.related[0].span.line == 5


def test_package_reexport_and_module_attribute(tmp_path):
    _write(tmp_path, {
        "pkg/__init__.py": "from .nets import Net\n",
        "pkg/nets/__init__.py": "from .impl import *\n",
        "pkg/nets/impl.py": MODELS,
        "train.py": TRAIN.format(imp="from pkg import Net", ctor="Net()"),
        "train2.py": TRAIN.format(imp="import pkg.nets.impl as impl", ctor="impl.Net()"),
        "train3.py": TRAIN.format(imp="import pkg", ctor="pkg.Net()"),
    })
    r = Resolver(root=str(tmp_path), use_jedi=False)
    for name in ("train.py", "train2.py", "train3.py"):
        assert len(_gp102(tmp_path / name, r)) == 1, name


def test_relative_import_inside_a_package(tmp_path):
    _write(tmp_path, {
        "proj/__init__.py": "",
        "proj/models.py": MODELS,
        "proj/train.py": TRAIN.format(imp="from .models import Net", ctor="Net()"),
    })
    r = Resolver(root=str(tmp_path), use_jedi=False)
    assert len(_gp102(tmp_path / "proj" / "train.py", r)) == 1


def test_script_in_subfolder_imports_from_project_root(tmp_path):
    _write(tmp_path, {"models.py": MODELS,
                      "scripts/train.py": TRAIN.format(imp="from models import Net", ctor="Net()")})
    r = Resolver(root=str(tmp_path), use_jedi=False)
    assert len(_gp102(tmp_path / "scripts" / "train.py", r)) == 1


def test_correct_program_stays_quiet(tmp_path):
    ok = TRAIN.format(imp="from models import Net", ctor="Net()").replace("[model.linear.weight]", "model.parameters()")
    _write(tmp_path, {"models.py": MODELS, "train.py": ok})
    r = Resolver(root=str(tmp_path), use_jedi=False)
    res = analyze(ok, str(tmp_path / "train.py"), resolver=r)
    assert [f.code for f in res.findings] == []


def test_parse_cache_per_path_and_mtime(tmp_path):
    _write(tmp_path, {"models.py": MODELS, "train.py": TRAIN.format(imp="from models import Net", ctor="Net()")})
    r = Resolver(root=str(tmp_path), use_jedi=False)
    _gp102(tmp_path / "train.py", r)
    _gp102(tmp_path / "train.py", r)
    assert r.stats["parsed"] == 1
    assert r.stats["cache_hits"] >= 1
    # the model file changes: bias=False everywhere -> nothing left out but stem; re-parsed
    m = tmp_path / "models.py"
    m.write_text(MODELS.replace("nn.Linear(10, 1)", "nn.Linear(10, 1, bias=False)"))
    st = os.stat(m)
    os.utime(m, (st.st_atime, st.st_mtime + 5))
    found = _gp102(tmp_path / "train.py", r)
    assert r.stats["parsed"] == 2
    assert found[0].data["missing"] == ["stem.weight", "stem.bias"]


def test_jedi_is_lazy_and_only_for_what_the_fast_path_cannot_answer(tmp_path):
    ext = tmp_path / "ext"
    _write(tmp_path, {"ext/userlib/__init__.py": "", "ext/userlib/netdefs.py": MODELS})
    imp = f"import sys\nsys.path.append({str(ext)!r})\nfrom userlib.netdefs import Net"
    _write(tmp_path, {"proj/train.py": TRAIN.format(imp=imp, ctor="Net()")})
    train = tmp_path / "proj" / "train.py"

    r = Resolver(root=str(tmp_path / "proj"), fast_only=True)
    assert _gp102(train, r) == []  # the fast path cannot see ext/
    assert r.stats["jedi_calls"] == 0
    assert r.needs_slow_pass(str(train))

    r.fast_only = False
    t0 = time.monotonic()
    found = _gp102(train, r)
    first = time.monotonic() - t0
    assert len(found) == 1 and found[0].data["missing"][-1] == "linear.bias"
    assert r.stats["jedi_calls"] == 1
    t0 = time.monotonic()
    assert len(_gp102(train, r)) == 1
    assert r.stats["jedi_calls"] == 1  # cached per (file, mtime)
    assert time.monotonic() - t0 < max(first, 0.5)


def test_the_server_flow_asks_jedi_once_per_import_not_per_keystroke(tmp_path):
    """The language server's fast resolver never calls jedi while analysing; `resolve_pending`
    asks in the background, and from then on the fast analyses see the answer. Edits elsewhere in
    the file (a new version of the text) neither ask again nor lose it."""
    ext = tmp_path / "ext"
    _write(tmp_path, {"ext/userlib/__init__.py": "", "ext/userlib/netdefs.py": MODELS})
    imp = f"import sys\nsys.path.append({str(ext)!r})\nfrom userlib.netdefs import Net"
    _write(tmp_path, {"proj/train.py": TRAIN.format(imp=imp, ctor="Net()")})
    train = tmp_path / "proj" / "train.py"
    text = train.read_text()
    fast = Resolver(root=str(tmp_path / "proj"), fast_only=True)
    assert [f for f in analyze(text, str(train), resolver=fast).findings if f.code == "GP102"] == []
    assert fast.needs_slow_pass(str(train)) and fast.stats["jedi_calls"] == 0

    # positions recorded for another text are not used
    assert fast.resolve_pending(text + "\n# edited\n", str(train)) is False
    assert fast.stats["jedi_calls"] == 0

    v0 = fast.answers.version
    assert fast.resolve_pending(text, str(train)) is True
    assert fast.stats["jedi_calls"] == 1 and fast.answers.version > v0
    for k in range(5):  # typing: every version of the text gets the GP102, no new jedi call
        text += f"step_{k} = {k}\n"
        found = [f for f in analyze(text, str(train), resolver=fast).findings if f.code == "GP102"]
        assert len(found) == 1 and found[0].data["missing"][-1] == "linear.bias"
        assert not fast.needs_slow_pass(str(train))
    assert fast.stats["jedi_calls"] == 1

    # a different sys.path line is a different question
    text = text.replace("sys.path.append(", "sys.path.insert(0, ")
    analyze(text, str(train), resolver=fast)
    assert fast.needs_slow_pass(str(train))


def test_a_name_jedi_cannot_answer_is_not_asked_again(tmp_path):
    _write(tmp_path, {"train.py": TRAIN.format(imp="from nowhere_at_all import Net", ctor="Net()")})
    train = tmp_path / "train.py"
    text = train.read_text()
    fast = Resolver(root=str(tmp_path), fast_only=True)
    analyze(text, str(train), resolver=fast)
    assert fast.needs_slow_pass(str(train))
    v0 = fast.answers.version
    assert fast.resolve_pending(text, str(train)) is False  # jedi found nothing usable
    assert fast.answers.version == v0  # nothing to re-analyse for
    analyze(text + "\nz = 1\n", str(train), resolver=fast)
    assert not fast.needs_slow_pass(str(train))
    assert fast.stats["jedi_calls"] == 1


def test_fast_path_resolved_names_never_start_jedi(tmp_path):
    _write(tmp_path, {"models.py": MODELS, "train.py": TRAIN.format(imp="from models import Net", ctor="Net()")})
    r = Resolver(root=str(tmp_path))
    assert len(_gp102(tmp_path / "train.py", r)) == 1
    assert r.stats["jedi_calls"] == 0
    assert not r.needs_slow_pass(str(tmp_path / "train.py"))


def test_cli_resolves_imports_from_the_checked_folder(tmp_path):
    _write(tmp_path, {"models.py": MODELS, "train.py": TRAIN.format(imp="from models import Net", ctor="Net()")})
    r = subprocess.run([sys.executable, "-m", "gradpath", "check", "--format", "json", str(tmp_path / "train.py")],
                       capture_output=True, text=True, env=server_env(), cwd=str(tmp_path), timeout=60)
    assert r.returncode == 1, r.stderr
    assert '"code": "GP102"' in r.stdout


def test_from_package_import_module(tmp_path):
    _write(tmp_path, {
        "proj/__init__.py": "",
        "proj/models.py": MODELS,
        "proj/train.py": TRAIN.format(imp="from . import models", ctor="models.Net()"),
        "train2.py": TRAIN.format(imp="from proj import models as M", ctor="M.Net()"),
    })
    r = Resolver(root=str(tmp_path), use_jedi=False)
    assert len(_gp102(tmp_path / "proj" / "train.py", r)) == 1
    assert len(_gp102(tmp_path / "train2.py", r)) == 1


def test_the_tree_index_follows_the_breadth_first_walk_and_walks_each_statement_once(monkeypatch):
    """`enrich` reads imports (a later one wins) and first calls in the order of `ast.walk`
    (breadth first: a nested import comes after every top-level one); each top-level statement is
    walked once for as long as its tree lives, so a version sharing statements walks only its own."""
    from gradpath.analysis import resolve
    text = ("if cond:\n    from a import Net\n    Net(1)\nfrom b import Net\n"
            "def f():\n    Net(2)\nNet(3)\nimport torch.nn as tnn\nx = models.Big.Net\n")
    tree = ast.parse(text)
    idx = resolve._TreeIndex(tree)
    walked = {}
    for node in ast.walk(tree):  # (what a walk of the whole tree in its order finds)
        if isinstance(node, ast.ImportFrom):
            for a in node.names:
                walked[a.asname or a.name] = (node.module, a.name, node.level)
    assert idx.imports == walked == {"Net": ("a", "Net", 0)}
    assert idx.called == {"Net": (7, 0)}  # the top-level call, before the nested ones in the walk
    assert idx.attrs == {"models": {"Big"}, "models.Big": {"Net"}} and idx.module_aliases == {}
    made = []
    real = resolve._StatementIndex.__init__

    def counting(self, st):
        made.append(st)
        real(self, st)
    monkeypatch.setattr(resolve._StatementIndex, "__init__", counting)
    edited = ast.parse("y = 1\n").body[0]
    again = resolve._TreeIndex(ast.Module(body=tree.body[:-1] + [edited], type_ignores=[]))
    assert made == [edited]
    assert again.imports == idx.imports and again.called == idx.called and again.attrs == {}
