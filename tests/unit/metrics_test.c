/* The Prometheus text writer behind /metrics: families, samples, label escaping, histograms. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sink/metrics.h"

static void test_samples(void **state)
{
	struct pxy_prom p = { 0 };
	const char *lb[] = { "verdict", "decrypted", "reason", "a \"b\" \\c\nd", NULL };

	(void)state;
	pxy_prom_family(&p, "x_total", "counter", "things");
	pxy_prom_sample(&p, "x_total", NULL, 42);
	pxy_prom_sample(&p, "x_total", lb, 18446744073709.0);
	pxy_prom_sample(&p, "y", NULL, 0.25);
	assert_false(p.oom);
	assert_string_equal(p.buf, "# HELP x_total things\n# TYPE x_total counter\n"
				   "x_total 42\n"
				   "x_total{verdict=\"decrypted\",reason=\"a \\\"b\\\" \\\\c\\nd\"} 18446744073709\n"
				   "y 0.25\n");
	assert_int_equal(p.len, strlen(p.buf));
	pxy_prom_free(&p);
	assert_null(p.buf);
}

static void test_histogram(void **state)
{
	struct pxy_prom p = { 0 };
	struct pxy_hist h;
	const char *lb[] = { "op", "rsa_decrypt", NULL };
	char *line;
	uint64_t last = 0;
	int buckets = 0;

	(void)state;
	memset(&h, 0, sizeof(h));
	pxy_hist_observe(&h, 10000);           /* 10 us: the first bucket */
	pxy_hist_observe(&h, 50000);           /* exactly on a bound: in it */
	pxy_hist_observe(&h, 3000000);         /* 3 ms */
	pxy_hist_observe(&h, 60000000000ull);  /* 60 s: only +Inf */
	assert_int_equal(h.count, 4);
	assert_int_equal(h.bucket[0], 2);
	assert_int_equal(h.bucket[PXY_HIST_BUCKETS], 1);
	pxy_prom_hist(&p, "lat_seconds", lb, &h);
	assert_false(p.oom);
	assert_non_null(strstr(p.buf, "lat_seconds_bucket{op=\"rsa_decrypt\",le=\"5e-05\"} 2\n"));
	assert_non_null(strstr(p.buf, "lat_seconds_bucket{op=\"rsa_decrypt\",le=\"0.005\"} 3\n"));
	assert_non_null(strstr(p.buf, "lat_seconds_bucket{op=\"rsa_decrypt\",le=\"10\"} 3\n"));
	assert_non_null(strstr(p.buf, "lat_seconds_bucket{op=\"rsa_decrypt\",le=\"+Inf\"} 4\n"));
	assert_non_null(strstr(p.buf, "lat_seconds_count{op=\"rsa_decrypt\"} 4\n"));
	assert_non_null(strstr(p.buf, "lat_seconds_sum{op=\"rsa_decrypt\"} 60.00306\n"));
	/* cumulative: never decreasing, one line per bound and +Inf */
	for (line = p.buf; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL)
		if (!strncmp(line, "lat_seconds_bucket", 18)) {
			uint64_t v = strtoull(strchr(line, '}') + 2, NULL, 10);
			assert_true(v >= last);
			last = v;
			buckets++;
		}
	assert_int_equal(buckets, PXY_HIST_BUCKETS + 1);
	pxy_prom_free(&p);
}

static void test_grows(void **state)
{
	struct pxy_prom p = { 0 };
	char name[64];

	(void)state;
	for (int i = 0; i < 5000; i++) {
		snprintf(name, sizeof(name), "metric_%d", i);
		pxy_prom_sample(&p, name, NULL, i);
	}
	assert_false(p.oom);
	assert_true(p.len > 5000 * 10);
	assert_non_null(strstr(p.buf, "\nmetric_4999 4999\n"));
	assert_int_equal(p.len, strlen(p.buf));
	pxy_prom_free(&p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_samples),
		cmocka_unit_test(test_histogram),
		cmocka_unit_test(test_grows),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
