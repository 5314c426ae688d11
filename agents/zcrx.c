#include "zcrx.h"

#include <errno.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#define ZCRX_ALIGN ((size_t)2 << 20)

#ifndef TCP_ZEROCOPY_RECEIVE
#define TCP_ZEROCOPY_RECEIVE 35
#endif

int zcrx_open(struct zcrx *z, int fd, uint32_t size, int lowat)
{
    memset(z, 0, sizeof *z);
    long page = sysconf(_SC_PAGESIZE);
    if (page <= 0) {
        z->failed = "sysconf(_SC_PAGESIZE)";
        return -EINVAL;
    }
    size_t len = ((size_t)size + (size_t)page - 1) / (size_t)page * (size_t)page;
    if (lowat > 0 && setsockopt(fd, SOL_SOCKET, SO_RCVLOWAT, &lowat, sizeof lowat) != 0) {
        z->failed = "setsockopt(SO_RCVLOWAT)";
        return -errno;
    }
    /* Mapped 2 MiB further than needed and used from a 2 MiB boundary: the area then has page
     * tables (and their lock) of its own rather than sharing them with the rest of the process. */
    size_t base_len = len + ZCRX_ALIGN;
    void *p = mmap(NULL, base_len, PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
        z->failed = "mmap of the socket";
        return -errno;
    }
    z->base = p;
    z->base_len = base_len;
    z->area = (uint8_t *)(((uintptr_t)p + ZCRX_ALIGN - 1) & ~(uintptr_t)(ZCRX_ALIGN - 1));
    z->len = len;
    return 0;
}

long zcrx_map(struct zcrx *z, int fd, uint32_t *skip)
{
    struct tcp_zerocopy_receive zc;
    memset(&zc, 0, sizeof zc);
    zc.address = (uint64_t)(uintptr_t)z->area;
    zc.length = (uint32_t)z->len;
    socklen_t len = sizeof zc;
    *skip = 0;
    if (getsockopt(fd, IPPROTO_TCP, TCP_ZEROCOPY_RECEIVE, &zc, &len) != 0) {
        z->failed = "getsockopt(TCP_ZEROCOPY_RECEIVE)";
        return -errno;
    }
    z->st.calls++;
    if (zc.err) {
        /* A pending socket error, reported alongside whatever was mapped: the caller stops. */
        z->failed = "TCP_ZEROCOPY_RECEIVE (socket error)";
        return zc.err < 0 ? zc.err : -zc.err;
    }
    if (zc.length > z->len) {
        z->failed = "TCP_ZEROCOPY_RECEIVE (a length beyond the area)";
        return -EPROTO;
    }
    if (zc.length)
        z->st.mapped_calls++;
    z->st.bytes_mapped += zc.length;
    *skip = zc.recv_skip_hint;
    return (long)zc.length;
}

int zcrx_unmap(struct zcrx *z, size_t n)
{
    /* Now rather than at the next call's implicit zap: the kernel's own advice (cheaper). */
    if (n && madvise(z->area, n, MADV_DONTNEED) != 0) {
        z->failed = "madvise(MADV_DONTNEED)";
        return -errno;
    }
    return 0;
}

void zcrx_close(struct zcrx *z)
{
    if (z->base)
        munmap(z->base, z->base_len);
    z->base = NULL;
    z->area = NULL;
}
