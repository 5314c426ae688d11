/* The run's one shared instance, and the questions every part asks of it. It is written by
 * main before the threads start and by the timekeeper (the phase) after; see README *Threads*. */
#ifndef RUN_H
#define RUN_H

#include "agent.h"

#include <stdatomic.h>

extern struct run g_run;

/* Whether this side sends data: both rr sides do, and the configured sender in stream. */
static inline int side_sends(void)
{
    return g_run.cfg.workload == WL_RR || g_run.cfg.sender == g_run.cfg.role;
}

static inline int side_receives(void)
{
    return g_run.cfg.workload == WL_RR || g_run.cfg.sender != g_run.cfg.role;
}

/* The modes that send through io_uring (usend.h), and those whose sends the kernel reports
 * back as zero-copy or copied (the "zerocopy" key). */
static inline int mode_uses_uring(enum mode m)
{
    return m == MODE_IO_URING || m == MODE_IO_URING_ZC;
}

static inline int mode_reports_zerocopy(enum mode m)
{
    return m == MODE_ZERO_COPY || m == MODE_IO_URING_ZC;
}

static inline int phase_now(void)
{
    return atomic_load_explicit(&g_run.phase, memory_order_relaxed);
}

#endif
