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
if [ "$VSIX" = 1 ] && [ -f scripts/build-vsix.sh ]; then
  bash scripts/build-vsix.sh
fi
if [ "$E2E" = 1 ] && [ -f scripts/setup-e2e.sh ]; then
  bash scripts/setup-e2e.sh
fi
