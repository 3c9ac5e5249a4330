#!/usr/bin/env python3
"""Keystroke latency when the user pauses between keys, two servers side by side.

The edits of bench_keystroke_real.py (one character at a time, in function bodies, the script,
class bodies and imports, each letter deleted by the next edit), sent to two `gradpath serve`
processes in turn, `--gap` seconds after each publish (a person typing leaves 100-300 ms between
keys; the other benchmarks send the next edit the moment the last one is published, which leaves the
server no pause at all). Each edit goes to both servers, the order alternating, so that a machine
whose speed drifts slows both alike. The other server runs the tree named by `--old` (a copy of
another version's `server/` folder); this checkout's runs as "new".

    .venv/bin/python benchmarks/bench_paced.py --old /tmp/old/server [--gap 0.15] [--edits 40] [--files a.py,b.py]

Prints, per file and server: p50/p95/max over all edits and over new text (not the deletions),
p50/p95 of new text per edit kind, and the server's RSS at the end. It asserts nothing.
"""
from __future__ import annotations

import argparse
import collections
import tempfile
import time
from pathlib import Path

from _common import ROOT, LspClient, pct, python_exe, server_env
import bench_keystroke_real as B


def run(rel: str, old: str, edits: int, gap: float, seed: int) -> None:
    text = (B.REAL / rel).read_text()
    clients = {}
    for tag, srv in (("old", old), ("new", str(ROOT / "server"))):
        wd = Path(tempfile.mkdtemp())
        path = wd / Path(rel).name
        path.write_text(text)
        env = server_env()
        env["PYTHONPATH"] = srv
        c = LspClient([python_exe(), "-m", "gradpath", "serve"], cwd=str(wd), env=env,
                      stderr_path=str(wd / "server.log"))
        c.initialize(wd, {}, timeout=60)
        uri = path.resolve().as_uri()
        c.open(uri, text)
        c.wait_publish(uri, 1, timeout=60)
        clients[tag] = (c, uri)
    time.sleep(2)
    lat = collections.defaultdict(list)
    version = 1
    try:
        for k, (kind, change, _new, revert) in enumerate(B._edits(text, edits, seed)):
            version += 1
            for tag in (("old", "new") if k % 2 == 0 else ("new", "old")):
                c, uri = clients[tag]
                m0 = c.mark()
                t = c.change(uri, version, [change])
                m = c.wait_publish(uri, version, timeout=60, start=m0)
                lat[(tag, "rev" if revert else "new")].append((m.t - t) * 1000)
                if not revert:
                    lat[(tag, kind)].append((m.t - t) * 1000)
                time.sleep(gap)
        rss = {tag: c.rss_kb() for tag, (c, _uri) in clients.items()}
    finally:
        for c, _uri in clients.values():
            c.shutdown()
    for tag in ("old", "new"):
        every = lat[(tag, "new")] + lat[(tag, "rev")]
        fresh = lat[(tag, "new")]
        print(f"{tag} {rel}: gap {gap}s, all p50/p95/max {pct(every, 50):.1f}/{pct(every, 95):.1f}/"
              f"{max(every):.0f} ms, new text p50/p95 {pct(fresh, 50):.1f}/{pct(fresh, 95):.1f} ms, "
              f"RSS {rss[tag] / 1024:.0f} MB", flush=True)
        kinds = [k for k in B.KINDS if lat[(tag, k)]]
        print("    new text by kind, p50/p95: " + ", ".join(
            f"{k} {pct(lat[(tag, k)], 50):.0f}/{pct(lat[(tag, k)], 95):.0f}" for k in kinds), flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old", required=True, help="the other version's server/ folder")
    ap.add_argument("--gap", type=float, default=0.15)
    ap.add_argument("--edits", type=int, default=40)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--files", default="pytorch-image-models/train.py,accelerate/src/accelerate/accelerator.py,"
                                         "trl/trl/trainer/grpo_trainer.py")
    a = ap.parse_args(argv)
    for rel in a.files.split(","):
        run(rel, a.old, a.edits, a.gap, a.seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
