"""Numbers the live worker reported, read back and written in words: one format for the verdicts'
evidence (verdicts*.py), the CLI, and the gradient-flow report and view (report/view.py), so the same
gradient norm reads the same everywhere.

`fmt`: three significant digits between 1e-3 and 1e4 (`0.651`, `12.3`), two in compact scientific
notation outside it (`1.2e-5`, `3.4e6`), and `0`, `nan`, `inf`, `-inf`, `None` as such. A bool is a
number (1 or 0), text that is not a number is None.
Pure Python (no torch).
"""
from __future__ import annotations

import math
from typing import Any


def num(x: Any) -> float | None:
    """A reported number as a float: numbers pass, "nan"/"inf" strings (JSON has no NaN) become floats,
    anything else (None, text) is None."""
    if x is None:
        return None
    try:
        return float(x)
    except (TypeError, ValueError):
        return None


def fmt(x: Any) -> str:
    v = num(x)
    if v is None:
        return "None"
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    if v == 0:
        return "0"
    a = abs(v)
    # (just under 1e4, three digits round up to an exponent too: 9876.5 -> "9.88e3")
    text = f"{v:.2g}" if a >= 1e4 or a < 1e-3 else f"{v:.3g}"
    return text.replace("e-0", "e-").replace("e+0", "e+").replace("e+", "e")


def finite(x: Any) -> bool:
    v = num(x)
    return v is not None and math.isfinite(v)
