"""Which scripts the live step runs for a finding in a module (gradpath.live.reach): pure, no torch."""
import os
import textwrap

import pytest

from testpaths import FIXTURES
from gradpath.analysis.findings import Finding, Related, Span
from gradpath.analysis.project import Project
from gradpath.files import iter_python_files
from gradpath.live import reach

PROJECTS = FIXTURES / "projects"


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def _graph(root) -> reach.ImportGraph:
    root = str(root)
    return reach.ImportGraph(Project(root, [str(f) for f in iter_python_files([root])], use_cache=False).build())


def _finding(related_path=None, line=1) -> Finding:
    rel = [Related(Span(line, 0, line, 5), "the model's output goes to CrossEntropyLoss here", related_path)] \
        if related_path else []
    return Finding("GP304", "m", Span(line, 0, line, 5), "warning", related=rel)


@pytest.mark.parametrize("code,kind", [
    ('if __name__ == "__main__":\n    main()\n', "main"),
    ("if '__main__' == __name__:\n    main()\n", "main"),
    ("for x in data:\n    loss.backward()\n", "top-level"),
    ("model = Net()\ntrainer.fit(model)\n", "top-level"),
    ("import torch\nclass Net:\n    pass\n", None),
    ("logging.basicConfig()\nX = 1\n", None),  # a call at module level, but nothing trains
    ("for n in NAMES:\n    register(n)\n", None),  # a registry filled at import
    ("for epoch in range(3):\n    train_one_epoch(model, loader)\n", "top-level"),  # the loop is in engine.py
    ("def f(:\n", None),
    ("", None),
])
def test_script_kind(code, kind):
    assert reach.script_kind(code) == kind


def test_never_a_script():
    assert reach.never_a_script("/p/setup.py") and reach.never_a_script("/p/tests/train.py")
    assert reach.never_a_script("/p/test_train.py") and reach.never_a_script("/p/pkg/__init__.py")
    assert not reach.never_a_script("/p/scripts/train.py")


def test_the_related_script_comes_first_then_importers_nearest_first():
    root = PROJECTS / "models_pkg_softmax_ce"
    g = _graph(root)
    mlp = str(root / "models" / "mlp.py")
    train = str(root / "train.py")
    # through the package's __init__ re-export
    assert g.importers_of(mlp) == {str(root / "models" / "__init__.py"): [str(root / "models" / "__init__.py"), mlp],
                                   train: [train, str(root / "models" / "__init__.py"), mlp]}
    [pick] = reach.scripts_for(g, mlp, _finding(train))
    assert (pick.path, pick.tier) == (train, 0) and pick.why == "the other end of the finding is there (train.py)"
    [pick] = reach.scripts_for(g, mlp, _finding())
    assert (pick.path, pick.tier) == (train, 2) and pick.why == "it imports models/__init__.py -> models/mlp.py"
    # models/__init__.py imports convnet.py but is never picked (a package, not a script)
    assert [p.path for p in reach.scripts_for(g, str(root / "models" / "convnet.py"), _finding())] == [train]


def test_a_loss_end_in_a_module_leads_to_the_scripts_that_import_it():
    root = PROJECTS / "trainer_base_class"
    g = _graph(root)
    sup = str(root / "trainers" / "supervised.py")
    [pick] = reach.scripts_for(g, str(root / "models" / "classifier.py"), _finding(sup))
    assert pick.path == str(root / "run.py") and pick.tier == 1
    assert pick.why == "it imports trainers/supervised.py (the other end of the finding)"


def test_no_script_reaches_a_package_nobody_runs():
    root = PROJECTS / "relative_import_reexport"
    g = _graph(root)
    target = str(root / "pkg" / "models" / "classifier.py")
    assert reach.scripts_for(g, target, _finding(str(root / "pkg" / "train" / "loop.py"))) == []
    assert reach.no_script_reason(target, str(root)).startswith("no script in the project reaches "
                                                                "pkg/models/classifier.py: ")


def test_order_is_deterministic_and_limited(tmp_path):
    """Scripts that name the module's classes come first, then those that train, then the shorter
    chain, then the path; at most MAX_SCRIPTS."""
    (tmp_path / "net.py").write_text("class Net:\n    pass\n")
    main = 'if __name__ == "__main__":\n    {}\n'
    files = {"z_train.py": "from net import Net\n" + main.format("Net().step()"),
             "a_export.py": "from net import Net\n" + main.format("print(Net())"),
             "b_train.py": "from net import Net\n" + main.format("loss.backward()"),
             "helper.py": "from net import Net\n",
             "c_far.py": "import helper\n" + main.format("opt.step()"),
             "d_train.py": "from net import Net\n" + main.format("opt.step()")}
    for name, code in files.items():
        (tmp_path / name).write_text(textwrap.dedent(code))
    g = _graph(tmp_path)
    picks = reach.scripts_for(g, str(tmp_path / "net.py"), _finding())
    assert [os.path.basename(p.path) for p in picks] == ["b_train.py", "d_train.py", "z_train.py"]
    picks = reach.scripts_for(g, str(tmp_path / "net.py"), _finding(), limit=10)
    assert [os.path.basename(p.path) for p in picks] == ["b_train.py", "d_train.py", "z_train.py", "a_export.py",
                                                         "c_far.py"]
    assert picks[4].why == "it imports helper.py -> net.py"


def test_is_runnable():
    assert reach.is_runnable("/p/train.py", 'if __name__ == "__main__":\n    pass\n')
    assert not reach.is_runnable("/p/models/net.py", "class Net:\n    pass\n")
    assert reach.is_runnable("/p/notebook.ipynb", "x = 1\n")  # a notebook runs top to bottom
