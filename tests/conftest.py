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
