"""Issue 15 (session 6) on real code: what the cross-module GP3/GP2 rules and the linker's reading of
parameter defaults add. For triage; asserts nothing.

    python benchmarks/scan_fed.py [--root /work/realcode] [--only name,name] [--out DIR] [--quick]

Per repository folder under --root: builds the project model, then
- lists the loss functions/classes fed a model's output from another module (project/fed.py) and
  the module classes whose forward returns a cut value, and analyses the files holding them
  (GP2/GP3 selected): the findings whose data says `cross_module` are this round's;
- counts the parameters whose value the linker now knows from a default (and did not before), and
  analyses the files where a cross-module finding may land (link.finding_sites) with the project as
  it is and with the defaults taken out of the summaries: the findings that differ are the
  defaults' doing.
Writes JSON to --out/<name>.json and prints a summary.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "server"))

from gradpath.analysis.engine import Options, analyze  # noqa: E402
from gradpath.analysis.project import Project  # noqa: E402
from gradpath.analysis.project.fed import cut_models, fed_losses  # noqa: E402
from gradpath.analysis.project.link import UNKNOWN, Linker, finding_sites  # noqa: E402
from gradpath.analysis.resolve import Resolver  # noqa: E402
from gradpath.batch import ProjectResolver  # noqa: E402
from gradpath.files import iter_python_files, read_source  # noqa: E402

MINE = {"GP201", "GP301", "GP302", "GP306", "GP308"}


def _no_defaults(project: Project) -> Project:
    p2 = copy.copy(project)
    p2.summaries = {}
    for path, sm in project.summaries.items():
        if sm is None:
            p2.summaries[path] = None
            continue
        sm2 = dict(sm, functions={fq: dict(fn, defaults={}) for fq, fn in sm["functions"].items()})
        p2.summaries[path] = sm2
    p2._linker = None
    p2.linker = lambda: Linker(p2.index, p2.summaries)
    return p2


def _known_defaults(lk: Linker, summaries: dict) -> int:
    """Parameters with a default (in `summaries`) whose value the linker knows."""
    n = 0
    for path, sm in summaries.items():
        if not sm:
            continue
        for fq, fn in sm["functions"].items():
            for pname in fn.get("defaults", {}):
                v = lk.param_value(path, "@." + fq, pname, 0)
                if v and UNKNOWN not in v:
                    n += 1
    return n


def _run(text, f, resolver, select):
    return analyze(text, f, Options(select=select), resolver=resolver).findings


def scan(folder: Path, sites_too: bool = True) -> dict:
    files = [str(f) for f in iter_python_files([str(folder)])]
    t0 = time.perf_counter()
    project = Project(str(folder), files, use_cache=False).build()
    lk = project.linker()
    t_index = time.perf_counter() - t0
    inner = Resolver(root=str(folder), use_jedi=False)
    linked = ProjectResolver(inner, project)
    out = {"files": len(files), "index_s": round(t_index, 1), "fed": [], "cut_forwards": [], "findings": [],
           "defaults_changes": []}
    # -- GP3 in fed losses, GP201 in cut forwards
    cand = set()
    for (p, fq), uses in fed_losses(lk).items():
        others = [u for u in uses if u["path"] != p and not u["nograd"]]
        if others:
            cand.add(p)
            out["fed"].append({"loss": f"{os.path.relpath(p, folder)}:{fq}",
                               "from": sorted({f"{os.path.relpath(u['path'], folder)}:{u['loss'][0]}"
                                               for u in others})})
    for p, sm in lk.s.items():
        if not sm:
            continue
        for cname in sm["classes"]:
            fn = sm["functions"].get(f"{cname}.forward")
            if fn and fn.get("ret_cut") and not fn["ret_cut"]["live"] and lk.is_module_class(p, cname):
                cand.add(p)
                out["cut_forwards"].append({"class": f"{os.path.relpath(p, folder)}:{cname}",
                                            "models": [c for _p, c, _ch in cut_models(lk, p, cname)]})
    for f in sorted(cand):
        text = read_source(Path(f))
        for x in _run(text, f, linked, ["GP2", "GP3"]):
            if x.code in MINE and x.data.get("cross_module"):
                out["findings"].append({"path": os.path.relpath(f, folder), "line": x.span.line, "code": x.code,
                                        "message": x.message})
    # -- parameter defaults
    bare = _no_defaults(project)
    out["known_defaults"] = _known_defaults(lk, project.summaries)
    out["known_defaults_without"] = _known_defaults(bare.linker(), project.summaries)
    sites = finding_sites(lk) | finding_sites(bare.linker()) if sites_too else set()
    linked_bare = ProjectResolver(Resolver(root=str(folder), use_jedi=False), bare)
    for f in sorted(sites):
        try:
            text = read_source(Path(f))
        except (OSError, UnicodeDecodeError):
            continue
        a = {(x.code, x.span.line, x.span.col): x for x in _run(text, f, linked_bare, ["GP"])}
        b = {(x.code, x.span.line, x.span.col): x for x in _run(text, f, linked, ["GP"])}
        for k in sorted(set(a) ^ set(b)):
            x = b.get(k) or a[k]
            out["defaults_changes"].append({"change": "added" if k in b else "removed",
                                            "path": os.path.relpath(f, folder), "line": k[1], "code": k[0],
                                            "message": x.message})
    out["sites"] = len(sites)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", default=os.environ.get("GRADPATH_REALCODE", "/work/realcode"))
    ap.add_argument("--only")
    ap.add_argument("--out", default="/tmp/scan-fed")
    ap.add_argument("--quick", action="store_true", help="skip analysing the finding sites twice (slow on big repos)")
    args = ap.parse_args(argv)
    root = Path(args.root)
    names = args.only.split(",") if args.only else sorted(
        p.name for p in root.iterdir() if p.is_dir() and p.name not in ("baseline", "final"))
    os.makedirs(args.out, exist_ok=True)
    for name in names:
        folder = root / name
        if not folder.is_dir():
            continue
        t0 = time.perf_counter()
        info = scan(folder, sites_too=not args.quick)
        info["total_s"] = round(time.perf_counter() - t0, 1)
        (Path(args.out) / f"{name}.json").write_text(json.dumps(info, indent=1))
        print(f"== {name}: {info['files']} files, index {info['index_s']} s, total {info['total_s']} s; "
              f"{len(info['fed'])} losses fed from another module, {len(info['cut_forwards'])} cut forwards, "
              f"{len(info['findings'])} findings; parameters known from defaults "
              f"{info['known_defaults_without']} -> {info['known_defaults']}, {len(info['defaults_changes'])} "
              f"changes in {info['sites']} finding sites", flush=True)
        for d in info["fed"]:
            print(f"  fed     {d['loss']} <- {', '.join(d['from'][:3])}")
        for d in info["cut_forwards"]:
            print(f"  cut     {d['class']} models {d['models'][:4]}")
        for d in info["findings"]:
            print(f"  FINDING {d['path']}:{d['line']} {d['code']} {d['message'][:240]}")
        for d in info["defaults_changes"]:
            print(f"  {d['change']:7s} {d['path']}:{d['line']} {d['code']} {d['message'][:200]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
