"""Recall on real bug-fix history: runs `gradpath check` on whole repositories at commits whose bug the
authors later fixed, and says whether the bug is found at its line.

    python benchmarks/recall_history.py [--cases benchmarks/history_cases.txt]
                                        [--mirrors /work/.mirror] [--cache /tmp/gradpath-history]
                                        [--only name,name] [-j JOBS] [--parallel N] [--show-missed]

Each case in `history_cases.txt` names a repository, the commit that fixed a bug, its parent (where
the bug is), the file (a space written %20) and line(s) of the bug in the parent, and the code family we expect. For every
distinct commit the script extracts the whole tree (`git archive`) into --cache/<owner+name>/<commit>/
(kept between runs: the checkouts are cached, the analysis is not), runs
`gradpath check <tree> --format json` on the folder as a new user would, and classifies each case:

  at-line    a finding of the expected family (GP1/GP2/GP3/GP4, from the expected code's first three
             characters) whose range overlaps the bug's lines, widened to the smallest statement
             that holds them;
  elsewhere  no such finding at the line, but one of the family in the same file;
  missed     neither.

On the fix commit it records whether the number of findings of that family in that file went down
(`gone`) or not (`stays`); `-` when the parent had none. The git directories are read from
--mirrors/<owner>+<name>/repo (a bare clone with history). Nothing of the repositories is copied into
this repository; the checkouts live under --cache. Each run starts with an empty summary cache (as a new
user would). It asserts nothing and prints a table and totals.
"""
from __future__ import annotations

import argparse
import ast
import collections
import concurrent.futures
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
GRADPATH = HERE.parent / ".venv" / "bin" / "gradpath"
SOURCE_SUFFIXES = (".py", ".ipynb", ".toml", ".cfg")
# a new user has no summary cache: each run gets an empty one (set in main)
_ENV = dict(os.environ)


class Case:
    def __init__(self, line: str, number: int):
        parts = line.split()
        self.number = number
        self.repo, self.fix, self.parent, path, lines, self.code = parts[:6]
        self.path = path.replace("%20", " ")
        self.cause = parts[6] if len(parts) > 6 and not parts[6].startswith("#") else ""
        lo, _, hi = lines.partition("-")
        self.lo, self.hi = int(lo), int(hi or lo)
        self.family = self.code[:3]

    @property
    def name(self) -> str:
        return self.repo.split("/", 1)[1]


def read_cases(path: Path) -> list[Case]:
    out = []
    for raw in path.read_text().splitlines():
        raw = raw.strip()
        if raw and not raw.startswith("#"):
            out.append(Case(raw, len(out) + 1))
    return out


def checkout(mirrors: Path, cache: Path, repo: str, commit: str) -> Path:
    """The tree of `repo` at `commit` under the cache folder, extracted once."""
    dest = cache / repo.replace("/", "+") / commit
    done = dest / ".gradpath-history-complete"
    if done.exists():
        return dest
    git_dir = mirrors / repo.replace("/", "+") / "repo"
    if (git_dir / ".git").is_dir():
        git_dir = git_dir / ".git"
    elif not git_dir.is_dir():
        git_dir = mirrors / repo.replace("/", "+")
    dest.mkdir(parents=True, exist_ok=True)
    # Only what gradpath reads (Python sources, notebooks, configuration), blob by blob: some
    # mirrors lack the blobs of large files (a missing one is skipped).
    listing = subprocess.run(["git", "--git-dir", str(git_dir), "ls-tree", "-r", "-z", commit],
                             capture_output=True, check=True).stdout.decode(errors="surrogateescape")
    wanted = []
    for entry in listing.split("\0"):
        meta, _, name = entry.partition("\t")
        parts = meta.split()
        if len(parts) == 3 and parts[1] == "blob" and name.endswith(SOURCE_SUFFIXES):
            wanted.append((parts[2], name))
    with subprocess.Popen(["git", "--git-dir", str(git_dir), "cat-file", "--batch"],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE) as proc:
        for sha, name in wanted:
            proc.stdin.write(sha.encode() + b"\n")
            proc.stdin.flush()
            header = proc.stdout.readline().split()
            if len(header) < 3 or header[1] != b"blob":
                continue
            data = proc.stdout.read(int(header[2]))
            proc.stdout.read(1)
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        proc.stdin.close()
    done.write_text(commit + "\n")
    return dest


def analyse(tree: Path, jobs: int | None, gradpath: list[str]) -> tuple[list[dict], float, str]:
    cmd = [*gradpath, "check", str(tree), "--format", "json", "--exit-zero", "-q"]
    if jobs:
        cmd += ["-j", str(jobs)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_ENV)
    secs = time.perf_counter() - t0
    try:
        found = json.loads(proc.stdout or "[]")
    except json.JSONDecodeError:
        return [], secs, f"unreadable output (exit {proc.returncode}): {proc.stderr[-300:]}"
    for f in found:
        try:
            f["rel"] = str(Path(f["path"]).resolve().relative_to(tree.resolve()))
        except ValueError:
            f["rel"] = f["path"]
    return found, secs, ""


def statement_span(source: str, lo: int, hi: int) -> tuple[int, int]:
    """The smallest statement that holds lines lo..hi (the lines themselves when none parses)."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return lo, hi
    best = (lo, hi)
    size = None
    for node in ast.walk(tree):
        if not isinstance(node, ast.stmt) or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                                ast.ClassDef, ast.For, ast.While,
                                                                ast.If, ast.With, ast.Try)):
            continue
        end = getattr(node, "end_lineno", node.lineno) or node.lineno
        if node.lineno <= lo and hi <= end and (size is None or end - node.lineno < size):
            best, size = (node.lineno, end), end - node.lineno
    return best


def classify(case: Case, tree: Path, found: list[dict]) -> tuple[str, list[dict]]:
    in_file = [f for f in found if f["rel"] == case.path and f["code"].startswith(case.family)]
    try:
        source = (tree / case.path).read_text(errors="replace")
    except OSError:
        return "no-file", []
    lo, hi = statement_span(source, case.lo, case.hi)
    lo, hi = min(lo, case.lo), max(hi, case.hi)
    at = [f for f in in_file if f["line"] <= hi and f.get("end_line", f["line"]) >= lo]
    if at:
        return "at-line", at
    if in_file:
        return "elsewhere", in_file
    return "missed", []


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default=str(HERE / "history_cases.txt"))
    ap.add_argument("--mirrors", default=os.environ.get("GRADPATH_MIRRORS", "/work/.mirror"))
    ap.add_argument("--cache", default=os.environ.get("GRADPATH_HISTORY_CACHE", "/tmp/gradpath-history"))
    ap.add_argument("--only", default="", help="repository names (the part after the slash)")
    ap.add_argument("-j", "--jobs", type=int, default=0, help="passed to gradpath check -j")
    ap.add_argument("--parallel", type=int, default=1, help="commits analysed at the same time")
    ap.add_argument("--show-missed", action="store_true", help="print the findings in the file of each miss")
    ap.add_argument("--json", default="", help="also write the per-case results here")
    ap.add_argument("--gradpath", default=str(GRADPATH),
                    help="the command to run (e.g. 'python -m gradpath' with PYTHONPATH set to an older checkout's "
                         "server/ folder, to measure a baseline)")
    args = ap.parse_args(argv)
    cases = read_cases(Path(args.cases))
    only = {x for x in args.only.split(",") if x}
    if only:
        cases = [c for c in cases if c.name in only]
    mirrors, cache = Path(args.mirrors), Path(args.cache)
    _ENV["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="gradpath-history-cache-")
    commits = sorted({(c.repo, c.parent) for c in cases} | {(c.repo, c.fix) for c in cases})
    results: dict[tuple[str, str], tuple[Path, list[dict], float, str]] = {}
    t0 = time.perf_counter()

    def run(key):
        repo, commit = key
        tree = checkout(mirrors, cache, repo, commit)
        found, secs, err = analyse(tree, args.jobs or None, args.gradpath.split())
        return key, (tree, found, secs, err)

    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.parallel)) as pool:
        for key, value in pool.map(run, commits):
            results[key] = value
            if value[3]:
                print(f"{key[0]}@{key[1][:8]}: {value[3]}", file=sys.stderr)
    wall = time.perf_counter() - t0

    rows = []
    totals: collections.Counter = collections.Counter()
    per_family: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    per_cause: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for case in cases:
        tree, found, _, _ = results[(case.repo, case.parent)]
        verdict, hits = classify(case, tree, found)
        fix_tree, fix_found, _, _ = results[(case.repo, case.fix)]
        before = sum(1 for f in found if f["rel"] == case.path and f["code"].startswith(case.family))
        after = sum(1 for f in fix_found if f["rel"] == case.path and f["code"].startswith(case.family))
        gone = "-" if verdict == "missed" or verdict == "no-file" else ("gone" if after < before else "stays")
        got = ",".join(sorted({f["code"] for f in hits})) if verdict == "at-line" else ""
        rows.append((case, verdict, got, gone))
        totals[verdict] += 1
        per_family[case.family][verdict] += 1
        per_cause[case.cause or "-"][verdict] += 1
        if args.show_missed and verdict != "at-line":
            print(f"-- #{case.number} {case.repo} {case.path}:{case.lo} expected {case.code} ({verdict})")
            for f in found:
                if f["rel"] == case.path:
                    print(f"     {f['line']}: {f['code']} {f['message'][:110]}")

    print(f"{'#':>3} {'repository':<40} {'fix':<9} {'file:line':<58} {'expect':<6} {'result':<9} {'got':<12} fix-commit")
    for case, verdict, got, gone in rows:
        where = f"{case.path}:{case.lo}" + (f"-{case.hi}" if case.hi != case.lo else "")
        print(f"{case.number:>3} {case.repo:<40} {case.fix[:8]:<9} {where[-58:]:<58} {case.code:<6} {verdict:<9} {got:<12} {gone}")
    n = len(rows)
    print()
    print(f"cases: {n} in {len({c.repo for c in cases})} repositories; commits analysed: {len(commits)} in {wall:.0f} s")
    for verdict in ("at-line", "elsewhere", "missed", "no-file"):
        if totals[verdict]:
            print(f"  {verdict:<10} {totals[verdict]:>3}  ({100 * totals[verdict] / n:.0f}%)")
    print("per family: " + "; ".join(f"{fam} {c['at-line']}/{sum(c.values())}" for fam, c in sorted(per_family.items())))
    if any(k != "-" for k in per_cause):
        print("per cause of the miss before session 6's fixes: " + "; ".join(
            f"{cause} {c['at-line']}/{sum(c.values())}" for cause, c in sorted(per_cause.items())))
    gone_n = sum(1 for _, v, _, g in rows if g == "gone")
    found_n = sum(1 for _, v, _, _ in rows if v in ("at-line", "elsewhere"))
    print(f"findings gone at the fix commit: {gone_n} of {found_n} found")
    if args.json:
        Path(args.json).write_text(json.dumps([
            {"case": c.number, "repo": c.repo, "fix": c.fix, "parent": c.parent, "path": c.path,
             "line": c.lo, "expect": c.code, "result": v, "got": g, "at_fix": gone}
            for c, v, g, gone in rows], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
