/* One thread per connection: the stream sender and receiver, the rr client and server. */
#ifndef WORKER_H
#define WORKER_H

#include "agent.h"

/* Allocates the thread's buffers for its role; -1 (run failed) when memory runs out. */
int worker_prepare(struct thread_state *ts);
void worker_release(struct thread_state *ts);
void *worker_main(void *arg);

#endif
