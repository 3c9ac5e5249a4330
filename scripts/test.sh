#!/usr/bin/env bash
# Runs the whole test suite from nothing: installs what it needs, then pytest over tests/.
# Besides ./.venv and node_modules folders inside the repository, it installs system-wide what the
# editor tests need (Debian packages with apt-get, node-gyp with npm -g: root or sudo), and says so
# first. Screenshots of the editor tests go to artifacts/e2e/.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "test.sh: setting up ./.venv, the VS Code extension and the editor tests (code-server, Chromium," \
     "Neovim); missing Debian packages are installed with apt-get (root or sudo) after a list of them"
bash scripts/setup.sh --e2e
mkdir -p artifacts
.venv/bin/python -m pytest -p no:cacheprovider "$@"
