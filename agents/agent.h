/* Types shared by every part of the agent. See agents/README.md for the design. */
#ifndef AGENT_H
#define AGENT_H

/* CPU affinity, accept4, sendfile and friends. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stddef.h>
#include <sys/uio.h>

#define AGENT_MAX_SIZE (4u << 20)
#define AGENT_MAX_THREADS 64
#define AGENT_MAX_FIELDS 64
/* Per-thread interval arrays are allocated up front; this bounds their memory. */
#define AGENT_MAX_INTERVALS 100000
#define AGENT_ERR_LEN 512

enum mode { MODE_TWO_COPY, MODE_ONE_COPY, MODE_ZERO_COPY, MODE_SENDFILE };
enum workload { WL_STREAM, WL_RR };
enum role { ROLE_SERVER, ROLE_CLIENT };

struct config {
    enum role role;
    char addr[256];
    char port_str[8];
    enum mode mode;
    enum workload workload;
    uint32_t size;
    uint32_t fields;          /* after clamping to size */
    uint32_t threads;
    double duration, warmup, interval, lifetime;
    enum role sender;
    int nodelay;
    int sndbuf, rcvbuf;
    int cpus[AGENT_MAX_THREADS * 4];
    int ncpus;
    int verify;
    const char *output;
    uint32_t n_intervals;
};

struct counts {
    uint64_t bytes_sent, bytes_received;
    uint64_t messages_sent, messages_received;
    uint64_t send_calls, recv_calls;
};

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

#define HIST_SUB 64
#define HIST_BUCKETS (HIST_SUB + 58 * HIST_SUB)
struct hist {
    uint64_t count, sum_ns, max_ns;
    uint64_t b[HIST_BUCKETS];
};

/* One message's memory: `fields` separate, cache-line aligned pieces carved from one block. */
struct msgbuf {
    uint8_t *block;
    uint32_t nfields;
    struct iovec *iov;     /* nfields entries */
    uint32_t zc_last_id;   /* zero_copy: id of the last sendmsg that used this buffer */
    int zc_pending;
};

struct tcpi_sample;

struct thread_state {
    int index;
    int fd;
    int cpu;                   /* -1 when not pinned */
    char local[80], peer[80];
    struct counts total, window;
    uint64_t *intervals;       /* n_intervals entries, bytes moved in this side's direction */
    int end_phase;             /* the published phase when its data ended */
    double data_end_mono;      /* when its data phase ended (EOF or deadline) */
    uint64_t tx, tx_total;     /* rr transactions in the window / overall */
    struct hist *hist;         /* rr client only */
    struct zc *zc;             /* zero_copy only */
    struct msgbuf *ring;       /* send buffers: 1, or the zero_copy ring */
    uint32_t ring_slots;
    uint8_t *rbuf;             /* receive buffer, message size */
    uint64_t rx_msg;           /* receive position: message index and offset in it */
    uint32_t rx_off;
    pthread_t tid;
    int started;
    int ended;                 /* its data phase completed (not cut short by a failure) */
    struct tcpi_sample *tcpi;  /* TCP_INFO samples (tcpinfo.h), NULL when sampling is off */
    uint32_t tcpi_slots;
};

/* Everything the threads share. */
struct run {
    struct config cfg;
    /* -1 warm-up, 0..n-1 the window interval, n after the deadline; read per send. */
    _Atomic int phase;
    int phase_done_published;  /* whether this side's timekeeper publishes n (see README) */
    double t0_mono, t0_real;   /* all connections ready, threads released */
    double win_start_mono;
    double win_end_mono;       /* deadline as the timekeeper saw it */
    double *interval_end;      /* n entries, seconds after window start */
    double end_mono, end_real;
    double expected_end_mono;  /* t0 + warmup + duration */
    struct thread_state th[AGENT_MAX_THREADS];
    int sendfile_fd;
    uint8_t *pattern;          /* the expected message body, for --verify */
    int sndbuf_eff, rcvbuf_eff;
};

extern struct run g_run;

/* control.c: the first error wins; abort wakes every blocked thread. */
void agent_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int agent_aborted(void);
const char *agent_error(void);
void agent_register_fd(int fd);
void agent_unregister_fd(int fd);
void agent_wake_timekeeper(void);
double mono_now(void);
double real_now(void);

/* Whether this side sends data: both rr sides do, and the configured sender in stream. */
static inline int side_sends(void)
{
    return g_run.cfg.workload == WL_RR || g_run.cfg.sender == g_run.cfg.role;
}

static inline int side_receives(void)
{
    return g_run.cfg.workload == WL_RR || g_run.cfg.sender != g_run.cfg.role;
}

static inline int phase_now(void)
{
    return atomic_load_explicit(&g_run.phase, memory_order_relaxed);
}

#endif
