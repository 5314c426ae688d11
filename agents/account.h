/* Counting, shared by the send and receive paths. The phase is read once per call and decides
 * both the window counters and the interval slot, so interval samples always sum exactly to
 * the window's bytes. */
#ifndef ACCOUNT_H
#define ACCOUNT_H

#include "agent.h"
#include "msg.h"
#include "run.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

static inline int in_window(int ph)
{
    return ph >= 0 && ph < (int)g_run.cfg.n_intervals;
}

/* Intervals follow the direction this side reports: bytes sent by a stream sender, bytes
 * received by a stream receiver and by both rr sides. */
static inline int intervals_follow_send(void)
{
    return g_run.cfg.workload == WL_STREAM && g_run.cfg.sender == g_run.cfg.role;
}

/* This thread is the counter's only writer, so a load and a store need no read-modify-write;
 * relaxed: the timekeeper only needs each value whole, not ordered with anything else. */
static inline void progress_add(struct thread_state *ts, size_t n)
{
    uint64_t was = atomic_load_explicit(&ts->progress, memory_order_relaxed);
    atomic_store_explicit(&ts->progress, was + n, memory_order_relaxed);
}

static inline void account_sent(struct thread_state *ts, size_t n)
{
    int ph = phase_now();
    ts->total.send_calls++;
    ts->total.bytes_sent += n;
    if (in_window(ph)) {
        ts->window.send_calls++;
        ts->window.bytes_sent += n;
        if (intervals_follow_send()) {
            ts->intervals[ph] += n;
            progress_add(ts, n);
        }
    }
}

static inline void account_message_sent(struct thread_state *ts)
{
    ts->total.messages_sent++;
    if (in_window(phase_now()))
        ts->window.messages_sent++;
}

/* -1 when --verify finds bytes that differ from what the sender wrote. */
static inline int account_received(struct thread_state *ts, const uint8_t *p, size_t n)
{
    int ph = phase_now();
    const uint32_t size = g_run.cfg.size;
    if (g_run.cfg.verify &&
        verify_bytes(p, n, ts->rx_msg, ts->rx_off, g_run.cfg.mode != MODE_SENDFILE) != 0)
        return -1;
    uint64_t off = (uint64_t)ts->rx_off + n;
    uint64_t done = off / size;
    ts->rx_off = (uint32_t)(off % size);
    ts->rx_msg += done;
    ts->total.recv_calls++;
    ts->total.bytes_received += n;
    ts->total.messages_received += done;
    if (in_window(ph)) {
        ts->window.recv_calls++;
        ts->window.bytes_received += n;
        ts->window.messages_received += done;
        if (!intervals_follow_send()) {
            ts->intervals[ph] += n;
            progress_add(ts, n);
        }
    }
    return 0;
}

#endif
