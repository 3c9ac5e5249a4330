import sys
from pathlib import Path

# Make tests/ importable (testpaths.py, fixture_expect.py) from every sub-folder's tests.
_TESTS = str(Path(__file__).resolve().parent)
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

import testpaths  # noqa: E402,F401  (puts server/ on sys.path)
