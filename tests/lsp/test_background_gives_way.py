"""The index's analyses of files that are not open give way to the open files: a keystroke stops a
background analysis part way (one GIL for both), and the background file is analysed again later."""
from __future__ import annotations

import asyncio
import threading
import types as pytypes

from gradpath.analysis import analyze
from gradpath.lsp.projects import Projects
from gradpath.lsp.scheduler import analyse_file

BUG = "import torch\nmodel = torch.nn.Linear(2, 2)\nopt = torch.optim.SGD([], lr=0.1)\n"


class _Analyzer:
    """What `analyse_file` and `Projects._publish_one` read of the scheduler."""

    def __init__(self):
        from gradpath.lsp.resolvers import ResolverPool
        self.resolvers = ResolverPool()
        self.units = {}
        self.encoding = "utf-16"

    def options_for(self, path, editor_options):
        return editor_options, False

    def roots(self):
        return []

    def is_open(self, uri):
        return False


def test_a_set_interrupt_stops_the_analysis_and_stays_set(tmp_path):
    from gradpath.analysis.engine import Options
    f = tmp_path / "train.py"
    f.write_text(BUG)
    an = _Analyzer()
    cancel = threading.Event()
    whole = analyse_file(an, str(f), Options(), cancel)
    assert [x.code for x in whole.findings] == [x.code for x in analyze(BUG, str(f)).findings] == ["GP101"]
    cancel.set()
    assert analyse_file(an, str(f), Options(), cancel) is None
    assert cancel.is_set()  # the caller sees why: try again later


def test_an_interrupted_background_file_is_analysed_again_and_published(tmp_path):
    from gradpath.analysis.engine import Options
    f = tmp_path / "models.py"
    f.write_text(BUG)
    an = _Analyzer()
    projects = Projects(an)
    projects.by_root[str(tmp_path)] = object()
    published = []
    ls = pytypes.SimpleNamespace(settings=pytypes.SimpleNamespace(options=Options()),
                                 text_document_publish_diagnostics=published.append)
    calls = []

    def flaky(analyzer, path, options, cancel):
        calls.append(cancel.is_set())
        if len(calls) == 1:
            projects.interrupt()  # a keystroke arrives while the first attempt runs
            return None
        return analyse_file(analyzer, path, options, cancel)

    async def go():
        projects.published.add(f.as_uri())  # publish even without cross-module findings
        await projects._publish_one(ls, str(f), asyncio.get_running_loop(), flaky)

    try:
        asyncio.run(go())
    finally:
        projects.shutdown()
    assert calls == [False, False]  # the second attempt starts after giving way (interrupt cleared)
    assert projects.interrupted == 1
    assert [d.code for p in published for d in p.diagnostics] == ["GP101"]
