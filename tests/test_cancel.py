"""Another thread can stop an analysis part way (the language server's whole-file check after a
pause gives way to the next keystroke): `analyze_raw(..., cancel=event)`."""
import threading
import time
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


def test_a_cancelled_analysis_stops_early_and_says_so():
    text = _big_text()
    t0 = time.monotonic()
    full = analyze_raw(text, "gen.py", Options())
    whole = time.monotonic() - t0
    assert not full.cancelled and not full.timed_out and full.findings

    ev = threading.Event()
    timer = threading.Timer(0.04, ev.set)
    timer.start()
    t0 = time.monotonic()
    part = analyze_raw(text, "gen.py", Options(), cancel=ev)
    took = time.monotonic() - t0
    timer.join()
    assert part.cancelled and part.timed_out
    assert len(part.findings) < len(full.findings)
    assert took < whole  # it stopped before the end


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
