#!/usr/bin/env python3
"""Keystroke latency on real public training files (listed in real_files.txt, fetched outside the
repository under $GRADPATH_REALCODE, default /work/realcode).

Edits are one character at a time, at random places of four kinds, in turn: inside a top-level
function body, in module-level script code, inside a class body (its methods), and in the imports.
Each kind alternates two edits: a digit flip where the line has a digit, else a letter typed at the
end of an identifier and deleted by the next edit (the intermediate state names something unknown,
as real typing does). The deletions return to a text analysed a moment before, which the editor
remembers: the server figures are also given apart for "(new text)" edits and "(reverts)".

For each file: the server run (`gradpath serve` over stdio, default settings, edits back to back:
didChange -> publishDiagnostics of that version, p50/p95/max; then bursts of four keys typed 50 ms
apart, timed from the last key to the publish of its version; then new lines typed key by key in
function bodies, most of whose texts do not parse until the line is complete), `ast.parse` and a whole-file
`analyze()` in this process (CPU, median), and an in-process replay of the same edits through
IncrementalAnalyzer: the share re-analysed in part per edit kind, why the rest ran the whole file,
how each kind's new text (an edit, not the deletion undoing it) was analysed (regions in part, the
dataflow patched for one function, the whole file for a text that parses or does not), and how many
results differ from a whole-file analysis.

    .venv/bin/python benchmarks/bench_keystroke_real.py [--edits 60] [--files a.py,b.py] [--no-server]
"""
from __future__ import annotations

import argparse
import ast
import collections
import os
import random
import re
import tempfile
import time
from pathlib import Path

from _common import BENCH, LspClient, header, median, pct, python_exe, save, server_env

REAL = Path(os.environ.get("GRADPATH_REALCODE", "/work/realcode"))
KINDS = ("function body", "script", "class body", "imports")
IDENT = re.compile(r"[A-Za-z_]\w*")


def _listed() -> list[str]:
    out = []
    for line in (BENCH / "real_files.txt").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            out.append(line)
    return out


def _line_kinds(text: str) -> dict[str, list[int]]:
    """0-based line numbers of each edit kind (code lines only, no comments or blank lines)."""
    tree = ast.parse(text)
    lines = text.split("\n")
    kinds: dict[str, list[int]] = {k: [] for k in KINDS}
    for st in tree.body:
        end = st.end_lineno or st.lineno
        if isinstance(st, (ast.Import, ast.ImportFrom)):
            kind, first = "imports", st.lineno
        elif isinstance(st, (ast.FunctionDef, ast.AsyncFunctionDef)):
            kind, first = "function body", st.body[0].lineno
        elif isinstance(st, ast.ClassDef):
            kind, first = "class body", st.body[0].lineno
        else:
            kind, first = "script", st.lineno
        for ln in range(first, end + 1):
            s = lines[ln - 1].strip()
            if s and not s.startswith("#") and IDENT.search(s):
                kinds[kind].append(ln - 1)
    return {k: v for k, v in kinds.items() if v}


def _edits(text: str, count: int, seed: int):
    """Yield (kind, LSP change, new text, whether it reverts the edit before) for `count`
    one-character edits."""
    r = random.Random(seed)
    lines = text.split("\n")
    kinds = _line_kinds(text)
    order = [k for k in KINDS if k in kinds]
    undo = None
    for n in range(count):
        if undo is not None:
            kind, i, c = undo
            undo = None
            lines[i] = lines[i][:c] + lines[i][c + 1:]
            yield kind, {"range": {"start": {"line": i, "character": c},
                                   "end": {"line": i, "character": c + 1}}, "text": ""}, "\n".join(lines), True
            continue
        kind = order[(n // 2) % len(order)]
        for _try in range(50):  # a line whose only names follow a `#` (in a string): another one
            i = r.choice(kinds[kind])
            line = lines[i]
            code_end = line.find("#") if "#" in line else len(line)
            if IDENT.search(line[:code_end]):
                break
        digits = [m.start() for m in re.finditer(r"\d", line)]
        digits = [d for d in digits if d < code_end]
        if digits and r.random() < 0.5:
            c = r.choice(digits)
            new = str((int(line[c]) + 1) % 10)
            lines[i] = line[:c] + new + line[c + 1:]
            yield kind, {"range": {"start": {"line": i, "character": c},
                                   "end": {"line": i, "character": c + 1}}, "text": new}, "\n".join(lines), False
            continue
        ends = [m.end() for m in IDENT.finditer(line[:code_end])] or [code_end]
        c = r.choice(ends)
        lines[i] = line[:c] + "q" + line[c:]
        undo = (kind, i, c)
        yield kind, {"range": {"start": {"line": i, "character": c},
                               "end": {"line": i, "character": c}}, "text": "q"}, "\n".join(lines), False


def _cpu(fn, n: int) -> float:
    ts = []
    for _ in range(n):
        t0 = time.process_time()
        fn()
        ts.append(time.process_time() - t0)
    return median(ts)


def _replay(text: str, path: str, edits: int, seed: int) -> dict:
    from gradpath.analysis import analyze
    from gradpath.analysis.incremental import IncrementalAnalyzer
    ia = IncrementalAnalyzer()
    ia.analyze(text, path)
    per_kind: dict[str, list[str]] = collections.defaultdict(list)
    # new text (not the deletion that undoes an edit) per kind: how it was analysed
    new_text: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    reasons: collections.Counter = collections.Counter()
    inc_ms, differ = [], 0
    for kind, _change, new, revert in _edits(text, edits, seed):
        got = ia.analyze(new, path)
        st = ia.stats
        per_kind[kind].append(st.mode)
        if not revert:
            if st.mode == "full":
                try:
                    ast.parse(new)
                    how = "whole file"
                except SyntaxError:
                    how = "whole file, does not parse"
            elif st.flow.startswith("patched"):
                how = "dataflow patched"
            else:
                how = {"incremental": "regions in part", "same": "result reused"}.get(st.mode, st.mode)
            new_text[kind][how] += 1
        if st.mode == "incremental":
            inc_ms.append(st.seconds * 1000)
        elif st.mode == "full":
            reasons[re.sub(r"\d+", "N", st.reason) + (f" ({st.flow})" if st.flow else "")] += 1
        ref = analyze(new, path)
        if [f.to_dict() for f in got.findings] != [f.to_dict() for f in ref.findings]:
            differ += 1
    share = {k: v.count("incremental") / len(v) for k, v in per_kind.items()}
    reused = {k: v.count("same") / len(v) for k, v in per_kind.items()}
    return {"share_by_kind": share, "reused_by_kind": reused, "full_reasons": dict(reasons.most_common(4)),
            "new_text_by_kind": {k: dict(v) for k, v in new_text.items()},
            "incremental_p50_ms": pct(inc_ms, 50) if inc_ms else None, "differs": differ}


def _server(text: str, name: str, edits: int, seed: int, workdir: Path) -> dict:
    path = workdir / name
    path.write_text(text, encoding="utf-8")
    uri = path.resolve().as_uri()
    c = LspClient([python_exe(), "-m", "gradpath", "serve"], cwd=str(workdir), env=server_env(),
                  stderr_path=str(workdir / f"server_{name}.log"))
    try:
        c.initialize(workdir, {}, timeout=60)
        c.open(uri, text)
        c.wait_publish(uri, 1, timeout=60)
        version = 1
        lat: dict[str, list[float]] = collections.defaultdict(list)
        for k, (kind, change, _new, revert) in enumerate(_edits(text, edits + 10, seed + 1)):
            version += 1
            m0 = c.mark()
            t_send = c.change(uri, version, [change])
            m = c.wait_publish(uri, version, timeout=30, start=m0)
            if k >= 10:
                lat[kind].append((m.t - t_send) * 1000)
                lat["(new text)" if not revert else "(reverts)"].append((m.t - t_send) * 1000)
        # the edits may end on one not undone (a digit, a letter): back to the file as it is, which
        # the bursts and the typing below take their positions from
        version += 1
        c.change(uri, version, [{"text": text}])
        c.wait_publish(uri, version, timeout=60)
        lat["(burst, last key)"] = _bursts(c, uri, text, version, seed)
        version += 64
        for key, v in _typing(c, uri, text, version, seed).items():
            lat[key] = v
        return lat
    finally:
        c.shutdown()


def _bursts(c, uri: str, text: str, version: int, seed: int, bursts: int = 8, gap_s: float = 0.05) -> list[float]:
    """Typing faster than an analysis runs: four letters typed 50 ms apart at the end of a name in
    a function body, then deleted the same way; the time from the last key of each burst to the
    publish of its version (the versions before it are superseded)."""
    r = random.Random(seed)
    lines = text.split("\n")
    rows = _line_kinds(text).get("function body") or _line_kinds(text).get("class body") or []
    out: list[float] = []
    for _ in range(bursts if rows else 0):
        i = r.choice(rows)
        line = lines[i]
        code_end = line.find("#") if "#" in line else len(line)
        col = r.choice([m.end() for m in IDENT.finditer(line[:code_end])] or [code_end])
        word = "abcd"
        for phase in ("type", "delete"):
            for n in range(len(word)):
                version += 1
                if phase == "type":
                    rng = {"start": {"line": i, "character": col + n}, "end": {"line": i, "character": col + n}}
                    t_send = c.change(uri, version, [{"range": rng, "text": word[n]}])
                else:
                    at = col + len(word) - 1 - n
                    rng = {"start": {"line": i, "character": at}, "end": {"line": i, "character": at + 1}}
                    t_send = c.change(uri, version, [{"range": rng, "text": ""}])
                if n < len(word) - 1:
                    time.sleep(gap_s)
            m = c.wait_publish(uri, version, timeout=60)
            out.append((m.t - t_send) * 1000)
        time.sleep(0.3)
    return out


TYPED = "tmp = torch.clamp(out.mean(), min=1e-6) * scale"


def _typing(c, uri: str, text: str, version: int, seed: int, lines_typed: int = 2) -> dict[str, list[float]]:
    """A new line typed one key at a time, as a user writes code: Enter at the end of a line in a
    function body (the new line indented like it: timed apart, "(typing, Enter)"), then TYPED key
    by key, each key's publish awaited; then the line removed again ("(typing, line removed)").
    Most of the typed texts do not parse (`tmp =`, `torch.clamp(`): their times are given apart
    from those that do."""
    r = random.Random(seed + 7)
    lines = text.split("\n")
    # after a simple statement of a function's body, indented like it (where Enter puts the cursor)
    spots = sorted({(st.end_lineno - 1, st.col_offset) for fn in ast.walk(ast.parse(text))
                    if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
                    for st in ast.walk(fn) if isinstance(st, ast.stmt) and not hasattr(st, "body")
                    and len(lines[st.lineno - 1]) - len(lines[st.lineno - 1].lstrip()) == st.col_offset})
    out: dict[str, list[float]] = {"(typing, parses)": [], "(typing, does not parse)": [], "(typing, Enter)": [],
                                   "(typing, line removed)": []}
    for _ in range(lines_typed if spots else 0):
        i, col = r.choice(spots)
        indent = " " * col
        end = {"line": i, "character": len(lines[i])}
        version += 1
        m0 = c.mark()
        t_send = c.change(uri, version, [{"range": {"start": end, "end": end}, "text": "\n" + indent}])
        m = c.wait_publish(uri, version, timeout=60, start=m0)
        out["(typing, Enter)"].append((m.t - t_send) * 1000)
        cur = list(lines[:i + 1]) + [indent] + list(lines[i + 1:])
        for n in range(len(TYPED)):
            version += 1
            at = {"line": i + 1, "character": len(indent) + n}
            m0 = c.mark()
            t_send = c.change(uri, version, [{"range": {"start": at, "end": at}, "text": TYPED[n]}])
            m = c.wait_publish(uri, version, timeout=60, start=m0)
            cur[i + 1] = indent + TYPED[:n + 1]
            try:
                ast.parse("\n".join(cur))
                kind = "(typing, parses)"
            except SyntaxError:
                kind = "(typing, does not parse)"
            out[kind].append((m.t - t_send) * 1000)
        version += 1
        m0 = c.mark()
        t_send = c.change(uri, version, [{"range": {"start": end, "end": {"line": i + 1, "character": len(cur[i + 1])}},
                                          "text": ""}])
        m = c.wait_publish(uri, version, timeout=60, start=m0)
        out["(typing, line removed)"].append((m.t - t_send) * 1000)
        time.sleep(0.3)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--edits", type=int, default=60)
    ap.add_argument("--files", default="")
    ap.add_argument("--no-server", action="store_true", help="only the in-process figures")
    a = ap.parse_args(argv)
    from gradpath.analysis import analyze
    header("keystroke latency on real files")
    files = [f for f in a.files.split(",") if f] or _listed()
    rows = []
    with tempfile.TemporaryDirectory(prefix="gp-keys-real-") as d:
        for rel in files:
            p = REAL / rel
            if not p.exists():
                print(f"skip {rel}: not fetched under {REAL}")
                continue
            text = p.read_text(encoding="utf-8")
            n = len(text.splitlines())
            parse_ms = _cpu(lambda: ast.parse(text), 9) * 1000
            analyze(text, str(p))
            analyze_ms = _cpu(lambda: analyze(text, str(p)), 5) * 1000
            rep = _replay(text, str(p), a.edits, seed=n)
            row = {"file": rel, "lines": n, "ast_parse_ms": parse_ms, "analyze_ms": analyze_ms, **rep}
            print(f"{rel} ({n} lines): ast.parse {parse_ms:.1f} ms, whole-file analyze() {analyze_ms:.1f} ms "
                  f"({analyze_ms / parse_ms:.1f}x)", flush=True)
            shares = ", ".join(f"{k} {v * 100:.0f}%" for k, v in rep["share_by_kind"].items())
            reused = ", ".join(f"{k} {v * 100:.0f}%" for k, v in rep["reused_by_kind"].items())
            print(f"   replay: re-analysed in part: {shares}; result reused (a text seen a moment ago or only "
                  f"comments changed): {reused}; p50 {rep['incremental_p50_ms'] or 0:.1f} ms; "
                  f"{rep['differs']} of {a.edits} differ from whole-file; whole-file because: {rep['full_reasons']}",
                  flush=True)
            for k, how in rep["new_text_by_kind"].items():
                print(f"   new text, {k}: " + ", ".join(f"{h} {n}" for h, n in sorted(how.items())), flush=True)
            if not a.no_server:
                lat = _server(text, Path(rel).name, a.edits, n, Path(d))
                allv = [x for k, v in lat.items() if not k.startswith("(") for x in v]
                lat = {k: v for k, v in lat.items() if v}
                row["server"] = {"p50_ms": pct(allv, 50), "p95_ms": pct(allv, 95), "max_ms": max(allv),
                                 "by_kind": {k: {"p50_ms": pct(v, 50), "p95_ms": pct(v, 95)} for k, v in lat.items()}}
                kinds = ", ".join(f"{k} {pct(v, 50):.0f}/{pct(v, 95):.0f}" for k, v in lat.items())
                print(f"   server (default settings): p50 {pct(allv, 50):.1f} ms, p95 {pct(allv, 95):.1f} ms, "
                      f"max {max(allv):.0f} ms; p50/p95 by kind: {kinds}", flush=True)
            rows.append(row)
    print(f"results: {save('keystroke_real', {'rows': rows})}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
