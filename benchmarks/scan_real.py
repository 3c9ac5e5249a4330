"""Runs `gradpath check` over fetched public repositories and prints findings per code and per repo.

    python benchmarks/scan_real.py [--root /work/realcode] [--list benchmarks/real_repos.txt]
                                   [--out DIR] [--only name,name] [--select GP4]

The repositories are listed (owner/name commit) in `real_repos.txt`; their sources live outside this
repository under --root/<name> (fetched, never committed). Prints lines of Python per repo, counts of
findings per code and severity, errors+warnings per 40,000 lines, and writes every finding as JSON
to --out/<name>.json for triage. It asserts nothing.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
GRADPATH = HERE.parent / ".venv" / "bin" / "gradpath"


def _repos(list_path: Path) -> list[tuple[str, str]]:
    out = []
    for line in list_path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            repo, commit = line.split()[:2]
            out.append((repo, commit))
    return out


def _py_lines(folder: Path) -> int:
    n = 0
    for p in folder.rglob("*.py"):
        try:
            with open(p, "rb") as fh:
                n += sum(1 for _ in fh)
        except OSError:
            pass
    return n


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default=os.environ.get("GRADPATH_REALCODE", "/work/realcode"))
    ap.add_argument("--list", default=str(HERE / "real_repos.txt"))
    ap.add_argument("--out", default="/tmp/gradpath-scan")
    ap.add_argument("--only", default="")
    ap.add_argument("--select", default="")
    args = ap.parse_args(argv)
    root, out = Path(args.root), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    only = {x for x in args.only.split(",") if x}
    per_code: collections.Counter = collections.Counter()
    sev: dict[str, str] = {}
    total_lines = 0
    rows = []
    for repo, commit in _repos(Path(args.list)):
        name = repo.split("/", 1)[1]
        if only and name not in only:
            continue
        folder = root / name
        if not folder.is_dir():
            print(f"skip {repo}: {folder} not fetched", file=sys.stderr)
            continue
        lines = _py_lines(folder)
        cmd = [str(GRADPATH), "check", str(folder), "--format", "json"]
        if args.select:
            cmd += ["--select", args.select]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        secs = time.perf_counter() - t0
        try:
            found = json.loads(proc.stdout or "[]")
        except json.JSONDecodeError:
            print(f"{repo}: unreadable output (exit {proc.returncode}): {proc.stderr[-500:]}", file=sys.stderr)
            continue
        for f in found:
            f["path"] = os.path.relpath(f["path"], folder) if os.path.isabs(f["path"]) else f["path"]
            per_code[f["code"]] += 1
            sev[f["code"]] = f["severity"]
        (out / f"{name}.json").write_text(json.dumps(found, indent=1))
        ew = sum(1 for f in found if f["severity"] in ("error", "warning"))
        total_lines += lines
        rows.append((repo, commit[:10], lines, len(found), ew, secs, proc.returncode))
    print(f"{'repository':42} {'commit':10} {'lines':>8} {'found':>6} {'err+warn':>8} {'secs':>6} exit")
    for repo, commit, lines, n, ew, secs, rc in rows:
        print(f"{repo:42} {commit:10} {lines:8d} {n:6d} {ew:8d} {secs:6.1f} {rc}")
    ew_total = sum(r[4] for r in rows)
    print(f"total: {total_lines} lines, {sum(r[3] for r in rows)} findings, {ew_total} errors+warnings "
          f"({ew_total / max(total_lines, 1) * 40000:.2f} per 40,000 lines)")
    for code, n in sorted(per_code.items()):
        print(f"  {code} ({sev[code]}): {n}")
    print(f"findings as JSON: {out}/<name>.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
