#!/usr/bin/env python3
"""Whole-tree scan: `gradpath check` and its peers over one folder of training code (the project's
fixtures and examples plus a few thousand generated lines), wall time and peak memory of each
(/usr/bin/time -v), and each tool's own count of findings.

Peers come from benchmarks/.venv-peers (benchmarks/setup_peers.sh): TorchFix, pylint with the
dslinter plugin, pylint alone, Ruff (default rules, and --select ALL). pylint runs with `-j 1`, as
does everything here (one process each).

    .venv/bin/python benchmarks/bench_scan.py [--generated 4000] [--runs 3]
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from _common import BENCH, ROOT, header, median, python_exe, save

PEERS = BENCH / ".venv-peers" / "bin"


def build_tree(dest: Path, generated_lines: int) -> tuple[int, int]:
    for src in ("fixtures", "examples"):
        if (ROOT / src).is_dir():
            shutil.copytree(ROOT / src, dest / src, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    from gen_corpus import main as gen_main
    gen_main(["--out", str(dest / "generated"), "--total", str(generated_lines), "--seed", "2"])
    files = list(dest.rglob("*.py"))
    return len(files), sum(len(f.read_text(encoding="utf-8", errors="replace").splitlines()) for f in files)


def timed(cmd: list[str], cwd: Path) -> dict:
    """Run under /usr/bin/time -v: wall seconds, peak RSS (MB), stdout, stderr, exit status."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as tf:
        p = subprocess.run(["/usr/bin/time", "-v", "-o", tf.name] + cmd, cwd=cwd, capture_output=True,
                           text=True, errors="replace")
        t = Path(tf.name).read_text()
    wall = re.search(r"Elapsed \(wall clock\) time.*: (?:(\d+):)?(\d+):([\d.]+)", t)
    h, m, s = (wall.group(1) or 0), wall.group(2), wall.group(3)
    secs = int(h) * 3600 + int(m) * 60 + float(s)
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", t).group(1)) / 1024
    cpu = re.search(r"Percent of CPU this job got: (\d+)%", t)
    return {"wall_s": secs, "peak_mb": rss, "cpu_pct": int(cpu.group(1)) if cpu else None,
            "rc": p.returncode, "stdout": p.stdout, "stderr": p.stderr}


def count_gradpath(out: str) -> int:
    return len(json.loads(out or "[]"))


def count_pylint(out: str, only_dslinter: bool = False) -> int:
    # dslinter prints its own error lines into stdout around pylint's JSON: count the messages'
    # ids instead of parsing the whole output
    ids = re.findall(r'"message-id":\s*"([A-Z]\d{4})"', out or "")
    if only_dslinter:
        # dslinter's messages use their own id range (W55xx, E55xx...)
        return sum(1 for i in ids if i[1:3] == "55")
    return len(ids)


def count_ruff(out: str) -> int:
    return len(json.loads(out or "[]"))


def count_torchfix(out: str) -> int:
    return sum(1 for line in out.splitlines() if re.match(r".+:\d+:\d+: TOR\d+", line))


def tools(tree: Path) -> list[tuple[str, list[str], callable]]:
    gp = [python_exe(), "-m", "gradpath", "check", "--format", "json", str(tree)]
    out = [("gradpath check", gp, count_gradpath)]
    if (PEERS / "torchfix").exists():
        out.append(("TorchFix", [str(PEERS / "torchfix"), str(tree)], count_torchfix))
    if (PEERS / "pylint").exists():
        out.append(("pylint + dslinter", [str(PEERS / "pylint"), "-j", "1", "--load-plugins=dslinter",
                                          "--output-format=json", "--recursive=y", str(tree)],
                    lambda o: count_pylint(o)))
        out.append(("pylint", [str(PEERS / "pylint"), "-j", "1", "--output-format=json", "--recursive=y",
                               str(tree)], count_pylint))
    if (PEERS / "ruff").exists():
        out.append(("ruff (defaults)", [str(PEERS / "ruff"), "check", "--no-cache", "--output-format=json",
                                        "--exit-zero", str(tree)], count_ruff))
        out.append(("ruff --select ALL", [str(PEERS / "ruff"), "check", "--no-cache", "--select", "ALL",
                                          "--output-format=json", "--exit-zero", str(tree)], count_ruff))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--generated", type=int, default=4000, help="lines of generated code to add")
    ap.add_argument("--runs", type=int, default=3, help="runs per tool (median); tools slower than 20 s run once")
    a = ap.parse_args(argv)
    header("whole-tree scan")
    rows = []
    with tempfile.TemporaryDirectory(prefix="gp-scan-") as d:
        tree = Path(d) / "tree"
        tree.mkdir()
        nfiles, nlines = build_tree(tree, a.generated)
        print(f"folder: {nfiles} files, {nlines} lines (fixtures + examples + {a.generated} generated)")
        if not PEERS.exists():
            print("peer tools missing: run benchmarks/setup_peers.sh")
        for name, cmd, counter in tools(tree):
            results = [timed(cmd, Path(d))]
            if results[0]["wall_s"] < 20:  # slow tools run once
                results += [timed(cmd, Path(d)) for _ in range(a.runs - 1)]
            runs = len(results)
            r = results[-1]
            try:
                n = counter(r["stdout"])
            except Exception as exc:  # noqa: BLE001
                n = f"? ({exc.__class__.__name__})"
            extra = ""
            if name == "pylint + dslinter":
                try:
                    extra = f" ({count_pylint(r['stdout'], only_dslinter=True)} from dslinter)"
                except Exception:  # noqa: BLE001
                    pass
                if "impossible to load" in r["stdout"] + r["stderr"]:
                    extra += " [dslinter FAILED TO LOAD]"
            row = {"tool": name, "wall_s": median([x["wall_s"] for x in results]),
                   "peak_mb": max(x["peak_mb"] for x in results), "findings": n, "rc": r["rc"],
                   "runs": runs, "note": extra.strip()}
            rows.append(row)
            print(f"{name:20s} {row['wall_s']:8.2f} s  peak {row['peak_mb']:7.1f} MB  findings {n}{extra}"
                  f"  (exit {r['rc']}, {runs} run{'s' if runs > 1 else ''})", flush=True)
    gp = rows[0]["wall_s"]
    for r in rows[1:]:
        print(f"  gradpath is {r['wall_s'] / gp:.1f}x faster than {r['tool']}" if r["wall_s"] >= gp
              else f"  gradpath is {gp / r['wall_s']:.1f}x slower than {r['tool']}")
    print(f"results: {save('scan', {'files': nfiles, 'lines': nlines, 'rows': rows})}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
