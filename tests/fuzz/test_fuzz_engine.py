"""Fuzzing `gradpath.analysis.analyze`: generated training programs and mutated real ones.

For every input: no exception escapes, every span (finding, related, fix edit) lies within the
text, findings are JSON-serialisable, and the analysis ends within its time budget (a
pathological file gives a partial result with `timed_out` and a log line). About 5,000 generated
inputs in all; `tests/fuzz/long_fuzz.py` runs many more.
"""
from __future__ import annotations

import logging
import os
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from fuzzgen import _deep_nest, check_result, mutants, programs, seed_texts
from gradpath.analysis import analyze
from gradpath.analysis import engine
from gradpath.analysis.engine import Options

SCALE = float(os.environ.get("GRADPATH_FUZZ_SCALE", "1"))
BUDGET_S = 1.0
# parse time is outside the rules' budget; the largest generated inputs parse in well under this.
# Time is asserted as this thread's CPU time (the machine may be loaded by other work: wall time
# then stretches without the analysis doing more), plus a loose wall-clock guard against hangs.
SLACK_S = 2.0
WALL_GUARD_S = 20.0
SEEDS = seed_texts()
FUZZ = settings(deadline=None, derandomize=True, database=None, print_blob=True,
                suppress_health_check=list(HealthCheck))


def _timed(fn, *a, **kw):
    w0, c0 = time.monotonic(), time.thread_time()
    out = fn(*a, **kw)
    return out, time.monotonic() - w0, time.thread_time() - c0


def _assert_time(wall, cpu, budget):
    assert cpu < budget + SLACK_S, f"analysis used {cpu:.2f}s of CPU (budget {budget}s)"
    assert wall < budget + WALL_GUARD_S, f"analysis took {wall:.2f}s of wall time (budget {budget}s)"


def _analyze_checked(text: str):
    result, wall, cpu = _timed(analyze, text, "fuzz.py", Options(time_budget_s=BUDGET_S))
    check_result(text, result)
    _assert_time(wall, cpu, BUDGET_S)
    return result


@settings(FUZZ, max_examples=int(2500 * SCALE))
@given(programs())
def test_generated_programs(text):
    _analyze_checked(text)


@settings(FUZZ, max_examples=int(2000 * SCALE))
@given(mutants(SEEDS, heavy=0.25))
def test_mutated_programs(text):
    _analyze_checked(text)


@settings(FUZZ, max_examples=int(500 * SCALE))
@given(st.text(max_size=400))
def test_arbitrary_text(text):
    _analyze_checked(text)


@settings(FUZZ, max_examples=int(100 * SCALE))
@given(st.binary(max_size=300), st.sampled_from(["utf-8", "latin-1", "utf-16", "cp1252", "utf-8-sig"]))
def test_odd_encodings_through_cli_reader(raw, enc):
    """Bytes from disk in odd encodings (with and without coding cookies) through the CLI's
    reader, then the analysis."""
    import tempfile
    from pathlib import Path
    from gradpath.cli import read_source
    prefix = b"# -*- coding: latin-1 -*-\n" if enc == "latin-1" else b""
    body = ("import torch\nmodèle = torch.nn.Linear(2, 2)  # é 中\n").encode(enc, errors="replace")
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "enc.py"
        p.write_bytes(prefix + body + raw)
        text = read_source(p)
    assert isinstance(text, str)
    _analyze_checked(text)


# -- explicit pathological inputs ----------------------------------------------------------------

def _big_file(lines: int) -> str:
    from gen_corpus import generate
    return generate(lines, seed=11)


def test_ten_thousand_line_file():
    text = _big_file(10_000)
    assert text.count("\n") == 10_000
    result, wall, cpu = _timed(analyze, text, "big.py")
    check_result(text, result)
    assert not result.failed_rules
    _assert_time(wall, cpu, engine.DEFAULT_TIME_BUDGET_S)


@pytest.mark.parametrize("variant", ["crlf", "cr", "tabs", "no-trailing-newline", "nul", "bom",
                                     "surrogate", "syntax-error-every-100-lines"])
def test_ten_thousand_line_variants(variant):
    text = _big_file(10_000)
    if variant == "crlf":
        text = text.replace("\n", "\r\n")
    elif variant == "cr":
        text = text.replace("\n", "\r")
    elif variant == "tabs":
        text = text.replace("    ", "\t")
    elif variant == "no-trailing-newline":
        text = text.rstrip("\n")
    elif variant == "nul":
        text = text.replace("import os", "import\x00os")
    elif variant == "bom":
        text = "\ufeff" + text
    elif variant == "surrogate":
        text = text.replace("# only the last", "# \ud800 only the last")
    elif variant == "syntax-error-every-100-lines":
        lines = text.split("\n")
        for i in range(50, len(lines), 100):
            lines[i] = lines[i] + " ((("
        text = "\n".join(lines)
    result, wall, cpu = _timed(analyze, text, "big.py")
    check_result(text, result)
    _assert_time(wall, cpu, engine.DEFAULT_TIME_BUDGET_S)
    if variant == "syntax-error-every-100-lines":
        assert any(f.code == "GP000" or f.message.startswith("SyntaxError") for f in result.findings)


@pytest.mark.parametrize("kind", ["if", "def", "class", "with", "for", "defif", "parens", "lists",
                                  "unary", "binop", "attr", "calls"])
@pytest.mark.parametrize("depth", [30, 200, 1000, 5000])
def test_deep_nesting(kind, depth):
    if depth == 5000 and kind in ("if", "def", "class", "with", "for", "defif"):
        depth = 1200  # indented blocks: 5000 levels would be a 50 MB file, not a nesting test
    inner = SEEDS[0]
    text = _deep_nest(kind, depth, inner)
    _analyze_checked(text)


@pytest.mark.parametrize("literal", [
    "s = '" + "a" * 2_000_000 + "'\n",
    "n = " + "9" * 100_000 + "\n",
    "xs = [" + ", ".join(["1.0"] * 200_000) + "]\n",
    "x = " + "'" * 3 + "unterminated\n" * 1000,
    "\x00" * 10_000,
    "\n" * 200_000,
    " " * 500_000,
    "#" + "é" * 100_000 + "\n",
])
def test_huge_inputs(literal):
    _analyze_checked(literal + SEEDS[0])


def test_empty_and_tiny_inputs():
    for text in ["", "\n", "\r\n", "\r", " ", "\t", "\x00", "\ufeff", "#", "\\", "(", "'", '"""',
                 "import", "\ud800", "\x0c", "\u2028", "pass"]:
        _analyze_checked(text)


# -- the hard time budget ------------------------------------------------------------------------

@pytest.fixture
def extra_rules(monkeypatch):
    """Add checkers around the real ones, for this test only."""
    from gradpath.analysis import rules as rules_pkg
    real = list(rules_pkg.checkers())
    added: list = []

    def fake_checkers():
        return real[:1] + added + real[1:]
    monkeypatch.setattr(rules_pkg, "checkers", fake_checkers)
    return added


def _finding_rule(ctx):
    yield ctx.finding("GP101", ctx.src.line_span(1), "marker finding from a fast rule")


def _spinning_rule(ctx):
    while True:  # a rule with a bug that never returns
        pass


def _stubborn_rule(ctx):
    """Catches Exception around its work: must not swallow the interruption."""
    while True:
        try:
            sum(range(1000))
        except Exception:
            pass


def test_a_rule_that_never_returns_is_interrupted(extra_rules, caplog):
    extra_rules += [("test.fast", _finding_rule), ("test.spin", _spinning_rule)]
    caplog.set_level(logging.WARNING, logger="gradpath.analysis")
    t0 = time.monotonic()
    result = analyze("import torch\nx = 1\n", "spin.py", Options(time_budget_s=0.3))
    elapsed = time.monotonic() - t0
    assert elapsed < 0.3 + engine.HARD_STOP_SLACK_S + 3.0  # loose: the machine may be loaded
    assert result.timed_out
    assert "test.spin" in result.failed_rules
    assert [f.message for f in result.findings] == [
        "analysis stopped after 0.3 s of CPU time: results for this file are incomplete",
        "marker finding from a fast rule"]
    assert engine.is_incomplete(result) and result.findings[0].code == "GP000"
    assert any("interrupted" in r.getMessage() and "test.spin" in r.getMessage() for r in caplog.records)
    # nothing is left pending for this thread afterwards
    time.sleep(0.5)
    assert sum(range(10)) == 45


def test_interruption_is_not_swallowed_by_except_exception(extra_rules):
    extra_rules.append(("test.stubborn", _stubborn_rule))
    t0 = time.monotonic()
    result = analyze("x = 1\n", "s.py", Options(time_budget_s=0.2))
    assert time.monotonic() - t0 < 4.0
    assert result.timed_out and "test.stubborn" in result.failed_rules


def test_budget_in_worker_threads_is_per_thread(extra_rules):
    """Two analyses at once in server-like worker threads: the slow one is cut, the other is not."""
    gate = threading.Event()

    def slow_only_for_marked(ctx):
        if "SLOW" in ctx.src.text:
            while True:
                pass
        gate.wait(0.5)  # still running when the slow analysis is interrupted
        return ()
    extra_rules.append(("test.maybe_slow", slow_only_for_marked))
    out = {}

    def run(name, text, budget, delay):
        time.sleep(delay)
        out[name] = analyze(text, name, Options(time_budget_s=budget))
    ts = [threading.Thread(target=run, args=("slow", "# SLOW\nx = 1\n", 0.3, 0.0)),
          threading.Thread(target=run, args=("fast", "x = 1\n", 3.0, 0.2))]
    for t in ts:
        t.start()
    for t in ts:
        t.join(5)
    assert not any(t.is_alive() for t in ts)
    assert out["slow"].timed_out and "test.maybe_slow" in out["slow"].failed_rules
    assert not out["fast"].timed_out and not out["fast"].failed_rules


def test_budget_zero_skips_rules_but_reports_syntax():
    result = analyze("def f(:\n    pass\n", "z.py", Options(time_budget_s=0.0))
    assert result.timed_out
    assert any(f.message.startswith("SyntaxError") for f in result.findings)


def test_bad_rule_output_is_dropped(extra_rules):
    from gradpath.analysis.findings import Finding, Span

    def bad(ctx):
        yield Finding("GP102", "outside", Span(99, 0, 99, 5), "warning")
        yield Finding("GP102", "inverted", Span(1, 5, 1, 2), "warning")
        yield "not a finding"
        yield Finding("GP102", "fine", Span(1, 0, 1, 5), "warning")
    extra_rules.append(("test.bad", bad))
    result = analyze("x = 1\n", "b.py")
    assert [f.message for f in result.findings] == ["fine"]
