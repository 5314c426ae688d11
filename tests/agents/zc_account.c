/* Unit test of the zero-copy completion accounting (agents/zc.c, zc_account) where the kernel's
 * 32-bit id counter wraps. Built and run by test_zc_account.py; prints one line per failed check
 * and exits 1 if any failed. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "control.h"
#include "zc.h"

/* zc.c's one link to the rest of the agent (control.h), which this test does not need. */
void agent_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(2);
}
int agent_aborted(void) { return 0; }
double mono_now(void) { return 0.0; }

static int failures;

#define CHECK_EQ(what, got, want)                                                              \
    do {                                                                                       \
        uint64_t got_ = (got), want_ = (want);                                                 \
        if (got_ != want_) {                                                                   \
            printf("%s:%d %s: got %" PRIu64 ", want %" PRIu64 "\n", __func__, __LINE__, what, \
                   got_, want_);                                                               \
            failures++;                                                                        \
        }                                                                                      \
    } while (0)

static struct zc z;

/* A socket whose counter is at `first`, after `count` accepted sends. */
static void start_at(uint32_t first, uint32_t count)
{
    memset(&z, 0, sizeof z);
    z.low = z.next_id = first;
    for (uint32_t i = 0; i < count; i++)
        zc_sent(&z);
}

/* One notification whose range straddles 2^32: ee_data < ee_info. */
static void one_range_across_the_wrap(void)
{
    start_at(0xfffffff0u, 32);
    CHECK_EQ("next id wrapped", z.next_id, 0x10);
    CHECK_EQ("outstanding before", zc_outstanding(&z), 32);
    zc_account(&z, 0xfffffff0u, 0x0000000fu, 0);
    CHECK_EQ("completed sends", z.st.completed_sends, 32);
    CHECK_EQ("notifications", z.st.notifications, 1);
    CHECK_EQ("low", z.low, 0x10);
    CHECK_EQ("outstanding after", zc_outstanding(&z), 0);
    CHECK_EQ("copied sends", z.st.copied_sends, 0);
}

/* The part after the wrap completes first; it waits in the bitmap until the part before it
 * arrives, then low moves past both. */
static void out_of_order_across_the_wrap(void)
{
    start_at(0xfffffffeu, 6);
    zc_account(&z, 0x0, 0x3, 1);
    CHECK_EQ("low waits for the ids before the wrap", z.low, 0xfffffffeu);
    CHECK_EQ("outstanding while waiting", zc_outstanding(&z), 6);
    CHECK_EQ("not done yet", zc_done(&z, 0xffffffffu), 0);
    zc_account(&z, 0xfffffffeu, 0xffffffffu, 0);
    CHECK_EQ("low after both", z.low, 0x4);
    CHECK_EQ("outstanding after both", zc_outstanding(&z), 0);
    CHECK_EQ("done before the wrap", zc_done(&z, 0xffffffffu), 1);
    CHECK_EQ("done after the wrap", zc_done(&z, 0x3), 1);
    CHECK_EQ("not done: never sent", zc_done(&z, 0x4), 0);
    CHECK_EQ("completed sends", z.st.completed_sends, 6);
    CHECK_EQ("notifications", z.st.notifications, 2);
    CHECK_EQ("copied notifications", z.st.copied_notifications, 1);
    CHECK_EQ("copied sends", z.st.copied_sends, 4);
}

/* Single-id notifications, in reverse order, on both sides of the wrap. */
static void single_ids_in_reverse(void)
{
    start_at(0xfffffffcu, 8);
    for (uint32_t id = 0x3;; id--) {
        zc_account(&z, id, id, 0);
        if (id == 0xfffffffcu)
            break;
    }
    CHECK_EQ("low", z.low, 0x4);
    CHECK_EQ("outstanding", zc_outstanding(&z), 0);
    CHECK_EQ("completed sends", z.st.completed_sends, 8);
    CHECK_EQ("notifications", z.st.notifications, 8);
}

/* A range already below low (seen before the wrap) leaves low where it is after the wrap. */
static void an_old_range_does_not_move_low_back(void)
{
    start_at(0xfffffff8u, 16);
    zc_account(&z, 0xfffffff8u, 0x7, 0);
    CHECK_EQ("low", z.low, 0x8);
    zc_account(&z, 0xfffffffau, 0xfffffffbu, 0);
    CHECK_EQ("low unchanged", z.low, 0x8);
    CHECK_EQ("outstanding", zc_outstanding(&z), 0);
}

/* A full-window distance across the wrap: the bitmap slot of an id is the same before and
 * after 2^32 (ZC_WINDOW divides it), so a far range is remembered and then released. */
static void far_range_in_the_bitmap(void)
{
    start_at(0xffff0000u, ZC_WINDOW - 1);
    uint32_t last = 0xffff0000u + (ZC_WINDOW - 2); /* 0xfffffffe */
    zc_account(&z, 0xffff0001u, last, 0);
    CHECK_EQ("low waits", z.low, 0xffff0000u);
    zc_account(&z, 0xffff0000u, 0xffff0000u, 0);
    CHECK_EQ("low after", z.low, last + 1);
    CHECK_EQ("outstanding", zc_outstanding(&z), 0);
    CHECK_EQ("completed sends", z.st.completed_sends, ZC_WINDOW - 1);
    for (size_t i = 0; i < ZC_WINDOW / 64; i++)
        if (z.bits[i] != 0) {
            printf("bitmap word %zu left set\n", i);
            failures++;
        }
}

int main(void)
{
    one_range_across_the_wrap();
    out_of_order_across_the_wrap();
    single_ids_in_reverse();
    an_old_range_does_not_move_low_back();
    far_range_in_the_bitmap();
    if (failures == 0)
        printf("zc_account: all checks passed\n");
    return failures ? 1 : 0;
}
