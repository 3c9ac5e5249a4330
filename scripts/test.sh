#!/usr/bin/env bash
# Runs the whole test suite from nothing: installs what it needs, then pytest over tests/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --e2e
mkdir -p artifacts
.venv/bin/python -m pytest -p no:cacheprovider "$@"
