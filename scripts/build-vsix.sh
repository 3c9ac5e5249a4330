#!/usr/bin/env bash
# Builds the VS Code extension: npm ci (from vscode-client/package-lock.json), type-check, esbuild
# bundles (the extension, and the gradient-flow webview's script), then `vsce package` ->
# vscode-client/gradpath.vsix. Skips npm ci when node_modules already matches the lock file.
set -euo pipefail
cd "$(dirname "$0")/../vscode-client"
export npm_config_fund=false npm_config_audit=false npm_config_update_notifier=false
if [ ! -f node_modules/.package-lock.json ] || ! cmp -s package-lock.json node_modules/.gradpath-lock-copy; then
  npm ci --silent --no-fund --no-audit >/dev/null
  cp package-lock.json node_modules/.gradpath-lock-copy
fi
node_modules/.bin/tsc -p . --noEmit
node_modules/.bin/tsc -p tsconfig.webview.json
node_modules/.bin/esbuild src/extension.ts --bundle --outfile=dist/extension.js --external:vscode \
  --format=cjs --platform=node --target=node20 --minify-syntax --log-level=warning
# the gradient-flow webview's script (browser, loaded under the panel's CSP nonce)
node_modules/.bin/esbuild src/webview/flowView.ts --bundle --outfile=dist/flowView.js --format=iife \
  --platform=browser --target=es2022 --minify-syntax --log-level=warning
rm -f gradpath.vsix
node_modules/.bin/vsce package --no-dependencies --allow-missing-repository --skip-license \
  -o gradpath.vsix >/dev/null
echo "built: vscode-client/gradpath.vsix ($(du -k gradpath.vsix | cut -f1) KiB)"
