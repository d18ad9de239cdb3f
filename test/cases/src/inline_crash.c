/* NULL write inside two always-inlined functions: the faulting pc belongs to
   checked_store inlined into validate inlined into parse_record.
     ~checked_store <- ~validate <- parse_record <- process_all <- main
   Built with compressed DWARF (-gz=zlib): the inline tree is only readable after
   decompressing .debug_info/.debug_line/.debug_rnglists. 2 idle worker threads. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/syscall.h>

#define NWORKERS 2
struct record { int *slot; int value; };
static pthread_barrier_t barrier;
int *volatile target_ptr = NULL;
volatile int sink;
volatile int limit = 1000;

static void *idle_worker(void *arg) {
    (void)arg;
    pthread_barrier_wait(&barrier);
    for (;;) pause();
    return NULL;
}
static inline __attribute__((always_inline)) void checked_store(int *slot, int v) {
    if (v > limit)
        v = limit;
    *slot = v;                   /* SIGSEGV: slot == NULL */
}
static inline __attribute__((always_inline)) int validate(struct record *r) {
    checked_store(r->slot, r->value);
    return r->value * 2;
}
__attribute__((noinline, noipa)) int parse_record(struct record *r) {
    int x = validate(r);
    sink = x;
    return x + 1;
}
__attribute__((noinline, noipa)) int process_all(int n) {
    struct record r = { target_ptr, n };
    int x = parse_record(&r);
    sink = x;
    return x + 1;
}
int main(void) {
    pthread_t t[NWORKERS];
    pthread_barrier_init(&barrier, NULL, NWORKERS + 1);
    for (int i = 0; i < NWORKERS; i++) pthread_create(&t[i], NULL, idle_worker, NULL);
    pthread_barrier_wait(&barrier);
    usleep(200000);
    printf("crash_tid=%ld\n", (long)syscall(SYS_gettid));
    fflush(stdout);
    sink = process_all(7);
    return 0;
}
