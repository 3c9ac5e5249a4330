#!/usr/bin/env bash
# Installs what the editor end-to-end tests need (tests/e2e/), on a fresh Debian machine as root:
# Debian's Chromium and Neovim, build dependencies for code-server's native modules, node-gyp,
# code-server 4.100.3 in .e2e/code-server, and playwright-core (which drives /usr/bin/chromium;
# no browser is ever downloaded). Idempotent: every step is skipped when already done, so a second
# run takes seconds. The comment on each step says why it is there. Installing Debian packages needs
# root or sudo; the script says which packages before it installs any.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
CODE_SERVER_VERSION=4.100.3
NODE_GYP_VERSION=12.4.0
APT_PACKAGES=(chromium chromium-driver fonts-dejavu-core neovim ripgrep libkrb5-dev libx11-dev libxkbfile-dev
              libsecret-1-dev pkg-config build-essential python3)

t0=$(date +%s)
log() { echo "setup-e2e: $* ($(( $(date +%s) - t0 ))s)"; }

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
need_root() {
  if [ -n "$SUDO" ] && ! command -v sudo >/dev/null; then
    echo "setup-e2e: $1 needs root: run this as root or install sudo" >&2
    exit 1
  fi
}

# 1. Debian packages
missing=()
for p in "${APT_PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ "${#missing[@]}" -gt 0 ]; then
  need_root "installing Debian packages"
  echo "setup-e2e: the editor tests need these Debian packages, installing them now with" \
       "${SUDO:+sudo }apt-get (system-wide): ${missing[*]}"
  log "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
log "Debian packages ready"

# 2. npm settings for root installs of native modules (code-server's postinstall, node-pty)
export npm_config_unsafe_perm=true npm_config_yes=true npm_config_nodedir=/usr
export npm_config_fund=false npm_config_audit=false npm_config_update_notifier=false
if ! command -v node-gyp >/dev/null || [ "$(node-gyp --version 2>/dev/null)" != "v$NODE_GYP_VERSION" ]; then
  need_root "npm install -g node-gyp"
  echo "setup-e2e: installing node-gyp@$NODE_GYP_VERSION globally (${SUDO:+sudo }npm install -g)"
  log "npm install -g node-gyp@$NODE_GYP_VERSION"
  $SUDO npm install -g --silent "node-gyp@$NODE_GYP_VERSION" >/dev/null
fi

# 3. @vscode/ripgrep downloads rg from GitHub at install time; give it Debian's rg from its cache
TMPDIR_NODE=$(node -e "console.log(require('os').tmpdir())")
RG_CACHE="$TMPDIR_NODE/vscode-ripgrep-cache-1.15.11"
RG_TAR="$RG_CACHE/ripgrep-v13.0.0-10-x86_64-unknown-linux-musl.tar.gz"
if [ ! -s "$RG_TAR" ]; then
  mkdir -p "$RG_CACHE"
  tar -czf "$RG_TAR" -C /usr/bin rg
  log "seeded ripgrep cache $RG_TAR"
fi

# 4. code-server in a folder of its own
CS_DIR="$ROOT/.e2e/code-server"
CS_BIN="$CS_DIR/node_modules/.bin/code-server"
cs_version() {
  node -p "require('$CS_DIR/node_modules/code-server/package.json').version" 2>/dev/null || true
}
if [ ! -x "$CS_BIN" ] || [ "$(cs_version)" != "$CODE_SERVER_VERSION" ] \
   || [ ! -f "$CS_DIR/.installed-$CODE_SERVER_VERSION" ]; then
  log "npm install code-server@$CODE_SERVER_VERSION (native builds, about a minute)"
  mkdir -p "$CS_DIR"
  [ -f "$CS_DIR/package.json" ] || echo '{"name":"gradpath-e2e-code-server","private":true}' > "$CS_DIR/package.json"
  (cd "$CS_DIR" && npm install --no-save --silent "code-server@$CODE_SERVER_VERSION" >install.log 2>&1) || {
    tail -40 "$CS_DIR/install.log" >&2; exit 1; }
  touch "$CS_DIR/.installed-$CODE_SERVER_VERSION"
fi
log "code-server $(cs_version) ready"

# 5. playwright-core (pinned by tests/e2e/package-lock.json); it drives Debian's /usr/bin/chromium
E2E_NODE="$ROOT/tests/e2e"
if [ ! -f "$E2E_NODE/node_modules/.package-lock.json" ] \
   || ! cmp -s "$E2E_NODE/package-lock.json" "$E2E_NODE/node_modules/.gradpath-lock-copy"; then
  log "npm ci in tests/e2e (playwright-core)"
  (cd "$E2E_NODE" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --silent --no-fund --no-audit >/dev/null)
  cp "$E2E_NODE/package-lock.json" "$E2E_NODE/node_modules/.gradpath-lock-copy"
fi
log "playwright-core ready"

nvim --version | head -1
chromium --version 2>/dev/null || true
log "done"
