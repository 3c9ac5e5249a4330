"""Every rule page's examples run through the analysis: the wrong one fires the page's code, the
right one produces nothing of that code. Plus: every rule has a page, the index links them all, and
`gradpath explain` prints the page."""
import re
import subprocess
import sys

import pytest

from testpaths import ROOT, server_env
from gradpath.analysis import analyze, catalog
from gradpath.cli import explain_text

DOCS = ROOT / "docs" / "rules"
CODES = sorted(catalog.RULES)
BLOCK = re.compile(r'^```python\s+title="(?P<title>wrong|right)"\s*\n(?P<code>.*?)^```\s*$', re.M | re.S)


def examples(code: str) -> dict[str, list[str]]:
    text = (DOCS / f"{code}.md").read_text(encoding="utf-8")
    out: dict[str, list[str]] = {"wrong": [], "right": []}
    for m in BLOCK.finditer(text):
        out[m.group("title")].append(m.group("code"))
    return out


def test_every_rule_has_a_page_and_the_index_links_it():
    index = (DOCS / "README.md").read_text(encoding="utf-8")
    for code in CODES:
        page = DOCS / f"{code}.md"
        assert page.is_file(), f"missing {page}"
        text = page.read_text(encoding="utf-8")
        assert text.startswith(f"# {code}: {catalog.RULES[code].slug}\n")
        for heading in ("## What it finds", "## Why it matters", "## How to fix it"):
            assert heading in text, (code, heading)
        assert f"]({code}.md)" in index, f"README.md does not link {code}"
    # no page for a code that does not exist
    for page in DOCS.glob("GP*.md"):
        assert page.stem in catalog.RULES, f"{page.name} documents no rule"


@pytest.mark.parametrize("code", CODES)
def test_page_has_one_wrong_and_one_right_example(code):
    ex = examples(code)
    assert len(ex["wrong"]) == 1 and len(ex["right"]) == 1, ex


@pytest.mark.parametrize("code", CODES)
def test_wrong_example_fires(code):
    (wrong,) = examples(code)["wrong"]
    result = analyze(wrong, f"docs/rules/{code}_wrong.py")
    assert not result.failed_rules, f"rules crashed: {result.failed_rules}"
    got = [f"{f.span.line}: {f.code} {f.message}" for f in result.findings]
    assert any(f.code == code for f in result.findings), f"{code} not found; findings: {got}"


@pytest.mark.parametrize("code", CODES)
def test_right_example_is_quiet(code):
    (right,) = examples(code)["right"]
    result = analyze(right, f"docs/rules/{code}_right.py")
    assert not result.failed_rules, f"rules crashed: {result.failed_rules}"
    bad = [f"{f.span.line}: {f.code} {f.message}" for f in result.findings if f.code == code]
    assert not bad, bad
    if code != catalog.SYNTAX_ERROR:
        compile(right, f"{code}_right.py", "exec")  # the fixed example is valid Python


def test_explain_prints_the_page():
    assert explain_text("GP102") == (DOCS / "GP102.md").read_text(encoding="utf-8")
    assert explain_text("partial-params") == explain_text("gp102")
    proc = subprocess.run([sys.executable, "-m", "gradpath", "explain", "GP304"], capture_output=True,
                          text=True, env=server_env(), cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == (DOCS / "GP304.md").read_text(encoding="utf-8")


def test_explain_unknown_code_is_a_usage_error():
    proc = subprocess.run([sys.executable, "-m", "gradpath", "explain", "GP999"], capture_output=True,
                          text=True, env=server_env(), cwd=ROOT, timeout=60)
    assert proc.returncode == 2
    assert "unknown rule 'GP999'" in proc.stderr


def test_docs_url_points_at_the_page():
    for code in CODES:
        assert catalog.RULES[code].docs_url.endswith(f"/docs/rules/{code}.md")


def test_built_wheel_ships_the_pages(tmp_path):
    """The build step (setup.py) copies docs/rules into the package, so an installed gradpath
    explains rules without the repository."""
    import shutil
    import zipfile
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        if (ROOT / name).exists():
            shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "server", src / "server",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copytree(DOCS, src / "docs" / "rules")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                           "-w", str(tmp_path / "dist"), str(src)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    from gradpath import __version__
    (wheel,) = (tmp_path / "dist").glob(f"gradpath-{__version__}-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        for code in CODES:
            assert f"gradpath/data/docs/{code}.md" in names
        assert zf.read("gradpath/data/docs/GP102.md").decode() == (DOCS / "GP102.md").read_text(encoding="utf-8")
    # and the installed layout is what explain reads first
    from gradpath import cli
    assert cli.docs_dirs()[0].parts[-3:] == ("gradpath", "data", "docs")
