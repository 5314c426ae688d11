/* Message memory and the byte pattern. Every message is the pattern, with its first
 * min(8, size) bytes replaced by the message's sequence number (little-endian); sendfile
 * sends the file's one message, whose stamp stays 0. */
#ifndef MSG_H
#define MSG_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

/* One message's memory: `fields` separate, cache-line aligned pieces carved from one block. */
struct msgbuf {
    uint8_t *block;
    uint32_t nfields;
    struct iovec *iov;     /* nfields entries */
    uint32_t zc_last_id;   /* zero_copy: id of the last sendmsg that used this buffer */
    int zc_pending;
    int64_t uring_notifs;  /* io_uring_zc: notifications still owed for sends from it */
};

uint8_t pattern_byte(uint64_t offset);
/* `fields` pieces of sizes as even as possible summing to `size`, filled with the pattern. */
int msgbuf_init(struct msgbuf *m, uint32_t size, uint32_t fields);
void msgbuf_free(struct msgbuf *m);
void msg_stamp(struct msgbuf *m, uint64_t seq);
/* The whole message with stamp 0, contiguous: the verifier's reference and sendfile's file. */
uint8_t *pattern_message(uint32_t size);
/* Compare received bytes starting at message `msg`, offset `off`; 0 if they match. */
int verify_bytes(const uint8_t *p, size_t n, uint64_t msg, uint32_t off, int stamped);

#endif
