#include "sink/metrics.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void put(struct pxy_prom *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(struct pxy_prom *p, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (p->oom)
		return;
	for (;;) {
		size_t room = p->cap - p->len;

		va_start(ap, fmt);
		n = vsnprintf(p->buf ? p->buf + p->len : NULL, p->buf ? room : 0, fmt, ap);
		va_end(ap);
		if (n < 0) {
			p->oom = 1;
			return;
		}
		if (p->buf && (size_t)n < room) {
			p->len += (size_t)n;
			return;
		}
		{
			size_t cap = p->cap ? p->cap : 8192;
			char *nb;

			while (cap - p->len <= (size_t)n)
				cap *= 2;
			nb = realloc(p->buf, cap);
			if (!nb) {
				p->oom = 1;
				return;
			}
			p->buf = nb;
			p->cap = cap;
		}
	}
}

void pxy_prom_family(struct pxy_prom *p, const char *name, const char *type, const char *help)
{
	put(p, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* label values: backslash, double quote and newline escaped */
static void put_labels(struct pxy_prom *p, const char *const *labels, const char *le)
{
	int first = 1;

	if ((!labels || !labels[0]) && !le)
		return;
	put(p, "{");
	for (size_t i = 0; labels && labels[i] && labels[i + 1]; i += 2) {
		put(p, "%s%s=\"", first ? "" : ",", labels[i]);
		for (const char *c = labels[i + 1]; *c; c++) {
			if (*c == '\\' || *c == '"')
				put(p, "\\%c", *c);
			else if (*c == '\n')
				put(p, "\\n");
			else
				put(p, "%c", *c);
		}
		put(p, "\"");
		first = 0;
	}
	if (le)
		put(p, "%sle=\"%s\"", first ? "" : ",", le);
	put(p, "}");
}

static void put_value(struct pxy_prom *p, double v)
{
	/* integers (every counter) exactly, the rest with full precision */
	if (v >= 0 && v < 9007199254740992.0 && v == (double)(uint64_t)v)
		put(p, " %llu\n", (unsigned long long)v);
	else
		put(p, " %.10g\n", v);
}

void pxy_prom_sample(struct pxy_prom *p, const char *name, const char *const *labels, double v)
{
	put(p, "%s", name);
	put_labels(p, labels, NULL);
	put_value(p, v);
}

void pxy_prom_hist(struct pxy_prom *p, const char *name, const char *const *labels, const struct pxy_hist *h)
{
	uint64_t cum = 0;
	char le[32];

	for (unsigned i = 0; i <= PXY_HIST_BUCKETS; i++) {
		cum += h->bucket[i];
		if (i < PXY_HIST_BUCKETS)
			snprintf(le, sizeof(le), "%g", (double)pxy_hist_bounds_ns[i] / 1e9);
		else
			snprintf(le, sizeof(le), "+Inf");
		put(p, "%s_bucket", name);
		put_labels(p, labels, le);
		put_value(p, (double)cum);
	}
	put(p, "%s_sum", name);
	put_labels(p, labels, NULL);
	put_value(p, (double)h->sum_ns / 1e9);
	put(p, "%s_count", name);
	put_labels(p, labels, NULL);
	put_value(p, (double)h->count);
}

void pxy_prom_free(struct pxy_prom *p)
{
	free(p->buf);
	memset(p, 0, sizeof(*p));
}
