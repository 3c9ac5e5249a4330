#!/usr/bin/env python3
"""Server resident memory after opening 50 files (generated, 300-600 lines each, in one
workspace), with every child process of the server (jedi's helper, the live worker) reported
separately. Also: RSS right after initialize, and after closing them all.

    .venv/bin/python benchmarks/bench_memory.py [--files 50]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from _common import LspClient, cmdline, descendants, header, python_exe, rss_kb, save, server_env
from gen_corpus import generate


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--files", type=int, default=50)
    ap.add_argument("--settle", type=float, default=20.0, help="seconds to let background (jedi) passes run")
    a = ap.parse_args(argv)
    header(f"server memory after opening {a.files} files")
    with tempfile.TemporaryDirectory(prefix="gp-mem-") as d:
        ws = Path(d) / "ws"
        ws.mkdir()
        files = []
        for i in range(a.files):
            p = ws / f"mod_{i:02d}.py"
            p.write_text(generate(300 + (i * 37) % 300, seed=5, idx=i), encoding="utf-8")
            files.append(p)
        c = LspClient([python_exe(), "-m", "gradpath", "serve"], cwd=str(ws), env=server_env(),
                      stderr_path=str(Path(d) / "server.log"))
        try:
            c.initialize(ws, {}, timeout=120)
            time.sleep(1)
            rss_init = c.rss_kb()
            for p in files:
                c.open(p.as_uri(), p.read_text(encoding="utf-8"))
            for p in files:
                c.wait_publish(p.as_uri(), 1, timeout=300)
            time.sleep(a.settle)
            rss_open = c.rss_kb()
            kids = {pid: (cmdline(pid), rss_kb(pid)) for pid in descendants(c.proc.pid)}
            for p in files:
                c.close_doc(p.as_uri())
            c.call("textDocument/hover", {"textDocument": {"uri": files[0].as_uri()},
                                          "position": {"line": 0, "character": 0}}, timeout=60)
            time.sleep(2)
            rss_closed = c.rss_kb()
        finally:
            c.shutdown()
    lines = sum(len(p_text.splitlines()) for p_text in [generate(300 + (i * 37) % 300, seed=5, idx=i) for i in range(a.files)])
    print(f"server RSS: after initialize {rss_init / 1024:.1f} MB, after opening {a.files} files "
          f"({lines} lines) {rss_open / 1024:.1f} MB, after closing them {rss_closed / 1024:.1f} MB")
    if kids:
        for pid, (cmd, kb) in kids.items():
            print(f"  child {pid}: {kb / 1024:.1f} MB  {cmd[:100]}")
    else:
        print("  no child processes (no jedi helper running)")
    out = {"files": a.files, "lines": lines, "rss_init_mb": rss_init / 1024, "rss_open_mb": rss_open / 1024,
           "rss_closed_mb": rss_closed / 1024,
           "children": [{"pid": pid, "cmd": cmd, "rss_mb": kb / 1024} for pid, (cmd, kb) in kids.items()]}
    print(f"results: {save('memory', out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
