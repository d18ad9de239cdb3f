#!/usr/bin/env bash
# Builds everything: npm dependencies (only when package-lock.json changed since the last
# install), then `npm run build` (the napi addon, the native ptrace/bt, the TypeScript).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[build] %s\n' "$*" >&2; }

# npm ci when node_modules was not installed from this exact lock file.
stamp=node_modules/.coresnap-lock.sha256
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [[ ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
  log "npm ci (node_modules is missing or older than package-lock.json)"
  npm ci --no-audit --no-fund --loglevel=error
  printf '%s\n' "$want" >"$stamp"
fi

npm run --silent build
