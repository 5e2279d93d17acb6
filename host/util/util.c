#include "util/util.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/ct.h"

uint64_t pxy_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t pxy_unix_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000ull + (uint64_t)ts.tv_nsec / 1000;
}

uint64_t pxy_wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000ull + (uint64_t)ts.tv_nsec / 1000000ull;
}

void pxy_deadline_ms(struct timespec *ts, unsigned ms)
{
	clock_gettime(CLOCK_REALTIME, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

void pxy_hex(char *out, const uint8_t *p, size_t n)
{
	static const char d[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = d[p[i] >> 4];
		out[2 * i + 1] = d[p[i] & 15];
	}
	out[2 * n] = '\0';
}

void pxy_hex_colon(char *out, const uint8_t *p, size_t n)
{
	static const char d[] = "0123456789ABCDEF";
	if (n == 0) {
		out[0] = '\0';
		return;
	}
	for (size_t i = 0; i < n; i++) {
		out[3 * i] = d[p[i] >> 4];
		out[3 * i + 1] = d[p[i] & 15];
		out[3 * i + 2] = ':';
	}
	out[3 * n - 1] = '\0';
}

int pxy_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (!s || !*s || !isdigit((unsigned char)*s))
		return -1;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end || v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

int pxy_parse_size(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	char buf[32];
	size_t n;
	uint64_t mul = 1, v;

	if (!s)
		return -1;
	n = strlen(s);
	if (n == 0 || n >= sizeof(buf))
		return -1;
	memcpy(buf, s, n + 1);
	switch (toupper((unsigned char)buf[n - 1])) {
	case 'K': mul = 1024ull; break;
	case 'M': mul = 1024ull * 1024; break;
	case 'G': mul = 1024ull * 1024 * 1024; break;
	default: break;
	}
	if (mul != 1)
		buf[n - 1] = '\0';
	if (pxy_parse_u64(buf, 0, UINT64_MAX / mul, &v))
		return -1;
	v *= mul;
	if (v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

/* A volatile function pointer keeps the compiler from eliding the memset. */
static void *(*const volatile pxy_memset_v)(void *, int, size_t) = memset;

void pxy_wipe(void *p, size_t n)
{
	if (p && n)
		pxy_memset_v(p, 0, n);
}
