"""Finding and reading the Python files of a project: shared by the CLI, the language server and
the project index (none of them imports another for this)."""
from __future__ import annotations

import io
import os
from pathlib import Path

__all__ = ["UsageError", "SKIP_DIRS", "iter_python_files", "read_source", "project_root",
           "PROJECT_MARKERS"]

SKIP_DIRS = ("__pycache__", "node_modules", "venv", ".venv", "site-packages")
# What marks the top of a project when a single file is checked.
PROJECT_MARKERS = ("pyproject.toml", "setup.py", "setup.cfg", ".git")


class UsageError(Exception):
    """A path or option the user gave cannot be used (the CLI prints it and exits 2)."""


def iter_python_files(paths: list[str], notebooks: bool = False) -> list[Path]:
    """Files given, and `*.py` (and `*.ipynb` when `notebooks`) under folders given, skipping
    hidden folders and virtualenvs."""
    out: list[Path] = []
    suffixes = (".py", ".ipynb") if notebooks else (".py",)
    for p in paths:
        path = Path(p)
        if not path.exists():
            raise UsageError(f"{p}: no such file or directory")
        if path.is_dir():
            out.extend(_walk(path, suffixes))
        else:
            out.append(path)
    seen, unique = set(), []
    for f in out:  # a file named twice (or inside a folder also named) is analysed once
        key = os.path.realpath(f)
        if key not in seen:
            seen.add(key)
            unique.append(f)
    return unique


def _walk(root: Path, suffixes: tuple[str, ...]) -> list[Path]:
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".") and d not in SKIP_DIRS]
        for name in filenames:
            if name.endswith(suffixes):
                f = Path(dirpath, name)
                if f.is_file():
                    found.append(f)
    return sorted(found)


def read_source(path: Path) -> str:
    data = Path(path).read_bytes()
    try:
        import tokenize
        enc, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
        return data.decode(enc)
    except (SyntaxError, LookupError, UnicodeDecodeError):
        return data.decode("utf-8", errors="replace")


def project_root(path: str | os.PathLike) -> Path:
    """The project a file or folder belongs to: a folder is its own project; for a file, the
    nearest folder above it holding pyproject.toml, setup.py, setup.cfg or .git, else its folder."""
    p = Path(os.path.abspath(path))
    if p.is_dir():
        return p
    start = p.parent
    d = start
    while True:
        if any((d / m).exists() for m in PROJECT_MARKERS):
            return d
        if d.parent == d:
            return start
        d = d.parent
