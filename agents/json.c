#include "json.h"

#include "agent.h"
#include "args.h"
#include "control.h"
#include "hist.h"
#include "hostsnap.h"
#include "jsonstr.h"
#include "recvmap.h"
#include "run.h"
#include "tcpinfo.h"
#include "usend.h"
#include "zc.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

static void str(FILE *f, const char *s)
{
    json_str(f, s);
}

static int is_stream_receiver(void)
{
    return !side_sends();
}

/* A sender's zero-copy counts: MSG_ZEROCOPY's (zc.h) or io_uring_zc's (usend.h), or NULL. */
static const struct zc_stats *thread_zc(const struct thread_state *ts)
{
    if (ts->zc)
        return &ts->zc->st;
    if (ts->usend && ts->usend->zc)
        return &ts->usend->st;
    return NULL;
}

static double thread_end(const struct thread_state *ts)
{
    return ts->ended ? ts->data_end_mono : g_run.end_mono;
}

/* The thread's window: from the window start to its EOF on a stream receiver, to the
 * deadline (or its earlier failure) everywhere else. */
static double thread_window_s(const struct thread_state *ts)
{
    if (g_run.win_start_mono == 0)
        return 0;
    double end = thread_end(ts);
    if (!is_stream_receiver() && g_run.win_end_mono > 0 && end > g_run.win_end_mono)
        end = g_run.win_end_mono;
    double s = end - g_run.win_start_mono;
    return s > 0 ? s : 0;
}

static void counts(FILE *f, const char *name, double seconds, const struct counts *c)
{
    fprintf(f,
            "\"%s\": {\"seconds\": %.6f, \"bytes_sent\": %" PRIu64 ", \"bytes_received\": %" PRIu64
            ", \"messages_sent\": %" PRIu64 ", \"messages_received\": %" PRIu64
            ", \"send_calls\": %" PRIu64 ", \"recv_calls\": %" PRIu64 "}",
            name, seconds, c->bytes_sent, c->bytes_received, c->messages_sent,
            c->messages_received, c->send_calls, c->recv_calls);
}

static void add_counts(struct counts *a, const struct counts *b)
{
    a->bytes_sent += b->bytes_sent;
    a->bytes_received += b->bytes_received;
    a->messages_sent += b->messages_sent;
    a->messages_received += b->messages_received;
    a->send_calls += b->send_calls;
    a->recv_calls += b->recv_calls;
}

static void zerocopy(FILE *f, const struct zc_stats *z)
{
    if (!z) {
        fputs("null", f);
        return;
    }
    fprintf(f,
            "{\"sends\": %" PRIu64 ", \"notifications\": %" PRIu64 ", \"completed_sends\": %" PRIu64
            ", \"copied_sends\": %" PRIu64 ", \"copied_notifications\": %" PRIu64
            ", \"enobufs\": %" PRIu64 ", \"outstanding_at_end\": %" PRIu64 "}",
            z->sends, z->notifications, z->completed_sends, z->copied_sends,
            z->copied_notifications, z->enobufs, z->outstanding_at_end);
}

static void rr(FILE *f, uint64_t tx, uint64_t tx_total, double seconds, const struct hist *h)
{
    if (g_run.cfg.workload != WL_RR) {
        fputs("null", f);
        return;
    }
    fprintf(f, "{\"transactions\": %" PRIu64 ", \"transactions_total\": %" PRIu64
               ", \"transactions_per_s\": %.3f, \"latency_us\": ",
            tx, tx_total, seconds > 0 ? (double)tx / seconds : 0.0);
    if (!h)
        fputs("null", f);
    else
        fprintf(f, "{\"count\": %" PRIu64 ", \"mean\": %.3f, \"p50\": %.3f, \"p90\": %.3f, "
                   "\"p99\": %.3f, \"max\": %.3f}",
                h->count, h->count ? (double)h->sum_ns / (double)h->count / 1e3 : 0.0,
                hist_quantile_ns(h, 0.50) / 1e3, hist_quantile_ns(h, 0.90) / 1e3,
                hist_quantile_ns(h, 0.99) / 1e3, (double)h->max_ns / 1e3);
    fputc('}', f);
}

static void intervals(FILE *f, const struct thread_state *ts)
{
    const struct config *c = &g_run.cfg;
    int last = ts->ended ? ts->end_phase : atomic_load(&g_run.phase);
    if (last > (int)c->n_intervals - 1)
        last = (int)c->n_intervals - 1;
    if (g_run.win_start_mono == 0)
        last = -1;
    fputs("\"intervals\": [", f);
    for (int k = 0; k <= last; k++) {
        double t = k < last ? g_run.interval_end[k] : thread_window_s(ts);
        fprintf(f, "%s{\"t\": %.6f, \"bytes\": %" PRIu64 "}", k ? ", " : "", t, ts->intervals[k]);
    }
    fputc(']', f);
}

/* The progress samples (docs/agent-protocol.md): each one's bytes since the one before, the last
 * one closing the window at `end` with whatever the connections moved after the last sample. */
static void progress(FILE *f, double end)
{
    const struct config *c = &g_run.cfg;
    if (g_run.win_start_mono == 0) {
        fputs("\"progress\": null", f);
        return;
    }
    uint64_t moved = 0;
    for (uint32_t i = 0; i < c->threads; i++)
        moved += atomic_load_explicit(&g_run.th[i].progress, memory_order_relaxed);
    fprintf(f, "\"progress\": {\"step_s\": %.6f, \"samples\": [", g_run.sample_step);
    double t_prev = 0;
    uint64_t prev = 0;
    for (uint32_t j = 0; j < g_run.n_samples; j++) {
        fprintf(f, "%s{\"t\": %.6f, \"bytes\": %" PRIu64 "}", j ? ", " : "", g_run.sample_t[j],
                g_run.sample_bytes[j] - prev);
        t_prev = g_run.sample_t[j];
        prev = g_run.sample_bytes[j];
    }
    if (end > t_prev || moved > prev)
        fprintf(f, "%s{\"t\": %.6f, \"bytes\": %" PRIu64 "}", g_run.n_samples ? ", " : "",
                end > t_prev ? end : t_prev, moved - prev);
    fputs("]}", f);
}

void json_write(FILE *f)
{
    const struct config *c = &g_run.cfg;
    const char *err = agent_error();
    const char *direction = c->workload == WL_RR ? "rr" : side_sends() ? "send" : "receive";
    int has_zc = mode_reports_zerocopy(c->mode) && side_sends();

    fprintf(f, "{\"agent\": \"orchestrate-agent\", \"schema\": 1, \"status\": \"%s\", \"error\": ",
            err ? "error" : "ok");
    if (err)
        str(f, err);
    else
        fputs("null", f);
    fprintf(f, ",\n \"role\": \"%s\", \"workload\": \"%s\", \"mode\": \"%s\", \"sender\": \"%s\", "
               "\"direction\": \"%s\",\n \"message_size\": %u, \"fields\": %u, \"threads\": %u, "
               "\"warmup_s\": %.6f, \"duration_s\": %.6f, \"interval_s\": %.6f,\n",
            role_name(c->role), workload_name(c->workload), mode_name(c->mode),
            role_name(c->sender), direction, c->size, c->fields, c->threads, c->warmup,
            c->duration, c->interval);
    fprintf(f, " \"options\": {\"nodelay\": %s, \"sndbuf\": %d, \"rcvbuf\": %d, "
               "\"sndbuf_effective\": %d, \"rcvbuf_effective\": %d, \"cpus\": [",
            c->nodelay ? "true" : "false", c->sndbuf, c->rcvbuf, g_run.sndbuf_eff,
            g_run.rcvbuf_eff);
    for (int i = 0; i < c->ncpus; i++)
        fprintf(f, "%s%d", i ? ", " : "", c->cpus[i]);
    fprintf(f, "], \"verify\": %s, \"lifetime_s\": %.6f, \"uring_buffers\": \"%s\"},\n",
            c->verify ? "true" : "false", c->lifetime, uring_buffers_name(c->uring_registered));
    fprintf(f, " \"time\": {\"start_monotonic\": %.6f, \"end_monotonic\": %.6f, "
               "\"start_realtime\": %.6f, \"end_realtime\": %.6f},\n",
            g_run.t0_mono, g_run.end_mono, g_run.t0_real, g_run.end_real);

    struct counts win = {0}, tot = {0};
    struct zc_stats zsum = {0};
    struct hist *hsum = NULL;
    if (c->workload == WL_RR && c->role == ROLE_CLIENT)
        hsum = calloc(1, sizeof *hsum); /* NULL just drops the latency summary */
    uint64_t tx = 0, tx_total = 0;
    double win_s = 0, last_end = g_run.t0_mono;
    for (uint32_t i = 0; i < c->threads; i++) {
        const struct thread_state *ts = &g_run.th[i];
        add_counts(&win, &ts->window);
        add_counts(&tot, &ts->total);
        if (thread_window_s(ts) > win_s)
            win_s = thread_window_s(ts);
        if (thread_end(ts) > last_end)
            last_end = thread_end(ts);
        tx += ts->tx;
        tx_total += ts->tx_total;
        if (hsum && ts->hist)
            hist_merge(hsum, ts->hist);
        const struct zc_stats *z = thread_zc(ts);
        if (z) {
            zsum.sends += z->sends;
            zsum.notifications += z->notifications;
            zsum.completed_sends += z->completed_sends;
            zsum.copied_sends += z->copied_sends;
            zsum.copied_notifications += z->copied_notifications;
            zsum.enobufs += z->enobufs;
            zsum.outstanding_at_end += z->outstanding_at_end;
        }
    }
    double total_s = g_run.t0_mono > 0 ? last_end - g_run.t0_mono : 0;
    fputc(' ', f);
    counts(f, "window", win_s, &win);
    fputs(",\n ", f);
    counts(f, "total", total_s > 0 ? total_s : 0, &tot);
    fputs(",\n \"threads_detail\": [", f);
    for (uint32_t i = 0; i < c->threads; i++) {
        const struct thread_state *ts = &g_run.th[i];
        double ws = thread_window_s(ts);
        fprintf(f, "%s\n  {\"index\": %u, \"cpu\": ", i ? "," : "", i);
        if (ts->cpu >= 0)
            fprintf(f, "%d", ts->cpu);
        else
            fputs("null", f);
        fputs(", \"local\": ", f);
        str(f, ts->local[0] ? ts->local : "");
        fputs(", \"peer\": ", f);
        str(f, ts->peer[0] ? ts->peer : "");
        fputs(",\n   ", f);
        counts(f, "window", ws, &ts->window);
        fputs(",\n   ", f);
        double ts_total = g_run.t0_mono > 0 ? thread_end(ts) - g_run.t0_mono : 0;
        counts(f, "total", ts_total > 0 ? ts_total : 0, &ts->total);
        fputs(",\n   ", f);
        intervals(f, ts);
        fputs(",\n   ", f);
        tcpinfo_json(f, ts);
        fputs(",\n   \"zerocopy\": ", f);
        zerocopy(f, has_zc ? thread_zc(ts) : NULL);
        fputs(", \"rr\": ", f);
        rr(f, ts->tx, ts->tx_total, ws, ts->hist);
        fputc('}', f);
    }
    fputs("],\n", f);

    struct rusage ru;
    memset(&ru, 0, sizeof ru);
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        memset(&ru, 0, sizeof ru);
    fprintf(f, " \"rusage\": {\"user_s\": %.6f, \"sys_s\": %.6f, \"voluntary_ctxt_switches\": %ld, "
               "\"involuntary_ctxt_switches\": %ld},\n",
            (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6,
            (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec * 1e-6, ru.ru_nvcsw,
            ru.ru_nivcsw);
    fputs(" \"zerocopy\": ", f);
    zerocopy(f, has_zc ? &zsum : NULL);
    fputs(",\n ", f);
    recvmap_json(f);
    fputs(",\n \"rr\": ", f);
    rr(f, tx, tx_total, win_s, hsum);
    fputs(",\n ", f);
    progress(f, win_s);
    fputs(",\n ", f);
    hostsnap_json(f);
    fputs("}\n", f);
    free(hsum);
}
