#!/usr/bin/env bash
# Builds the shared core-dump corpus (shared/corpus/README.md) for the tests:
#   x86_64 + qemu-user cases  -> $CORESNAP_CORPUS_DIR/corpus/<case>/
#   real-kernel arm64 cases   -> $CORESNAP_CORPUS_DIR/arm64/corpus/<case>/ (+ sysroot/)
# CORESNAP_CORPUS_DIR defaults to ${TMPDIR:-/tmp}/coresnap-corpus; shared/ is found as
# $CORESNAP_SHARED_DIR or <repo>/../shared. Idempotent: cases already built are kept, so a
# second run takes a second.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
shared=${CORESNAP_SHARED_DIR:-$repo/../shared}
corpus_dir=${CORESNAP_CORPUS_DIR:-${TMPDIR:-/tmp}/coresnap-corpus}

log() { printf '[corpus] %s\n' "$*" >&2; }

generators=$shared/corpus
if [[ ! -x $generators/make-corpus.sh && ! -f $generators/make-corpus.sh ]]; then
  log "no corpus generators at $generators/make-corpus.sh; set CORESNAP_SHARED_DIR to the shared/ folder"
  exit 1
fi
generators=$(cd "$generators" && pwd)
mkdir -p "$corpus_dir"
corpus_dir=$(cd "$corpus_dir" && pwd)

# One builder at a time: test runs and benchmarks may start together.
exec 9>"$corpus_dir/.lock"
flock 9

run_logged() { # name command...
  local name=$1 logfile=$corpus_dir/$1.log
  shift
  log "$name (log: $logfile)"
  if ! CORPUS_DIR=$corpus_dir "$@" >"$logfile" 2>&1; then
    log "$name failed; the end of its log:"
    tail -n 30 "$logfile" >&2
    return 1
  fi
}

status=0
# make-corpus.sh skips the cases it has already built.
run_logged make-corpus bash "$generators/make-corpus.sh" || status=1

# make-arm64-cores.sh rebuilds everything (and boots a VM) on every run: skip it when each of its
# cases has its core and expected.json and the sysroot is there.
arm64=$corpus_dir/arm64/corpus
need_arm64=0
[[ -d $arm64/sysroot/usr/lib/debug ]] || need_arm64=1
cases=$(python3 "$generators/arm64/cases.py" list | awk '{print $1}')
[[ -n $cases ]] || { log "arm64/cases.py listed no case"; exit 1; }
for c in $cases; do
  [[ -s $arm64/$c/core && -s $arm64/$c/expected.json ]] || need_arm64=1
done
if ((need_arm64)); then
  run_logged make-arm64-cores bash "$generators/make-arm64-cores.sh" || status=1
else
  log "arm64 real-kernel cases are built ($(echo $cases | wc -w) cases + sysroot)"
fi

# Our own cases beside the shared ones (Go, Rust, signal handler, debuglink, compressed DWARF,
# pointer authentication and the vDSO signal frame on a real arm64 kernel): test/cases/README.md.
run_logged make-cases env CASES_DIR="$corpus_dir/cases" CORESNAP_CORPUS_DIR="$corpus_dir" \
  bash "$repo/test/cases/make-cases.sh" || status=1

log "corpus at $corpus_dir: $(find "$corpus_dir/corpus" "$arm64" -mindepth 2 -maxdepth 2 -name expected.json 2>/dev/null | wc -l) cases"
exit $status
