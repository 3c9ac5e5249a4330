"""Inputs that once made rules crash (found by fuzzing); each must analyse with no failed rule."""
import pytest

from gradpath.analysis import analyze

CASES = {
    "huge-int-literal": "import torch\nx = " + "9" * 400 + "\nloss = x / 2\n",
    "huge-negative-default": "import torch\ndef f(a=-" + "9" * 400 + "):\n    return a\n",
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_no_rule_fails(name):
    result = analyze(CASES[name], f"{name}.py")
    assert result.failed_rules == []
