#!/usr/bin/env python3
"""First diagnostics: from starting `gradpath serve` to the first publishDiagnostics of an opened
file that imports torch and a model class from another module of the workspace.

Two cases: jedi's cache empty (a fresh XDG_CACHE_HOME, so jedi/parso start from nothing), and warm
(the same cache folder again, on a new server process). Each is repeated --runs times; the figures
are the median. Also reported: spawn -> initialize answered, didOpen -> first publish, and, when
the server republishes after its background jedi pass, when that came.

    .venv/bin/python benchmarks/bench_first.py [--runs 3]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from _common import LspClient, header, median, python_exe, save, server_env
from gen_corpus import write_workspace


def write_external(root: Path) -> tuple[Path, Path]:
    """A workspace whose model class comes from a package outside it (on PYTHONPATH, as an
    installed package would be): the static resolver cannot see it, only jedi can."""
    lib = root / "site" / "extlib_gp"
    lib.mkdir(parents=True, exist_ok=True)
    (lib / "__init__.py").write_text("from .models import Net\n", encoding="utf-8")
    (lib / "models.py").write_text((root / "ws" / "models.py").read_text(encoding="utf-8"), encoding="utf-8")
    ws = root / "ws-ext"
    ws.mkdir(exist_ok=True)
    (ws / "train.py").write_text((root / "ws" / "train.py").read_text(encoding="utf-8").replace(
        "from models import Net", "from extlib_gp import Net"), encoding="utf-8")
    return ws, root / "site"


def one_run(ws: Path, cache: Path, wait_jedi_s: float, extra_path: Path | None = None) -> dict:
    train = ws / "train.py"
    uri = train.resolve().as_uri()
    env = server_env({"XDG_CACHE_HOME": str(cache)})
    if extra_path is not None:
        env["PYTHONPATH"] = env["PYTHONPATH"] + ":" + str(extra_path)
    t0 = time.perf_counter()
    c = LspClient([python_exe(), "-m", "gradpath", "serve"], cwd=str(ws), env=env,
                  stderr_path=str(ws.parent / f"first-{time.time_ns()}.log"))
    try:
        res = c.initialize(ws, {}, timeout=120)
        t_init = res.t
        t_open = c.open(uri, train.read_text(encoding="utf-8"))
        m = c.wait_publish(uri, 1, timeout=120)
        codes = sorted(d.get("code") for d in m["params"]["diagnostics"])
        out = {"spawn_to_publish_s": m.t - t0, "spawn_to_initialized_s": t_init - t0,
               "open_to_publish_s": m.t - t_open, "first_codes": codes, "republish_s": None,
               "republish_codes": None}
        try:
            m2 = c.wait_publish(uri, 1, timeout=wait_jedi_s, start=c.messages.index(m) + 1)
            out["republish_s"] = m2.t - t0
            out["republish_codes"] = sorted(d.get("code") for d in m2["params"]["diagnostics"])
        except TimeoutError:
            pass
        return out
    finally:
        c.shutdown()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--wait-jedi", type=float, default=15.0, help="seconds to wait for a jedi republish")
    a = ap.parse_args(argv)
    header("first diagnostics: spawn `gradpath serve` -> first publishDiagnostics")
    rows = {}
    with tempfile.TemporaryDirectory(prefix="gp-first-") as d:
        d = Path(d)
        ws = d / "ws"
        write_workspace(ws)
        ws_ext, site = write_external(d)
        cases = [("cold", ws, None), ("warm", ws, None), ("cold, model from a package outside the workspace (jedi)", ws_ext, site),
                 ("warm, model from a package outside the workspace (jedi)", ws_ext, site)]
        for case, wsp, extra in cases:
            runs = []
            for i in range(a.runs):
                tag = "ext" if extra else "ws"
                cache = d / (f"cache-cold-{tag}-{i}" if case.startswith("cold") else f"cache-warm-{tag}")
                if case.startswith("warm") and i == 0:
                    one_run(wsp, cache, a.wait_jedi, extra)  # fill the cache (not counted)
                runs.append(one_run(wsp, cache, a.wait_jedi, extra))
            row = {k: median([r[k] for r in runs]) for k in
                   ("spawn_to_publish_s", "spawn_to_initialized_s", "open_to_publish_s")}
            rep = [r["republish_s"] for r in runs if r["republish_s"] is not None]
            row["republish_s"] = median(rep) if rep else None
            row["first_codes"] = runs[-1]["first_codes"]
            row["republish_codes"] = runs[-1]["republish_codes"]
            row["runs"] = runs
            rows[case] = row
            rep_s = f"{row['republish_s']:.2f} s {row['republish_codes']}" if row["republish_s"] else "none"
            print(f"jedi cache {case}: spawn->first publish {row['spawn_to_publish_s']:.2f} s "
                  f"(spawn->initialized {row['spawn_to_initialized_s']:.2f} s, didOpen->publish "
                  f"{row['open_to_publish_s'] * 1000:.0f} ms) codes {row['first_codes']}; "
                  f"jedi republish: {rep_s}", flush=True)
    print(f"results: {save('first', rows)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
