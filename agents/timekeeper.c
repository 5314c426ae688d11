/* Timekeeper: sleeps until each boundary and publishes the phase index with one atomic store,
 * so send loops learn the time with a plain load instead of a clock call per send. */
#include "timekeeper.h"

#include "agent.h"
#include "control.h"
#include "hostsnap.h"
#include "run.h"
#include "tcpinfo.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

static pthread_mutex_t tk_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t tk_cond;
static int tk_stop;
static pthread_t tk_thread;
static pthread_cond_t gate_cond = PTHREAD_COND_INITIALIZER;
static int gate_open;

void timekeeper_gate_wait(void)
{
    pthread_mutex_lock(&tk_lock);
    while (!gate_open)
        pthread_cond_wait(&gate_cond, &tk_lock);
    pthread_mutex_unlock(&tk_lock);
}

void timekeeper_open_gate(void)
{
    pthread_mutex_lock(&tk_lock);
    gate_open = 1;
    pthread_cond_broadcast(&gate_cond);
    pthread_mutex_unlock(&tk_lock);
}

/* agent_fail's waker (agent_on_abort): an abort ends every wait at once. */
static void wake(void)
{
    pthread_mutex_lock(&tk_lock);
    pthread_cond_broadcast(&tk_cond);
    pthread_mutex_unlock(&tk_lock);
}

/* Returns 0 at `when`, -1 if stopped or aborted first. */
static int wait_until(double when)
{
    struct timespec ts = {0, 0};
    int forever = isinf(when);
    if (!forever)
        ts.tv_sec = (time_t)floor(when);
    ts.tv_nsec = (long)((when - floor(when)) * 1e9);
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    int rc = 0;
    pthread_mutex_lock(&tk_lock);
    for (;;) {
        if (tk_stop || agent_aborted()) {
            rc = -1;
            break;
        }
        if (forever) {
            pthread_cond_wait(&tk_cond, &tk_lock);
            continue;
        }
        int e = pthread_cond_timedwait(&tk_cond, &tk_lock, &ts);
        if (e == ETIMEDOUT) {
            /* cond waits may return a little early on some clocks; re-check. */
            if (mono_now() >= when)
                break;
        }
    }
    pthread_mutex_unlock(&tk_lock);
    return rc;
}

static void publish(int phase)
{
    atomic_store_explicit(&g_run.phase, phase, memory_order_release);
}

/* One progress sample: the window's bytes so far, connections summed, at `t` after its start.
 * Only this thread writes the samples; the JSON writer reads them after joining it. */
static void progress_sample(double t)
{
    uint64_t sum = 0;
    for (uint32_t i = 0; i < g_run.cfg.threads; i++)
        sum += atomic_load_explicit(&g_run.th[i].progress, memory_order_relaxed);
    if (g_run.n_samples < g_run.max_samples) {
        g_run.sample_t[g_run.n_samples] = t;
        g_run.sample_bytes[g_run.n_samples] = sum;
        g_run.n_samples++;
    }
}

static void *timekeeper_main(void *arg)
{
    (void)arg;
    const struct config *cfg = &g_run.cfg;
    uint32_t n = cfg->n_intervals;

    g_run.t0_mono = mono_now();
    g_run.t0_real = real_now();
    g_run.expected_end_mono = g_run.t0_mono + cfg->warmup + cfg->duration;
    if (cfg->warmup == 0) {
        g_run.win_start_mono = g_run.t0_mono;
        tcpinfo_boundary(0, 0.0); /* before the gate opens: nothing has been sent yet */
        hostsnap_take(HOSTSNAP_START, 0.0);
    }
    timekeeper_open_gate();

    if (cfg->warmup > 0) {
        if (wait_until(g_run.t0_mono + cfg->warmup) != 0)
            return NULL;
        g_run.win_start_mono = mono_now();
        publish(0);
        tcpinfo_boundary(0, mono_now() - g_run.win_start_mono);
        hostsnap_take(HOSTSNAP_START, mono_now() - g_run.win_start_mono);
    }
    double w = g_run.win_start_mono;
    /* Two clocks in one loop: interval boundaries k (the phase) and progress samples j, every
     * sample_step; a sample due with a boundary (within 1 µs) is taken right after it. */
    uint32_t k = 1, j = 1;
    for (;;) {
        double boundary = k < n ? k * cfg->interval : cfg->duration;
        /* The last sample is at least half a step before the end: the window's end closes it. */
        double sample = j < g_run.max_samples && j * g_run.sample_step < cfg->duration - 0.5 * g_run.sample_step
                            ? j * g_run.sample_step : INFINITY;
        double due = sample < boundary - 1e-6 ? sample : boundary;
        if (wait_until(w + due) != 0)
            goto stopped;
        if (boundary <= due) {
            if (k >= n)
                break;
            g_run.interval_end[k - 1] = mono_now() - w;
            publish((int)k);
            /* After the publish, so the send loops move on at once; microseconds after the boundary. */
            tcpinfo_boundary(k, mono_now() - w);
            k++;
        }
        if (sample <= due + 1e-6) {
            double now = mono_now() - w;
            progress_sample(now);
            /* Woken late (this process was stopped): the samples already due are one long sample. */
            for (j++; j * g_run.sample_step <= now; j++)
                ;
        }
    }
    g_run.win_end_mono = mono_now();
    g_run.interval_end[n - 1] = g_run.win_end_mono - w;
    if (g_run.phase_done_published)
        publish((int)n);
    hostsnap_take(HOSTSNAP_END, mono_now() - w); /* after the publish: senders stop on time */
    (void)wait_until(INFINITY);
    return NULL;
stopped:
    /* Stopped, not aborted: a receiver's data ended (EOF) a little before its own deadline.
     * The end snapshot is taken now, at the end of its window. */
    if (!agent_aborted())
        hostsnap_take(HOSTSNAP_END, mono_now() - w);
    return NULL;
}

int timekeeper_init(void)
{
    pthread_condattr_t ca;
    if (pthread_condattr_init(&ca) || pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) ||
        pthread_cond_init(&tk_cond, &ca))
        return -1;
    pthread_condattr_destroy(&ca);
    agent_on_abort(wake);
    return 0;
}

int timekeeper_start(void)
{
    atomic_store(&g_run.phase, g_run.cfg.warmup > 0 ? -1 : 0);
    return pthread_create(&tk_thread, NULL, timekeeper_main, NULL) == 0 ? 0 : -1;
}

void timekeeper_stop(void)
{
    pthread_mutex_lock(&tk_lock);
    tk_stop = 1;
    pthread_cond_broadcast(&tk_cond);
    pthread_mutex_unlock(&tk_lock);
    pthread_join(tk_thread, NULL);
}
