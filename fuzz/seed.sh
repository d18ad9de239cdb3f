#!/bin/sh
# Seeds fuzz/corpus/core_parser/ with the first 64 KiB of every corpus core: the ELF header,
# the program headers and the notes, which is where the parser does its work.
# Usage: fuzz/seed.sh   (CORESNAP_CORPUS_DIR defaults to /tmp/coresnap-corpus)
set -eu
corpus=${CORESNAP_CORPUS_DIR:-/tmp/coresnap-corpus}
out=$(dirname "$0")/corpus/core_parser
if [ ! -d "$corpus/corpus" ]; then
  echo "seed.sh: no corpus at $corpus (set CORESNAP_CORPUS_DIR)" >&2
  exit 1
fi
mkdir -p "$out"
n=0
for core in "$corpus"/corpus/*/core "$corpus"/arm64/corpus/*/core "$corpus"/cases/*/core; do
  [ -f "$core" ] || continue
  case_dir=$(dirname "$core")
  name=$(basename "$(dirname "$case_dir")")-$(basename "$case_dir")
  head -c 65536 "$core" > "$out/$name"
  n=$((n + 1))
done
echo "seed.sh: $n seeds in $out"
