#include "tcpinfo.h"

#include "control.h"
#include "run.h"

#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/socket.h>

/* The kernel's struct (linux-libc-dev) has the limited-time counters and delivery_rate that
 * glibc's <netinet/tcp.h> lacks; the two headers cannot be mixed, so only this file includes it. */
#if defined(__has_include)
#if __has_include(<linux/tcp.h>)
#include <linux/tcp.h>
#define HAVE_TCP_INFO 1
#endif
#endif

static int enabled = -1;

int tcpinfo_enabled(void)
{
#ifdef HAVE_TCP_INFO
    if (enabled < 0) {
        const char *off = getenv("ORCH_AGENT_NO_TCPINFO"); /* for benchmarking the cost only */
        enabled = !(off && off[0] && strcmp(off, "0") != 0);
    }
    return enabled;
#else
    return 0;
#endif
}

/* Samples one connection keeps: one per boundary, or start and end only past the bound. */
static uint32_t slots(void)
{
    const struct config *c = &g_run.cfg;
    uint64_t every = (uint64_t)c->n_intervals + 1;
    return every * c->threads <= TCPINFO_MAX_SAMPLES ? (uint32_t)every : 2;
}

int tcpinfo_prepare(struct thread_state *ts)
{
    if (!tcpinfo_enabled())
        return 0;
    ts->tcpi_slots = slots();
    ts->tcpi = calloc(ts->tcpi_slots, sizeof *ts->tcpi);
    if (!ts->tcpi) {
        agent_fail("out of memory for TCP_INFO samples of connection %d", ts->index);
        return -1;
    }
    return 0;
}

void tcpinfo_release(struct thread_state *ts)
{
    free(ts->tcpi);
    ts->tcpi = NULL;
}

#ifdef HAVE_TCP_INFO
/* Whether the kernel's answer reaches past the end of field `f`. */
#define HAS(len, f) ((len) >= offsetof(struct tcp_info, f) + sizeof(((struct tcp_info *)0)->f))

static void take(struct thread_state *ts, uint32_t slot, double t)
{
    if (!ts->tcpi || slot >= ts->tcpi_slots || ts->fd < 0)
        return;
    struct tcp_info ti;
    memset(&ti, 0, sizeof ti);
    socklen_t len = sizeof ti; /* the kernel returns at most this, and says how much */
    if (getsockopt(ts->fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0) {
        agent_fail("connection %d: getsockopt(TCP_INFO): %s", ts->index, strerror(errno));
        return;
    }
    struct tcpi_sample *s = &ts->tcpi[slot];
    s->t = t;
    s->len = len > 0 ? (uint32_t)len : 1; /* taken, even if the kernel returned nothing */
    s->total_retrans = HAS(len, tcpi_total_retrans) ? ti.tcpi_total_retrans : 0;
    s->rtt_us = HAS(len, tcpi_rtt) ? ti.tcpi_rtt : 0;
    s->rttvar_us = HAS(len, tcpi_rttvar) ? ti.tcpi_rttvar : 0;
    s->snd_cwnd = HAS(len, tcpi_snd_cwnd) ? ti.tcpi_snd_cwnd : 0;
    s->pmtu = HAS(len, tcpi_pmtu) ? ti.tcpi_pmtu : 0;
    s->delivery_rate = HAS(len, tcpi_delivery_rate) ? ti.tcpi_delivery_rate : 0;
    s->busy_us = HAS(len, tcpi_busy_time) ? ti.tcpi_busy_time : 0;
    s->rwnd_limited_us = HAS(len, tcpi_rwnd_limited) ? ti.tcpi_rwnd_limited : 0;
    s->sndbuf_limited_us = HAS(len, tcpi_sndbuf_limited) ? ti.tcpi_sndbuf_limited : 0;
}
#else
static void take(struct thread_state *ts, uint32_t slot, double t)
{
    (void)ts, (void)slot, (void)t;
}
#endif

void tcpinfo_boundary(uint32_t k, double t)
{
    if (!tcpinfo_enabled())
        return;
    for (uint32_t i = 0; i < g_run.cfg.threads; i++) {
        struct thread_state *ts = &g_run.th[i];
        /* Past the bound, only the start. Boundaries all come before the deadline, so this never
         * writes the end slot its worker fills; connections stay open until the agent exits. */
        if (k > 0 && ts->tcpi_slots == 2)
            continue;
        take(ts, k, t);
    }
}

void tcpinfo_end(struct thread_state *ts, double t)
{
    if (tcpinfo_enabled() && ts->tcpi_slots > 0)
        take(ts, ts->tcpi_slots - 1, t);
}

static void field(FILE *f, const char *name, uint32_t len, size_t need, uint64_t v)
{
    /* A field past what the kernel returned is null: not measured, never 0. */
    if (len >= need)
        fprintf(f, ", \"%s\": %" PRIu64, name, v);
    else
        fprintf(f, ", \"%s\": null", name);
}

void tcpinfo_json(FILE *f, const struct thread_state *ts)
{
    fputs("\"tcp_info\": ", f);
    if (!ts->tcpi) {
        fputs("null", f);
        return;
    }
    fputc('[', f);
    for (uint32_t k = 0; k < ts->tcpi_slots; k++) {
        const struct tcpi_sample *s = &ts->tcpi[k];
        fputs(k ? ", " : "", f);
        if (!s->len) {
            fputs("null", f);
            continue;
        }
#ifdef HAVE_TCP_INFO
#define END(fl) (offsetof(struct tcp_info, fl) + sizeof(((struct tcp_info *)0)->fl))
        fprintf(f, "{\"t\": %.6f", s->t);
        field(f, "total_retrans", s->len, END(tcpi_total_retrans), s->total_retrans);
        field(f, "rtt_us", s->len, END(tcpi_rtt), s->rtt_us);
        field(f, "rttvar_us", s->len, END(tcpi_rttvar), s->rttvar_us);
        field(f, "snd_cwnd", s->len, END(tcpi_snd_cwnd), s->snd_cwnd);
        field(f, "delivery_rate", s->len, END(tcpi_delivery_rate), s->delivery_rate);
        field(f, "busy_us", s->len, END(tcpi_busy_time), s->busy_us);
        field(f, "rwnd_limited_us", s->len, END(tcpi_rwnd_limited), s->rwnd_limited_us);
        field(f, "sndbuf_limited_us", s->len, END(tcpi_sndbuf_limited), s->sndbuf_limited_us);
        field(f, "pmtu", s->len, END(tcpi_pmtu), s->pmtu);
        fputc('}', f);
#undef END
#endif
    }
    fputc(']', f);
}
