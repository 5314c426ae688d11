/* An io_uring instance through the raw system calls: io_uring_setup, the rings mmap'ed, and
 * io_uring_enter. Raw rather than liburing: Debian 12's liburing 2.3 lacks the zero-copy usage
 * report, and the agent must build statically with no library but libc. This module is the
 * kernel interface only: it knows no run, no counters (usend.c sends with it). */
#ifndef URING_H
#define URING_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>
#include <linux/io_uring.h>

struct uring {
    int fd;                        /* -1 when closed */
    unsigned *sq_head, *sq_tail, *sq_mask, *sq_array;
    unsigned *cq_head, *cq_tail, *cq_mask;
    struct io_uring_sqe *sqes;
    struct io_uring_cqe *cqes;
    void *sq_ring, *cq_ring;       /* the mappings, NULL when not mapped */
    size_t sq_ring_len, cq_ring_len, sqes_len;
    unsigned sq_entries, cq_entries;
    unsigned sqe_tail;             /* SQEs filled by us; the kernel's tail trails until enter */
    unsigned features;
    const char *failed;            /* the call that failed last, for the error text */
};

/* A ring of `entries` submission and `cq_entries` completion slots (powers of two). Asks for
 * cooperative task running and a single issuer (the calling thread must be the one that
 * submits), and falls back to no flags on a kernel that refuses them. 0, or -errno with
 * u->failed naming the call. */
int uring_open(struct uring *u, unsigned entries, unsigned cq_entries);
/* The next free submission entry, zeroed, or NULL when all are filled and not yet submitted. */
struct io_uring_sqe *uring_sqe(struct uring *u);
/* Submits what is filled and waits until at least `wait_nr` completions are queued, at most
 * timeout_ms (< 0: no limit). The number submitted (>= 0), or -errno: -EINTR (a signal),
 * -ETIME (the time ran out), or a failure with u->failed set. Calling again after -EINTR
 * submits what the kernel has not taken yet. */
int uring_enter(struct uring *u, unsigned wait_nr, int timeout_ms);
/* Registers n buffers with the ring (IORING_REGISTER_BUFFERS): a request then names one by its
 * index and IORING_RECVSEND_FIXED_BUF, and the kernel pins its pages once, not per send. Counts
 * against RLIMIT_MEMLOCK without CAP_IPC_LOCK. 0, or -errno with u->failed set. */
int uring_register_buffers(struct uring *u, const struct iovec *iov, unsigned n);
/* The oldest queued completion, or NULL; uring_cqe_seen hands its slot back. */
struct io_uring_cqe *uring_cqe(struct uring *u);
void uring_cqe_seen(struct uring *u);
/* Unmaps the rings and closes the descriptor; safe on a closed ring. */
void uring_close(struct uring *u);

#endif
