"""Shared helpers for the benchmark scripts: paths, the LSP client, percentiles, machine facts."""
from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
sys.path.insert(0, str(ROOT / "tests" / "robustness"))
# this checkout's server, unless PYTHONPATH names another one (to compare two versions in-process,
# as profile_real.py does): it stays first then
_named = [os.path.abspath(p) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
_after = [i + 1 for i, p in enumerate(sys.path) if p and os.path.abspath(p) in _named]
sys.path.insert(max(_after, default=0), str(ROOT / "server"))
sys.path.insert(0, str(BENCH))

from lspclient import LspClient, descendants, rss_kb, cmdline, server_env  # noqa: E402,F401


def pct(values, p: float) -> float:
    """Percentile with linear interpolation (p in 0..100)."""
    xs = sorted(values)
    if not xs:
        return float("nan")
    k = (len(xs) - 1) * p / 100.0
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def median(values) -> float:
    return statistics.median(values) if values else float("nan")


def machine() -> dict:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "?"
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kb / 1024 / 1024:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "memory": mem, "python": platform.python_version(),
            "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
            "loadavg": [round(x, 2) for x in os.getloadavg()]}


def save(name: str, data: dict) -> Path:
    RESULTS.mkdir(exist_ok=True)
    data = dict(data)
    data["machine"] = machine()
    p = RESULTS / f"{name}.json"
    p.write_text(json.dumps(data, indent=2), encoding="utf-8")
    return p


def header(title: str) -> None:
    m = machine()
    print(f"== {title} ==  ({m['date_utc']} UTC, {m['cores']} cores {m['cpu']}, load {m['loadavg']})")


def python_exe() -> str:
    venv = ROOT / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable
