/* Each system call of agents/uring.c made to fail for real (io_uring_setup, the rings' mmap,
 * io_uring_enter), and one IORING_OP_SEND_ZC with the usage report on a loopback connection:
 * a failure comes back as -errno with the call named, and a zero-copy send gives one result
 * (IORING_CQE_F_MORE) and one notification (IORING_CQE_F_NOTIF), flagged copied on loopback. */
#include "uring.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef IORING_SEND_ZC_REPORT_USAGE
#define IORING_SEND_ZC_REPORT_USAGE (1U << 3)
#endif
#ifndef IORING_RECVSEND_FIXED_BUF
#define IORING_RECVSEND_FIXED_BUF (1U << 2)
#endif
#ifndef IORING_NOTIF_USAGE_ZC_COPIED
#define IORING_NOTIF_USAGE_ZC_COPIED (1U << 31)
#endif

static int failures;

static void expect(int cond, const char *what)
{
    if (!cond) {
        printf("FAIL: %s\n", what);
        failures++;
    }
}

static void expect_failed(long rc, const struct uring *u, const char *call, const char *what)
{
    expect(rc < 0, what);
    expect(u->failed && strcmp(u->failed, call) == 0, call);
}

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

/* The process's address space now, from /proc/self/statm (pages). */
static size_t vm_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long pages = 0;
    if (!f || fscanf(f, "%lu", &pages) != 1)
        pages = 0;
    if (f)
        fclose(f);
    return pages * (size_t)sysconf(_SC_PAGESIZE);
}

/* The rings' mapping refused: an address-space limit just above what the process uses. */
static void mmap_refused(void)
{
    struct rlimit old, tight;
    struct uring u;
    if (getrlimit(RLIMIT_AS, &old) != 0) {
        perror("getrlimit");
        failures++;
        return;
    }
    tight = old;
    tight.rlim_cur = vm_bytes() + 4096;
    if (setrlimit(RLIMIT_AS, &tight) != 0) {
        perror("setrlimit");
        failures++;
        return;
    }
    int rc = uring_open(&u, 4096, 8192);
    setrlimit(RLIMIT_AS, &old);
    expect_failed(rc, &u, "mmap of the io_uring rings", "mmap under a tight address-space limit");
    expect(rc == -ENOMEM, "mmap fails with ENOMEM");
    expect(u.fd == -1 && u.sq_ring == NULL && u.cq_ring == NULL, "nothing left open");
}

int main(void)
{
    struct uring u;
    setvbuf(stdout, NULL, _IONBF, 0);
    /* io_uring_setup: zero entries, and a completion ring smaller than the submission ring */
    expect_failed(uring_open(&u, 0, 8), &u, "io_uring_setup", "zero entries");
    expect(u.fd == -1, "no descriptor after a failed setup");
    expect(uring_open(&u, 8, 4) == -EINVAL, "a completion ring smaller than the submission ring");
    mmap_refused();

    expect(uring_open(&u, 4, 64) == 0, "open");
    expect(u.sq_entries == 4 && u.cq_entries == 64, "the sizes asked for");
    /* io_uring_enter on a descriptor that is not a ring */
    int ring_fd = u.fd, p[2];
    if (pipe(p) != 0) {
        perror("pipe");
        return 2;
    }
    u.fd = p[0];
    u.failed = NULL;
    expect_failed(uring_enter(&u, 0, 0), &u, "io_uring_enter", "enter on a pipe");
    u.fd = ring_fd;
    /* Nothing queued: a wait with a timeout ends with -ETIME, not a failure. */
    u.failed = NULL;
    expect(uring_enter(&u, 1, 10) == -ETIME && u.failed == NULL, "ETIME after the timeout");
    expect(uring_cqe(&u) == NULL, "no completion");
    /* io_uring_register(IORING_REGISTER_BUFFERS): an iovec array the kernel cannot read */
    expect_failed(uring_register_buffers(&u, (const struct iovec *)8, 1), &u,
                  "io_uring_register(IORING_REGISTER_BUFFERS)", "register from a bad address");

    int a, b;
    if (tcp_pair(&a, &b) != 0) {
        perror("setting up sockets");
        return 2;
    }
    static char buf[65536] __attribute__((aligned(4096)));
    memset(buf, 'x', sizeof buf);
    struct iovec reg = {.iov_base = buf, .iov_len = sizeof buf};
    expect(uring_register_buffers(&u, &reg, 1) == 0, "register one buffer");
    for (int i = 0; i < 5; i++) /* five requests, one at a time: the sqe queue never fills */ {
        struct io_uring_sqe *q = uring_sqe(&u);
        expect(q != NULL, "a free sqe");
        if (!q)
            break;
        q->opcode = IORING_OP_SEND_ZC;
        q->fd = a;
        q->addr = (uint64_t)(uintptr_t)buf;
        q->len = sizeof buf;
        q->msg_flags = MSG_WAITALL;
        q->ioprio = IORING_SEND_ZC_REPORT_USAGE;
        if (i % 2) { /* every other request from the registered buffer */
            q->ioprio |= IORING_RECVSEND_FIXED_BUF;
            q->buf_index = 0;
        }
        q->user_data = 7;
        expect(uring_enter(&u, 1, 1000) == 1, "one submitted");
        /* Read what arrived so that the socket's pages go back and the notification comes. */
        size_t got = 0;
        while (got < sizeof buf) {
            ssize_t r = recv(b, buf + 0, sizeof buf - got, 0);
            if (r <= 0)
                break;
            got += (size_t)r;
        }
        expect(got == sizeof buf, "the receiver got the message");
    }
    int results = 0, more = 0, notifs = 0, copied = 0, other = 0;
    for (int spins = 0; notifs < 5 && spins < 100; spins++) {
        struct io_uring_cqe *c;
        while ((c = uring_cqe(&u)) != NULL) {
            if (c->user_data != 7)
                other++;
            if (c->flags & IORING_CQE_F_NOTIF) {
                notifs++;
                copied += ((uint32_t)c->res & IORING_NOTIF_USAGE_ZC_COPIED) != 0;
            } else {
                results++;
                more += (c->flags & IORING_CQE_F_MORE) != 0;
                expect(c->res == (int)sizeof buf, "a whole send");
            }
            uring_cqe_seen(&u);
        }
        if (notifs < 5)
            uring_enter(&u, 1, 10);
    }
    expect(results == 5 && more == 5, "five results, each owing a notification");
    expect(notifs == 5, "exactly one notification per request");
    expect(copied == 5, "loopback copies: every notification says so");
    expect(other == 0, "user_data comes back");
    uring_close(&u);
    uring_close(&u);
    expect(u.fd == -1 && u.sqes == NULL, "closed twice safely");
    if (failures)
        return 1;
    printf("uring_calls: all checks passed\n");
    return 0;
}
