"""Every fixture through the analysis: the findings must be exactly the `# expect:` comments."""
from collections import Counter

import pytest

from testpaths import FIXTURES
from fixture_expect import expected, fixture_files
from gradpath.analysis import analyze
from gradpath.analysis.resolve import Resolver

# fixtures/projects/<name>/ are multi-file projects: tests/project/test_projects.py runs each as one
FILES = [p for p in fixture_files(FIXTURES) if p.relative_to(FIXTURES).parts[0] != "projects"]


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(FIXTURES)) for p in FILES])
def test_fixture(path):
    text = path.read_text(encoding="utf-8")
    # like `gradpath check`: imported model classes are resolved from the fixture's own folder
    result = analyze(text, str(path), resolver=Resolver(root=str(path.parent), use_jedi=False))
    got = Counter((f.span.line, f.code) for f in result.findings)
    want = expected(text)
    assert not result.failed_rules, f"rules crashed: {result.failed_rules}"
    missing = sorted((want - got).elements())
    extra = sorted((got - want).elements())
    detail = "\n".join(f"  line {ln}: {f.code} {f.message}" for f in result.findings for ln in [f.span.line])
    assert not missing and not extra, f"missing {missing}, unexpected {extra}\nfindings:\n{detail}"


def test_every_fixture_folder_has_files():
    assert len(FILES) >= 6
