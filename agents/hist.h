/* Bounded log-linear latency histogram: 64 linear sub-buckets per power of two, so every
 * recorded value lands in a bucket at most 1/64 (1.6 %) wide relative to its value. */
#ifndef HIST_H
#define HIST_H

#include <stdint.h>

#define HIST_SUB 64
#define HIST_BUCKETS (HIST_SUB + 58 * HIST_SUB)
struct hist {
    uint64_t count, sum_ns, max_ns;
    uint64_t b[HIST_BUCKETS];
};

void hist_add(struct hist *h, uint64_t ns);
void hist_merge(struct hist *into, const struct hist *from);
/* q in [0,1]; the midpoint of the bucket holding that rank, never above the exact max. */
double hist_quantile_ns(const struct hist *h, double q);

#endif
