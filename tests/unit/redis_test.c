/* The shared session store's sealed values, key file and URL parsing (no Redis needed). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "io/redis.h"

static void sample(struct pxy_session *s)
{
	memset(s, 0, sizeof(*s));
	for (int i = 0; i < 48; i++)
		s->ms[i] = (uint8_t)(0xA0 + i);
	s->version = 0x0303;
	s->suite = 0x009c;
	s->ems = 1;
	s->has_client = 1;
	strcpy(s->client.serial, "1A2B3C");
	strcpy(s->client.subject, "/CN=alice/O=Example");
	s->client.sha256[0] = 0x42;
}

static void test_seal_open(void **state)
{
	uint8_t k[32], k2[32], key[32], key2[32], v[PXY_REDIS_VALUE_MAX], v2[PXY_REDIS_VALUE_MAX];
	struct pxy_session s, out;
	size_t n, n2;

	(void)state;
	memset(k, 7, sizeof(k));
	memset(k2, 8, sizeof(k2));
	memset(key, 1, sizeof(key));
	memset(key2, 2, sizeof(key2));
	sample(&s);
	n = pxy_redis_seal(k, key, &s, v, sizeof(v));
	assert_true(n > 48);
	/* the master secret is not in the value */
	for (size_t i = 0; i + 48 <= n; i++)
		assert_true(memcmp(v + i, s.ms, 48) != 0);
	assert_int_equal(pxy_redis_open(k, key, v, n, &out), 0);
	assert_memory_equal(out.ms, s.ms, 48);
	assert_int_equal(out.version, s.version);
	assert_int_equal(out.suite, s.suite);
	assert_int_equal(out.ems, 1);
	assert_int_equal(out.has_client, 1);
	assert_string_equal(out.client.serial, "1A2B3C");
	assert_string_equal(out.client.subject, "/CN=alice/O=Example");
	assert_int_equal(out.client.sha256[0], 0x42);
	/* fresh nonce each time */
	n2 = pxy_redis_seal(k, key, &s, v2, sizeof(v2));
	assert_int_equal(n, n2);
	assert_true(memcmp(v, v2, n) != 0);
	/* another node key, another entry key, any bit flipped, truncated: refused */
	assert_int_equal(pxy_redis_open(k2, key, v, n, &out), -1);
	assert_int_equal(pxy_redis_open(k, key2, v, n, &out), -1);
	for (size_t i = 0; i < n; i++) {
		v[i] ^= 0x10;
		assert_int_equal(pxy_redis_open(k, key, v, n, &out), -1);
		v[i] ^= 0x10;
	}
	for (size_t l = 0; l < n; l++)
		assert_int_equal(pxy_redis_open(k, key, v, l, &out), -1);
	assert_int_equal(pxy_redis_open(k, key, v, n, &out), 0);
	/* too small a buffer: nothing */
	assert_int_equal(pxy_redis_seal(k, key, &s, v, 40), 0);
}

static void test_key_file(void **state)
{
	char path[] = "/tmp/pxy-redis-key-XXXXXX", err[256];
	uint8_t k[32];
	int fd = mkstemp(path);
	FILE *f;

	(void)state;
	assert_true(fd >= 0);
	f = fdopen(fd, "w");
	fprintf(f, "00112233445566778899aabbccddeeff\n00112233445566778899AABBCCDDEEFF\n");
	fclose(f);
	assert_int_equal(pxy_redis_key_load(path, k, err, sizeof(err)), 0);
	assert_int_equal(k[0], 0x00);
	assert_int_equal(k[5], 0x55);
	assert_int_equal(k[31], 0xff);
	f = fopen(path, "w");
	fprintf(f, "0011\n");
	fclose(f);
	assert_int_equal(pxy_redis_key_load(path, k, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "expected 64 hex digits"));
	f = fopen(path, "w");
	fprintf(f, "zz112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n");
	fclose(f);
	assert_int_equal(pxy_redis_key_load(path, k, err, sizeof(err)), -1);
	unlink(path);
	assert_int_equal(pxy_redis_key_load(path, k, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "No such file"));
}

static void test_urls(void **state)
{
	uint8_t k[32] = { 0 };
	struct pxy_redis *r;
	char err[256];
	static const char *bad[] = { "http://x", "redis://", "redis://:6379", "redis://h:0", "redis://h:70000",
				     "redis://h:12x", "redis://h/16", "redis://h/x", "redis://h:1/" };

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = 0;
		assert_int_equal(pxy_redis_new(bad[i], k, &r, err, sizeof(err)), -1);
		assert_null(r);
		assert_true(err[0] != 0);
	}
	/* nothing listens on port 1: the thread starts anyway (the local cache works alone) */
	assert_int_equal(pxy_redis_new("redis://127.0.0.1:1/3", k, &r, err, sizeof(err)), 0);
	assert_non_null(r);
	pxy_redis_free(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_seal_open),
		cmocka_unit_test(test_key_file),
		cmocka_unit_test(test_urls),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
