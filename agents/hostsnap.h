/* Host counter snapshots: this host's /proc/stat, /proc/softirqs, /proc/interrupts,
 * /proc/net/snmp and /proc/net/netstat as text, and the data NIC's `ethtool -S` statistics, at the window's start and at its deadline, taken
 * by the timekeeper so they bracket the window as closely as the agent's own clock does. The
 * orchestrator parses them (orchestrator/rows/hostcounters.py). */
#ifndef HOSTSNAP_H
#define HOSTSNAP_H

#include <stdio.h>

/* A file larger than this is left out (null), never cut: a cut table would parse wrong. */
#define HOSTSNAP_MAX_BYTES (1u << 20)

enum { HOSTSNAP_START, HOSTSNAP_END };

/* Finds the data NIC (the interface holding this connected socket's local address) and its
 * statistics' names (SIOCETHTOOL), once, before the window; without one, no NIC columns. */
void hostsnap_find_nic(int fd);
/* Reads every file, and the data NIC's statistics, now; `t` is seconds after the window's start. */
void hostsnap_take(int which, double t);
/* `"host_counters": {...}` or null when sampling is off (ORCH_AGENT_NO_TCPINFO also turns this off). */
void hostsnap_json(FILE *f);

#endif
