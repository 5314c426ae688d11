#include "msg.h"

#include "agent.h"
#include "run.h"

#include <stdlib.h>
#include <string.h>

#define FIELD_ALIGN 64

uint8_t pattern_byte(uint64_t i)
{
    /* Not periodic at any power of two below 64 KiB, so shifted data does not match. */
    return (uint8_t)(i * 131u + (i >> 8) * 7u + (i >> 16) * 3u + 0x5a);
}

int msgbuf_init(struct msgbuf *m, uint32_t size, uint32_t fields)
{
    memset(m, 0, sizeof *m);
    size_t total = 0;
    for (uint32_t i = 0; i < fields; i++) {
        size_t len = size / fields + (i < size % fields ? 1 : 0);
        total += (len + FIELD_ALIGN - 1) / FIELD_ALIGN * FIELD_ALIGN;
    }
    void *block;
    if (posix_memalign(&block, 4096, total) != 0)
        return -1;
    m->iov = calloc(fields, sizeof *m->iov);
    if (!m->iov) {
        free(block);
        return -1;
    }
    m->block = block;
    m->nfields = fields;
    size_t pos = 0, moff = 0;
    for (uint32_t i = 0; i < fields; i++) {
        size_t len = size / fields + (i < size % fields ? 1 : 0);
        uint8_t *p = m->block + pos;
        for (size_t j = 0; j < len; j++)
            p[j] = pattern_byte(moff + j);
        m->iov[i].iov_base = p;
        m->iov[i].iov_len = len;
        moff += len;
        pos += (len + FIELD_ALIGN - 1) / FIELD_ALIGN * FIELD_ALIGN;
    }
    msg_stamp(m, 0);
    return 0;
}

void msgbuf_free(struct msgbuf *m)
{
    free(m->block);
    free(m->iov);
    memset(m, 0, sizeof *m);
}

static void seq_bytes(uint64_t seq, uint8_t out[8])
{
    for (int i = 0; i < 8; i++)
        out[i] = (uint8_t)(seq >> (8 * i));
}

void msg_stamp(struct msgbuf *m, uint64_t seq)
{
    uint8_t s[8];
    seq_bytes(seq, s);
    if (m->iov[0].iov_len >= 8) {
        memcpy(m->iov[0].iov_base, s, 8);
        return;
    }
    /* Tiny fields: the stamp spans several of them. */
    uint32_t f = 0;
    size_t at = 0;
    for (int i = 0; i < 8 && f < m->nfields; i++) {
        ((uint8_t *)m->iov[f].iov_base)[at] = s[i];
        if (++at == m->iov[f].iov_len) {
            f++;
            at = 0;
        }
    }
}

uint8_t *pattern_message(uint32_t size)
{
    uint8_t *p = malloc(size);
    if (!p)
        return NULL;
    for (uint32_t i = 0; i < size; i++)
        p[i] = pattern_byte(i);
    memset(p, 0, size < 8 ? size : 8);
    return p;
}

int verify_bytes(const uint8_t *p, size_t n, uint64_t msg, uint32_t off, int stamped)
{
    const uint32_t size = g_run.cfg.size;
    const uint8_t *ref = g_run.pattern;
    while (n > 0) {
        size_t chunk = size - off;
        if (chunk > n)
            chunk = n;
        size_t hdr_end = size < 8 ? size : 8;
        size_t i = 0;
        if (off < hdr_end) {
            uint8_t s[8];
            seq_bytes(stamped ? msg : 0, s);
            for (; i < chunk && off + i < hdr_end; i++)
                if (p[i] != s[off + i])
                    return -1;
        }
        if (i < chunk && memcmp(p + i, ref + off + i, chunk - i) != 0)
            return -1;
        p += chunk;
        n -= chunk;
        off += (uint32_t)chunk;
        if (off == size) {
            off = 0;
            msg++;
        }
    }
    return 0;
}
