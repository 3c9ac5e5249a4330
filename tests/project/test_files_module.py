"""gradpath.files: file discovery shared by the CLI, the server and the project index."""
import ast
from pathlib import Path

from gradpath.files import iter_python_files, project_root, read_source

LSP = Path(__file__).resolve().parents[2] / "server" / "gradpath" / "lsp"


def test_lsp_never_imports_the_cli():
    for f in sorted(LSP.rglob("*.py")):
        tree = ast.parse(f.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            assert not any(n == "gradpath.cli" or n.startswith("gradpath.cli.") for n in names), \
                f"{f.name}:{node.lineno} imports gradpath.cli"


def test_project_root_walks_up_to_a_marker(tmp_path):
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "pkg" / "models").mkdir(parents=True)
    f = tmp_path / "pkg" / "models" / "net.py"
    f.write_text("x = 1\n")
    assert project_root(f) == tmp_path
    assert project_root(tmp_path / "pkg") == tmp_path / "pkg"


def test_project_root_without_marker_is_the_folder(tmp_path):
    # tmp_path may sit under a folder with .git; a marker-less folder tree inside / stops at its top
    d = tmp_path / "a"
    d.mkdir()
    f = d / "x.py"
    f.write_text("")
    root = project_root(f)
    assert root in (d, *d.parents)


def test_iter_python_files_skips_hidden_and_venvs(tmp_path):
    for rel in ["a.py", "pkg/b.py", ".hidden/c.py", "venv/d.py", "pkg/__pycache__/e.py"]:
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("")
    got = [p.relative_to(tmp_path).as_posix() for p in iter_python_files([str(tmp_path)])]
    assert got == ["a.py", "pkg/b.py"]


def test_read_source_honours_the_coding_line(tmp_path):
    p = tmp_path / "l.py"
    p.write_bytes("# -*- coding: latin-1 -*-\nx = 'é'\n".encode("latin-1"))
    assert "é" in read_source(p)
