/* The stream receiver's `--receive zerocopy` path: the data arrives through mapped pages
 * (zcrx.h) where the kernel can map it, and through read() where it cannot, counted apart. */
#ifndef RECVMAP_H
#define RECVMAP_H

#include "agent.h"

#include <stdio.h>

/* Receives until the peer's end of stream, accounting every byte as the copy path does.
 * 0 at the end of stream, -1 when the run failed (the error is recorded). */
int recvmap_stream(struct thread_state *ts);
void recvmap_release(struct thread_state *ts);
/* The document's "receive" key: the receive mode, and on a zerocopy receiver what was mapped. */
void recvmap_json(FILE *f);

#endif
