/* Run-wide failure handling: the first error is kept, and aborting shuts down every socket
 * so that threads blocked in accept/recv/send return at once instead of hanging. */
#include "control.h"

#include "agent.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/socket.h>
#include <time.h>

#define AGENT_ERR_LEN 512

static pthread_mutex_t ctl_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_int aborted;
static char first_error[AGENT_ERR_LEN];
static int fds[AGENT_MAX_THREADS + 1];
static int nfds;
/* Set before the threads start (pthread_create orders it before their calls), so it is read unlocked. */
static void (*abort_waker)(void);

/* clock_gettime cannot fail for these clocks with a valid pointer, so it is not checked. */
double mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

double real_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void agent_register_fd(int fd)
{
    pthread_mutex_lock(&ctl_lock);
    if (nfds < (int)(sizeof fds / sizeof fds[0]))
        fds[nfds++] = fd;
    /* Registered after an abort: shut it down too, or its owner could block forever. */
    if (atomic_load(&aborted))
        shutdown(fd, SHUT_RDWR);
    pthread_mutex_unlock(&ctl_lock);
}

void agent_unregister_fd(int fd)
{
    pthread_mutex_lock(&ctl_lock);
    for (int i = 0; i < nfds; i++)
        if (fds[i] == fd) {
            fds[i] = fds[--nfds];
            break;
        }
    pthread_mutex_unlock(&ctl_lock);
}

void agent_on_abort(void (*wake)(void))
{
    abort_waker = wake;
}

void agent_fail(const char *fmt, ...)
{
    pthread_mutex_lock(&ctl_lock);
    if (!atomic_load(&aborted)) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(first_error, sizeof first_error, fmt, ap);
        va_end(ap);
        atomic_store(&aborted, 1);
        /* The return value is irrelevant: a socket the peer already reset cannot be shut. */
        for (int i = 0; i < nfds; i++)
            (void)shutdown(fds[i], SHUT_RDWR);
    }
    pthread_mutex_unlock(&ctl_lock);
    if (abort_waker)
        abort_waker();
}

int agent_aborted(void)
{
    return atomic_load_explicit(&aborted, memory_order_relaxed);
}

const char *agent_error(void)
{
    return agent_aborted() ? first_error : NULL;
}
