/* Sending with io_uring: `io_uring` (IORING_OP_SEND) and `io_uring_zc` (IORING_OP_SEND_ZC with
 * IORING_SEND_ZC_REPORT_USAGE), one ring per connection, opened by the connection's own thread.
 * One send request is in flight per connection at a time: requests queued together on one TCP
 * socket may be sent out of order. A zero-copy request's buffer stays the kernel's until its
 * notification; the ring of message buffers lets later messages go meanwhile, and the
 * notifications awaited at any time are bounded (USEND_MAX_PENDING). */
#ifndef USEND_H
#define USEND_H

#include "agent.h"
#include "uring.h"
#include "zc.h"

#include <stdint.h>

/* Notifications awaited at most; the completion ring holds more than twice as many entries. */
#define USEND_MAX_PENDING 1024u
#define USEND_CQ_ENTRIES 4096u

struct usend {
    struct uring ring;
    int zc;                  /* IORING_OP_SEND_ZC */
    int64_t pending;         /* notifications owed: requests answered with F_MORE, minus notifications */
    int have_result;         /* the request in flight has its result */
    int result;
    int restore_flags;       /* the socket's flags to restore at the end of data, or -1 */
    /* The same counts as MSG_ZEROCOPY (zc.h): sends are requests owed a notification, each
     * notification completes one, copied ones carry IORING_NOTIF_USAGE_ZC_COPIED. */
    struct zc_stats st;
};

/* Allocates ts->usend (before the threads start). -1 when out of memory (recorded). */
int usend_prepare(struct thread_state *ts);
/* Opens the connection's ring; called by the connection's own thread, which is the ring's one
 * submitter. -1 when the run failed (recorded, naming what the host lacks). */
int usend_open(struct thread_state *ts);
/* Sends the whole message m (its one contiguous buffer): resubmits the rest after a short send,
 * retries -EINTR and -EAGAIN, waits for notifications on -ENOBUFS. 0, or -1 when the run failed. */
int usend_message(struct thread_state *ts, struct msgbuf *m);
/* The data phase is over: the socket is as it was before usend_open (see ORCH_AGENT_URING_NONBLOCK). */
void usend_data_end(struct thread_state *ts);
/* Waits until every notification for m's earlier sends has come, so m may be rewritten. */
int usend_reclaim(struct thread_state *ts, struct msgbuf *m);
/* After the last send: waits up to `seconds` for the notifications still owed. */
void usend_finish(struct thread_state *ts, double seconds);
void usend_release(struct thread_state *ts);

#endif
