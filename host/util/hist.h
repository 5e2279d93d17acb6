/*
 * Latency histograms with fixed bucket bounds (Prometheus style: the bounds
 * are the "le" labels). Counts are kept per bucket, not cumulative; the
 * exposition adds them up. Single-threaded: each io loop owns its own.
 */
#ifndef PXY_HIST_H
#define PXY_HIST_H

#include <stdint.h>

#define PXY_HIST_BUCKETS 16

/* upper bounds in nanoseconds: 50 us .. 10 s */
static const uint64_t pxy_hist_bounds_ns[PXY_HIST_BUCKETS] = {
	50000ull,     100000ull,    250000ull,     500000ull,     1000000ull,    2500000ull,
	5000000ull,   10000000ull,  25000000ull,   50000000ull,   100000000ull,  250000000ull,
	500000000ull, 1000000000ull, 2500000000ull, 10000000000ull,
};

struct pxy_hist {
	uint64_t bucket[PXY_HIST_BUCKETS + 1]; /* the last: above every bound (+Inf) */
	uint64_t count;
	uint64_t sum_ns;
};

static inline void pxy_hist_observe(struct pxy_hist *h, uint64_t ns)
{
	unsigned i = 0;

	while (i < PXY_HIST_BUCKETS && ns > pxy_hist_bounds_ns[i])
		i++;
	h->bucket[i]++;
	h->count++;
	h->sum_ns += ns;
}

#endif
