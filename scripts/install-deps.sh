#!/usr/bin/env bash
# Installs what building and testing coresnap needs on Debian 12, as root. Idempotent: apt is
# not touched at all when every package is already installed.
#   scripts/install-deps.sh            install what is missing
#   scripts/install-deps.sh --check    only say what is missing (exit 1 if anything is)
set -euo pipefail

# Tests: the corpus generators (shared/corpus) and our own crash tests.
APT_PACKAGES=(
  build-essential pkg-config gdb gdb-multiarch elfutils binutils file time jq zstd cpio
  python3 python3.11-dbg libc6-dbg
  qemu-user qemu-system-arm
  gcc-aarch64-linux-gnu g++-aarch64-linux-gnu binutils-aarch64-linux-gnu libc6-dev-arm64-cross
  golang-go
  # The web console's browser tests (test/web): playwright-core drives Debian's chromium.
  chromium
)
# A package whose command is already on PATH from elsewhere (Go from go.dev, say) is not needed.
declare -A PROVIDED_BY_COMMAND=([golang-go]=go)

log() { printf '[install-deps] %s\n' "$*" >&2; }

missing=()
for p in "${APT_PACKAGES[@]}"; do
  cmd=${PROVIDED_BY_COMMAND[$p]:-}
  [[ -n $cmd ]] && command -v "$cmd" >/dev/null 2>&1 && continue
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [[ ${1:-} == --check ]]; then
  ((${#missing[@]} == 0)) || { log "missing: ${missing[*]}"; exit 1; }
fi

if ((${#missing[@]})); then
  if [[ $(id -u) != 0 ]]; then
    log "these Debian packages are missing and installing them needs root: ${missing[*]}"
    exit 1
  fi
  log "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Rust comes from rustup (not Debian's older rustc); it is not ours to install.
if ! command -v cargo >/dev/null 2>&1; then
  for dir in "${CARGO_HOME:-$HOME/.cargo}/bin" /root/.cargo/bin /usr/local/cargo/bin; do
    [[ -x $dir/cargo ]] && { log "cargo is in $dir but not on PATH: add it (export PATH=$dir:\$PATH)"; exit 1; }
  done
  log "cargo (Rust) is not installed: install it with rustup (https://rustup.rs), then re-run"
  exit 1
fi
rust_version=$(rustc --version | awk '{print $2}')
if [[ $(printf '%s\n%s\n' 1.80.0 "$rust_version" | sort -V | head -n1) != 1.80.0 ]]; then
  log "rustc $rust_version is too old: coresnap needs 1.80 or newer (rustup update)"
  exit 1
fi

node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if ((node_major < 20)); then
  log "Node.js 20 or newer is needed (found: $(node --version 2>/dev/null || echo none))"
  exit 1
fi
