#!/usr/bin/env bash
# Everything `npm test` runs, in order: dependencies, build, corpus, the Rust tests, the
# TypeScript tests (ava over dist/test). Every step runs even when an earlier one failed (so one
# run shows every problem); the exit status is non-zero if any step failed. The last lines are
# the runners' counts and one "N passed, N failed" total.
set -uo pipefail
cd "$(dirname "$0")/.."
export CORESNAP_CORPUS_DIR=${CORESNAP_CORPUS_DIR:-${TMPDIR:-/tmp}/coresnap-corpus}

logs=$(mktemp -d "${TMPDIR:-/tmp}/coresnap-test-logs.XXXXXX")
trap 'rm -rf "$logs"' EXIT
failed_steps=()
step() { printf '\n==> %s\n' "$*" >&2; }

step "install dependencies"
scripts/install-deps.sh || { echo "test: dependencies are missing; nothing can be tested" >&2; exit 1; }

step "build"
if ! scripts/build.sh; then
  failed_steps+=(build)
  # The TypeScript tests of the helpers need no native code: still compile them.
  npm run --silent build:ts || failed_steps+=(build:ts)
fi

step "corpus ($CORESNAP_CORPUS_DIR)"
scripts/corpus.sh || failed_steps+=(corpus)

step "cargo test --release --workspace --no-fail-fast"
# A hung test must not eat CI's whole budget (90 minutes for everything).
timeout --kill-after=30s "${CORESNAP_CARGO_TEST_TIMEOUT:-40m}" \
  cargo test --release --workspace --no-fail-fast --color never 2>&1 | tee "$logs/cargo.log"
cargo_rc=${PIPESTATUS[0]}
((cargo_rc == 0)) || failed_steps+=("cargo (exit $cargo_rc$( ((cargo_rc == 124)) && echo ', timed out'))")

step "ava (dist/test)"
timeout --kill-after=30s "${CORESNAP_AVA_TIMEOUT:-30m}" npx --no-install ava 2>&1 | tee "$logs/ava.log"
ava_rc=${PIPESTATUS[0]}
((ava_rc == 0)) || failed_steps+=("ava (exit $ava_rc$( ((ava_rc == 124)) && echo ', timed out'))")

# Totals: cargo's "test result:" lines, ava's ✔ / ✘ lines.
read -r cargo_passed cargo_failed < <(awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i) ~ /^passed;?$/) p += $(i-1); if ($(i) ~ /^failed;?$/) f += $(i-1) } } END { print p + 0, f + 0 }' "$logs/cargo.log")
ava_passed=$(grep -c '✔' "$logs/ava.log")
ava_failed=$(grep -c '✘' "$logs/ava.log")
# A runner that failed without a failing test (a build error, a timeout, a crash) still counts.
((cargo_rc == 0 || cargo_failed > 0)) || cargo_failed=1
((ava_rc == 0 || ava_failed > 0)) || ava_failed=1

echo
echo "cargo: $cargo_passed passed, $cargo_failed failed"
echo "ava: $ava_passed passed, $ava_failed failed"
if ((${#failed_steps[@]})); then
  printf 'failed steps: %s\n' "$(IFS=';'; echo "${failed_steps[*]}")"
fi
echo "total: $((cargo_passed + ava_passed)) passed, $((cargo_failed + ava_failed)) failed"
((${#failed_steps[@]} == 0))
