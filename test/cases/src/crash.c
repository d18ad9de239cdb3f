/* 3 idle worker threads + main thread crashing 3 noinline levels deep with a NULL write.
   Prints its own tid (crash_tid=N) before crashing. Used by: debuglink, arm64-pac. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/syscall.h>

#define NWORKERS 3
static pthread_barrier_t barrier;
int *volatile target_ptr = NULL;   /* volatile: the optimiser cannot see the NULL */
volatile int sink;

static void *idle_worker(void *arg) {
    (void)arg;
    pthread_barrier_wait(&barrier);
    for (;;) pause();
    return NULL;
}
__attribute__((noinline, noipa)) void note_value(int x) { sink = x; }
__attribute__((noinline, noipa)) int level3(int *p, int x) {
    *p = x;                      /* SIGSEGV: p == NULL */
    /* never reached; the call makes level3 a non-leaf, so on arm64 x30 still holds level3's
       own return address (PAC-signed under -mbranch-protection) when the store faults */
    note_value(x);
    return x + 3;
}
__attribute__((noinline, noipa)) int level2(int *p, int x) {
    int r = level3(p, x * 2);
    sink = r;                    /* keeps the call out of tail position */
    return r + 2;
}
__attribute__((noinline, noipa)) int level1(int *p, int x) {
    int r = level2(p, x + 1);
    sink = r;
    return r + 1;
}
int main(void) {
    pthread_t t[NWORKERS];
    pthread_barrier_init(&barrier, NULL, NWORKERS + 1);
    for (int i = 0; i < NWORKERS; i++) pthread_create(&t[i], NULL, idle_worker, NULL);
    pthread_barrier_wait(&barrier);
    usleep(200000);              /* let the workers reach pause() */
    printf("crash_tid=%ld\n", (long)syscall(SYS_gettid));
    fflush(stdout);
    sink = level1(target_ptr, 7);
    return 0;
}
