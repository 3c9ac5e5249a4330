"""`gradpath check path/to/file.py` inside a big repository: the whole project read (before, and
with GRADPATH_LAZY_INDEX=0) against only what the file needs (analysis/project/lazy.py). Prints
figures; asserts nothing.

    python benchmarks/bench_single_file.py /work/realcode/pytorch-image-models:train.py \
        /work/realcode/pytorch_geometric:examples/gcn.py

Each repository is copied to a temporary folder with an empty `.git` folder (the extracted real
code has no project marker, so a file would otherwise be its own folder's project). Each figure is
the median wall-clock time of a fresh `gradpath check -q --exit-zero FILE` process: cold (an empty
summary cache) and warm (the cache written by the run before). `--compare N` also checks N files of
each repository alone and with the whole project, and counts the files whose findings differ.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SERVER = HERE.parent / "server"


def _env(cache: str, lazy: bool) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(SERVER) + os.pathsep + env.get("PYTHONPATH", "")
    env["XDG_CACHE_HOME"] = cache
    env["GRADPATH_LAZY_INDEX"] = "1" if lazy else "0"
    return env


def _run(file: str, cache: str, lazy: bool, fmt: str = "text") -> tuple[float, str]:
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "gradpath", "check", "-q", "--exit-zero", "--isolated",
                        "--format", fmt, file], capture_output=True, text=True, env=_env(cache, lazy))
    if r.returncode not in (0, 1):
        raise SystemExit(r.stderr)
    return time.perf_counter() - t, r.stdout


def _needed(root: str, file: str) -> tuple[int, int]:
    sys.path.insert(0, str(SERVER))
    from gradpath.analysis.project import Project
    from gradpath.analysis.project.lazy import build_for_files
    from gradpath.files import iter_python_files
    p = Project(root, [str(f) for f in iter_python_files([root])], use_cache=False)
    need = build_for_files(p, [file])
    return len(need), len(p.index.modules)


def bench(repo: str, rel: str, repeat: int) -> None:
    tmp = tempfile.mkdtemp(prefix="gp-single-")
    root = os.path.join(tmp, os.path.basename(repo.rstrip("/")))
    shutil.copytree(repo, root)
    os.mkdir(os.path.join(root, ".git"))
    file = os.path.join(root, rel)
    n_need, n_all = _needed(root, file)
    print(f"{os.path.basename(repo)} {rel}: {n_need} of {n_all} modules needed")
    for lazy in (False, True):
        colds, warms = [], []
        for i in range(repeat):
            cache = os.path.join(tmp, f"cache-{lazy}-{i}")
            colds.append(_run(file, cache, lazy)[0])
            warms.append(_run(file, cache, lazy)[0])
        print(f"  {'only what it needs' if lazy else 'whole project     '}: cold {statistics.median(colds):.2f} s, "
              f"warm {statistics.median(warms):.2f} s  (median of {repeat}; cold {['%.2f' % x for x in colds]}, "
              f"warm {['%.2f' % x for x in warms]})")
    shutil.rmtree(tmp, ignore_errors=True)


def compare(repo: str, n: int) -> None:
    """N files (every k-th file with a backward call, a criterion or a module class) checked alone,
    lazily and with the whole project."""
    tmp = tempfile.mkdtemp(prefix="gp-single-cmp-")
    root = os.path.join(tmp, os.path.basename(repo.rstrip("/")))
    shutil.copytree(repo, root)
    os.mkdir(os.path.join(root, ".git"))
    files = sorted(str(p) for p in Path(root).rglob("*.py") if ".git" not in p.parts)
    # training-looking files and model classes first: where cross-module findings can land
    files = [f for f in files if any(w in Path(f).read_text(errors="replace")
                                     for w in (".backward(", "criterion", "(nn.Module)"))]
    step = max(1, len(files) // n)
    picked = files[::step][:n]
    cache = os.path.join(tmp, "cache")
    _run(root, cache, False)  # warm the cache once for both
    diff = 0
    for f in picked:
        a = json.loads(_run(f, cache, True, "json")[1] or "[]")
        b = json.loads(_run(f, cache, False, "json")[1] or "[]")
        ka = sorted((x["line"], x["code"], x["message"]) for x in a)
        kb = sorted((x["line"], x["code"], x["message"]) for x in b)
        if ka != kb:
            diff += 1
            print(f"  differs: {os.path.relpath(f, root)}: alone {ka} / whole {kb}")
    print(f"{os.path.basename(repo)}: {len(picked)} files checked alone both ways, {diff} differ")
    shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("targets", nargs="+", help="REPO:FILE (FILE relative to REPO)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--compare", type=int, default=0, help="also compare N files of each repo both ways")
    args = ap.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.1f} ({os.cpu_count()} cores)")
    for t in args.targets:
        repo, rel = t.split(":", 1)
        bench(repo, rel, args.repeat)
        if args.compare:
            compare(repo, args.compare)


if __name__ == "__main__":
    main()
