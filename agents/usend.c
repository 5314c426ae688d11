#include "usend.h"

#include "account.h"
#include "control.h"
#include "modes.h"
#include "msg.h"
#include "run.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#ifndef IORING_SEND_ZC_REPORT_USAGE
#define IORING_SEND_ZC_REPORT_USAGE (1U << 3)
#endif
#ifndef IORING_NOTIF_USAGE_ZC_COPIED
#define IORING_NOTIF_USAGE_ZC_COPIED (1U << 31)
#endif
#ifndef IORING_RECVSEND_FIXED_BUF
#define IORING_RECVSEND_FIXED_BUF (1U << 2)
#endif
#ifndef IORING_CQE_F_NOTIF
#define IORING_CQE_F_NOTIF (1U << 3)
#endif

/* How long one wait for a completion lasts before the loop looks at the run again. */
#define USEND_WAIT_MS 100

int usend_prepare(struct thread_state *ts)
{
    ts->usend = calloc(1, sizeof *ts->usend);
    if (!ts->usend) {
        agent_fail("out of memory for connection %d's io_uring", ts->index);
        return -1;
    }
    ts->usend->ring.fd = -1;
    ts->usend->restore_flags = -1;
    ts->usend->zc = g_run.cfg.mode == MODE_IO_URING_ZC;
    return 0;
}

/* The message buffers registered with the ring, slot i as buffer i. */
static int register_ring(struct thread_state *ts)
{
    struct iovec iov[256]; /* the ring has at most 256 slots (worker.c) */
    if (ts->ring_slots > sizeof iov / sizeof iov[0]) {
        agent_fail("connection %d: %u buffers are more than io_uring_register takes here", ts->index,
                   ts->ring_slots);
        return -1;
    }
    for (uint32_t i = 0; i < ts->ring_slots; i++)
        iov[i] = ts->ring[i].iov[0];
    int e = uring_register_buffers(&ts->usend->ring, iov, ts->ring_slots);
    if (e == -ENOMEM)
        agent_fail("connection %d: registering %u buffers of %u bytes with io_uring needs that much "
                   "locked memory; RLIMIT_MEMLOCK (ulimit -l) is too low (%s)", ts->index,
                   ts->ring_slots, g_run.cfg.size, strerror(-e));
    else if (e != 0)
        agent_fail("connection %d: %s failed: %s", ts->index, ts->usend->ring.failed, strerror(-e));
    return e == 0 ? 0 : -1;
}

int usend_open(struct thread_state *ts)
{
    struct usend *s = ts->usend;
    int e = uring_open(&s->ring, 4, USEND_CQ_ENTRIES);
    if (e == -ENOSYS)
        agent_fail("this kernel has no io_uring (io_uring_setup: %s)", strerror(-e));
    else if (e == -EPERM)
        agent_fail("io_uring is disabled on this host (kernel.io_uring_disabled; io_uring_setup: "
                   "%s)", strerror(-e));
    else if (e != 0)
        agent_fail("connection %d: %s failed: %s", ts->index, s->ring.failed, strerror(-e));
    else if (!(s->ring.features & IORING_FEAT_EXT_ARG))
        agent_fail("this kernel's io_uring is too old (no IORING_FEAT_EXT_ARG, Linux 5.11)");
    if (!agent_aborted() && g_run.cfg.uring_registered && register_ring(ts) != 0)
        return -1;
    /* For the tests only: a stream sender's socket made non-blocking while the data flows, and
     * its sends without MSG_WAITALL, make the kernel answer a send it cannot finish now with what
     * it took (a short send) rather than waiting for room. usend_data_end makes it blocking again. */
    const char *nonblock = getenv("ORCH_AGENT_URING_NONBLOCK");
    if (!agent_aborted() && nonblock && *nonblock == '1' && g_run.cfg.workload == WL_STREAM) {
        int fl = fcntl(ts->fd, F_GETFL);
        if (fl < 0 || fcntl(ts->fd, F_SETFL, fl | O_NONBLOCK) != 0)
            fail_io(ts, "fcntl(O_NONBLOCK)", errno);
        s->restore_flags = fl;
    }
    return agent_aborted() ? -1 : 0;
}

void usend_data_end(struct thread_state *ts)
{
    struct usend *s = ts->usend;
    if (s->restore_flags >= 0 && fcntl(ts->fd, F_SETFL, s->restore_flags) != 0)
        fail_io(ts, "fcntl(F_SETFL)", errno);
    s->restore_flags = -1;
}

/* One completion: a send's result, or (IORING_CQE_F_NOTIF) the notification that the kernel
 * is done with a zero-copy send's buffer. user_data is the buffer's ring slot. */
static void take(struct thread_state *ts, struct usend *s, const struct io_uring_cqe *c)
{
    struct msgbuf *m = c->user_data < ts->ring_slots ? &ts->ring[c->user_data] : NULL;
    if (c->flags & IORING_CQE_F_NOTIF) {
        s->st.notifications++;
        s->st.completed_sends++;
        if ((uint32_t)c->res & IORING_NOTIF_USAGE_ZC_COPIED) {
            s->st.copied_notifications++;
            s->st.copied_sends++;
        }
        s->pending--;
        if (m)
            m->uring_notifs--;
        return;
    }
    if (c->flags & IORING_CQE_F_MORE) { /* a notification will follow */
        s->st.sends++;
        s->pending++;
        if (m)
            m->uring_notifs++;
    }
    s->have_result = 1;
    s->result = c->res;
}

static void reap(struct thread_state *ts, struct usend *s)
{
    const struct io_uring_cqe *c;
    while ((c = uring_cqe(&s->ring)) != NULL) {
        take(ts, s, c);
        uring_cqe_seen(&s->ring);
    }
}

/* Submits what is queued, waits up to timeout_ms for one completion, takes every completion
 * queued. 0, or -1 when io_uring_enter failed (recorded). */
static int enter(struct thread_state *ts, struct usend *s, int timeout_ms)
{
    int r = uring_enter(&s->ring, 1, timeout_ms);
    if (r < 0 && r != -EINTR && r != -ETIME) {
        fail_io(ts, s->ring.failed, -r);
        return -1;
    }
    reap(ts, s);
    return 0;
}

/* A failed send request: 0 to send again, -1 to give up (recorded). */
static int retry_or_fail(struct thread_state *ts, struct usend *s, int err)
{
    if (agent_aborted())
        return -1;
    if (err == EINTR)
        return 0;
    if (err == EAGAIN || err == EWOULDBLOCK)
        return wait_writable(ts);
    if (err == ENOBUFS || (err == ENOMEM && s->zc && s->pending > 0)) {
        /* Memory for zero-copy state ran short, or the pages pinned so far reached the account's
         * locked-memory limit (-ENOMEM): notifications free both, so wait, do not spin. */
        s->st.enobufs++;
        return s->pending > 0 ? enter(ts, s, USEND_WAIT_MS) : wait_writable(ts);
    }
    if (err == ENOMEM && s->zc) {
        agent_fail("connection %d: io_uring send_zc could not pin a %u-byte message: the account's "
                   "locked-memory limit (RLIMIT_MEMLOCK, ulimit -l) is too low (%s)", ts->index,
                   g_run.cfg.size, strerror(err));
        return -1;
    }
    if (err == EINVAL && s->zc)
        agent_fail("this kernel refused IORING_OP_SEND_ZC with IORING_SEND_ZC_REPORT_USAGE "
                   "(Linux 6.2): %s", strerror(err));
    else
        fail_io(ts, s->zc ? "io_uring send_zc" : "io_uring send", err);
    return -1;
}

int usend_message(struct thread_state *ts, struct msgbuf *m)
{
    struct usend *s = ts->usend;
    const uint8_t *p = m->iov[0].iov_base;
    size_t left = g_run.cfg.size;
    uint64_t slot = (uint64_t)(m - ts->ring);
    while (left > 0) {
        while (s->pending >= (int64_t)USEND_MAX_PENDING)
            if (agent_aborted() || enter(ts, s, USEND_WAIT_MS) != 0)
                return -1;
        struct io_uring_sqe *q = uring_sqe(&s->ring);
        if (!q) { /* one request at a time: the queue is never full */
            agent_fail("connection %d: the io_uring submission queue is full", ts->index);
            return -1;
        }
        q->opcode = s->zc ? IORING_OP_SEND_ZC : IORING_OP_SEND;
        q->fd = ts->fd;
        q->addr = (uint64_t)(uintptr_t)p;
        q->len = (uint32_t)left;
        q->msg_flags = MSG_NOSIGNAL | (s->restore_flags >= 0 ? 0 : MSG_WAITALL);
        if (s->zc)
            q->ioprio = IORING_SEND_ZC_REPORT_USAGE;
        if (g_run.cfg.uring_registered) { /* p lies inside buffer `slot`, registered as such */
            q->ioprio |= IORING_RECVSEND_FIXED_BUF;
            q->buf_index = (uint16_t)slot;
        }
        q->user_data = slot;
        s->have_result = 0;
        while (!s->have_result) {
            /* After an abort the request may never be answered; the kernel only ever reads
             * this process's memory (a zero-copy send pins its pages), so leaving is safe. */
            if (enter(ts, s, USEND_WAIT_MS) != 0 || (!s->have_result && agent_aborted()))
                return -1;
        }
        if (s->result < 0) {
            if (retry_or_fail(ts, s, -s->result) != 0)
                return -1;
            continue;
        }
        if (s->result == 0) {
            agent_fail("connection %d: an io_uring send returned 0 before the message was sent",
                       ts->index);
            return -1;
        }
        /* A short send (MSG_WAITALL makes it rare): the rest goes in a request of its own. */
        account_sent(ts, (size_t)s->result);
        p += s->result;
        left -= (size_t)s->result;
    }
    account_message_sent(ts);
    return 0;
}

int usend_reclaim(struct thread_state *ts, struct msgbuf *m)
{
    struct usend *s = ts->usend;
    reap(ts, s);
    while (m->uring_notifs > 0)
        if (agent_aborted() || enter(ts, s, USEND_WAIT_MS) != 0)
            return -1;
    return 0;
}

void usend_finish(struct thread_state *ts, double seconds)
{
    struct usend *s = ts->usend;
    double deadline = mono_now() + seconds;
    reap(ts, s);
    while (s->pending > 0 && !agent_aborted()) {
        double left = deadline - mono_now();
        if (left <= 0 || enter(ts, s, (int)(left * 1000) + 1) != 0)
            break;
    }
    s->st.outstanding_at_end = s->pending > 0 ? (uint64_t)s->pending : 0;
}

void usend_release(struct thread_state *ts)
{
    if (ts->usend)
        uring_close(&ts->usend->ring);
    free(ts->usend);
    ts->usend = NULL;
}
