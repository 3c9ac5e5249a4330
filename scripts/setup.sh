#!/usr/bin/env bash
# Sets up everything the project needs in ./.venv (idempotent). With --e2e also the editor
# end-to-end dependencies (Debian packages, code-server, Chromium, Neovim); with --vsix builds the
# VS Code extension package.
set -euo pipefail
cd "$(dirname "$0")/.."
E2E=0; VSIX=0
for a in "$@"; do
  case "$a" in
    --e2e) E2E=1; VSIX=1 ;;
    --vsix) VSIX=1 ;;
  esac
done
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -r requirements-test.txt
.venv/bin/python -m pip install -q -e .
# Bytecode for our own sources, as a regular `pip install gradpath` writes it: the editable install
# does not, and with PYTHONDONTWRITEBYTECODE set (as on the CI machines) every server start would
# compile the analysis modules again (~0.2 s before the first diagnostics).
.venv/bin/python -m compileall -q server/gradpath >/dev/null || true
if [ "$VSIX" = 1 ] && [ -f scripts/build-vsix.sh ]; then
  bash scripts/build-vsix.sh
fi
if [ "$E2E" = 1 ] && [ -f scripts/setup-e2e.sh ]; then
  bash scripts/setup-e2e.sh
fi
