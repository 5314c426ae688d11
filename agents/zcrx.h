/* Receiving through mapped pages: getsockopt(TCP_ZEROCOPY_RECEIVE) maps whole pages of the
 * socket's receive queue into an area mmap'ed on the socket; what cannot be mapped (a segment
 * that does not carry whole, page-aligned pages) is left for read(), its length given as the
 * recv_skip_hint. This module is the kernel interface only: it knows no run, no counters. */
#ifndef ZCRX_H
#define ZCRX_H

#include <stddef.h>
#include <stdint.h>

struct zcrx_stats {
    uint64_t calls;          /* TCP_ZEROCOPY_RECEIVE calls that returned */
    uint64_t mapped_calls;   /* ... of which mapped at least one page */
    uint64_t bytes_mapped;   /* received through mapped pages */
    uint64_t bytes_read;     /* received with read(): the skip hints and the end */
    uint64_t reads;
};

struct zcrx {
    uint8_t *area;       /* where pages are mapped: a whole number of pages from a 2 MiB boundary */
    size_t len;          /* its length: a whole number of pages */
    void *base;          /* the mapping itself (area plus alignment room), NULL when closed */
    size_t base_len;
    const char *failed;  /* the call that failed last, for the error text */
    struct zcrx_stats st;
};

/* Maps an area of at least `size` bytes (whole pages) on the TCP socket fd; with lowat > 0 also
 * sets SO_RCVLOWAT so that a wait ends when that much can be mapped. 0, or -errno with
 * z->failed naming the call. */
int zcrx_open(struct zcrx *z, int fd, uint32_t size, int lowat);
/* One TCP_ZEROCOPY_RECEIVE call: the number of bytes now mapped at z->area (0 when none), and
 * in *skip how many bytes must be read with read() before more can be mapped (it may exceed
 * the area: it counts what is queued). -errno on
 * failure: -EIO when the peer has closed and nothing is queued (the caller reads to confirm). */
long zcrx_map(struct zcrx *z, int fd, uint32_t *skip);
/* Gives the n bytes mapped by the last zcrx_map back to the kernel. 0 or -errno. */
int zcrx_unmap(struct zcrx *z, size_t n);
/* Unmaps the area; safe on a closed one. */
void zcrx_close(struct zcrx *z);

#endif
