/*
 * The Prometheus text exposition format (version 0.0.4): what /metrics on
 * --metrics serves. A growing buffer and writers for families, samples and
 * histograms; the io loop decides what goes in (README "Metrics").
 */
#ifndef PXY_METRICS_H
#define PXY_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "util/hist.h"

struct pxy_prom {
	char *buf;
	size_t len, cap;
	int oom; /* an allocation failed: the text is incomplete, do not serve it */
};

/** "# HELP name help" and "# TYPE name type" (counter, gauge, histogram). */
void pxy_prom_family(struct pxy_prom *p, const char *name, const char *type, const char *help);

/**
 * One sample: name{labels} value. labels is NULL or pairs of key, value
 * strings ending with NULL; values are escaped as the format requires.
 */
void pxy_prom_sample(struct pxy_prom *p, const char *name, const char *const *labels, double v);

/** A histogram's _bucket (cumulative, seconds), _sum and _count samples. */
void pxy_prom_hist(struct pxy_prom *p, const char *name, const char *const *labels, const struct pxy_hist *h);

void pxy_prom_free(struct pxy_prom *p);

#endif
