"""Fuzzing the editor's incremental analysis: random edits (letters, brackets, colons, quotes,
newlines, deleted spans) to generated training files and the examples, some of them cancelled part
way (a newer version arrived), some of those then never followed by their text. After every edit
that is analysed to the end, the findings equal a whole-file `analyze()` of the same text.

Where two syntax errors exist at once, the incremental path may report another one of them (or
another column) than a whole parse does (it keeps an earlier statement's error): GP000 is compared
by count, every other finding exactly.
"""
from __future__ import annotations

import random
import sys

import pytest

from gradpath.analysis import analyze
from gradpath.analysis.incremental import IncrementalAnalyzer
from testpaths import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
from gen_corpus import generate  # noqa: E402

SNIPPETS = ["q", "(", ")", ":", "\n", "\n    ", "    ", "[", "]", "'", '"', "#", "if x:", "for i in y:",
            "\n\n", "def f(", "import os\n", "    pass\n", "= ", "."]


class _LateCancel:
    """Reads as set from its `after`-th look on."""

    def __init__(self, after: int):
        self.looks, self.after = 0, after

    def is_set(self) -> bool:
        self.looks += 1
        return self.looks >= self.after


def _comparable(result):
    rest = [f.to_dict() for f in result.findings if f.code != "GP000"]
    return rest, sum(1 for f in result.findings if f.code == "GP000")


def _texts():
    yield "generated-1", generate(500, seed=21, idx=900)
    yield "generated-2", generate(900, seed=22, idx=901)
    for p in sorted((ROOT / "examples").glob("*.py"))[:2]:
        yield p.name, p.read_text()


@pytest.mark.parametrize("name,text", list(_texts()), ids=lambda v: v if isinstance(v, str) and len(v) < 40 else "")
def test_random_edits_and_cancels_equal_a_whole_file_analysis(name, text):
    r = random.Random(name)
    ia = IncrementalAnalyzer()
    ia.analyze(text, "t.py")
    cur, compared, cancelled = text, 0, 0
    for _ in range(40):
        pos = r.randrange(len(cur) + 1)
        if r.random() < 0.3 and len(cur) > 10:
            new = cur[:pos] + cur[min(len(cur), pos + r.randint(1, 40)):]
        else:
            new = cur[:pos] + r.choice(SNIPPETS) + cur[pos:]
        if r.random() < 0.35:
            if ia.analyze(new, "t.py", cancel=_LateCancel(r.randint(1, 6))) is None:
                cancelled += 1
                if r.random() < 0.5:
                    continue  # that version is never analysed: the next edit applies to the last text
        got = ia.analyze(new, "t.py")
        assert _comparable(got) == _comparable(analyze(new, "t.py")), (ia.stats.mode, ia.stats.reason)
        compared += 1
        cur = new
    assert compared >= 20 and cancelled >= 3
