"""The editor's index summarises modules in a child process (analysis/project/pool.py): the same
summaries, in the same order, as summarising in-process; a stop request ends the build."""
import shutil
import threading
from pathlib import Path

import pytest

from gradpath.analysis.project import Project
from gradpath.analysis.project.pool import IndexStopped, ProcessSummarizer
from gradpath.analysis.project.summaries import summarize
from gradpath.files import iter_python_files

PROJECTS = Path(__file__).resolve().parents[2] / "fixtures" / "projects"


def _all_fixture_modules(tmp_path: Path) -> Path:
    """Every fixture project under one folder (well over MIN_MODULES modules, one of them broken)."""
    root = tmp_path / "all"
    for p in sorted(PROJECTS.iterdir()):
        if p.is_dir():
            shutil.copytree(p, root / p.name)
    (root / "broken.py").write_text("def f(:\n    pass\n")
    return root


def _build(root: Path, cache: Path, summarize_many=None, progress=None) -> Project:
    files = [str(f) for f in iter_python_files([str(root)])]
    return Project(str(root), files, cache_folder=str(cache)).build(progress=progress,
                                                                   summarize_many=summarize_many)


def test_child_process_gives_the_same_summaries_in_the_same_order(tmp_path):
    root = _all_fixture_modules(tmp_path)
    here = _build(root, tmp_path / "cache-here")
    summarizer = ProcessSummarizer(min_modules=1)
    seen = []
    there = _build(root, tmp_path / "cache-child", summarizer, progress=lambda i, n: seen.append((i, n)))
    assert summarizer.in_child == len(there.paths()) and summarizer.here == 0
    assert len(there.paths()) > 40
    assert list(there.summaries) == list(here.summaries)  # insertion order too
    assert there.summaries == here.summaries
    assert there.hashes == here.hashes and there.broken == here.broken
    assert str(root / "broken.py") in there.broken
    # progress counts up to the total once
    assert seen[-1] == (len(there.paths()), len(there.paths()))
    assert [i for i, _ in seen] == sorted(i for i, _ in seen)
    # every summary is what summarize() gives for the file's text
    for p, s in list(there.summaries.items())[::7]:
        assert s == summarize(Path(p).read_text())


def test_a_warm_cache_starts_no_child(tmp_path):
    root = _all_fixture_modules(tmp_path)
    _build(root, tmp_path / "cache")
    summarizer = ProcessSummarizer(min_modules=1)
    warm = _build(root, tmp_path / "cache", summarizer)
    assert summarizer.in_child == 0 and summarizer.here == 0
    assert warm.summaries


def test_few_modules_are_summarised_here(tmp_path):
    root = tmp_path / "p"
    root.mkdir()
    (root / "a.py").write_text("import torch\nx = torch.ones(1)\n")
    summarizer = ProcessSummarizer()  # default threshold: no process for one module
    p = _build(root, tmp_path / "cache", summarizer)
    assert summarizer.here == 1 and summarizer.in_child == 0
    assert p.summaries[str(root / "a.py")] == summarize("import torch\nx = torch.ones(1)\n")


def test_stop_ends_the_build(tmp_path):
    root = _all_fixture_modules(tmp_path)
    stop = threading.Event()
    stop.set()
    with pytest.raises(IndexStopped):
        _build(root, tmp_path / "cache", ProcessSummarizer(min_modules=1, stop=stop))
    with pytest.raises(IndexStopped):
        _build(root, tmp_path / "cache2", ProcessSummarizer(min_modules=10 ** 6, stop=stop))


def test_several_children_keep_the_order(tmp_path):
    """`gradpath check` of a folder with no cached summaries: a child per core, the same result."""
    root = _all_fixture_modules(tmp_path)
    here = _build(root, tmp_path / "cache-here")
    summarizer = ProcessSummarizer(min_modules=1, workers=2, nice=False)
    there = _build(root, tmp_path / "cache-children", summarizer)
    assert summarizer.in_child == len(there.paths())
    assert list(there.summaries) == list(here.summaries) and there.summaries == here.summaries
