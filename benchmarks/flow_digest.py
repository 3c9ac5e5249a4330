#!/usr/bin/env python3
"""Digests of what the dataflow and the loop facts compute, per file, to check that a change meant
to make them faster computes exactly the same: every dataflow event with its values, the last value
of every node (`Flow.value_at`), the module environment, and every loop-fact
unit's events with their paths.

    PYTHONHASHSEED=0 PYTHONPATH=<copy of the old tree>/server .venv/bin/python benchmarks/flow_digest.py old.json 'DIR/**/*.py' ...
    PYTHONHASHSEED=0 .venv/bin/python benchmarks/flow_digest.py new.json 'DIR/**/*.py' ...
    .venv/bin/python benchmarks/flow_digest.py --compare old.json new.json

Patterns are expanded by Python (quote them). Values are written out field by field, AST nodes by
type and position, scopes by name; ids are left out. Fix PYTHONHASHSEED: some orders follow string
hashes. It imports `gradpath` from wherever Python finds it (so two trees can be compared).
"""
from __future__ import annotations

import ast
import glob
import hashlib
import json
import sys
import time


def _pos(n):
    return (type(n).__name__, getattr(n, "lineno", None), getattr(n, "col_offset", None),
            getattr(n, "end_lineno", None), getattr(n, "end_col_offset", None))


def _canon(x, depth=0):
    if depth > 12:
        return "..."
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    if isinstance(x, ast.AST):
        return _pos(x)
    name = type(x).__name__
    if name == "Scope":
        return ("Scope", x.name, x.class_name, _pos(x.node))
    if name == "_IfTest":
        return ("if", x.text())
    if isinstance(x, (tuple, list)):
        return tuple(_canon(y, depth + 1) for y in x)
    if isinstance(x, frozenset):
        return tuple(sorted(repr(_canon(y, depth + 1)) for y in x))
    if isinstance(x, dict):
        return tuple((repr(k), _canon(v, depth + 1)) for k, v in x.items())
    if hasattr(x, "__dict__"):
        return (name,) + tuple((k, _canon(v, depth + 1)) for k, v in sorted(vars(x).items())
                               if not k.startswith("_"))
    return repr(x)


def digest(path: str, text: str) -> dict:
    from gradpath.analysis import dataflow, loops
    from gradpath.analysis.engine import Context
    from gradpath.analysis.source import SourceFile

    src = SourceFile.parse(text, path)
    ctx = Context(src, path)
    fl = dataflow.flow(ctx)
    parts = {
        "events": [_canon((e.kind, e.node, e.scope, e.vals, e.nodes, e.info, e.nograd)) for e in fl.events],
        "last": [(_pos(n), _canon(fl.value_at(n))) for n in ast.walk(src.tree) if fl.value_at(n) is not None],
        "module_env": _canon(fl.module_env),
    }

    def ev(e):
        d = dict(vars(e))
        # an if frame of a try/match names its statement by id(): by position instead
        d["path"] = tuple(f[:3] + (_pos(f[1]),) + f[4:] if f[0] == loops.IF and isinstance(f[3], int) else f
                          for f in e.path)
        return _canon(d)

    parts["loops"] = [(u.scope.name, u.relevant, [ev(e) for e in u.events] if u.relevant else None)
                      for u in loops.loop_facts(ctx).units]
    return {k: hashlib.sha1(repr(v).encode()).hexdigest()[:16] for k, v in parts.items()}


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or (argv[0].startswith("-") and argv[0] != "--compare"):
        print(__doc__)  # (not an output file named "--help")
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    if argv and argv[0] == "--compare":
        a, b = (json.load(open(p)) for p in argv[1:3])
        differ = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
        for k in differ:
            parts = sorted(p for p in set(a.get(k) or {}) | set(b.get(k) or {})
                           if (a.get(k) or {}).get(p) != (b.get(k) or {}).get(p))
            print(f"differ: {k} ({', '.join(parts)})")
        print(f"{len(set(a) | set(b))} files, {len(differ)} differ")
        return 1 if differ else 0
    out_path, patterns = argv[0], argv[1:]
    files = []
    for pat in patterns:
        files += sorted(glob.glob(pat, recursive=True)) if any(c in pat for c in "*?[") else [pat]
    out = {}
    t0 = time.time()
    for p in files:
        try:
            text = open(p, encoding="utf-8").read()
        except (OSError, UnicodeDecodeError):
            continue
        try:
            out[p] = digest(p, text)
        except RecursionError:
            out[p] = {"error": "recursion"}
    with open(out_path, "w") as fh:
        json.dump(out, fh)
    print(f"{len(out)} files in {time.time() - t0:.0f} s -> {out_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
