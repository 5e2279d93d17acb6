/*
 * The store of forwarded secrets (--key-source): key log lines (RFC 9850
 * labels, comments, other labels, malformed ones), lookups, the count limit
 * (the oldest go), the ttl (wiped when it runs out), and the file follower:
 * lines written in pieces, a file truncated in place, a file replaced
 * (rotated), a file that appears only later.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "tls/keystore.h"
#include "util/util.h"

static void hex(char *out, const uint8_t *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		sprintf(out + 2 * i, "%02x", b[i]);
}

/* "CLIENT_RANDOM <r> <ms>" for random byte r and master-secret byte m */
static size_t cr_line(char *out, uint8_t r, uint8_t m)
{
	uint8_t random[32], ms[48];
	char rh[65], mh[97];

	memset(random, r, sizeof(random));
	memset(ms, m, sizeof(ms));
	hex(rh, random, 32);
	hex(mh, ms, 48);
	return (size_t)sprintf(out, "CLIENT_RANDOM %s %s", rh, mh);
}

static int has(struct pxy_keystore *ks, uint8_t r, uint8_t m)
{
	uint8_t random[32], ms[48], want[48];

	memset(random, r, sizeof(random));
	memset(want, m, sizeof(want));
	return pxy_keystore_master(ks, random, ms) && !memcmp(ms, want, 48);
}

static void test_lines(void **state)
{
	char err[200], why[200], line[300];
	struct pxy_keystore *ks = pxy_keystore_new(NULL, 60, 8, err, sizeof(err));
	struct pxy_keystore_stats st;
	size_t n;

	(void)state;
	assert_non_null(ks);
	n = cr_line(line, 1, 0xa1);
	assert_int_equal(pxy_keystore_add_line(ks, line, n, 0, why, sizeof(why)), 0);
	assert_true(has(ks, 1, 0xa1));
	assert_false(has(ks, 2, 0xa1));
	/* comments, empty lines and labels it has no use for are not errors */
	assert_int_equal(pxy_keystore_add_line(ks, "# a comment", 11, 0, why, sizeof(why)), 0);
	assert_int_equal(pxy_keystore_add_line(ks, "", 0, 0, why, sizeof(why)), 0);
	assert_int_equal(pxy_keystore_add_line(ks, "RSA 0011 2233", 13, 0, why, sizeof(why)), 0);
	/* TLS 1.3 secrets of 32 and 48 bytes are read (not used yet) */
	{
		char cr[300];

		cr_line(cr, 3, 3); /* "CLIENT_RANDOM " (14), 64 hex digits of random, a blank, the secret */
		n = (size_t)sprintf(line, "SERVER_TRAFFIC_SECRET_0 %.64s %.64s", cr + 14, cr + 79);
		assert_int_equal(pxy_keystore_add_line(ks, line, n, 0, why, sizeof(why)), 0);
	}
	/* malformed: a short random, a short secret, not hex, a missing field, a fourth field */
	n = cr_line(line, 4, 4);
	assert_int_equal(pxy_keystore_add_line(ks, line, n - 2, 0, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "hex digits"));
	line[20] = 'g';
	assert_int_equal(pxy_keystore_add_line(ks, line, n, 0, why, sizeof(why)), -1);
	assert_int_equal(pxy_keystore_add_line(ks, "CLIENT_RANDOM 00", 16, 0, why, sizeof(why)), -1);
	n = cr_line(line, 5, 5);
	line[n++] = ' ', line[n++] = 'x';
	assert_int_equal(pxy_keystore_add_line(ks, line, n, 0, why, sizeof(why)), -1);
	/* trailing CR and blanks are fine (a log written on another system) */
	n = cr_line(line, 6, 6);
	line[n++] = '\r';
	assert_int_equal(pxy_keystore_add_line(ks, line, n, 0, why, sizeof(why)), 0);
	assert_true(has(ks, 6, 6));
	pxy_keystore_stats_get(ks, &st);
	assert_int_equal(st.stored, 2);
	assert_int_equal(st.tls13, 1);
	assert_int_equal(st.malformed, 4);
	assert_int_equal(st.matched, 2);
	pxy_keystore_free(ks);
}

static void test_bounds(void **state)
{
	char err[200], why[200], line[300];
	struct pxy_keystore *ks = pxy_keystore_new(NULL, 10, 16, err, sizeof(err));
	struct pxy_keystore_stats st;

	(void)state;
	/* 40 secrets into room for 16: the oldest 24 go, the newest 16 stay, each findable */
	for (int i = 0; i < 40; i++)
		assert_int_equal(pxy_keystore_add_line(ks, line, cr_line(line, (uint8_t)(i + 1), (uint8_t)i),
						       (uint64_t)i * 1000000000ull / 8, why, sizeof(why)),
				 0);
	for (int i = 0; i < 40; i++)
		assert_int_equal(has(ks, (uint8_t)(i + 1), (uint8_t)i), i >= 24);
	/* the same session again takes the newer secret, not a second slot */
	assert_int_equal(pxy_keystore_add_line(ks, line, cr_line(line, 40, 0x77), 5000000000ull, why, sizeof(why)), 0);
	assert_true(has(ks, 40, 0x77));
	pxy_keystore_stats_get(ks, &st);
	assert_int_equal(st.entries, 16);
	/* 10 s after each was stored it is wiped */
	pxy_keystore_refresh(ks, 12000000000ull + 20 * 1000000000ull / 8);
	pxy_keystore_stats_get(ks, &st);
	assert_true(st.entries < 16);
	pxy_keystore_refresh(ks, 100000000000ull);
	pxy_keystore_stats_get(ks, &st);
	assert_int_equal(st.entries, 0);
	assert_false(has(ks, 40, 0x77));
	pxy_keystore_free(ks);
}

static void test_follow(void **state)
{
	char dir[] = "/tmp/keystore_test.XXXXXX", path[128], old[160], err[200], line[300];
	struct pxy_keystore *ks;
	struct pxy_keystore_stats st;
	FILE *f;
	size_t n;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/keys.log", dir);
	ks = pxy_keystore_new(path, 60, 64, err, sizeof(err));
	assert_non_null(ks);
	pxy_keystore_refresh(ks, 1); /* not there yet: waited for */
	/* a line written in two pieces, the second with the newline */
	f = fopen(path, "w");
	n = cr_line(line, 1, 1);
	fwrite(line, 1, 50, f);
	fflush(f);
	pxy_keystore_refresh(ks, 2);
	assert_false(has(ks, 1, 1));
	fwrite(line + 50, 1, n - 50, f);
	fputc('\n', f);
	fflush(f);
	pxy_keystore_refresh(ks, 3);
	assert_true(has(ks, 1, 1));
	/* truncated in place, then written again (to the same length: the size alone does not tell) */
	f = freopen(path, "w", f);
	n = cr_line(line, 2, 2);
	fprintf(f, "%s\n", line);
	fflush(f);
	pxy_keystore_refresh(ks, 4);
	assert_true(has(ks, 2, 2));
	fclose(f);
	/* rotated: renamed away, a new file in its place */
	snprintf(old, sizeof(old), "%s.1", path);
	assert_int_equal(rename(path, old), 0);
	f = fopen(path, "w");
	n = cr_line(line, 3, 3);
	fprintf(f, "%s\n", line);
	fclose(f);
	pxy_keystore_refresh(ks, 5);
	assert_true(has(ks, 3, 3));
	pxy_keystore_stats_get(ks, &st);
	assert_int_equal(st.reopened, 2);
	assert_int_equal(st.stored, 3);
	pxy_keystore_free(ks);
	unlink(path);
	unlink(old);
	rmdir(dir);
}

static void test_source_option(void **state)
{
	char why[200];
	const char *path = NULL;

	(void)state;
	assert_int_equal(pxy_key_source_parse("file:/var/log/keys", &path, why, sizeof(why)), 0);
	assert_string_equal(path, "/var/log/keys");
	assert_int_equal(pxy_key_source_parse("file:", &path, why, sizeof(why)), -1);
	assert_int_equal(pxy_key_source_parse("tcp:1.2.3.4:5", &path, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "file:PATH"));
}

/* lines handed in from another thread (the key listener's) are taken at the next refresh */
struct pusher {
	struct pxy_keystore *ks;
	int from, to;
};

static void *push_lines(void *arg)
{
	struct pusher *p = arg;
	char line[300];

	for (int i = p->from; i < p->to; i++)
		assert_int_equal(pxy_keystore_push(p->ks, line, cr_line(line, (uint8_t)i, (uint8_t)(i + 1))), 0);
	return NULL;
}

static void test_push(void **state)
{
	char err[200], line[300];
	struct pxy_keystore *ks = pxy_keystore_new(NULL, 60, 256, err, sizeof(err));
	struct pxy_keystore_stats st;
	struct pusher a = { ks, 1, 100 }, b = { ks, 100, 200 };
	pthread_t ta, tb;
	size_t n;

	(void)state;
	assert_non_null(ks);
	assert_int_equal(pthread_create(&ta, NULL, push_lines, &a), 0);
	assert_int_equal(pthread_create(&tb, NULL, push_lines, &b), 0);
	pthread_join(ta, NULL);
	pthread_join(tb, NULL);
	assert_false(has(ks, 5, 6)); /* not before the store's own thread refreshes */
	pxy_keystore_refresh(ks, pxy_now_ns());
	for (int i = 1; i < 200; i++)
		assert_true(has(ks, (uint8_t)i, (uint8_t)(i + 1)));
	/* a malformed line handed in is dropped like one from the file */
	assert_int_equal(pxy_keystore_push(ks, "CLIENT_RANDOM 00 11", 19), 0);
	pxy_keystore_refresh(ks, pxy_now_ns());
	pxy_keystore_stats_get(ks, &st);
	assert_int_equal(st.malformed, 1);
	/* bounded: past 4 MiB waiting, lines are dropped and counted */
	n = cr_line(line, 1, 1);
	for (int i = 0; i < 5 * 1024 * 1024 / 100; i++)
		(void)pxy_keystore_push(ks, line, n);
	pxy_keystore_refresh(ks, pxy_now_ns());
	pxy_keystore_stats_get(ks, &st);
	assert_true(st.dropped > 0);
	pxy_keystore_free(ks);
}

/* the shared tier: what local sources give is published, a miss is asked for, an answer is taken */
static int n_published, n_wanted;

static void on_published(void *ctx, const uint8_t cr[32], enum pxy_key_label l, const uint8_t *sec, size_t len,
			 uint32_t ttl_s)
{
	(void)ctx, (void)cr, (void)sec;
	assert_int_equal(l, PXY_KL_CLIENT_RANDOM);
	assert_int_equal(len, 48);
	assert_int_equal(ttl_s, 60);
	n_published++;
}

static void on_wanted(void *ctx, const uint8_t cr[32], enum pxy_key_label l)
{
	(void)ctx, (void)cr;
	assert_int_equal(l, PXY_KL_SERVER_HS);
	n_wanted++;
}

static void test_shared(void **state)
{
	char err[200], why[200], line[300];
	struct pxy_keystore *ks = pxy_keystore_new(NULL, 60, 16, err, sizeof(err));
	struct pxy_keystore_remote r = { .published = on_published, .wanted = on_wanted };
	uint8_t cr[32], sec[48], out[48];
	struct pxy_keystore_stats st;

	(void)state;
	assert_non_null(ks);
	pxy_keystore_set_remote(ks, &r);
	assert_int_equal(pxy_keystore_add_line(ks, line, cr_line(line, 1, 2), pxy_now_ns(), why, sizeof(why)), 0);
	assert_int_equal(n_published, 1);
	memset(cr, 7, sizeof(cr));
	memset(sec, 9, sizeof(sec));
	pxy_keystore_want(ks, cr, PXY_KL_SERVER_HS);
	assert_int_equal(n_wanted, 1);
	/* an answer: stored, not published again; a length no label has is refused */
	assert_int_equal(pxy_keystore_put_secret(ks, cr, PXY_KL_SERVER_HS, sec, 32, pxy_now_ns()), 0);
	assert_int_equal(pxy_keystore_put_secret(ks, cr, PXY_KL_CLIENT_HS, sec, 20, pxy_now_ns()), -1);
	assert_int_equal(pxy_keystore_secret(ks, cr, PXY_KL_SERVER_HS, out), 32);
	assert_memory_equal(out, sec, 32);
	assert_int_equal(n_published, 1);
	pxy_keystore_stats_get(ks, &st);
	assert_int_equal(st.shared, 1);
	pxy_keystore_free(ks);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lines),
		cmocka_unit_test(test_bounds),
		cmocka_unit_test(test_follow),
		cmocka_unit_test(test_push),
		cmocka_unit_test(test_shared),
		cmocka_unit_test(test_source_option),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
