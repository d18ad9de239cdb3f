/* A process that does not crash: a target for `ptrace <pid>` (live snapshot) tests.
   Every thread blocks forever at a known function, in a different kind of wait:
     main      main_wait            <- main                    (pthread_join on `mutex`)
     mutex     block_on_mutex       <- mutex_thread            (pthread_mutex_lock, held by main)
     cond      block_on_cond        <- cond_thread             (pthread_cond_wait, never signalled)
     pipe      block_on_read        <- pipe_thread             (read(2) on a pipe nobody writes)
     sleep     block_in_nanosleep   <- sleep_thread            (nanosleep(2), 1 hour at a time)
     spin      spin_forever         <- spin_thread             (busy loop: running when stopped)
   Once every thread is in place it prints, and flushes:
     pid <pid>
     tid <tid> <role>        (one line per thread, main first)
     ready
   Exits by itself after HANG_TIMEOUT seconds (argv[1], default 300) so that a test that
   forgets to kill it does not leave it behind. Built with -O1 -g -pthread (frame pointers
   not forced: the walker must use CFI). */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>

enum { ROLE_MUTEX, ROLE_COND, ROLE_PIPE, ROLE_SLEEP, ROLE_SPIN, NROLES };
static const char *role_names[NROLES] = { "mutex", "cond", "pipe", "sleep", "spin" };
static long role_tids[NROLES];
static pthread_barrier_t started;
static pthread_mutex_t held = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t cond_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t never = PTHREAD_COND_INITIALIZER;
static int pipe_fds[2];
volatile unsigned long spins;
volatile int sink;

static void announce(int role) {
    role_tids[role] = syscall(SYS_gettid);
    pthread_barrier_wait(&started);
}
__attribute__((noinline, noipa)) void block_on_mutex(void) {
    pthread_mutex_lock(&held);            /* main holds it forever */
    sink = 1;
}
__attribute__((noinline, noipa)) void block_on_cond(void) {
    pthread_mutex_lock(&cond_mu);
    for (;;) pthread_cond_wait(&never, &cond_mu);
}
__attribute__((noinline, noipa)) void block_on_read(void) {
    char c;
    for (;;) sink = (int)read(pipe_fds[0], &c, 1);
}
__attribute__((noinline, noipa)) void block_in_nanosleep(void) {
    struct timespec ts = { 3600, 0 };
    for (;;) nanosleep(&ts, NULL);
}
__attribute__((noinline, noipa)) void spin_forever(void) {
    for (;;) spins++;
}
__attribute__((noinline, noipa)) void *mutex_thread(void *a) { (void)a; announce(ROLE_MUTEX); block_on_mutex(); sink = 2; return NULL; }
__attribute__((noinline, noipa)) void *cond_thread(void *a) { (void)a; announce(ROLE_COND); block_on_cond(); sink = 2; return NULL; }
__attribute__((noinline, noipa)) void *pipe_thread(void *a) { (void)a; announce(ROLE_PIPE); block_on_read(); sink = 2; return NULL; }
__attribute__((noinline, noipa)) void *sleep_thread(void *a) { (void)a; announce(ROLE_SLEEP); block_in_nanosleep(); sink = 2; return NULL; }
__attribute__((noinline, noipa)) void *spin_thread(void *a) { (void)a; announce(ROLE_SPIN); spin_forever(); sink = 2; return NULL; }

__attribute__((noinline, noipa)) void main_wait(pthread_t t) {
    pthread_join(t, NULL);                /* the mutex thread never returns */
    sink = 3;
}
int main(int argc, char **argv) {
    unsigned timeout = argc > 1 ? (unsigned)atoi(argv[1]) : 300;
    void *(*entry[NROLES])(void *) = { mutex_thread, cond_thread, pipe_thread, sleep_thread, spin_thread };
    pthread_t t[NROLES];
    if (pipe(pipe_fds)) { perror("pipe"); return 1; }
    pthread_mutex_lock(&held);
    pthread_barrier_init(&started, NULL, NROLES + 1);
    for (int i = 0; i < NROLES; i++)
        if (pthread_create(&t[i], NULL, entry[i], NULL)) { perror("pthread_create"); return 1; }
    pthread_barrier_wait(&started);
    usleep(200000);                       /* let every thread reach its blocking call */
    alarm(timeout);                       /* SIGALRM's default action ends the process */
    printf("pid %ld\n", (long)getpid());
    printf("tid %ld main\n", (long)syscall(SYS_gettid));
    for (int i = 0; i < NROLES; i++) printf("tid %ld %s\n", role_tids[i], role_names[i]);
    printf("ready\n");
    fflush(stdout);
    main_wait(t[ROLE_MUTEX]);
    return 0;
}
