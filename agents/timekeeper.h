/* The timekeeper thread: the only clock reader during a stream run. It moves g_run.phase
 * through warm-up, the window's intervals and (on a side that stops by the clock) the end. */
#ifndef TIMEKEEPER_H
#define TIMEKEEPER_H

/* Once, before anything can call agent_fail(): it registers how an abort wakes the timekeeper. */
int timekeeper_init(void);
/* Starts the thread; it takes t0, then opens the gate the workers wait at, so they all
 * start together and the clock starts with them. */
int timekeeper_start(void);
void timekeeper_gate_wait(void);
/* Opens the gate without a run (a failure before the start), so waiting workers can end. */
void timekeeper_open_gate(void);
void timekeeper_stop(void);

#endif
