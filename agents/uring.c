#include "uring.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifndef __NR_io_uring_setup
#define __NR_io_uring_setup 425
#endif
#ifndef __NR_io_uring_enter
#define __NR_io_uring_enter 426
#endif
#ifndef __NR_io_uring_register
#define __NR_io_uring_register 427
#endif
#ifndef IORING_SETUP_COOP_TASKRUN
#define IORING_SETUP_COOP_TASKRUN (1U << 8)
#endif
#ifndef IORING_SETUP_SINGLE_ISSUER
#define IORING_SETUP_SINGLE_ISSUER (1U << 12)
#endif

/* The kernel and this thread share the rings' head and tail words: the side that publishes a
 * word stores it with release (the entries it covers are written first), the other side loads
 * it with acquire (and then reads the entries). Each word has one writer. */
static unsigned load_acquire(const unsigned *p)
{
    return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

static void store_release(unsigned *p, unsigned v)
{
    __atomic_store_n(p, v, __ATOMIC_RELEASE);
}

static int sys_setup(unsigned entries, struct io_uring_params *p)
{
    long r = syscall(__NR_io_uring_setup, entries, p);
    return r < 0 ? -errno : (int)r;
}

static int sys_enter(int fd, unsigned to_submit, unsigned min_complete, unsigned flags,
                     const void *arg, size_t argsz)
{
    long r = syscall(__NR_io_uring_enter, fd, to_submit, min_complete, flags, arg, argsz);
    return r < 0 ? -errno : (int)r;
}

static void *map(struct uring *u, size_t len, uint64_t offset, int *err)
{
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, u->fd,
                   (off_t)offset);
    if (p == MAP_FAILED) {
        *err = -errno;
        u->failed = "mmap of the io_uring rings";
        return NULL;
    }
    return p;
}

int uring_open(struct uring *u, unsigned entries, unsigned cq_entries)
{
    memset(u, 0, sizeof *u);
    u->fd = -1;
    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    p.flags = IORING_SETUP_CQSIZE | IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SINGLE_ISSUER;
    p.cq_entries = cq_entries;
    int fd = sys_setup(entries, &p);
    if (fd == -EINVAL) { /* a kernel before 6.0 knows neither flag */
        memset(&p, 0, sizeof p);
        p.flags = IORING_SETUP_CQSIZE;
        p.cq_entries = cq_entries;
        fd = sys_setup(entries, &p);
    }
    if (fd < 0) {
        u->failed = "io_uring_setup";
        return fd;
    }
    u->fd = fd;
    u->features = p.features;
    u->sq_entries = p.sq_entries;
    u->cq_entries = p.cq_entries;
    int err = 0;
    u->sq_ring_len = p.sq_off.array + p.sq_entries * sizeof(unsigned);
    u->cq_ring_len = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
    u->sqes_len = p.sq_entries * sizeof(struct io_uring_sqe);
    /* Two ring mappings always, even where one would do (IORING_FEAT_SINGLE_MMAP): simpler. */
    if (!(u->sq_ring = map(u, u->sq_ring_len, IORING_OFF_SQ_RING, &err)) ||
        !(u->cq_ring = map(u, u->cq_ring_len, IORING_OFF_CQ_RING, &err)) ||
        !(u->sqes = map(u, u->sqes_len, IORING_OFF_SQES, &err))) {
        uring_close(u);
        return err;
    }
    uint8_t *sq = u->sq_ring, *cq = u->cq_ring;
    u->sq_head = (unsigned *)(sq + p.sq_off.head);
    u->sq_tail = (unsigned *)(sq + p.sq_off.tail);
    u->sq_mask = (unsigned *)(sq + p.sq_off.ring_mask);
    u->sq_array = (unsigned *)(sq + p.sq_off.array);
    u->cq_head = (unsigned *)(cq + p.cq_off.head);
    u->cq_tail = (unsigned *)(cq + p.cq_off.tail);
    u->cq_mask = (unsigned *)(cq + p.cq_off.ring_mask);
    u->cqes = (struct io_uring_cqe *)(cq + p.cq_off.cqes);
    u->sqe_tail = *u->sq_tail;
    return 0;
}

struct io_uring_sqe *uring_sqe(struct uring *u)
{
    if (u->sqe_tail - load_acquire(u->sq_head) >= u->sq_entries)
        return NULL;
    unsigned i = u->sqe_tail & *u->sq_mask;
    struct io_uring_sqe *sqe = &u->sqes[i];
    memset(sqe, 0, sizeof *sqe);
    u->sq_array[i] = i;
    u->sqe_tail++;
    return sqe;
}

int uring_enter(struct uring *u, unsigned wait_nr, int timeout_ms)
{
    store_release(u->sq_tail, u->sqe_tail);
    unsigned to_submit = u->sqe_tail - load_acquire(u->sq_head);
    unsigned flags = wait_nr ? IORING_ENTER_GETEVENTS : 0;
    struct __kernel_timespec ts;
    struct io_uring_getevents_arg arg;
    const void *argp = NULL;
    size_t argsz = 0;
    if (wait_nr && timeout_ms >= 0 && (u->features & IORING_FEAT_EXT_ARG)) {
        ts.tv_sec = timeout_ms / 1000;
        ts.tv_nsec = (long long)(timeout_ms % 1000) * 1000000;
        memset(&arg, 0, sizeof arg);
        arg.ts = (uint64_t)(uintptr_t)&ts;
        flags |= IORING_ENTER_EXT_ARG;
        argp = &arg;
        argsz = sizeof arg;
    }
    int r = sys_enter(u->fd, to_submit, wait_nr, flags, argp, argsz);
    if (r < 0 && r != -EINTR && r != -ETIME)
        u->failed = "io_uring_enter";
    return r;
}

int uring_register_buffers(struct uring *u, const struct iovec *iov, unsigned n)
{
    long r = syscall(__NR_io_uring_register, u->fd, IORING_REGISTER_BUFFERS, iov, n);
    if (r < 0) {
        u->failed = "io_uring_register(IORING_REGISTER_BUFFERS)";
        return -errno;
    }
    return 0;
}

struct io_uring_cqe *uring_cqe(struct uring *u)
{
    unsigned head = *u->cq_head; /* only this thread writes it */
    if (head == load_acquire(u->cq_tail))
        return NULL;
    return &u->cqes[head & *u->cq_mask];
}

void uring_cqe_seen(struct uring *u)
{
    store_release(u->cq_head, *u->cq_head + 1);
}

void uring_close(struct uring *u)
{
    if (u->sqes)
        munmap(u->sqes, u->sqes_len);
    if (u->cq_ring)
        munmap(u->cq_ring, u->cq_ring_len);
    if (u->sq_ring)
        munmap(u->sq_ring, u->sq_ring_len);
    if (u->fd >= 0)
        close(u->fd);
    u->sqes = NULL;
    u->cq_ring = u->sq_ring = NULL;
    u->fd = -1;
}
