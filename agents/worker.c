#include "worker.h"

#include "account.h"
#include "control.h"
#include "hist.h"
#include "modes.h"
#include "msg.h"
#include "net.h"
#include "recvmap.h"
#include "run.h"
#include "tcpinfo.h"
#include "timekeeper.h"
#include "usend.h"
#include "zc.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

/* Completions still missing this long after the last send are reported as outstanding. */
#define ZC_FINAL_WAIT_S 2.0

int worker_prepare(struct thread_state *ts)
{
    const struct config *c = &g_run.cfg;
    ts->intervals = calloc(c->n_intervals, sizeof *ts->intervals);
    if (!ts->intervals)
        goto oom;
    if (tcpinfo_prepare(ts) != 0)
        return -1;
    if (side_sends() && c->mode != MODE_SENDFILE) {
        uint32_t slots = 1;
        if (mode_reports_zerocopy(c->mode)) {
            /* Enough buffers to keep a few MiB in flight while earlier ones await completion. */
            slots = (4u << 20) / c->size;
            slots = slots < 2 ? 2 : slots > 256 ? 256 : slots;
        }
        if (c->mode == MODE_ZERO_COPY) {
            ts->zc = calloc(1, sizeof *ts->zc);
            if (!ts->zc)
                goto oom;
        }
        if (mode_uses_uring(c->mode) && usend_prepare(ts) != 0)
            return -1;
        /* An io_uring send takes one buffer: the message is one field (like sendfile, the
         * io_uring modes ignore --fields). */
        uint32_t fields = mode_uses_uring(c->mode) ? 1 : c->fields;
        ts->ring = calloc(slots, sizeof *ts->ring);
        if (!ts->ring)
            goto oom;
        ts->ring_slots = slots;
        for (uint32_t i = 0; i < slots; i++)
            if (msgbuf_init(&ts->ring[i], c->size, fields) != 0)
                goto oom;
    }
    if (side_receives()) {
        ts->rbuf = malloc(c->size);
        if (!ts->rbuf)
            goto oom;
    }
    if (c->workload == WL_RR && c->role == ROLE_CLIENT) {
        ts->hist = calloc(1, sizeof *ts->hist);
        if (!ts->hist)
            goto oom;
    }
    return 0;
oom:
    agent_fail("out of memory preparing connection %d", ts->index);
    return -1;
}

void worker_release(struct thread_state *ts)
{
    for (uint32_t i = 0; ts->ring && i < ts->ring_slots; i++)
        msgbuf_free(&ts->ring[i]);
    free(ts->ring);
    free(ts->rbuf);
    free(ts->intervals);
    free(ts->hist);
    free(ts->zc);
    recvmap_release(ts);
    usend_release(ts);
    tcpinfo_release(ts);
    ts->ring = NULL;
    ts->rbuf = NULL;
    ts->intervals = NULL;
    ts->hist = NULL;
    ts->zc = NULL;
}

static uint64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* The buffer for message `seq`. In zero_copy a ring slot is reused only after the kernel
 * reported completion of the last send that used it. NULL for sendfile, or on failure. */
static struct msgbuf *next_buffer(struct thread_state *ts, uint64_t seq, int *failed)
{
    *failed = 0;
    if (!ts->ring)
        return NULL;
    struct msgbuf *m = &ts->ring[seq % ts->ring_slots];
    if (ts->zc && m->zc_pending) {
        if (zc_drain(ts->zc, ts->fd) != 0)
            goto fail;
        while (!zc_done(ts->zc, m->zc_last_id)) {
            if (agent_aborted() || zc_wait(ts->zc, ts->fd, 100) != 0)
                goto fail;
        }
        m->zc_pending = 0;
    }
    if (ts->usend && m->uring_notifs > 0 && usend_reclaim(ts, m) != 0)
        goto fail;
    if (g_run.cfg.mode != MODE_SENDFILE)
        msg_stamp(m, seq);
    return m;
fail:
    *failed = 1;
    return NULL;
}

static void data_end(struct thread_state *ts)
{
    ts->data_end_mono = mono_now();
    ts->end_phase = atomic_load_explicit(&g_run.phase, memory_order_acquire);
    /* Once, at the end of this connection's window: never per send. A phase of 0 or more was
     * published after the window's start was set (acquire above), so reading it is safe. */
    if (ts->end_phase >= 0)
        tcpinfo_end(ts, ts->data_end_mono - g_run.win_start_mono);
    ts->ended = 1;
}

/* A receiver cannot tell a sender's clean end from a killed sender's kernel-sent FIN, except
 * by the time: EOF well before this side's own end of run means the sender died. */
static int check_not_early(struct thread_state *ts)
{
    const struct config *c = &g_run.cfg;
    double slack = 0.25 + 0.05 * (c->warmup + c->duration);
    double early = g_run.expected_end_mono - ts->data_end_mono;
    if (early > slack) {
        agent_fail("connection %d: the peer closed the connection %.3f s before the end of "
                   "the run (was it killed?)", ts->index, early);
        return -1;
    }
    return 0;
}

static int finish_zerocopy(struct thread_state *ts)
{
    if (ts->zc)
        zc_finish(ts->zc, ts->fd, ZC_FINAL_WAIT_S);
    if (ts->usend)
        usend_finish(ts, ZC_FINAL_WAIT_S);
    return agent_aborted() ? -1 : 0;
}

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (56 - 8 * i));
}

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

/* The sender's end: no more data (SHUT_WR), then the receiver's report of what it got. The
 * zero-copy completions are awaited only after that report: by then the receiver has read
 * everything, so a completion still missing after the bound really never came, rather than
 * waiting behind a slow reader. */
static void end_as_sender(struct thread_state *ts, uint8_t *report, size_t len)
{
    if (shutdown(ts->fd, SHUT_WR) != 0) {
        fail_io(ts, "shutdown", errno);
        return;
    }
    int r = recv_all(ts->fd, report, len);
    if (r != 1 && !agent_aborted())
        agent_fail("connection %d: the peer did not report its byte count after the end "
                   "(%s)", ts->index, r == 0 ? "it closed the connection" : strerror(errno));
}

/* One whole message in the run's mode. */
static int send_one(struct thread_state *ts, struct msgbuf *m)
{
    return ts->usend ? usend_message(ts, m) : send_message(ts, m);
}

static void stream_send(struct thread_state *ts)
{
    const int done_phase = (int)g_run.cfg.n_intervals;
    uint64_t seq = 0;
    int failed;
    while (phase_now() < done_phase && !agent_aborted()) {
        struct msgbuf *m = next_buffer(ts, seq, &failed);
        if (failed || send_one(ts, m) != 0)
            return;
        seq++;
    }
    data_end(ts);
    if (ts->usend)
        usend_data_end(ts);
    uint8_t b[8];
    end_as_sender(ts, b, sizeof b);
    if (agent_aborted() || finish_zerocopy(ts) != 0)
        return;
    uint64_t got = get_u64(b);
    if (got != ts->total.bytes_sent)
        agent_fail("connection %d: byte count mismatch: sent %llu bytes, the receiver got %llu",
                   ts->index, (unsigned long long)ts->total.bytes_sent,
                   (unsigned long long)got);
}

static int verify_failed(struct thread_state *ts)
{
    agent_fail("connection %d: --verify: received bytes differ from what the sender wrote, "
               "in message %llu near offset %u", ts->index, (unsigned long long)ts->rx_msg,
               ts->rx_off);
    return -1;
}

static void stream_receive(struct thread_state *ts)
{
    const uint32_t size = g_run.cfg.size;
    if (g_run.cfg.receive == RX_ZEROCOPY) {
        if (recvmap_stream(ts) != 0)
            return;
    } else for (;;) {
        ssize_t r = recv(ts->fd, ts->rbuf, size, 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            fail_io(ts, "recv", errno);
            return;
        }
        if (r == 0)
            break;
        if (account_received(ts, ts->rbuf, (size_t)r) != 0) {
            verify_failed(ts);
            return;
        }
    }
    data_end(ts);
    if (agent_aborted())
        return;
    if (ts->rx_off != 0) {
        agent_fail("connection %d: the stream ended part-way through a message (%u of %u "
                   "bytes)", ts->index, ts->rx_off, size);
        return;
    }
    if (check_not_early(ts) != 0)
        return;
    uint8_t b[8];
    put_u64(b, ts->total.bytes_received);
    if (send_all(ts->fd, b, sizeof b) != 1)
        fail_io(ts, "sending the byte count", errno);
}

/* 1: a whole message; 0: EOF before its first byte; -1: failure (recorded). */
static int recv_message(struct thread_state *ts)
{
    const uint32_t size = g_run.cfg.size;
    uint32_t got = 0;
    while (got < size) {
        ssize_t r = recv(ts->fd, ts->rbuf + got, size - got, 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            fail_io(ts, "recv", errno);
            return -1;
        }
        if (r == 0) {
            if (got == 0)
                return 0;
            if (!agent_aborted())
                agent_fail("connection %d: the peer closed the connection part-way through a "
                           "message", ts->index);
            return -1;
        }
        if (account_received(ts, ts->rbuf + got, (size_t)r) != 0)
            return verify_failed(ts);
        got += (uint32_t)r;
    }
    return 1;
}

static void rr_client(struct thread_state *ts)
{
    const int done_phase = (int)g_run.cfg.n_intervals;
    uint64_t seq = 0;
    int failed;
    while (phase_now() < done_phase && !agent_aborted()) {
        struct msgbuf *m = next_buffer(ts, seq, &failed);
        if (failed)
            return;
        uint64_t t0 = now_ns();
        if (send_one(ts, m) != 0)
            return;
        int r = recv_message(ts);
        if (r == 0 && !agent_aborted())
            agent_fail("connection %d: the server closed the connection in mid-run", ts->index);
        if (r != 1)
            return;
        uint64_t t1 = now_ns();
        ts->tx_total++;
        if (in_window(phase_now())) {
            ts->tx++;
            hist_add(ts->hist, t1 - t0);
        }
        seq++;
    }
    data_end(ts);
    uint8_t b[16];
    end_as_sender(ts, b, sizeof b);
    if (agent_aborted() || finish_zerocopy(ts) != 0)
        return;
    uint64_t got = get_u64(b), tx = get_u64(b + 8);
    if (got != ts->total.bytes_sent || tx != ts->tx_total)
        agent_fail("connection %d: count mismatch: the client sent %llu bytes in %llu "
                   "requests, the server got %llu bytes and answered %llu", ts->index,
                   (unsigned long long)ts->total.bytes_sent, (unsigned long long)ts->tx_total,
                   (unsigned long long)got, (unsigned long long)tx);
}

static void rr_server(struct thread_state *ts)
{
    uint64_t seq = 0;
    int failed;
    for (;;) {
        int r = recv_message(ts);
        if (r < 0)
            return;
        if (r == 0)
            break;
        struct msgbuf *m = next_buffer(ts, seq, &failed);
        if (failed || send_one(ts, m) != 0)
            return;
        ts->tx_total++;
        if (in_window(phase_now()))
            ts->tx++;
        seq++;
    }
    data_end(ts);
    if (agent_aborted() || check_not_early(ts) != 0)
        return;
    uint8_t b[16];
    put_u64(b, ts->total.bytes_received);
    put_u64(b + 8, ts->tx_total);
    if (send_all(ts->fd, b, sizeof b) != 1) {
        fail_io(ts, "sending the counts", errno);
        return;
    }
    finish_zerocopy(ts);
}

void *worker_main(void *arg)
{
    struct thread_state *ts = arg;
    if (ts->cpu >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(ts->cpu, &set);
        int e = pthread_setaffinity_np(pthread_self(), sizeof set, &set);
        if (e != 0)
            agent_fail("connection %d: cannot pin to CPU %d: %s", ts->index, ts->cpu,
                       strerror(e));
    }
    /* The ring is this thread's: it is its one submitter. */
    if (ts->usend && usend_open(ts) != 0)
        return NULL;
    timekeeper_gate_wait();
    if (agent_aborted())
        return NULL;
    const struct config *c = &g_run.cfg;
    if (c->workload == WL_RR)
        (c->role == ROLE_CLIENT ? rr_client : rr_server)(ts);
    else if (c->sender == c->role)
        stream_send(ts);
    else
        stream_receive(ts);
    return NULL;
}
