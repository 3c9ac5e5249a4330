#!/usr/bin/env python3
"""A longer fuzz run of the analysis than the suite's (not collected by pytest: no test_ prefix).

    .venv/bin/python tests/fuzz/long_fuzz.py [--examples 50000] [--seed N] [--budget 2.0]

Random seeds each run (or --seed), generated programs and mutants of the fixtures; every input is
checked like in test_fuzz_engine.py. Failing inputs are written to tests/fuzz/failures/ (one .py
per failure, with the reason in a .txt beside it) and the run goes on; exit status 1 if any.
"""
from __future__ import annotations

import argparse
import random
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[1] / "server"))

from fuzzgen import check_result, mutated_program, seed_texts, training_program  # noqa: E402
from gradpath.analysis import analyze  # noqa: E402
from gradpath.analysis.engine import Options  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--examples", type=int, default=50_000)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--budget", type=float, default=2.0, help="analysis time budget, s")
    ap.add_argument("--slack", type=float, default=2.0, help="CPU seconds allowed beyond the budget")
    a = ap.parse_args(argv)
    seed = a.seed if a.seed is not None else random.randrange(2**32)
    master = random.Random(seed)
    seeds = seed_texts()
    fails = 0
    out = HERE / "failures"
    t_start = time.monotonic()
    slowest = (0.0, None)
    timed_out = 0
    print(f"long fuzz: {a.examples} inputs, seed {seed}, budget {a.budget}s", flush=True)
    for i in range(a.examples):
        s = master.randrange(2**63)
        r = random.Random(s)
        text = mutated_program(r, seeds) if i % 2 else training_program(r)
        c0 = time.thread_time()
        try:
            result = analyze(text, "fuzz.py", Options(time_budget_s=a.budget))
            cpu = time.thread_time() - c0
            check_result(text, result)
            timed_out += result.timed_out
            if cpu > a.budget + a.slack:
                raise AssertionError(f"analysis used {cpu:.2f}s CPU (budget {a.budget}s)")
            if cpu > slowest[0]:
                slowest = (cpu, s)
        except BaseException as exc:  # noqa: BLE001 - report everything, KeyboardInterrupt too
            if isinstance(exc, KeyboardInterrupt):
                raise
            fails += 1
            out.mkdir(exist_ok=True)
            (out / f"fail_{seed}_{i}.py").write_text(text, encoding="utf-8", errors="surrogatepass")
            (out / f"fail_{seed}_{i}.txt").write_text(
                f"input {i} ({'mutant' if i % 2 else 'program'} of random.Random({s}))\n"
                + "".join(traceback.format_exception(exc)), encoding="utf-8")
            print(f"FAIL input {i}: {type(exc).__name__}: {exc}", flush=True)
        if (i + 1) % 1000 == 0:
            print(f"  {i + 1} inputs, {fails} failures, {timed_out} timed out, "
                  f"{time.monotonic() - t_start:.0f}s", flush=True)
    print(f"done: {a.examples} inputs in {time.monotonic() - t_start:.0f}s, {fails} failures, "
          f"{timed_out} hit the time budget, slowest {slowest[0]:.2f}s CPU (random.Random({slowest[1]}))")
    return 1 if fails else 0


if __name__ == "__main__":
    raise SystemExit(main())
