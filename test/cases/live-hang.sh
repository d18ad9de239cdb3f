#!/usr/bin/env bash
# live-hang.sh - the target process for live (`ptrace <pid>`) snapshot tests.
#
#   live-hang.sh build DIR              -> DIR/exe from live/hang.c (gcc -O1 -g -pthread)
#   live-hang.sh start DIR [SECONDS]    -> starts DIR/exe in the background (it exits by itself
#                                          after SECONDS, default 300), waits until every thread
#                                          is blocked, writes DIR/live.json and prints its pid.
#   live-hang.sh stop DIR               -> kills the process named in DIR/live.json
#
# DIR/live.json: {"pid": N, "tids": {"main": N, "mutex": N, ...}, "expected": "<path>"}; the
# frames each role's thread must show are in live/expected.json (copied to DIR/expected.json).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cmd=${1:?usage: live-hang.sh build|start|stop DIR [SECONDS]}
dir=${2:?usage: live-hang.sh build|start|stop DIR [SECONDS]}
mkdir -p "$dir"
case $cmd in
build)
  gcc -O1 -g -pthread -o "$dir/exe" "$HERE/live/hang.c"
  cp "$HERE/live/expected.json" "$dir/expected.json"
  ;;
start)
  [[ -x $dir/exe ]] || "$0" build "$dir"
  out=$dir/live.stdout
  rm -f "$out"
  # setsid + no controlling terminal: a test runner's Ctrl-C does not reach it; it has its own timeout
  setsid "$dir/exe" "${3:-300}" > "$out" 2> "$dir/live.stderr" < /dev/null &
  pid=$!
  for _ in $(seq 100); do
    grep -qx ready "$out" 2>/dev/null && break
    kill -0 "$pid" 2>/dev/null || { echo "live-hang: exe exited early" >&2; cat "$dir/live.stderr" >&2; exit 1; }
    sleep 0.1
  done
  grep -qx ready "$out" || { echo "live-hang: exe did not print 'ready' within 10 s" >&2; kill "$pid"; exit 1; }
  python3 - "$out" "$dir/live.json" "$dir/expected.json" <<'PY'
import json, sys
out, dst, exp = sys.argv[1:]
pid, tids = None, {}
for line in open(out):
    p = line.split()
    if p[:1] == ["pid"]: pid = int(p[1])
    if p[:1] == ["tid"]: tids[p[2]] = int(p[1])
json.dump({"pid": pid, "tids": tids, "expected": exp}, open(dst, "w"), indent=1)
PY
  echo "$pid"
  ;;
stop)
  pid=$(python3 -c 'import json,sys;print(json.load(open(sys.argv[1]))["pid"])' "$dir/live.json")
  kill "$pid" 2>/dev/null || true
  ;;
*) echo "usage: live-hang.sh build|start|stop DIR [SECONDS]" >&2; exit 2 ;;
esac
