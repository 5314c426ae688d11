/* The agent: one binary, server or client. main sets up the connections, releases one worker
 * thread per connection, waits for them and writes the JSON document. */
#include "agent.h"
#include "args.h"
#include "control.h"
#include "hostsnap.h"
#include "json.h"
#include "modes.h"
#include "msg.h"
#include "net.h"
#include "run.h"
#include "timekeeper.h"
#include "worker.h"
#include "zc.h"

#include <errno.h>
#include <math.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* Whoever holds it writes the one JSON document: main normally, the watchdog if main is
 * stuck after an abort. */
static pthread_mutex_t output_lock = PTHREAD_MUTEX_INITIALIZER;
static FILE *out;

/* The source hash build.sh embeds: deploy matches a binary to the sources it came from. */
#ifndef AGENT_SOURCE_HASH
#define AGENT_SOURCE_HASH "unknown"
#endif

/* How long the watchdog lets main wind down after an abort before writing the JSON itself. */
#define ABORT_GRACE_S 3.0

static void sleep_s(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - floor(s)) * 1e9)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* Signals and the lifetime limit in one place: SIGINT/SIGTERM are blocked in every thread and
 * taken here with sigtimedwait, so no async-signal-safety concerns arise. */
static void *watchdog(void *arg)
{
    (void)arg;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    const double deadline = mono_now() + g_run.cfg.lifetime;
    for (;;) {
        double left = deadline - mono_now();
        if (left <= 0) {
            agent_fail("the agent's lifetime limit of %.3f s ran out (--lifetime)",
                       g_run.cfg.lifetime);
            break;
        }
        struct timespec ts = {(time_t)left, (long)((left - floor(left)) * 1e9)};
        int sig = sigtimedwait(&set, NULL, &ts);
        if (sig == SIGINT || sig == SIGTERM) {
            agent_fail("terminated by %s", sig == SIGINT ? "SIGINT" : "SIGTERM");
            break;
        }
    }
    sleep_s(ABORT_GRACE_S);
    if (pthread_mutex_trylock(&output_lock) == 0) {
        /* Main is stuck; the counters may still move, but an error document beats none. */
        g_run.end_mono = mono_now();
        g_run.end_real = real_now();
        json_write(out);
        fflush(out);
        _exit(1);
    }
    return NULL;
}

static void effective_buffers(void)
{
    int fd = g_run.th[0].fd;
    if (fd < 0)
        return;
    int v;
    socklen_t l = sizeof v;
    if (getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &v, &l) == 0)
        g_run.sndbuf_eff = v;
    l = sizeof v;
    if (getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, &l) == 0)
        g_run.rcvbuf_eff = v;
}

static void run(int lfd, struct addrinfo *peer)
{
    struct config *c = &g_run.cfg;
    if (c->role == ROLE_SERVER) {
        int rc = net_accept_all(lfd);
        agent_unregister_fd(lfd);
        close(lfd);
        if (rc != 0)
            return;
    } else if (net_connect_all(peer) != 0) {
        return;
    }
    for (uint32_t i = 0; i < c->threads; i++) {
        struct thread_state *ts = &g_run.th[i];
        net_names(ts->fd, ts->local, ts->peer, sizeof ts->local);
        if (ts->zc && zc_enable(ts->fd) != 0)
            return;
    }
    hostsnap_find_nic(g_run.th[0].fd);
    for (uint32_t i = 0; i < c->threads; i++) {
        int e = pthread_create(&g_run.th[i].tid, NULL, worker_main, &g_run.th[i]);
        if (e != 0) {
            agent_fail("cannot start thread %u: %s", i, strerror(e));
            break;
        }
        g_run.th[i].started = 1;
    }
    int tk = !agent_aborted() && timekeeper_start() == 0;
    if (!tk) {
        agent_fail("cannot start the timekeeper thread");
        timekeeper_open_gate();
    }
    for (uint32_t i = 0; i < c->threads; i++)
        if (g_run.th[i].started)
            pthread_join(g_run.th[i].tid, NULL);
    if (tk)
        timekeeper_stop();
    effective_buffers();
}

int main(int argc, char **argv)
{
    struct config *c = &g_run.cfg;
    /* The orchestrator's deploy step checks that a built agent starts, and which it is. */
    if (argc == 2 && strcmp(argv[1], "--version") == 0) {
        if (printf("orchestrate-agent schema 1 source %s\n", AGENT_SOURCE_HASH) < 0 || fflush(stdout) != 0)
            return 1;
        return 0;
    }
    parse_args(argc, argv, c);
    out = stdout;
    if (signal(SIGPIPE, SIG_IGN) == SIG_ERR)
        system_error("cannot ignore SIGPIPE: %s", strerror(errno));
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    if (pthread_sigmask(SIG_BLOCK, &set, NULL) != 0 || timekeeper_init() != 0)
        system_error("cannot set up signals and timers");

    atomic_store(&g_run.phase, -1);
    g_run.phase_done_published = side_sends(); /* a stream receiver runs on to EOF */
    g_run.sendfile_fd = -1;
    g_run.interval_end = calloc(c->n_intervals, sizeof *g_run.interval_end);
    if (!g_run.interval_end)
        system_error("out of memory");
    g_run.sample_step = c->duration / AGENT_MAX_SAMPLES > AGENT_SAMPLE_STEP_S
                            ? c->duration / AGENT_MAX_SAMPLES : AGENT_SAMPLE_STEP_S;
    /* Samples before the window's end; the one that closes it is made when the JSON is written. */
    double steps = ceil(c->duration / g_run.sample_step - 1e-9);
    g_run.max_samples = steps > AGENT_MAX_SAMPLES ? AGENT_MAX_SAMPLES : (uint32_t)steps;
    g_run.sample_t = calloc(g_run.max_samples + 1, sizeof *g_run.sample_t);
    g_run.sample_bytes = calloc(g_run.max_samples + 1, sizeof *g_run.sample_bytes);
    if (!g_run.sample_t || !g_run.sample_bytes)
        system_error("out of memory");
    for (uint32_t i = 0; i < c->threads; i++) {
        g_run.th[i].index = (int)i;
        g_run.th[i].fd = -1;
        g_run.th[i].cpu = c->ncpus ? c->cpus[i % (uint32_t)c->ncpus] : -1;
    }

    pthread_t wd;
    if (pthread_create(&wd, NULL, watchdog, NULL) != 0 || pthread_detach(wd) != 0)
        system_error("cannot start the watchdog thread");

    /* Arguments are fully checked (exit 2) before the READY line or any connection. */
    int lfd = -1;
    char addr[256];
    int port = 0;
    struct addrinfo *peer = NULL;
    if (c->role == ROLE_SERVER) {
        lfd = net_listen(c, addr, sizeof addr, &port);
        agent_register_fd(lfd);
    } else {
        peer = net_resolve(c, 0);
    }
    /* Opened only once the arguments have passed every check, bind included. */
    if (c->output) {
        FILE *f = fopen(c->output, "w");
        if (!f)
            usage_error("cannot write --output %s: %s", c->output, strerror(errno));
        out = f;
    }

    int ok = 1;
    for (uint32_t i = 0; i < c->threads && ok; i++)
        ok = worker_prepare(&g_run.th[i]) == 0;
    if (ok && c->verify)
        ok = (g_run.pattern = pattern_message(c->size)) != NULL;
    if (ok && c->mode == MODE_SENDFILE && side_sends())
        ok = (g_run.sendfile_fd = sendfile_file(c->size)) >= 0;
    if (!ok && !agent_aborted())
        agent_fail("out of memory");

    if (c->role == ROLE_SERVER) {
        printf("READY %s %d\n", addr, port);
        fflush(stdout);
    }
    if (!agent_aborted()) {
        run(lfd, peer);
    } else {
        if (lfd >= 0)
            close(lfd);
        if (peer)
            freeaddrinfo(peer);
    }

    pthread_mutex_lock(&output_lock);
    g_run.end_mono = mono_now();
    g_run.end_real = real_now();
    json_write(out);
    int werr = fflush(out) != 0 || ferror(out);
    if (out != stdout)
        werr |= fclose(out) != 0;
    if (werr) {
        fprintf(stderr, "agent: writing the JSON failed: %s\n", strerror(errno));
        return 1;
    }
    return agent_error() ? 1 : 0;
}
