#!/usr/bin/env python3
"""Where the analysis time goes: per-phase CPU breakdown of `analyze()` on generated files
(AnalysisResult.timings: parse, symbols, each shared fact (memo) exclusive of the facts it
pulled in, each rule exclusive of the facts it triggered), and optionally a cProfile listing.

    .venv/bin/python benchmarks/profile_engine.py [--lines 2000] [--repeat 5] [--cprofile 25]
"""
from __future__ import annotations

import argparse
import ast
import time

from _common import header, median, save
from gen_corpus import generate
from gradpath.analysis import analyze


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--lines", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--cprofile", type=int, default=0, help="also print the top N functions by own time")
    a = ap.parse_args(argv)
    header(f"analyze() breakdown on a {a.lines}-line generated file")
    text = generate(a.lines, seed=1, idx=a.lines)
    analyze(text)
    runs, cpu, parse = [], [], []
    for _ in range(a.repeat):
        c0 = time.thread_time()
        r = analyze(text, "gen.py")
        cpu.append(time.thread_time() - c0)
        runs.append(r.timings)
        p0 = time.thread_time()
        ast.parse(text)
        parse.append(time.thread_time() - p0)
    keys = sorted({k for t in runs for k in t}, key=lambda k: -median([t.get(k, 0.0) for t in runs]))
    total = median(cpu)
    print(f"analyze(): {total * 1000:.1f} ms CPU (median of {a.repeat}); ast.parse {median(parse) * 1000:.1f} ms "
          f"-> {total / median(parse):.1f}x; findings {len(r.findings)}")
    rows = []
    for k in keys:
        v = median([t.get(k, 0.0) for t in runs])
        if v < 0.0005:
            continue
        rows.append((k, v))
        print(f"  {v * 1000:8.1f} ms  {v / total * 100:5.1f}%  {k}")
    if a.cprofile:
        import cProfile
        import pstats
        pr = cProfile.Profile()
        pr.enable()
        analyze(text, "gen.py")
        pr.disable()
        pstats.Stats(pr).sort_stats("tottime").print_stats(a.cprofile)
    save("profile", {"lines": a.lines, "cpu_ms": total * 1000, "ast_parse_ms": median(parse) * 1000,
                     "phases_ms": {k: v * 1000 for k, v in rows}})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
