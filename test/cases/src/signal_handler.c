/* A SIGSEGV handler (sigaction, SA_SIGINFO) that calls a helper which calls abort():
   the core's crashing thread is in abort(), and its stack runs through the kernel's
   signal frame back into the function that faulted:
     abort <- handler_helper <- handler <- <signal frame> <- level3 <- level2 <- level1 <- main
   The frame below the signal frame is the faulting pc itself, not a return address.
   3 idle worker threads. Prints crash_tid=N. Used by: signal-handler, arm64-signal-frame. */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>

#define NWORKERS 3
static pthread_barrier_t barrier;
int *volatile target_ptr = NULL;
volatile int sink;

static void *idle_worker(void *arg) {
    (void)arg;
    pthread_barrier_wait(&barrier);
    for (;;) pause();
    return NULL;
}
__attribute__((noinline, noipa)) void handler_helper(int sig, void *fault_addr) {
    if (sig == SIGSEGV && fault_addr == NULL)
        abort();
    sink = sig;
}
__attribute__((noinline, noipa)) void handler(int sig, siginfo_t *si, void *uc) {
    (void)uc;
    handler_helper(sig, si->si_addr);
    sink = 1;                    /* not a tail call: handler keeps its own frame */
}
__attribute__((noinline, noipa)) int level3(int *p, int x) {
    *p = x;                      /* SIGSEGV: p == NULL */
    return x + 3;
}
__attribute__((noinline, noipa)) int level2(int *p, int x) {
    int r = level3(p, x * 2);
    sink = r;
    return r + 2;
}
__attribute__((noinline, noipa)) int level1(int *p, int x) {
    int r = level2(p, x + 1);
    sink = r;
    return r + 1;
}
int main(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = handler;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGSEGV, &sa, NULL)) { perror("sigaction"); return 1; }
    pthread_t t[NWORKERS];
    pthread_barrier_init(&barrier, NULL, NWORKERS + 1);
    for (int i = 0; i < NWORKERS; i++) pthread_create(&t[i], NULL, idle_worker, NULL);
    pthread_barrier_wait(&barrier);
    usleep(200000);
    printf("crash_tid=%ld\n", (long)syscall(SYS_gettid));
    fflush(stdout);
    sink = level1(target_ptr, 7);
    return 0;
}
