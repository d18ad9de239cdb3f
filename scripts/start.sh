#!/usr/bin/env bash
# `npm start`: builds coresnap, then (for now) shows it at work: compiles a small C program that
# crashes, lets the kernel write its core, and prints `bt` of that core.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
scripts/build.sh

demo=$(mktemp -d "${TMPDIR:-/tmp}/coresnap-demo.XXXXXX")
trap 'rm -rf "$demo"' EXIT
cat >"$demo/crash.c" <<'C'
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>

static pthread_barrier_t started;
static void *idle(void *arg) { (void)arg; pthread_barrier_wait(&started); for (;;) pause(); return NULL; }
__attribute__((noinline)) static void store(int *where, int value) { *where = value; }
__attribute__((noinline)) static void parse_record(int *record) { store(record, 42); }
/* volatile: the compiler must not see the NULL coming and drop the store as undefined. */
static int *volatile next_record = NULL;
__attribute__((noinline)) static void handle_request(void) { parse_record(next_record); }

int main(void) {
    pthread_t worker;
    pthread_barrier_init(&started, NULL, 2);
    pthread_create(&worker, NULL, idle, NULL);
    pthread_barrier_wait(&started);
    usleep(20000); /* let the worker settle in pause() before main crashes */
    puts("crash-demo: about to dereference NULL");
    fflush(stdout);
    handle_request();
    return 0;
}
C
gcc -O1 -g -pthread -o "$demo/crash-demo" "$demo/crash.c"

pattern=$(cat /proc/sys/kernel/core_pattern)
if [[ $pattern == \|* ]]; then
  echo "start: core dumps go to a program here (core_pattern is '$pattern'), so the demo has no core file to show" >&2
  exit 1
fi
(cd "$demo" && ulimit -c unlimited && exec ./crash-demo) || true
core=$(find "$demo" -maxdepth 1 -name 'core*' -type f | head -n1)
if [[ -z $core ]]; then
  echo "start: the demo crashed but left no core in $demo (core_pattern is '$pattern')" >&2
  exit 1
fi

echo
echo "\$ bt --core $core $demo/crash-demo"
bin/bt --core "$core" "$demo/crash-demo"
