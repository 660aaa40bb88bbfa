#!/usr/bin/env bash
# VS Code for tests/editors/test_vscode.py: Debian's chromium (+ libkrb5-dev, which code-server's
# native modules compile against), the extension's npm dependencies and its .vsix, and
# code-server run under node 24 from the npm registry, cached in .ci/.cache/vscode (gitignored).
# Idempotent (each step only when missing or stale), non-interactive, quiet: details go to
# .ci/.cache/vscode/setup.log. A failed step warns and exits 0: the test then fails in CI
# (CI=true) and skips locally, naming what is missing.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
EXT="$ROOT/editors/vscode"
CACHE="${PHASEWISE_VSCODE_CACHE:-$ROOT/.ci/.cache/vscode}"
CODE_SERVER_VERSION="4.139.1" # VS Code 1.139; needs node 24
NODE_MAJOR="24"
LOG="$CACHE/setup.log"
mkdir -p "$CACHE"
: >"$LOG"

warn() {
  echo "warning: $* (the VS Code test will fail in CI / skip locally; log: $LOG)" >&2
  tail -n 20 "$LOG" >&2 || true
  exit 0
}
run() { "$@" </dev/null >>"$LOG" 2>&1; }

# 1. Debian packages ------------------------------------------------------------------------------
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
dpkg -s libkrb5-dev >/dev/null 2>&1 || missing+=(libkrb5-dev)
if [ "${#missing[@]}" -gt 0 ]; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
      warn "cannot install ${missing[*]}: not root and no passwordless sudo"
    fi
  fi
  command -v apt-get >/dev/null 2>&1 || warn "cannot install ${missing[*]}: no apt-get"
  export DEBIAN_FRONTEND=noninteractive
  run $SUDO apt-get update -qq || warn "apt-get update failed"
  run $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" || warn "installing ${missing[*]} failed"
  echo "installed ${missing[*]}"
fi

command -v npm >/dev/null 2>&1 || warn "npm is not installed"
# Native modules build offline only against local headers (node-gyp would download them).
if [ -z "${npm_config_nodedir:-}" ] && [ -d /usr/include/node ] && [ "$(npm config get nodedir 2>/dev/null)" = "undefined" ]; then
  export npm_config_nodedir=/usr
fi
export npm_config_fund=false npm_config_audit=false npm_config_update_notifier=false

# 2. node 24 and code-server, in the cache ---------------------------------------------------------
NODE24="$CACHE/node24/node_modules/node/bin/node"
if ! { [ -x "$NODE24" ] && "$NODE24" --version 2>/dev/null | grep -q "^v$NODE_MAJOR\."; }; then
  rm -rf "$CACHE/node24"
  run npm install --prefix "$CACHE/node24" --no-save --loglevel=error "node@$NODE_MAJOR" || warn "installing node@$NODE_MAJOR failed"
  echo "installed node $("$NODE24" --version) in $CACHE/node24"
fi
CS_PKG="$CACHE/code-server/node_modules/code-server/package.json"
cs_version() { sed -n 's/^  "version": "\(.*\)",$/\1/p' "$CS_PKG" 2>/dev/null; }
if [ "$(cs_version)" != "$CODE_SERVER_VERSION" ] || [ ! -f "$CACHE/code-server/.complete" ]; then
  rm -rf "$CACHE/code-server"
  echo "installing code-server $CODE_SERVER_VERSION (compiles native modules: about 2 minutes)"
  PATH="$(dirname "$NODE24"):$PATH" run npm install --prefix "$CACHE/code-server" --no-save --loglevel=error \
    "code-server@$CODE_SERVER_VERSION" || warn "installing code-server failed"
  touch "$CACHE/code-server/.complete"
fi

# 3. The extension: dependencies, then the .vsix (and the test driver's) when sources are newer -------
cd "$EXT"
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  run npm ci --loglevel=error || warn "npm ci in editors/vscode failed"
  echo "installed the extension's npm dependencies"
fi
# The .vsix carries the server's wheel (scripts/bundle-wheel.mjs): repacked when the server changes too.
if [ ! -f phasewise.vsix ] || [ -n "$(find src scripts package.json package-lock.json README.md "$ROOT/server/phasewise" "$ROOT/pyproject.toml" -type f -newer phasewise.vsix -not -name '*.pyc' 2>/dev/null | head -n 1)" ]; then
  run npm run --silent package || warn "packing the extension failed"
  echo "packed editors/vscode/phasewise.vsix"
fi
# The test driver (test/, never in phasewise.vsix) type-checks against the extension's out/*.d.ts.
if [ ! -f phasewise-test-driver.vsix ] || [ -n "$(find src test/src test/package.json package.json -newer phasewise-test-driver.vsix 2>/dev/null | head -n 1)" ]; then
  run npm run --silent package:driver || warn "packing the test driver failed"
  echo "packed editors/vscode/phasewise-test-driver.vsix"
fi
echo "VS Code test ready: code-server $(cs_version) on node $("$NODE24" --version), $(chromium --version 2>/dev/null | head -n 1)"
