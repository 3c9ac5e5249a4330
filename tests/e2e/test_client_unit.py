"""The extension's logic (settings shaping, interpreter resolution and probing, status text) under
node's test runner, without VS Code: `npm test` in vscode-client/."""
from __future__ import annotations

import re
import subprocess

from e2e_helpers import CLIENT, require


def test_extension_unit_tests_pass():
    require(CLIENT / "node_modules" / "typescript", "vscode-client's npm packages (scripts/build-vsix.sh)")
    r = subprocess.run(["npm", "test", "--silent"], cwd=CLIENT, capture_output=True, text=True, timeout=300)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-5000:]
    passed = int(re.search(r"^# pass (\d+)", out, re.M).group(1))
    failed = int(re.search(r"^# fail (\d+)", out, re.M).group(1))
    assert failed == 0 and passed >= 18, out[-3000:]
