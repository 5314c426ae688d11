/* MSG_ZEROCOPY completion accounting. Every sendmsg(MSG_ZEROCOPY) that returns > 0 takes the
 * next value of the socket's 32-bit counter; the kernel reports finished sends on the error
 * queue as ranges [ee_info, ee_data] of those values. */
#ifndef ZC_H
#define ZC_H

#include <stdint.h>

struct zc_stats {
    uint64_t sends, notifications, completed_sends, copied_sends, copied_notifications;
    uint64_t enobufs, outstanding_at_end;
};

/* Completion tracking for MSG_ZEROCOPY: ids are the kernel's 32-bit per-socket counter. */
#define ZC_WINDOW 65536u
struct zc {
    uint32_t next_id;   /* id the next accepted MSG_ZEROCOPY sendmsg gets */
    uint32_t low;       /* lowest id whose completion has not arrived */
    uint64_t bits[ZC_WINDOW / 64];
    struct zc_stats st;
};

/* setsockopt(SO_ZEROCOPY); on failure sets the run error (kernel without MSG_ZEROCOPY). */
int zc_enable(int fd);
/* Read every notification queued now, without blocking. -1 on a socket error. */
int zc_drain(struct zc *z, int fd);
/* Count one completion notification for ids [lo, hi] (a 32-bit range that may wrap), copied
 * or not, and move the oldest outstanding id on. zc_drain calls it; tests call it directly. */
void zc_account(struct zc *z, uint32_t lo, uint32_t hi, int copied);
/* Wait up to timeout_ms for the error queue to become readable, then drain. */
int zc_wait(struct zc *z, int fd, int timeout_ms);
/* After the last send: wait up to `seconds` for the outstanding completions. */
void zc_finish(struct zc *z, int fd, double seconds);

static inline void zc_sent(struct zc *z)
{
    z->next_id++;
    z->st.sends++;
}

static inline int zc_done(const struct zc *z, uint32_t id)
{
    return (int32_t)(id - z->low) < 0;
}

static inline uint32_t zc_outstanding(const struct zc *z)
{
    return z->next_id - z->low;
}

#endif
