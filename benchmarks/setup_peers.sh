#!/usr/bin/env bash
# Installs the peer linters into benchmarks/.venv-peers (idempotent).
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
[ -x .venv-peers/bin/python ] || "$PY" -m venv .venv-peers
.venv-peers/bin/python -m pip install -q --upgrade pip >/dev/null
.venv-peers/bin/python -m pip install -q -r requirements.txt
.venv-peers/bin/python -m pip install -q --no-deps dslinter==2.0.9
.venv-peers/bin/pip freeze > .venv-peers/freeze.txt
