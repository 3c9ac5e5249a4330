#!/usr/bin/env python3
"""Whole-file analysis cost on real files: per file, `ast.parse`, `analyze()`, their ratio and the
per-phase CPU breakdown (`AnalysisResult.timings`), on the files of `real_files.txt` (under
$GRADPATH_REALCODE, default /work/realcode; fetched, never committed).

    .venv/bin/python benchmarks/profile_real.py [--repeat 5] [--only train.py] [--json out.json]

CPU time of this thread (`time.thread_time`): medians of `--repeat` analyses (after one warm-up)
and of 9 parses. It imports `gradpath` from wherever Python finds it, so that two versions of the
tree can be compared with PYTHONPATH=<copy>/server. It asserts nothing.
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import statistics
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REAL = Path(os.environ.get("GRADPATH_REALCODE", "/work/realcode"))


def _files() -> list[str]:
    out = []
    for line in (HERE / "real_files.txt").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            out.append(line)
    return out


def _cpu(fn) -> float:
    t0 = time.thread_time()
    fn()
    return time.thread_time() - t0


def main(argv=None) -> int:
    from gradpath.analysis import analyze

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--only", default="", help="substring of the file paths to keep")
    ap.add_argument("--json", default="", help="also write the figures here")
    a = ap.parse_args(argv)
    rows = {}
    for rel in _files():
        if a.only and a.only not in rel:
            continue
        p = REAL / rel
        if not p.exists():
            print(f"skip {rel}: not fetched under {REAL}")
            continue
        text = p.read_text(encoding="utf-8")
        parse = statistics.median(_cpu(lambda: ast.parse(text)) for _ in range(9))
        analyze(text, str(p))
        cpu, phases = [], []
        for _ in range(a.repeat):
            t0 = time.thread_time()
            r = analyze(text, str(p))
            cpu.append(time.thread_time() - t0)
            phases.append(r.timings)
        total = statistics.median(cpu)
        keys = {k for t in phases for k in t}
        ph = {k: statistics.median(t.get(k, 0.0) for t in phases) for k in keys}
        rules = sum(v for k, v in ph.items() if k.startswith("rule:"))
        print(f"{rel} ({text.count(chr(10))} lines): ast.parse {parse * 1e3:.1f} ms, analyze() {total * 1e3:.1f} ms "
              f"({total / parse:.1f}x), {len(r.findings)} findings")
        for k, v in sorted(ph.items(), key=lambda kv: -kv[1]):
            if v >= 0.0005 and not k.startswith("rule:"):
                print(f"    {v * 1e3:7.1f} ms  {k}")
        print(f"    {rules * 1e3:7.1f} ms  rules (all rule: entries)")
        rows[rel] = {"ast_parse_ms": parse * 1e3, "analyze_ms": total * 1e3,
                     "phases_ms": {k: v * 1e3 for k, v in ph.items()}}
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
