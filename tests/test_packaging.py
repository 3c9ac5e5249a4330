"""Setup output a new user reads: the build backend accepts pyproject.toml without warnings, and
the demo names the built extension once."""
import re
import shutil
import subprocess
import sys

from testpaths import ROOT


def test_build_backend_reads_pyproject_without_warnings(tmp_path):
    """setuptools' metadata step (what `pip install -e .` and `pip wheel` run) on a copy of the
    project: no deprecation warning (a `license = { text = ... }` table printed a
    BuildBackendWarning block three times per setup run) and the SPDX licence in the metadata."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "server", src / "server", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    meta = tmp_path / "meta"
    meta.mkdir()
    proc = subprocess.run([sys.executable, "-c", "import sys, setuptools.build_meta as b; "
                           "print(b.prepare_metadata_for_build_wheel(sys.argv[1]))", str(meta)],
                          cwd=src, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout + proc.stderr
    assert not re.search(r"warning|deprecat", out, re.I), out[-3000:]
    (dist,) = meta.glob("gradpath-*.dist-info")
    assert "License-Expression: MIT" in (dist / "METADATA").read_text(encoding="utf-8").splitlines()


def test_demo_names_the_vsix_once():
    """scripts/demo.sh -> setup.sh --vsix -> build-vsix.sh: one `built: ...vsix` line in all."""
    printing = []
    for name in ("demo.sh", "setup.sh", "build-vsix.sh"):
        for line in (ROOT / "scripts" / name).read_text(encoding="utf-8").splitlines():
            code = line.split("#", 1)[0]
            if "built: " in code and ("echo" in code or "sed" in code or "printf" in code):
                printing.append((name, line.strip()))
    assert [n for n, _ in printing] == ["build-vsix.sh"], printing


def test_system_wide_installs_are_announced_first():
    """scripts/setup-e2e.sh says which Debian packages (and which global npm package) it installs,
    and that it needs root or sudo, before the command that installs them; test.sh says so at its
    start."""
    text = (ROOT / "scripts" / "setup-e2e.sh").read_text(encoding="utf-8")
    lines = text.splitlines()
    apt = next(i for i, l in enumerate(lines) if "apt-get install" in l and "$SUDO" in l)
    npm = next(i for i, l in enumerate(lines) if "npm install -g" in l and "$SUDO" in l)
    said_apt = [i for i, l in enumerate(lines[:apt]) if l.strip().startswith("echo") and "Debian packages" in l]
    said_npm = [i for i, l in enumerate(lines[:npm]) if l.strip().startswith("echo") and "node-gyp" in l]
    assert said_apt and said_npm, (apt, npm)
    assert "needs root" in text
    assert "shared E2E notes" not in text  # no reference to notes outside the repository
    head = (ROOT / "scripts" / "test.sh").read_text(encoding="utf-8")
    setup = head.index("bash scripts/setup.sh")
    assert "apt-get" in head[:setup] and "echo" in head[:setup]
