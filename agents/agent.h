/* Types and limits shared by every part of the agent, and nothing else: no functions, no
 * state. Each module's own header declares what it exports; the run's one shared instance is
 * in run.h. See agents/README.md for the design. */
#ifndef AGENT_H
#define AGENT_H

#include <pthread.h>
#include <stdint.h>

#define AGENT_MAX_SIZE (4u << 20)
#define AGENT_MAX_THREADS 64
#define AGENT_MAX_FIELDS 64
/* Per-thread interval arrays are allocated up front; this bounds their memory. */
#define AGENT_MAX_INTERVALS 100000
/* Progress samples (the "progress" key): one every AGENT_SAMPLE_STEP_S of the window, whatever
 * --interval says; a longer window samples more coarsely so that there are never more than
 * AGENT_MAX_SAMPLES (409.6 s at the finest step). */
#define AGENT_SAMPLE_STEP_S 0.1
#define AGENT_MAX_SAMPLES 4096

enum mode { MODE_TWO_COPY, MODE_ONE_COPY, MODE_ZERO_COPY, MODE_SENDFILE, MODE_IO_URING,
            MODE_IO_URING_ZC };
enum workload { WL_STREAM, WL_RR };
enum role { ROLE_SERVER, ROLE_CLIENT };
enum receive_mode { RX_COPY, RX_ZEROCOPY };

struct config {
    enum role role;
    char addr[256];
    char port_str[8];
    enum mode mode;
    enum workload workload;
    enum receive_mode receive; /* how a stream receiver takes its data */
    int uring_registered;      /* io_uring_zc sends from buffers registered with the ring */
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

/* Each module's own types, which the per-thread state points to (hist.h, zc.h, msg.h, tcpinfo.h). */
struct hist;
struct zc;
struct zcrx;
struct usend;
struct msgbuf;
struct tcpi_sample;

struct thread_state {
    int index;
    int fd;
    int cpu;                   /* -1 when not pinned */
    char local[80], peer[80];
    struct counts total, window;
    uint64_t *intervals;       /* n_intervals entries, bytes moved in this side's direction */
    /* The window's bytes in this side's direction so far: written by this thread only (relaxed
     * stores), read by the timekeeper at each progress sample. */
    _Atomic uint64_t progress;
    int end_phase;             /* the published phase when its data ended */
    double data_end_mono;      /* when its data phase ended (EOF or deadline) */
    uint64_t tx, tx_total;     /* rr transactions in the window / overall */
    struct hist *hist;         /* rr client only */
    struct zc *zc;             /* zero_copy only */
    struct usend *usend;       /* io_uring and io_uring_zc senders only (usend.h) */
    struct zcrx *zcrx;         /* a --receive zerocopy stream receiver only (recvmap.h) */
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
    /* Progress samples, taken by the timekeeper: when (seconds after window start) and the
     * window's bytes so far, connections summed; n_samples taken of max_samples. */
    double sample_step;
    uint32_t max_samples, n_samples;
    double *sample_t;
    uint64_t *sample_bytes;
    double end_mono, end_real;
    double expected_end_mono;  /* t0 + warmup + duration */
    struct thread_state th[AGENT_MAX_THREADS];
    int sendfile_fd;
    uint8_t *pattern;          /* the expected message body, for --verify */
    int sndbuf_eff, rcvbuf_eff;
};

#endif
