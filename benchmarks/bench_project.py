"""The project model's index: cold (every module summarised), warm (summaries from the disk cache),
and the memory of a process holding it. Prints figures; asserts nothing.

    python benchmarks/bench_project.py                      # a generated 100,000-line project
    python benchmarks/bench_project.py --lines 200000
    python benchmarks/bench_project.py --real /work/realcode/pytorch-image-models /work/realcode/detectron2

Targets (issue 15): 100,000 lines cold <= 15 s on 2 cores, warm <= 1.5 s, server memory with the
index <= 300 MB. Cold and warm are measured in a fresh process each (no summaries in memory), and
"memory" is the peak RSS of a process that imports the language server and holds the built project
with its linker warmed (loss uses, finding sites).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SERVER = HERE.parent / "server"

MODEL = '''
import torch
import torch.nn as nn
import torch.nn.functional as F

from pkg{p}.blocks{b} import Block{b}


class Net{i}(nn.Module):
    """A model of the generated project."""

    def __init__(self, n_in=32, n_hidden=64, n_out=10, depth=3):
        super().__init__()
        self.stem = nn.Linear(n_in, n_hidden)
        self.blocks = nn.ModuleList([Block{b}(n_hidden) for _ in range(depth)])
        self.norm = nn.LayerNorm(n_hidden)
        self.head = nn.Linear(n_hidden, n_out)
        self.dropout = nn.Dropout(0.1)

    def features(self, x):
        x = F.gelu(self.stem(x))
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)

    def forward(self, x):
        h = self.dropout(self.features(x))
        return {ret}
'''
BLOCK = '''
import torch.nn as nn


class Block{b}(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.fc1 = nn.Linear(dim, dim * 2)
        self.fc2 = nn.Linear(dim * 2, dim)
        self.act = nn.GELU()

    def forward(self, x):
        return x + self.fc2(self.act(self.fc1(x)))
'''
ENGINE = '''
import torch


def train_one_epoch{i}(model, optimizer, loader, criterion, scheduler=None):
    model.train()
    total = 0.0
    for step, (x, y) in enumerate(loader):
        optimizer.zero_grad()
        out = model(x)
        loss = criterion(out, y)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        total += loss.item()
    return total / max(1, len(loader))


@torch.no_grad()
def evaluate{i}(model, loader):
    model.eval()
    correct = 0
    for x, y in loader:
        correct += (model(x).argmax(1) == y).sum().item()
    return correct
'''
SCRIPT = '''
import argparse

import torch
import torch.nn as nn

from pkg{p}.engine{e} import evaluate{e}, train_one_epoch{e}
from pkg{q}.net{m} import Net{m}


def parse_args():
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--lr", type=float, default=1e-3)
    return ap.parse_args()


def main():
    args = parse_args()
    model = Net{m}()
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr)
    loader = [(torch.randn(8, 32), torch.randint(0, 10, (8,))) for _ in range(4)]
    for epoch in range(args.epochs):
        train_one_epoch{e}(model, optimizer, loader, criterion)
        print(epoch, evaluate{e}(model, loader))


if __name__ == "__main__":
    main()
'''


def generate(root: Path, lines: int) -> int:
    """A project of about `lines` lines: 20 packages of blocks, models, engines and scripts."""
    total, i = 0, 0
    while total < lines:
        p = i % 20
        pkg = root / f"pkg{p}"
        pkg.mkdir(parents=True, exist_ok=True)
        if not (pkg / "__init__.py").exists():
            (pkg / "__init__.py").write_text("")
        files = {
            f"blocks{i}.py": BLOCK.format(b=i),
            f"net{i}.py": MODEL.format(p=p, b=i, i=i, ret="F.softmax(self.head(h), dim=-1)" if i % 7 == 0
                                       else "self.head(h)"),
            f"engine{i}.py": ENGINE.format(i=i),
        }
        for name, text in files.items():
            text = textwrap.dedent(text).lstrip()
            (pkg / name).write_text(text)
            total += text.count("\n")
        script = textwrap.dedent(SCRIPT.format(p=p, e=i, q=p, m=i)).lstrip()
        (root / "scripts").mkdir(exist_ok=True)
        (root / "scripts" / f"train{i}.py").write_text(script)
        total += script.count("\n")
        i += 1
    return total


CHILD = r'''
import json, os, resource, sys, time
sys.path.insert(0, {server!r})
mode, root = sys.argv[1], sys.argv[2]
t_wall, t_cpu = time.perf_counter(), time.process_time()
if mode == "memory":
    import gradpath.lsp.server  # noqa: F401  (what the language server imports)
from gradpath.analysis.project import Project
from gradpath.analysis.project.link import finding_sites
from gradpath.files import iter_python_files
files = [str(f) for f in iter_python_files([root])]
t_list = time.perf_counter() - t_wall
p = Project(root, files).build()
t_build_wall, t_build_cpu = time.perf_counter() - t_wall, time.process_time() - t_cpu
lk = p.linker()
uses = lk.loss_uses()
sites = finding_sites(lk)
out = {{"files": len(files), "list_s": t_list, "build_wall_s": t_build_wall, "build_cpu_s": t_build_cpu,
       "link_wall_s": time.perf_counter() - t_wall - t_build_wall, "hits": p.cache.stats["hits"],
       "misses": p.cache.stats["misses"], "uses": len(uses), "sites": len(sites),
       "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}
print(json.dumps(out))
'''


def child(mode: str, root: str, cache: str) -> dict:
    env = dict(os.environ, XDG_CACHE_HOME=cache)
    r = subprocess.run([sys.executable, "-c", CHILD.format(server=str(SERVER)), mode, root], env=env,
                       capture_output=True, text=True, timeout=900)
    if r.returncode != 0:
        raise SystemExit(r.stderr)
    return json.loads(r.stdout.strip().splitlines()[-1])


def py_lines(root: Path) -> int:
    n = 0
    for f in root.rglob("*.py"):
        try:
            n += f.read_bytes().count(b"\n")
        except OSError:
            pass
    return n


def measure(root: Path, label: str) -> None:
    cache = tempfile.mkdtemp(prefix="gp-bench-cache-")
    try:
        cold = child("cold", str(root), cache)
        warm = child("warm", str(root), cache)
        mem = child("memory", str(root), cache)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    try:
        load = open("/proc/loadavg").read().split()[0]
    except OSError:
        load = "?"
    print(f"{label}: {cold['files']} modules, {py_lines(root):,} lines (load average {load})")
    print(f"  cold  index {cold['build_wall_s']:.2f} s wall ({cold['build_cpu_s']:.2f} s CPU, listing "
          f"{cold['list_s']:.2f} s), linking {cold['link_wall_s']:.2f} s; {cold['uses']} loss uses linked, "
          f"{cold['sites']} finding sites")
    print(f"  warm  index {warm['build_wall_s']:.2f} s wall ({warm['build_cpu_s']:.2f} s CPU), "
          f"{warm['hits']} summaries from the disk cache, {warm['misses']} computed")
    print(f"  memory (language server imported + project held, linker warmed): {mem['rss_mb']:.0f} MB peak RSS")


def editor(root: Path, cache: str, label: str, index: bool = True) -> None:
    """The language server on the project: first diagnostics of a script opened right after
    initialize (the index builds meanwhile), when the cross-module finding of a model module that is
    not open arrives (the index built), and the server's RSS then."""
    sys.path.insert(0, str(HERE))
    from _common import LspClient, server_env
    script = root / "scripts" / "train0.py"
    net = root / "pkg0" / "net0.py"
    env = server_env({"XDG_CACHE_HOME": cache})
    if not index:
        env["GRADPATH_NO_INDEX"] = "1"
    t0 = time.perf_counter()
    c = LspClient([sys.executable, "-m", "gradpath", "serve"], cwd=str(root), env=env,
                  stderr_path=os.path.join(cache, "server.log"))
    try:
        c.initialize(root, {}, timeout=120)
        t_open = c.open(script.resolve().as_uri(), script.read_text())
        m = c.wait_publish(script.resolve().as_uri(), 1, timeout=120)
        if not index:
            print(f"  editor ({label}, no index): open -> first publish {m.t - t_open:.2f} s; server RSS "
                  f"{c.rss_kb() / 1024:.0f} MB")
            return
        m2 = c.wait_for(lambda x: x.get("method") == "textDocument/publishDiagnostics"
                        and x["params"]["uri"] == net.resolve().as_uri() and x["params"]["diagnostics"],
                        timeout=600)
        rss = c.rss_kb() / 1024
        print(f"  editor ({label}): open -> first publish {m.t - t_open:.2f} s; index built and the closed "
              f"model module's GP304 published {m2.t - t0:.1f} s after spawn; server RSS {rss:.0f} MB")
    finally:
        c.shutdown()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=100_000)
    ap.add_argument("--real", nargs="*", default=[])
    ap.add_argument("--editor", action="store_true", help="also the language server on the generated project")
    args = ap.parse_args(argv)
    print(f"machine: {os.cpu_count()} cores; python {sys.version.split()[0]}")
    if not args.real or args.lines:
        tmp = Path(tempfile.mkdtemp(prefix="gp-bench-project-"))
        try:
            n = generate(tmp, args.lines)
            measure(tmp, f"generated project ({n:,} lines written)")
            if args.editor:
                cache = tempfile.mkdtemp(prefix="gp-bench-ed-")
                try:
                    editor(tmp, cache, "cold cache")
                    editor(tmp, cache, "warm cache")
                    editor(tmp, cache, "warm cache", index=False)
                    editor(tmp, cache, "warm cache")
                finally:
                    shutil.rmtree(cache, ignore_errors=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    for r in args.real:
        measure(Path(r), Path(r).name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
