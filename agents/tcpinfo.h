/* TCP_INFO samples per connection: at the window's start and each interval boundary (taken by
 * the timekeeper, never in a send loop) and at the end of the connection's window (taken once by
 * its worker). docs/agent-protocol.md gives the JSON. */
#ifndef TCPINFO_H
#define TCPINFO_H

#include "agent.h"

#include <stdint.h>
#include <stdio.h>

/* Samples per connection when every boundary is sampled: n_intervals + 1. Above this many
 * samples over all connections, only the window's start and end are kept (a bound on memory). */
#define TCPINFO_MAX_SAMPLES 65536u

struct tcpi_sample {
    double t;                  /* seconds after the window's start */
    uint32_t len;              /* bytes the kernel returned; 0: not taken */
    uint32_t total_retrans, rtt_us, rttvar_us, snd_cwnd, pmtu;
    uint64_t delivery_rate, busy_us, rwnd_limited_us, sndbuf_limited_us;
};

/* Whether sampling is on: the build has <linux/tcp.h> and ORCH_AGENT_NO_TCPINFO is unset. */
int tcpinfo_enabled(void);
/* Per connection, once before the run; -1 on out of memory (agent_fail called). */
int tcpinfo_prepare(struct thread_state *ts);
void tcpinfo_release(struct thread_state *ts);
/* The timekeeper at boundary k (0: window start, 1..n-1: after interval k-1), every connection. */
void tcpinfo_boundary(uint32_t k, double t);
/* A worker at the end of its window. */
void tcpinfo_end(struct thread_state *ts, double t);
/* `"tcp_info": [...]` or `"tcp_info": null`. */
void tcpinfo_json(FILE *f, const struct thread_state *ts);

#endif
