"""Another thread can stop an analysis part way (the language server's whole-file check after a
pause gives way to the next keystroke): `analyze_raw(..., cancel=event)`."""
import threading
from pathlib import Path

from gradpath.analysis.engine import Options, analyze_raw

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _big_text() -> str:
    import sys
    sys.path.insert(0, str(BENCH))
    try:
        from gen_corpus import generate
    finally:
        sys.path.remove(str(BENCH))
    return generate(2000, seed=1, idx=2000)


class _SetAfter:
    """An Event that reads as set from its n-th check on: the cancel lands part way through the
    analysis at the same point on a quiet or a loaded machine (a timer on the wall clock did not:
    under load the cancelled run could take longer than the whole one)."""

    def __init__(self, n: int):
        self.n, self.checks = n, 0

    def is_set(self) -> bool:
        self.checks += 1
        return self.checks >= self.n


def _rules_run(raw) -> set:
    return {k for k in raw.timings if k.startswith("rule:")}


def test_a_cancelled_analysis_stops_early_and_says_so():
    text = _big_text()
    full = analyze_raw(text, "gen.py", Options())
    assert not full.cancelled and not full.timed_out and full.findings

    ev = _SetAfter(4)
    part = analyze_raw(text, "gen.py", Options(), cancel=ev)
    assert part.cancelled and part.timed_out
    assert len(part.findings) < len(full.findings)
    # it stopped before the end: fewer rules ran, and it did not go on checking long after
    assert _rules_run(part) < _rules_run(full)
    assert ev.checks < 4 + 3


def test_an_event_set_before_the_start_runs_no_rule():
    ev = threading.Event()
    ev.set()
    raw = analyze_raw(_big_text(), "gen.py", Options(), cancel=ev)
    assert raw.cancelled and raw.findings == []


def test_an_event_never_set_changes_nothing():
    text = _big_text()
    a = analyze_raw(text, "gen.py", Options())
    b = analyze_raw(text, "gen.py", Options(), cancel=threading.Event())
    assert not b.cancelled
    assert [f.to_dict() for f in a.findings] == [f.to_dict() for f in b.findings]
