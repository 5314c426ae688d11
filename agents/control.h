/* Run-wide failure handling and the clocks. The first error wins; aborting shuts down every
 * registered socket and calls the registered waker, so no thread stays blocked. */
#ifndef CONTROL_H
#define CONTROL_H

void agent_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int agent_aborted(void);
/* The first error's text, or NULL while the run has not failed. */
const char *agent_error(void);
void agent_register_fd(int fd);
void agent_unregister_fd(int fd);
/* A thread that sleeps on a condition variable rather than in a socket call (the timekeeper)
 * gives the function that wakes it; agent_fail calls it after recording the error. Set once,
 * before the threads start. */
void agent_on_abort(void (*wake)(void));
double mono_now(void);
double real_now(void);

#endif
