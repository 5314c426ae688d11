#include "recvmap.h"

#include "account.h"
#include "args.h"
#include "control.h"
#include "modes.h"
#include "run.h"
#include "zcrx.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* The mapped area is at least this long, whatever the message size: each call's cost (the
 * system call, the page-table work, the TLB flush when the pages go back) is paid per call,
 * so small areas lose what mapping saves. 512 KiB is the kernel's reference program's chunk. */
#define RECVMAP_MIN_AREA (512u << 10)

/* How long one wait for data lasts before the loop looks at the run again. */
#define RECVMAP_WAIT_MS 100

static int failed(struct thread_state *ts, const struct zcrx *z, long err)
{
    fail_io(ts, z->failed ? z->failed : "receive", (int)-err);
    return -1;
}

static int verify_failed(struct thread_state *ts)
{
    agent_fail("connection %d: --verify: received bytes differ from what the sender wrote, "
               "in message %llu near offset %u", ts->index, (unsigned long long)ts->rx_msg,
               ts->rx_off);
    return -1;
}

/* read() of up to `want` bytes into the receive buffer: the bytes read, 0 at the end of stream,
 * -1 failed (recorded). */
static long read_some(struct thread_state *ts, struct zcrx *z, uint32_t want)
{
    const uint32_t size = g_run.cfg.size;
    if (want > size)
        want = size;
    for (;;) {
        ssize_t r = recv(ts->fd, ts->rbuf, want, 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            fail_io(ts, "recv", errno);
            return -1;
        }
        if (r == 0)
            return 0;
        z->st.reads++;
        z->st.bytes_read += (uint64_t)r;
        return account_received(ts, ts->rbuf, (size_t)r) != 0 ? verify_failed(ts) : (long)r;
    }
}

static int wait_readable(struct thread_state *ts)
{
    struct pollfd p = {.fd = ts->fd, .events = POLLIN};
    if (poll(&p, 1, RECVMAP_WAIT_MS) < 0 && errno != EINTR) {
        fail_io(ts, "poll", errno);
        return -1;
    }
    return 0;
}

static int receive_mapped(struct thread_state *ts, struct zcrx *z);

int recvmap_stream(struct thread_state *ts)
{
    ts->zcrx = calloc(1, sizeof *ts->zcrx);
    if (!ts->zcrx) {
        agent_fail("out of memory for connection %d's mapped receive", ts->index);
        return -1;
    }
    int rc = receive_mapped(ts, ts->zcrx);
    zcrx_close(ts->zcrx); /* the counts stay for the document */
    return rc;
}

static int receive_mapped(struct thread_state *ts, struct zcrx *z)
{
    const struct config *c = &g_run.cfg;
    /* A wait ends when a whole area can be mapped, unless --rcvbuf pinned a buffer too small to
     * ever hold that much (then any data ends it). */
    uint32_t area = c->size > RECVMAP_MIN_AREA ? c->size : RECVMAP_MIN_AREA;
    int lowat = c->rcvbuf == 0 ? (int)area : 0;
    int e = zcrx_open(z, ts->fd, area, lowat);
    if (e != 0)
        return failed(ts, z, e);
    /* A call is made after a wait, as the kernel's reference program does: the wait ends as
     * soon as a whole area is queued (SO_RCVLOWAT), so a call rarely finds nothing, and one that
     * times out still maps what is there. The exception is a call that stopped at bytes to be
     * read: more is queued behind them, so the next call follows their read at once. */
    int wait = 1;
    for (;;) {
        if (agent_aborted())
            return -1;
        if (wait && wait_readable(ts) != 0)
            return -1;
        uint32_t skip;
        long n = zcrx_map(z, ts->fd, &skip);
        wait = n == -EINTR ? wait : skip == 0;
        if (n == -EINTR || n == -EAGAIN)
            continue;
        if (n == -EIO) { /* nothing queued and the peer has closed: read() says so for sure */
            long r = read_some(ts, z, c->size);
            if (r <= 0)
                return (int)r;
            continue;
        }
        if (n < 0)
            return failed(ts, z, n);
        if (n > 0) {
            if (account_received(ts, z->area, (size_t)n) != 0)
                return verify_failed(ts);
            e = zcrx_unmap(z, (size_t)n);
            if (e != 0)
                return failed(ts, z, e);
        }
        while (skip > 0) {
            long r = read_some(ts, z, skip);
            if (r <= 0)
                return (int)r;
            skip -= (uint32_t)r;
        }
    }
}

void recvmap_release(struct thread_state *ts)
{
    if (ts->zcrx)
        zcrx_close(ts->zcrx);
    free(ts->zcrx);
    ts->zcrx = NULL;
}

void recvmap_json(FILE *f)
{
    const struct config *c = &g_run.cfg;
    fprintf(f, "\"receive\": {\"mode\": \"%s\", \"mapped\": ", receive_name(c->receive));
    if (c->receive != RX_ZEROCOPY || side_sends()) {
        fputs("null}", f);
        return;
    }
    struct zcrx_stats s = {0};
    for (uint32_t i = 0; i < c->threads; i++) {
        const struct zcrx *z = g_run.th[i].zcrx;
        if (!z)
            continue;
        s.calls += z->st.calls;
        s.mapped_calls += z->st.mapped_calls;
        s.bytes_mapped += z->st.bytes_mapped;
        s.bytes_read += z->st.bytes_read;
        s.reads += z->st.reads;
    }
    fprintf(f, "{\"calls\": %" PRIu64 ", \"mapped_calls\": %" PRIu64 ", \"bytes_mapped\": %" PRIu64
               ", \"bytes_read\": %" PRIu64 ", \"reads\": %" PRIu64 "}}",
            s.calls, s.mapped_calls, s.bytes_mapped, s.bytes_read, s.reads);
}
