#!/usr/bin/env bash
# make-cases.sh - crash cases the shared corpus does not have (Go, Rust, signal frames,
# .gnu_debuglink, compressed DWARF, a live process, arm64 PAC and vDSO signal frames).
#
#   test/cases/make-cases.sh                      # build every case not built yet (idempotent)
#   test/cases/make-cases.sh go-panic debuglink   # only these cases
#   FORCE=1 test/cases/make-cases.sh              # rebuild (re-crash) even if a case exists
#   CASES_DIR=/some/dir test/cases/make-cases.sh  # default ${CORESNAP_CORPUS_DIR:-/tmp/coresnap-corpus}/cases
#
# Output: $CASES_DIR/<case>/{exe,core,expected.json,meta} in the make-corpus.sh dialect of
# expected.json (crash_tid, signal, threads, crash_thread.{match,frames}, other_threads_contain),
# written by the corpus's tools/finish_case.py, plus:
#   run.stdout/run.stderr  what the program printed (its own crash_tid=N among it)
#   gdb-bt.txt             gdb -batch -ex 'thread apply all bt' exe core
#   gdb-check.json         gdb-bt.txt scored against expected.json by the corpus's check.py
# A case is only kept if gdb agrees with expected.json and the tid the program printed is the
# core's crashing thread (tools/verify.py); otherwise the script stops with the reason.
# Cases: see README.md. arm64-* cases are made by make-arm64-cases.sh (qemu-system-aarch64).
#
# Requirements: Debian 12 x86_64, root (apt-get), /proc/sys/kernel/core_pattern == core
# (checked, never changed), the shared corpus tools (CORESNAP_CORPUS_TOOLS, default
# /work/shared/corpus/tools).
set -euo pipefail
umask 022
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT=${CASES_DIR:-${CORESNAP_CORPUS_DIR:-/tmp/coresnap-corpus}/cases}
SRC=$HERE/src
TOOLS=${CORESNAP_CORPUS_TOOLS:-/work/shared/corpus/tools}
PY=/usr/bin/python3
FORCE=${FORCE:-0}
export LC_ALL=C
unset DEBUGINFOD_URLS || true

ALL_CASES=(go-panic rust-panic signal-handler debuglink compressed-debug live-hang arm64-pac arm64-signal-frame)
log() { printf '[make-cases] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ---------------------------------------------------------------- dependencies
APT_PKGS=(gcc gdb elfutils binutils file python3 libc6-dbg)
install_deps() {
  local missing=() p
  for p in "${APT_PKGS[@]}"; do
    [[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null) == "install ok installed" ]] || missing+=("$p")
  done
  if ((${#missing[@]})); then
    log "apt-get install ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  [[ -f $TOOLS/finish_case.py && -f $TOOLS/check.py ]] ||
    die "corpus tools not found in $TOOLS (set CORESNAP_CORPUS_TOOLS to /work/shared/corpus/tools)"
}

GO=
find_go() {   # prefer an installed toolchain; Debian's golang-go otherwise
  if [[ -x /usr/local/go/bin/go ]]; then GO=/usr/local/go/bin/go
  elif command -v go >/dev/null; then GO=$(command -v go)
  else
    log "apt-get install golang-go"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq golang-go >/dev/null
    GO=$(command -v go)
  fi
}

RUSTC=
find_rustc() {
  if command -v rustc >/dev/null; then RUSTC=$(command -v rustc)
  elif [[ -x $HOME/.cargo/bin/rustc ]]; then RUSTC=$HOME/.cargo/bin/rustc
  else die "rustc not found (install it with rustup)"; fi
}

# ---------------------------------------------------------------- core dump setup
core_setup() {
  local pattern; pattern=$(cat /proc/sys/kernel/core_pattern)
  [[ $pattern == core ]] ||
    die "/proc/sys/kernel/core_pattern is '$pattern', not 'core'; this script does not change it (ask the machine's owner)"
  ulimit -c unlimited
  [[ $(ulimit -c) == unlimited ]] || die "cannot raise the core size limit (ulimit -c is $(ulimit -c))"
}

# run_crash <casedir> <cmd...> : run the command in <casedir>, expect a core there as <casedir>/core
run_crash() {
  local dir=$1; shift
  ( cd "$dir"; rm -f core core.*
    set +e
    "$@" > run.stdout 2> run.stderr
    echo $? > run.status
  )
  local c
  c=$(cd "$dir" && ls -t core core.* 2>/dev/null | head -1 || true)
  [[ -n "$c" ]] || { cat "$dir/run.stderr" >&2; die "no core produced in $dir (exit $(cat "$dir/run.status"))"; }
  [[ "$c" == core ]] || mv "$dir/$c" "$dir/core"
  fallocate --dig-holes "$dir/core" 2>/dev/null || true
}

finish() { "$PY" "$TOOLS/finish_case.py" "$@"; }

# gdb_check <casedir> [gdb args...]: record gdb's view of the core and score it
gdb_check() {
  local d=$1; shift
  ( cd "$d" && timeout 300 gdb -batch -nx -iex 'set auto-load off' "$@" \
      -ex 'set backtrace past-main on' -ex 'info threads' -ex 'thread apply all bt' exe core \
      > gdb-bt.txt 2>&1 ) || true
  "$PY" "$HERE/tools/verify.py" core "$d" || die "$(basename "$d"): gdb and expected.json disagree (see $d/gdb-check.json)"
  log "$(basename "$d"): gdb agrees with expected.json"
}

# add_json <casedir> <python expression over `e` (expected.json) and `o` (run.stdout lines)>
add_json() {
  "$PY" - "$1" "$2" <<'PY'
import json, sys
d, expr = sys.argv[1:]
p = d + "/expected.json"
e = json.load(open(p))
o = open(d + "/run.stdout").read().splitlines()
exec(expr)
json.dump(e, open(p, "w"), indent=1)
PY
}

want() {   # want <case>: true if the case should be (re)built now
  local c=$1
  if ((${#SELECTED[@]})); then
    local s ok=0; for s in "${SELECTED[@]}"; do [[ $s == "$c" ]] && ok=1; done
    ((ok)) || return 1
  fi
  if [[ $FORCE != 1 && -s $OUT/$c/expected.json && -s $OUT/$c/meta && ( -s $OUT/$c/core || $c == live-hang ) ]]; then
    log "$c: exists, skipping (FORCE=1 to rebuild)"; return 1
  fi
  rm -rf "${OUT:?}/$c"; mkdir -p "$OUT/$c"
  log "$c: building"
}

# ---------------------------------------------------------------- cases
case_go_panic() {
  local c=go-panic d; want "$c" || return 0; d=$OUT/$c
  find_go
  # no network: never let the go command fetch a toolchain; a private cache keeps runs independent
  ( cd "$d" && GOTOOLCHAIN=local GOFLAGS=-buildvcs=false GOCACHE=$OUT/.go-cache \
      "$GO" build -o exe "$SRC/go_panic.go" )
  run_crash "$d" env GOTRACEBACK=crash ./exe
  # Go 1.2x: the first raise(SIGABRT) re-enters the runtime's signal handler, which raises again
  # (a signal frame mid-stack); the * absorbs that part, the goroutine's frames follow.
  finish "$d" --signal 6 --match after-top \
    --frames 'runtime.raise,*,runtime.dieFromSignal,~runtime.crash,runtime.fatalpanic,runtime.gopanic,main.inner,main.outer,main.main,runtime.main,runtime.goexit' \
    --gen "go build -o exe src/go_panic.go ($("$GO" version)); GOTRACEBACK=crash ./exe  (panic in main.inner)" \
    --lang Go --opt "go default (inlining on, //go:noinline on main.inner/main.outer)" --src "$SRC/go_panic.go" \
    --note "static Go binary, DWARF compressed by the Go linker (SHF_COMPRESSED zlib); thread_frames: the goroutine blocked in read(2) on its own locked thread"
  add_json "$d" '
t = [l.split("=")[1] for l in o if l.startswith("reader_tid=")][0]
e["thread_frames"] = {t: {"match": "after-top", "frames": [{"fn": "main.blockedReader"}, {"any": True}, {"fn": "runtime.goexit"}]}}'
  gdb_check "$d"
}

case_rust_panic() {
  local c=rust-panic d; want "$c" || return 0; d=$OUT/$c
  find_rustc
  local flags="--edition 2021 --crate-name app -g -C opt-level=2 -C panic=abort"
  "$RUSTC" $flags -o "$d/exe" "$SRC/rust_panic.rs"
  # RUST_BACKTRACE=0: the hook must not symbolize its own stack (that fills the heap, and the
  # core, with parsed DWARF and makes the core depend on the caller's environment)
  run_crash "$d" env RUST_BACKTRACE=0 ./exe
  finish "$d" --signal 6 --match after-top \
    --frames 'abort,*,core::panicking::panic_fmt,app::parse::inner,app::parse::outer,app::main,*,main' \
    --top-in-module libc.so.6 --other-contains app::worker::idle \
    --gen "rustc $flags -o exe src/rust_panic.rs ($("$RUSTC" --version)); RUST_BACKTRACE=0 ./exe  (panic in app::parse::inner)" \
    --lang Rust --opt 2 --src "$SRC/rust_panic.rs" \
    --note "legacy-mangled symbols (_ZN3app5parse5inner17h...E): expected names are demangled, without the ::h<hash>"
  gdb_check "$d"
}

case_signal_handler() {
  local c=signal-handler d; want "$c" || return 0; d=$OUT/$c
  local flags="-O2 -g -pthread"
  gcc $flags -o "$d/exe" "$SRC/signal_handler.c"
  run_crash "$d" ./exe
  # <signal> is the corpus matcher's name for the kernel's signal frame (__restore_rt on x86_64,
  # gdb prints <signal handler called>); the frame after it is the faulting pc itself.
  finish "$d" --signal 6 --match after-top \
    --frames 'abort,handler_helper,handler,<signal>,level3,level2,level1,main' \
    --top-in-module libc.so.6 --other-contains idle_worker \
    --gen "gcc $flags -o exe src/signal_handler.c; ./exe  (NULL write -> SIGSEGV handler -> abort())" \
    --lang C --opt O2 --src "$SRC/signal_handler.c"
  gdb_check "$d"
}

case_debuglink() {
  local c=debuglink d; want "$c" || return 0; d=$OUT/$c
  local flags="-O2 -g -pthread"
  gcc $flags -o "$d/exe.full" "$SRC/crash.c"
  mkdir -p "$d/.debug"
  objcopy --only-keep-debug "$d/exe.full" "$d/.debug/exe.debug"
  # --strip-all: no .symtab, no .debug_*; the names are only in .debug/exe.debug, found through
  # .gnu_debuglink (file name + CRC32). No build-id tree anywhere.
  ( cd "$d" && objcopy --strip-all --add-gnu-debuglink=.debug/exe.debug exe.full exe )
  rm -f "$d/exe.full"
  # (grep > /dev/null, not grep -q: with pipefail, an early grep exit fails the pipeline)
  local sections; sections=$(readelf -SW "$d/exe")
  grep '\.gnu_debuglink' <<< "$sections" > /dev/null || die "debuglink: objcopy did not add .gnu_debuglink"
  ! grep -E '\.symtab|\.debug_info' <<< "$sections" > /dev/null || die "debuglink: exe is not stripped"
  run_crash "$d" ./exe
  finish "$d" --signal 11 --match prefix --frames 'level3,level2,level1,main' \
    --other-contains idle_worker \
    --gen "gcc $flags -o exe.full src/crash.c; objcopy --only-keep-debug exe.full .debug/exe.debug; objcopy --strip-all --add-gnu-debuglink=.debug/exe.debug exe.full exe; ./exe" \
    --lang C --opt O2 --src "$SRC/crash.c" \
    --note "debug info only via .gnu_debuglink 'exe.debug' -> <exe dir>/.debug/exe.debug (CRC32 must match); no .build-id tree"
  gdb_check "$d"
}

case_compressed_debug() {
  local c=compressed-debug d; want "$c" || return 0; d=$OUT/$c
  # binutils 2.40 (bookworm) has no zstd (objcopy --compress-debug-sections=zstd is a silent
  # no-op, gcc -gz=zstd is rejected): zlib, as ELF SHF_COMPRESSED sections.
  local flags="-O2 -g -gz=zlib -pthread"
  gcc $flags -o "$d/exe" "$SRC/inline_crash.c"
  readelf -t "$d/exe" | grep -A3 '\.debug_info$' | grep COMPRESSED > /dev/null ||
    die "compressed-debug: .debug_info is not SHF_COMPRESSED"
  run_crash "$d" ./exe
  finish "$d" --signal 11 --match prefix \
    --frames '~checked_store,~validate,parse_record,process_all,main' --other-contains idle_worker \
    --gen "gcc $flags -o exe src/inline_crash.c; ./exe  (NULL write inside two inlined functions)" \
    --lang C --opt O2 --src "$SRC/inline_crash.c" \
    --note "all .debug_* sections SHF_COMPRESSED (ELFCOMPRESS_ZLIB); the crash pc is in checked_store inlined into validate inlined into parse_record"
  gdb_check "$d"
}

case_live_hang() {
  local c=live-hang d; want "$c" || return 0; d=$OUT/$c
  "$HERE/live-hang.sh" build "$d"
  mkdir -p "$d/src"; cp "$HERE/live/hang.c" "$d/src/"
  local pid; pid=$("$HERE/live-hang.sh" start "$d" 60)
  timeout 120 gdb -batch -nx -iex 'set auto-load off' -ex 'info threads' -ex 'thread apply all bt' \
    -p "$pid" > "$d/gdb-bt.txt" 2>&1 || true
  local alive=0; kill -0 "$pid" 2>/dev/null && alive=1
  kill "$pid" 2>/dev/null || true
  cp "$d/live.stdout" "$d/run.stdout"
  ((alive)) || die "live-hang: the process did not survive gdb's attach/detach"
  "$PY" "$HERE/tools/verify.py" live "$d/expected.json" "$d/live.stdout" "$d/gdb-bt.txt" ||
    die "live-hang: gdb and live/expected.json disagree (see $d/gdb-bt.txt)"
  "$PY" - "$d" <<'PY'
import json, os, subprocess, sys
d = sys.argv[1]
sh = lambda c: subprocess.run(c, shell=True, capture_output=True, text=True).stdout.strip()
json.dump({"case": "live-hang", "arch": os.uname().machine, "kind": "live process (no core)",
           "threads": json.load(open(d + "/expected.json"))["threads"],
           "generated_by": "test/cases/live-hang.sh build DIR; live-hang.sh start DIR [seconds] -> pid; live-hang.sh stop DIR",
           "exe_file": sh("file -b %s/exe" % d), "gcc": sh("gcc --version | head -1")},
          open(d + "/meta", "w"), indent=1)
PY
  rm -f "$d/live.json" "$d/live.stdout" "$d/live.stderr"
  log "live-hang: gdb agrees with live/expected.json"
}

case_arm64() {
  local want_arm=() c
  for c in arm64-pac arm64-signal-frame; do
    if ((${#SELECTED[@]})); then
      local s; for s in "${SELECTED[@]}"; do [[ $s == "$c" ]] && want_arm+=("$c"); done
    else want_arm+=("$c"); fi
  done
  ((${#want_arm[@]})) || return 0
  CASES_DIR=$OUT FORCE=$FORCE "$HERE/make-arm64-cases.sh" "${want_arm[@]}"
}

# ---------------------------------------------------------------- main
SELECTED=("$@")
for s in "${SELECTED[@]}"; do
  [[ " ${ALL_CASES[*]} " == *" $s "* ]] || die "unknown case '$s' (cases: ${ALL_CASES[*]})"
done
install_deps
mkdir -p "$OUT"
core_setup
case_go_panic
case_rust_panic
case_signal_handler
case_debuglink
case_compressed_debug
case_live_hang
case_arm64
log "done: $OUT ($(du -sh "$OUT" | cut -f1) on disk)"
