"""Which findings does the project model add (or take away) on real code? For triage.

    python benchmarks/scan_project_links.py [--root /work/realcode] [--only name,name] [--out DIR]

For each repository folder under --root: builds the project model (its modules' summaries), then
analyses every file twice, with the project attached to the resolver and without it, and prints the
findings that differ (file, line, code, message). Writes them as JSON to --out/<name>.json. It
asserts nothing.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "server"))

from gradpath.analysis.engine import Options, analyze  # noqa: E402
from gradpath.analysis.project import Project  # noqa: E402
from gradpath.analysis.resolve import Resolver  # noqa: E402
from gradpath.batch import ProjectResolver  # noqa: E402
from gradpath.files import iter_python_files, read_source  # noqa: E402


def scan(folder: Path) -> tuple[list[dict], dict]:
    files = [str(f) for f in iter_python_files([str(folder)])]
    t0 = time.perf_counter()
    project = Project(str(folder), files, use_cache=False).build()
    t_index = time.perf_counter() - t0
    inner = Resolver(root=str(folder), use_jedi=False)
    linked = ProjectResolver(inner, project)
    opts = Options()
    diffs = []
    for f in files:
        try:
            text = read_source(Path(f))
        except (OSError, UnicodeDecodeError):
            continue
        a = analyze(text, f, opts, resolver=inner)
        b = analyze(text, f, opts, resolver=linked)
        ka = {(x.code, x.span.line, x.span.col) for x in a.findings}
        kb = {(x.code, x.span.line, x.span.col) for x in b.findings}
        for x in b.findings:
            if (x.code, x.span.line, x.span.col) not in ka:
                diffs.append({"change": "added", "path": os.path.relpath(f, folder), "line": x.span.line,
                              "code": x.code, "message": x.message})
        for x in a.findings:
            if (x.code, x.span.line, x.span.col) not in kb:
                diffs.append({"change": "removed", "path": os.path.relpath(f, folder), "line": x.span.line,
                              "code": x.code, "message": x.message})
        if b.failed_rules:
            diffs.append({"change": "failed", "path": os.path.relpath(f, folder), "rules": b.failed_rules})
    return diffs, {"files": len(files), "index_s": round(t_index, 2)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", default=os.environ.get("GRADPATH_REALCODE", "/work/realcode"))
    ap.add_argument("--only")
    ap.add_argument("--out", default="/tmp/scan-project-links")
    args = ap.parse_args(argv)
    root = Path(args.root)
    names = args.only.split(",") if args.only else sorted(
        p.name for p in root.iterdir() if p.is_dir() and p.name not in ("baseline",))
    os.makedirs(args.out, exist_ok=True)
    for name in names:
        folder = root / name
        if not folder.is_dir():
            continue
        t0 = time.perf_counter()
        diffs, info = scan(folder)
        info["total_s"] = round(time.perf_counter() - t0, 1)
        (Path(args.out) / f"{name}.json").write_text(json.dumps({"info": info, "diffs": diffs}, indent=1))
        print(f"== {name}: {info['files']} files, index {info['index_s']} s, total {info['total_s']} s, "
              f"{len(diffs)} differences", flush=True)
        for d in diffs:
            if d["change"] == "failed":
                print(f"  FAILED {d['path']}: {d['rules']}")
            else:
                print(f"  {d['change']:7s} {d['path']}:{d['line']} {d['code']} {d['message'][:220]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
