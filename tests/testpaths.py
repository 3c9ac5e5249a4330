"""Paths and environment shared by the tests (import this, never `conftest`: several folders have
a conftest.py, and `from conftest import ...` would pick whichever was imported first)."""
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
SERVER = ROOT / "server"

if str(SERVER) not in sys.path:
    sys.path.insert(0, str(SERVER))


def server_env() -> dict:
    """Environment for subprocesses that run gradpath from this checkout."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(SERVER) + os.pathsep + env.get("PYTHONPATH", "")
    return env
