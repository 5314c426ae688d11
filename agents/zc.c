#include "zc.h"

#include "control.h"

#include <errno.h>
#include <time.h> /* struct timespec, which <linux/errqueue.h> uses but does not include */
#include <linux/errqueue.h>
#include <netinet/in.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>

#ifndef SO_ZEROCOPY
#define SO_ZEROCOPY 60
#endif
#ifndef SO_EE_ORIGIN_ZEROCOPY
#define SO_EE_ORIGIN_ZEROCOPY 5
#endif
#ifndef SO_EE_CODE_ZEROCOPY_COPIED
#define SO_EE_CODE_ZEROCOPY_COPIED 1
#endif

int zc_enable(int fd)
{
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_ZEROCOPY, &one, sizeof one) != 0) {
        agent_fail("this kernel does not support MSG_ZEROCOPY (setsockopt SO_ZEROCOPY: %s)",
                   strerror(errno));
        return -1;
    }
    return 0;
}

static void set_bit(struct zc *z, uint32_t id)
{
    uint32_t i = id % ZC_WINDOW;
    z->bits[i / 64] |= 1ull << (i % 64);
}

/* Completions may arrive out of order, so ranges above `low` are remembered in a bitmap
 * until the ones below them arrive. Ids are the kernel's 32-bit counter, which wraps: every
 * comparison is on differences (id - low), never on the ids themselves. */
static void complete_range(struct zc *z, uint32_t lo, uint32_t hi)
{
    if ((int32_t)(hi - z->low) < 0)
        return; /* already seen */
    if ((int32_t)(lo - z->low) <= 0) {
        z->low = hi + 1;
    } else {
        for (uint32_t id = lo;; id++) {
            if (id - z->low < ZC_WINDOW)
                set_bit(z, id);
            if (id == hi)
                break;
        }
    }
    for (;;) {
        uint32_t i = z->low % ZC_WINDOW;
        uint64_t m = 1ull << (i % 64);
        if (!(z->bits[i / 64] & m))
            break;
        z->bits[i / 64] &= ~m;
        z->low++;
    }
}

void zc_account(struct zc *z, uint32_t lo, uint32_t hi, int copied)
{
    /* [lo, hi] may straddle 2^32 (hi < lo): the count is taken modulo 2^32. */
    uint64_t n = (uint64_t)(uint32_t)(hi - lo) + 1;
    z->st.notifications++;
    z->st.completed_sends += n;
    if (copied) {
        z->st.copied_notifications++;
        z->st.copied_sends += n;
    }
    complete_range(z, lo, hi);
}

int zc_drain(struct zc *z, int fd)
{
    for (;;) {
        char control[128];
        struct msghdr msg;
        memset(&msg, 0, sizeof msg);
        msg.msg_control = control;
        msg.msg_controllen = sizeof control;
        ssize_t r = recvmsg(fd, &msg, MSG_ERRQUEUE | MSG_DONTWAIT);
        if (r < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 0;
            if (errno == EINTR)
                continue;
            agent_fail("reading zero-copy completions: %s", strerror(errno));
            return -1;
        }
        /* As the kernel's own test (msg_zerocopy.c) does: a cut-off or unexpected control
         * message means completions could be lost or misread, so the counts could not be trusted. */
        if (msg.msg_flags & MSG_CTRUNC) {
            agent_fail("a zero-copy completion did not fit its buffer (MSG_CTRUNC)");
            return -1;
        }
        struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
        if (!cm) {
            agent_fail("the error queue gave a message without a zero-copy completion");
            return -1;
        }
        for (; cm; cm = CMSG_NXTHDR(&msg, cm)) {
            if (!((cm->cmsg_level == SOL_IP && cm->cmsg_type == IP_RECVERR) ||
                  (cm->cmsg_level == SOL_IPV6 && cm->cmsg_type == IPV6_RECVERR)) ||
                cm->cmsg_len < CMSG_LEN(sizeof(struct sock_extended_err))) {
                agent_fail("unexpected control message on the error queue (level %d, type %d, %zu bytes)",
                           cm->cmsg_level, cm->cmsg_type, (size_t)cm->cmsg_len);
                return -1;
            }
            struct sock_extended_err serr;
            memcpy(&serr, CMSG_DATA(cm), sizeof serr);
            if (serr.ee_errno != 0) {
                agent_fail("socket error on the error queue: %s", strerror((int)serr.ee_errno));
                return -1;
            }
            if (serr.ee_origin != SO_EE_ORIGIN_ZEROCOPY) {
                agent_fail("unexpected error-queue message (origin %u, not a zero-copy completion)",
                           (unsigned)serr.ee_origin);
                return -1;
            }
            zc_account(z, serr.ee_info, serr.ee_data, serr.ee_code & SO_EE_CODE_ZEROCOPY_COPIED);
        }
    }
}

int zc_wait(struct zc *z, int fd, int timeout_ms)
{
    struct pollfd p = {.fd = fd, .events = 0};
    int r = poll(&p, 1, timeout_ms);
    if (r < 0 && errno != EINTR) {
        agent_fail("poll for zero-copy completions: %s", strerror(errno));
        return -1;
    }
    return zc_drain(z, fd);
}

void zc_finish(struct zc *z, int fd, double seconds)
{
    double deadline = mono_now() + seconds;
    while (zc_outstanding(z) > 0 && !agent_aborted()) {
        double left = deadline - mono_now();
        if (left <= 0)
            break;
        if (zc_wait(z, fd, (int)(left * 1000) + 1) != 0)
            break;
    }
    z->st.outstanding_at_end = zc_outstanding(z);
}
