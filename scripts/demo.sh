#!/usr/bin/env bash
# Sets everything up, builds the VS Code extension (.vsix), and runs the main job on the bundled
# examples: every finding with its live CPU-step verdict.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --vsix  # prints "built: vscode-client/gradpath.vsix (... KiB)"
set +e
.venv/bin/gradpath confirm examples/ fixtures/seeds/
rc=$?
set -e
# exit status 1 means "findings reported", which is what the examples are for
[ "$rc" -le 1 ]
