/* The four ways of sending one message. Each handles partial sends, EINTR and EAGAIN, and
 * counts every call that moved bytes. */
#ifndef MODES_H
#define MODES_H

#include "agent.h"

#include <stdint.h>

/* Sends the whole message `m` (ignored for sendfile) on ts->fd in the run's mode.
 * 0 on success, -1 when the run failed (the error is already recorded). */
int send_message(struct thread_state *ts, struct msgbuf *m);
/* A temporary, already unlinked file holding one message, for sendfile. -1 on failure. */
int sendfile_file(uint32_t size);
/* The error text for a failed socket call, naming a vanished peer plainly. */
void fail_io(struct thread_state *ts, const char *what, int err);
/* Waits up to WAIT_WRITABLE_MS for room in ts->fd's send buffer (after EAGAIN: a blocking socket
 * with a send timeout, or a non-blocking one). 0 to send again, -1 when poll failed (recorded). */
#define WAIT_WRITABLE_MS 100
int wait_writable(struct thread_state *ts);

#endif
