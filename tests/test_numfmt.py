"""The one number format of the live step's words: the verdicts' evidence, the CLI, and the gradient-flow
report and view all write a reported number through gradpath.live.numfmt."""
from __future__ import annotations

import pytest

from gradpath.live import verdicts as V
from gradpath.live.numfmt import finite, fmt, num
from gradpath.live.report import view


@pytest.mark.parametrize("value, text", [
    (0.651, "0.651"), (12.34, "12.3"), (0.001, "0.001"), (9876.5, "9.88e3"), (1.5e-5, "1.5e-5"),
    (0.000999, "0.001"), (-2.5e-7, "-2.5e-7"), (12345.0, "1.2e4"), (3.4e16, "3.4e16"), (0, "0"), (0.0, "0"),
    ("nan", "nan"), ("inf", "inf"), ("-inf", "-inf"), (float("-inf"), "-inf"), (None, "None"),
    ("not a number", "None"), (True, "1"), (7, "7"),
])
def test_fmt(value, text):
    assert fmt(value) == text


def test_num_and_finite():
    assert num("nan") != num("nan") and num("1e-3") == 0.001 and num(None) is None and num([1]) is None
    assert finite(2) and finite("0.5") and not finite("inf") and not finite(None) and not finite("x")


def test_verdicts_and_report_share_it():
    assert V.fmt is fmt and V.num is num and view.fmt is fmt and view.num is num
    row = {"name": "fc.weight", "grad": 1.5e-5, "update": 0.0, "requires_grad": True, "optimizers": ["Adam"],
           "changed": False, "grad_state": "finite", "shape": [2, 2], "numel": 4}
    assert "grad 1.5e-5" in V.row_text(row)
