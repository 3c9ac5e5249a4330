#!/usr/bin/env python3
"""Determinism under load: `gradpath check` of a folder on a quiet machine and while busy-loop
processes keep every core busy must give identical findings (issue 18, item 3).

The folder: generated training files (benchmarks/gen_corpus.py) of a few thousand lines, and one
20,000-line file that ends in `torch.optim.SGD([], lr=0.1)` (a GP101 at its very end: a check that
stops early misses it). Each check runs as a subprocess (`python -m gradpath check --format json`);
the figures are its wall time, its CPU time (user + sys of the child), the number of findings, the
exit status and whether the findings equal the quiet run's.

    python benchmarks/bench_determinism.py                       # this checkout
    python benchmarks/bench_determinism.py --server /tmp/old/server   # another copy of server/ (e.g. an
                                                                       # older commit, via git archive)
    python benchmarks/bench_determinism.py --busy 8 --sizes 3000,3000,20000
    python benchmarks/bench_determinism.py --folder /work/realcode/examples   # a real folder, as it is
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BUSY = "while True:\n    pass\n"
TAIL = "\n\nimport torch\nlast_optimizer = torch.optim.SGD([], lr=0.1)\n"


def make_folder(folder: Path, sizes: list[int]) -> None:
    sys.path.insert(0, str(HERE))
    from gen_corpus import generate
    for i, n in enumerate(sizes):
        text = generate(n, seed=100 + i, idx=i)
        if n >= 10_000:
            text += TAIL
        (folder / f"gen_{i}_{n}.py").write_text(text)


def check(folder: Path, server: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(server))
    env.pop("GRADPATH_TIME_LIMIT_S", None)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "gradpath", "check", "--format", "json", "--isolated", str(folder)],
                          capture_output=True, text=True, env=env, cwd=str(folder), timeout=1800)
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    try:
        found = json.loads(proc.stdout)
    except json.JSONDecodeError:
        found = None
    keys = sorted((os.path.relpath(f["path"], folder), f["line"], f["column"], f["code"], f.get("message", ""))
                  for f in found or [])
    return {"rc": proc.returncode, "wall": wall, "cpu": cpu, "findings": keys,
            "stderr": proc.stderr.strip().splitlines()[-3:]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--server", default=str(ROOT / "server"), help="the server/ folder to import gradpath from")
    ap.add_argument("--sizes", default="3000,3000,3000,20000", help="lines of each generated file")
    ap.add_argument("--busy", type=int, default=0, help="busy-loop processes (default: 3 per core)")
    ap.add_argument("--folder", default="", help="check this folder as it is (real code) instead of generated files")
    a = ap.parse_args()
    sizes = [int(s) for s in a.sizes.split(",")] if not a.folder else []
    busy_n = a.busy or 3 * (os.cpu_count() or 1)
    with tempfile.TemporaryDirectory() as d:
        folder = Path(a.folder).resolve() if a.folder else Path(d)
        if not a.folder:
            make_folder(folder, sizes)
        quiet = check(folder, Path(a.server))
        busy = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(busy_n)]
        try:
            time.sleep(0.5)
            loaded = check(folder, Path(a.server))
        finally:
            for p in busy:
                p.kill()
            for p in busy:
                p.wait()
    gp101_last = [k for k in quiet["findings"] if k[0].endswith("_20000.py") and k[3] == "GP101"]
    print(f"  {len(quiet['findings'])} findings in {len({k[0] for k in quiet['findings']})} files")
    what = f"folder {folder}" if a.folder else f"files: {sizes} lines"
    print(f"server: {a.server}; {what}; {os.cpu_count()} cores; {busy_n} busy-loop processes")
    for name, r in (("quiet", quiet), ("loaded", loaded)):
        has_last = any(k in r["findings"] for k in gp101_last) if gp101_last else None
        print(f"  {name:7s} wall {r['wall']:6.1f} s  cpu {r['cpu']:6.1f} s  exit {r['rc']}  "
              f"{len(r['findings'])} findings  GP101 at the end of the 20,000-line file: {has_last}")
        for line in r["stderr"]:
            print(f"          stderr: {line[:160]}")
    same = quiet["findings"] == loaded["findings"] and quiet["rc"] == loaded["rc"]
    missing = sorted(set(quiet["findings"]) - set(loaded["findings"]))
    print(f"  identical findings and exit status: {same}" + (f" (missing under load: {missing[:5]})" if missing else ""))
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
