#include "modes.h"

#include "account.h"
#include "control.h"
#include "msg.h"
#include "run.h"
#include "zc.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef MSG_ZEROCOPY
#define MSG_ZEROCOPY 0x4000000
#endif

void fail_io(struct thread_state *ts, const char *what, int err)
{
    if (agent_aborted())
        return; /* a consequence of the first failure, not news */
    if (err == ECONNRESET || err == EPIPE || err == ENOTCONN)
        agent_fail("connection %d: the peer went away during %s (%s)", ts->index, what,
                   strerror(err));
    else
        agent_fail("connection %d: %s failed: %s", ts->index, what, strerror(err));
}

int wait_writable(struct thread_state *ts)
{
    struct pollfd p = {.fd = ts->fd, .events = POLLOUT};
    if (poll(&p, 1, WAIT_WRITABLE_MS) < 0 && errno != EINTR) {
        fail_io(ts, "poll", errno);
        return -1;
    }
    return 0;
}

/* Handles a failed call: 0 to retry, -1 to give up. */
static int retry_or_fail(struct thread_state *ts, const char *what, int err)
{
    if (agent_aborted())
        return -1;
    if (err == EINTR)
        return 0;
    if (err == EAGAIN || err == EWOULDBLOCK)
        return wait_writable(ts);
    if (err == ENOBUFS && ts->zc) {
        /* optmem or locked-page limit: completions free it, so read them, do not spin. */
        ts->zc->st.enobufs++;
        return zc_wait(ts->zc, ts->fd, 100);
    }
    fail_io(ts, what, err);
    return -1;
}

static int send_two_copy(struct thread_state *ts, struct msgbuf *m)
{
    for (uint32_t f = 0; f < m->nfields; f++) {
        const uint8_t *p = m->iov[f].iov_base;
        size_t left = m->iov[f].iov_len;
        while (left > 0) {
            ssize_t r = send(ts->fd, p, left, MSG_NOSIGNAL);
            if (r < 0) {
                if (retry_or_fail(ts, "send", errno) != 0)
                    return -1;
                continue;
            }
            account_sent(ts, (size_t)r);
            p += r;
            left -= (size_t)r;
        }
    }
    return 0;
}

static int send_iov(struct thread_state *ts, struct msgbuf *m, int zerocopy)
{
    struct iovec local[AGENT_MAX_FIELDS];
    struct msghdr h;
    memset(&h, 0, sizeof h);
    h.msg_iov = m->iov;
    h.msg_iovlen = m->nfields;
    int flags = MSG_NOSIGNAL | (zerocopy ? MSG_ZEROCOPY : 0);
    size_t left = g_run.cfg.size;
    int copied = 0;
    for (;;) {
        /* Ids more than ZC_WINDOW ahead of the oldest outstanding one would alias in the
         * completion bitmap; wait for completions first (in practice never happens). */
        while (zerocopy && zc_outstanding(ts->zc) >= ZC_WINDOW - 1)
            if (agent_aborted() || zc_wait(ts->zc, ts->fd, 100) != 0)
                return -1;
        ssize_t r = sendmsg(ts->fd, &h, flags);
        if (r < 0) {
            if (retry_or_fail(ts, "sendmsg", errno) != 0)
                return -1;
            continue;
        }
        /* Each accepted MSG_ZEROCOPY call, partial or not, takes one completion id. */
        if (zerocopy)
            zc_sent(ts->zc);
        account_sent(ts, (size_t)r);
        left -= (size_t)r;
        if (left == 0)
            break;
        /* Partial send: continue from where the kernel stopped, on a private copy of the
         * iovecs so that the buffer's own stay intact for the next message. */
        if (!copied) {
            memcpy(local, h.msg_iov, h.msg_iovlen * sizeof *local);
            h.msg_iov = local;
            copied = 1;
        }
        size_t done = (size_t)r;
        while (done > 0) {
            if (done >= h.msg_iov->iov_len) {
                done -= h.msg_iov->iov_len;
                h.msg_iov++;
                h.msg_iovlen--;
            } else {
                h.msg_iov->iov_base = (uint8_t *)h.msg_iov->iov_base + done;
                h.msg_iov->iov_len -= done;
                done = 0;
            }
        }
    }
    if (zerocopy) {
        m->zc_last_id = ts->zc->next_id - 1;
        m->zc_pending = 1;
    }
    return 0;
}

static int send_file(struct thread_state *ts)
{
    off_t off = 0;
    size_t left = g_run.cfg.size;
    while (left > 0) {
        ssize_t r = sendfile(ts->fd, g_run.sendfile_fd, &off, left);
        if (r < 0) {
            if (retry_or_fail(ts, "sendfile", errno) != 0)
                return -1;
            continue;
        }
        if (r == 0) {
            agent_fail("connection %d: sendfile returned 0 before the message was sent",
                       ts->index);
            return -1;
        }
        account_sent(ts, (size_t)r);
        left -= (size_t)r;
    }
    return 0;
}

int send_message(struct thread_state *ts, struct msgbuf *m)
{
    int rc;
    switch (g_run.cfg.mode) {
    case MODE_TWO_COPY: rc = send_two_copy(ts, m); break;
    case MODE_ONE_COPY: rc = send_iov(ts, m, 0); break;
    case MODE_ZERO_COPY: rc = send_iov(ts, m, 1); break;
    default: rc = send_file(ts); break;
    }
    if (rc == 0)
        account_message_sent(ts);
    return rc;
}

int sendfile_file(uint32_t size)
{
    const char *dir = getenv("TMPDIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/orchestrate-agent-XXXXXX", dir && *dir ? dir : "/tmp");
    int fd = mkstemp(path);
    if (fd < 0) {
        agent_fail("cannot create the sendfile source file in %s: %s", path, strerror(errno));
        return -1;
    }
    if (unlink(path) != 0) {
        agent_fail("cannot unlink %s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    uint8_t *msg = pattern_message(size);
    if (!msg) {
        agent_fail("out of memory for the sendfile message");
        close(fd);
        return -1;
    }
    size_t done = 0;
    while (done < size) {
        ssize_t r = write(fd, msg + done, size - done);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            agent_fail("writing the sendfile source file: %s", r < 0 ? strerror(errno) : "short");
            free(msg);
            close(fd);
            return -1;
        }
        done += (size_t)r;
    }
    free(msg);
    return fd;
}
