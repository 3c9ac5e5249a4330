"""`gradpath confirm <folder>` on multi-file projects: how long the live step across modules takes.

For each project folder:
  cli cold   `gradpath confirm <folder>` in a fresh process with an empty summary cache (the worker
             starts and imports torch while the folder is analysed)
  cli warm   the same with the summary cache filled by the previous run (the worker still starts:
             every CLI run is a new process)
  runs warm  in-process, the worker already warm: only the script runs (project_confirm.confirm_reports
             after the analysis), the editor's case

    python benchmarks/bench_live_project.py [--repeat 3] [folder ...]

Prints one table row per folder; medians over --repeat runs.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "server"))
DEFAULT = ["models_pkg_softmax_ce", "trainer_base_class", "losses_module_log", "src_layout_package",
           "relative_import_reexport"]


def _cli(folder: str, cache: str) -> tuple[float, str]:
    env = dict(os.environ, XDG_CACHE_HOME=cache,
               PYTHONPATH=str(ROOT / "server") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    t = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "gradpath", "confirm", "--isolated", folder], capture_output=True,
                       text=True, env=env, cwd=str(ROOT), timeout=300)
    wall = time.monotonic() - t
    verdicts = [line.split("live: ", 1)[1].split(":", 1)[0].split(" (")[0]
                for line in r.stdout.splitlines() if "    live: " in line]
    return wall, ",".join(verdicts)


def _in_process(folder: str, repeat: int) -> tuple[list[float], int]:
    from gradpath import cli
    from gradpath.live.project_confirm import confirm_reports
    from gradpath.live.service import LiveService
    args = cli.build_parser().parse_args(["confirm", "--isolated", folder])
    reports, _ = cli.collect(args)
    svc = LiveService(timeout_s=20.0)
    svc.start()
    svc.wait_ready()
    times, runs = [], 0
    try:
        confirm_reports(svc, reports, set(), 20.0)  # the first fork after warm-up pays for page faults
        for _ in range(repeat):
            t = time.monotonic()
            out = confirm_reports(svc, reports, set(), 20.0)
            times.append(time.monotonic() - t)
            runs = len(out.runs)
    finally:
        svc.close()
    return times, runs


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("folders", nargs="*")
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    folders = a.folders or [f"fixtures/projects/{n}" for n in DEFAULT]
    print(f"load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print("| project | files | scripts run | cli cold (s) | cli warm (s) | runs, warm worker (ms) | verdicts |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for folder in folders:
        n_files = sum(1 for _ in Path(ROOT / folder).rglob("*.py"))
        cold, warm = [], []
        verdicts = ""
        for _ in range(a.repeat):
            cache = tempfile.mkdtemp(prefix="gp-bench-live-")
            try:
                w, verdicts = _cli(folder, cache)
                cold.append(w)
                w, _ = _cli(folder, cache)
                warm.append(w)
            finally:
                shutil.rmtree(cache, ignore_errors=True)
        times, runs = _in_process(folder, a.repeat)
        print(f"| {Path(folder).name} | {n_files} | {runs} | {statistics.median(cold):.2f} | "
              f"{statistics.median(warm):.2f} | {statistics.median(times) * 1000:.0f} | {verdicts} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
