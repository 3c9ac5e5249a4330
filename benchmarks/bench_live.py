"""Live CPU step latency: cold first confirm and warm round trips over the bundled examples.

    .venv/bin/python benchmarks/bench_live.py [--repeat 15] [--cold 3]

Goals (DESIGN/issue 5): first confirm with a cold worker within 6 s; warm p50 under 300 ms for the
bundled examples. Prints figures; asserts nothing. The machine's load average is printed alongside,
since other processes share the CPU.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "server"))

from gradpath.analysis import analyze  # noqa: E402
from gradpath.live.service import LiveService  # noqa: E402

EXAMPLES = sorted((ROOT / "examples").glob("*.py"))


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def load():
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def cold_once(example: Path) -> dict:
    text = example.read_text()
    t0 = time.monotonic()
    findings = analyze(text, str(example)).findings
    svc = LiveService()
    svc.start()
    rep = svc.confirm(str(example), text, findings)
    total = time.monotonic() - t0
    info = svc._worker.info if svc._worker else {}
    svc.close()
    return {"total_s": total, "startup_s": info.get("startup_s"), "warm_ms": info.get("warm_ms"),
            "warm_cpu_ms": info.get("warm_cpu_ms"),
            "step_ms": rep.run["timings"]["total_ms"],
            "verdicts": sorted({v.verdict for v in rep.verdicts.values()})}


def cold_cli(example: Path) -> float:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "server"))
    t0 = time.monotonic()
    subprocess.run([sys.executable, "-m", "gradpath", "confirm", str(example)], capture_output=True, env=env,
                   cwd=str(ROOT), timeout=120)
    return time.monotonic() - t0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--cold", type=int, default=3)
    args = ap.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {load():.2f}")

    print("\n== cold: new worker (import torch + one Adam step), then the first confirm")
    ex = ROOT / "examples" / "frozen_head_partial.py"
    colds = []
    for i in range(args.cold):
        c = cold_once(ex)
        colds.append(c["total_s"])
        print(f"  run {i + 1}: first confirm {c['total_s']:.2f} s (worker ready after {c['startup_s']:.2f} s, "
              f"of which warm-up {c['warm_ms'] / 1000:.2f} s wall / {c['warm_cpu_ms'] / 1000:.2f} s CPU; "
              f"step {c['step_ms']:.0f} ms) {c['verdicts']} "
              f"[load {load():.2f}]")
    print(f"  cold first confirm: min {min(colds):.2f} s, median {statistics.median(colds):.2f} s (goal < 6 s)")
    cli = cold_cli(ex)
    print(f"  `gradpath confirm {ex.relative_to(ROOT)}` end to end (process start, analysis, cold worker): "
          f"{cli:.2f} s")

    print(f"\n== warm: {args.repeat} confirms per example on one warm worker")
    svc = LiveService()
    svc.start()
    svc.wait_ready()
    all_ms = []
    for ex in EXAMPLES:
        text = ex.read_text()
        findings = analyze(text, str(ex)).findings
        svc.confirm(str(ex), text, findings)  # first touch (imports the example's modules once)
        ms, runs = [], 0
        for _ in range(args.repeat):
            t = time.monotonic()
            rep = svc.confirm(str(ex), text, findings)
            ms.append((time.monotonic() - t) * 1000)
            runs = rep.run["timings"]["runs"]
        all_ms += ms
        verdicts = ",".join(f"{f.code}:{rep.verdicts[f.id].verdict}" for f in findings) or "-"
        print(f"  {ex.name:28s} p50 {statistics.median(ms):6.0f} ms  p90 {pct(ms, 0.9):6.0f} ms  "
              f"({runs} run{'s' if runs != 1 else ''}; {verdicts})")
    svc.close()
    print(f"  all examples: p50 {statistics.median(all_ms):.0f} ms, p90 {pct(all_ms, 0.9):.0f} ms, "
          f"max {max(all_ms):.0f} ms (goal p50 < 300 ms) [load {load():.2f}]")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
