#!/usr/bin/env python3
"""Keystroke latency through the real server over stdio.

For generated files of 200, 1,000 and 2,000 lines: open the file in `gradpath serve`, then make 100
single-character edits (incremental didChange), each time waiting for the publishDiagnostics of
that version; the latency is its arrival time minus the didChange send time. 1 edit in 5 leaves
the file with a syntax error for one version (typing an open bracket), as real typing does.

Run three times per size: with `debounceMs: 0` (the analysis latency itself), with the server's
default debounce (what a user sees), and with the default debounce at a typing pace (80-250 ms
between keys, 1 edit in 6 after a pause of 0.45-1.2 s, so the next key often lands while the
server's whole-file check after a pause is running); edits otherwise go back to back. Also prints `ast.parse` of the same text in this process
(median of 20) and the ratio, and a whole-file `analyze()` in this process for reference. With
debounce 0 the same edits are replayed in this process through IncrementalAnalyzer (what the
server runs): the share re-analysed in part, and how many results differ from a whole-file
analysis (the server republishes those once typing pauses).

    .venv/bin/python benchmarks/bench_keystroke.py [--sizes 200,1000,2000] [--edits 100]
"""
from __future__ import annotations

import argparse
import ast
import random
import re
import tempfile
import time
from pathlib import Path

from _common import LspClient, header, median, pct, python_exe, save, server_env
from gen_corpus import generate


def _time_ast(text: str, n: int = 20) -> float:
    ts = []
    for _ in range(n):
        t0 = time.perf_counter()
        ast.parse(text)
        ts.append(time.perf_counter() - t0)
    return median(ts)


def _time_analyze(text: str, n: int = 10) -> float:
    from gradpath.analysis import analyze
    analyze(text)
    ts = []
    for _ in range(n):
        t0 = time.perf_counter()
        analyze(text)
        ts.append(time.perf_counter() - t0)
    return median(ts)


def _edits(text: str, count: int, seed: int = 7):
    """Yield (change dict, new text, broken?) for `count` realistic one-character edits."""
    r = random.Random(seed)
    lines = text.split("\n")
    digit_lines = [i for i, l in enumerate(lines) if re.search(r"\d", l) and not l.lstrip().startswith("#")]
    pending_bracket = None
    for k in range(count):
        if pending_bracket is not None:
            i, c = pending_bracket
            lines[i] = lines[i][:c] + lines[i][c + 1:]
            pending_bracket = None
            change = {"range": {"start": {"line": i, "character": c}, "end": {"line": i, "character": c + 1}},
                      "text": ""}
            yield change, "\n".join(lines), False
            continue
        if k % 5 == 4:
            i = r.choice(digit_lines)
            c = len(lines[i])
            lines[i] = lines[i] + "("
            pending_bracket = (i, c)
            change = {"range": {"start": {"line": i, "character": c}, "end": {"line": i, "character": c}},
                      "text": "("}
            yield change, "\n".join(lines), True
            continue
        i = r.choice(digit_lines)
        cols = [m.start() for m in re.finditer(r"\d", lines[i])]
        c = r.choice(cols)
        new = str((int(lines[i][c]) + 1) % 10)
        lines[i] = lines[i][:c] + new + lines[i][c + 1:]
        change = {"range": {"start": {"line": i, "character": c}, "end": {"line": i, "character": c + 1}},
                  "text": new}
        yield change, "\n".join(lines), False


def _replay(text: str, edits: int, seed: int) -> dict:
    """The same edits through IncrementalAnalyzer in this process: how many were re-analysed in
    part, the CPU of those, and how many results differ from a whole-file analyze() (those the
    server corrects once typing pauses)."""
    from gradpath.analysis import analyze
    from gradpath.analysis.incremental import IncrementalAnalyzer
    ia = IncrementalAnalyzer()
    ia.analyze(text, "gen.py")
    modes, inc_ms, differ = [], [], 0
    for k, (_change, new_text, _broken) in enumerate(_edits(text, edits + 10, seed=seed)):
        got = ia.analyze(new_text, "gen.py")
        if k < 10:
            continue
        modes.append(ia.stats.mode)
        if ia.stats.mode == "incremental":
            inc_ms.append(ia.stats.seconds * 1000)
        ref = analyze(new_text, "gen.py")
        if [f.to_dict() for f in got.findings] != [f.to_dict() for f in ref.findings]:
            differ += 1
    return {"incremental_share": modes.count("incremental") / max(1, len(modes)),
            "full_count": modes.count("full"), "incremental_p50_ms": pct(inc_ms, 50) if inc_ms else None,
            "differs_from_whole_file": differ}


def _gaps(count: int, seed: int):
    """Think time before each edit at a typing pace: 80-250 ms between keys, and 1 edit in 6 after
    a pause of 0.45-1.2 s (long enough for the server's whole-file check to start, so the next key
    lands while it runs)."""
    r = random.Random(seed * 31 + 1)
    for k in range(count):
        yield r.uniform(0.45, 1.2) if k % 6 == 5 else r.uniform(0.08, 0.25)


def run_size(n_lines: int, edits: int, debounce_ms: int | None, workdir: Path, paced: bool = False) -> dict:
    text = generate(n_lines, seed=1, idx=n_lines)
    path = workdir / f"gen_{n_lines}.py"
    path.write_text(text, encoding="utf-8")
    uri = path.resolve().as_uri()
    opts = {} if debounce_ms is None else {"debounceMs": debounce_ms}
    c = LspClient([python_exe(), "-m", "gradpath", "serve"], cwd=str(workdir), env=server_env(),
                  stderr_path=str(workdir / f"server_{n_lines}_{debounce_ms}.log"))
    try:
        c.initialize(workdir, opts, timeout=60)
        c.open(uri, text)
        c.wait_publish(uri, 1, timeout=60)
        # warm-up edits (not counted)
        gen = _edits(text, edits + 10, seed=n_lines)
        version = 1
        lat, lat_valid, lat_broken, ndiag = [], [], [], []
        gaps = _gaps(edits + 10, n_lines)
        for k, (change, new_text, broken) in enumerate(gen):
            gap = next(gaps)
            if paced:
                time.sleep(gap)
            version += 1
            m0 = c.mark()
            t_send = c.change(uri, version, [change])
            m = c.wait_publish(uri, version, timeout=30, start=m0)
            dt = (m.t - t_send) * 1000
            if k >= 10:
                lat.append(dt)
                (lat_broken if broken else lat_valid).append(dt)
                ndiag.append(len(m["params"]["diagnostics"]))
            text = new_text
        base = path.read_text(encoding="utf-8")  # same size, no pending syntax error
        ast_ms = _time_ast(base) * 1000
        replay = _replay(base, edits, n_lines) if debounce_ms == 0 and not paced else {}
        return {"lines": n_lines, "debounce_ms": debounce_ms, "paced": paced, "edits": len(lat),
                "p50_ms": pct(lat, 50), "p95_ms": pct(lat, 95), "max_ms": max(lat),
                "p50_valid_ms": pct(lat_valid, 50), "p50_syntax_error_ms": pct(lat_broken, 50),
                "ast_parse_ms": ast_ms, "ratio_p50_to_ast": pct(lat, 50) / ast_ms,
                "ratio_p95_to_ast": pct(lat, 95) / ast_ms,
                "analyze_inprocess_ms": _time_analyze(base) * 1000, **replay,
                "diagnostics_last": ndiag[-1] if ndiag else None}
    finally:
        c.shutdown()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", default="200,1000,2000")
    ap.add_argument("--edits", type=int, default=100)
    ap.add_argument("--no-default-debounce", action="store_true", help="only measure with debounceMs 0")
    ap.add_argument("--no-paced", action="store_true", help="skip the typing-pace run (default debounce, pauses)")
    a = ap.parse_args(argv)
    header("keystroke latency: didChange -> publishDiagnostics (gradpath serve, stdio)")
    rows = []
    with tempfile.TemporaryDirectory(prefix="gp-keys-") as d:
        for n in [int(s) for s in a.sizes.split(",")]:
            runs = [(0, False)] if a.no_default_debounce else [(0, False), (None, False)]
            if not a.no_paced and not a.no_default_debounce:
                runs.append((None, True))
            for deb, paced in runs:
                row = run_size(n, a.edits, deb, Path(d), paced)
                rows.append(row)
                deb_s = ("default" if deb is None else f"{deb} ms") + (", typing pace" if paced else "")
                print(f"{n:5d} lines, debounce {deb_s:8s}: p50 {row['p50_ms']:6.1f} ms  p95 {row['p95_ms']:6.1f} ms"
                      f"  max {row['max_ms']:6.1f}  (valid p50 {row['p50_valid_ms']:.1f}, syntax-error p50 "
                      f"{row['p50_syntax_error_ms']:.1f})  ast.parse {row['ast_parse_ms']:.1f} ms"
                      f"  ratio p50 {row['ratio_p50_to_ast']:.1f}x p95 {row['ratio_p95_to_ast']:.1f}x"
                      f"  analyze() in-process {row['analyze_inprocess_ms']:.1f} ms", flush=True)
                if "incremental_share" in row:
                    print(f"      incremental: {row['incremental_share'] * 100:.0f}% of edits re-analysed in part "
                          f"(p50 {row['incremental_p50_ms'] or 0:.1f} ms in-process), {row['full_count']} whole-file; "
                          f"{row['differs_from_whole_file']} of {row['edits']} results differ from a whole-file "
                          f"analyze() (republished after the pause)", flush=True)
    print(f"results: {save('keystroke', {'rows': rows})}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
