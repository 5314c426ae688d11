/* Each system call of agents/zcrx.c made to fail on a real descriptor, and one mapped receive on
 * a loopback connection: the failure is returned as -errno with the call named, never ignored. */
#include "zcrx.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int failures;

static void expect(int cond, const char *what)
{
    if (!cond) {
        printf("FAIL: %s\n", what);
        failures++;
    }
}

static void expect_failed(long rc, const struct zcrx *z, const char *call, const char *what)
{
    expect(rc < 0, what);
    expect(z->failed && strstr(z->failed, call) != NULL, call);
}

/* A connected loopback TCP pair: *a the client, *b the accepted end. */
static int tcp_pair(int *a, int *b)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    int l = socket(AF_INET, SOCK_STREAM, 0);
    if (l < 0 || bind(l, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(l, 1) != 0 ||
        getsockname(l, (struct sockaddr *)&sa, &len) != 0)
        return -1;
    *a = socket(AF_INET, SOCK_STREAM, 0);
    if (*a < 0 || connect(*a, (struct sockaddr *)&sa, sizeof sa) != 0)
        return -1;
    *b = accept(l, NULL, NULL);
    close(l);
    return *b < 0 ? -1 : 0;
}

int main(void)
{
    struct zcrx z;
    setvbuf(stdout, NULL, _IONBF, 0);
    int a, b, u[2];
    if (tcp_pair(&a, &b) != 0 || socketpair(AF_UNIX, SOCK_STREAM, 0, u) != 0) {
        perror("setting up sockets");
        return 2;
    }
    int closed = dup(a);
    close(closed);

    /* setsockopt(SO_RCVLOWAT) on a descriptor that is not open */
    expect_failed(zcrx_open(&z, closed, 4096, 4096), &z, "SO_RCVLOWAT", "lowat on a closed fd");
    /* mmap of a socket that is not TCP */
    long rc = zcrx_open(&z, u[0], 4096, 0);
    expect_failed(rc, &z, "mmap", "mmap of a unix socket");
    expect(z.area == NULL, "no area after a failed mmap");

    expect(zcrx_open(&z, b, 65536, 65536) == 0, "open on a TCP socket");
    expect(z.area != NULL && z.len == 65536 && ((uintptr_t)z.area & ((2u << 20) - 1)) == 0, "the area is whole pages from a 2 MiB boundary");
    uint32_t skip = 1;
    /* getsockopt(TCP_ZEROCOPY_RECEIVE) on a unix socket: not a TCP option there */
    expect_failed(zcrx_map(&z, u[0], &skip), &z, "TCP_ZEROCOPY_RECEIVE", "map on a unix socket");
    /* Nothing queued: nothing mapped, nothing to skip. */
    z.failed = NULL;
    expect(zcrx_map(&z, b, &skip) == 0 && skip == 0, "an empty queue maps nothing");
    /* A few bytes: less than a page, so all of them are to be read. */
    expect(write(a, "hello", 5) == 5, "write");
    usleep(100000);
    expect(zcrx_map(&z, b, &skip) == 0 && skip == 5, "a short queue is all skip");
    char buf[8];
    expect(recv(b, buf, sizeof buf, MSG_DONTWAIT) == 5, "read the skip");
    /* madvise(MADV_DONTNEED) of an address that is not page-aligned */
    uint8_t *area = z.area;
    z.area = area + 1;
    expect_failed(zcrx_unmap(&z, 4096), &z, "madvise", "madvise of a misaligned address");
    z.area = area;
    expect(zcrx_unmap(&z, 0) == 0, "nothing to give back is no call");
    /* The peer closes with nothing queued: -EIO, the end of stream. */
    close(a);
    usleep(100000);
    expect(zcrx_map(&z, b, &skip) == -EIO, "EIO at the end of stream");
    zcrx_close(&z);
    zcrx_close(&z);
    expect(z.area == NULL, "closed twice safely");
    if (failures)
        return 1;
    printf("zcrx_calls: all checks passed\n");
    return 0;
}
