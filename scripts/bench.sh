#!/usr/bin/env bash
# `npm run bench`: coresnap's bt/ptrace beside gdb and eu-stack on every corpus case, measured in
# one run, printed as ratios (see ts/bench/engine.ts), then coroner's ingestion and query beside a
# bare HTTP server and a plain SQLite GROUP BY (ts/bench/coroner.ts), then the web console over a
# million crashes (ts/bench/web.ts). Builds what is missing first.
set -euo pipefail
cd "$(dirname "$0")/.."
export CORESNAP_CORPUS_DIR=${CORESNAP_CORPUS_DIR:-${TMPDIR:-/tmp}/coresnap-corpus}
scripts/install-deps.sh
scripts/build.sh
scripts/corpus.sh
command -v eu-stack >/dev/null || { echo "bench: eu-stack (elfutils) is missing" >&2; exit 1; }
# The engine bench, coroner's, then the web console's (1,000,000 crashes; ts/bench/web.ts): all
# always run, and the exit status is non-zero if any failed.
rc=0
node dist/ts/bench/engine.js "$@" || rc=$?
node dist/ts/bench/coroner.js || rc=$?
node dist/ts/bench/web.js || rc=$?
node dist/ts/bench/handler.js || rc=$?
exit "$rc"
