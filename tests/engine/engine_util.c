#include "engine_util.h"

#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>

#include "util/util.h"

#define RUN_TIMEOUT_NS (60ull * 1000000000ull)

const char *et_engine_name;

static int open_engine(const char *name, struct pxy_engine **e, char *why, size_t why_len)
{
	/* emu: this build's emulation xclbin (or the engine's default); xrt: the card's */
	const char *xclbin = getenv(!strcmp(name, "xrt") ? "PXY_XCLBIN" : "PXY_EMU_XCLBIN");
	const char *threads = getenv("PXY_TEST_THREADS");
	struct pxy_engine_params p = {
		/* workers for the cpu engine and for the device engines' software side;
		 * PXY_TEST_THREADS=0: the synchronous forms (emu: kernels run inline) */
		.threads = threads && *threads ? (unsigned)atoi(threads) : 2,
		.max_jobs = 4096,
		.why = why,
		.why_len = why_len,
	};

	if ((!strcmp(name, "emu") || !strcmp(name, "xrt")) && xclbin && *xclbin)
		p.xclbin = xclbin;
	/* emu with a card's compute units and timing (its own emulation xclbin) */
	p.emu_timing = getenv("PXY_TEST_EMU_TIMING");
	why[0] = '\0';
	return pxy_engine_open(name, &p, e);
}

int et_main_engine(int argc, char **argv, const char *prog)
{
	struct pxy_engine *e = NULL;
	char why[512];
	int r;

	if (argc != 2 || !pxy_engine_find(argv[1])) {
		fprintf(stderr, "usage: %s ENGINE (one of: %s)\n", prog, pxy_engine_names());
		return 1;
	}
	et_engine_name = argv[1];
	r = open_engine(et_engine_name, &e, why, sizeof(why));
	if (r != PXY_OK) {
		fprintf(stderr, "%s: the %s engine does not open: %s (%s)\n", prog, et_engine_name, why, pxy_err_str(r));
		/* a card is optional; the cpu and emu engines must always work */
		return !strcmp(et_engine_name, "xrt") ? 77 : 1;
	}
	pxy_engine_close(e);
	printf("%s: engine %s\n", prog, et_engine_name);
	return 0;
}

int et_is_device(void)
{
	return !strcmp(et_engine_name, "emu") || !strcmp(et_engine_name, "xrt");
}

struct pxy_engine *et_open(void)
{
	struct pxy_engine *e = NULL;
	char why[512];
	int r = open_engine(et_engine_name, &e, why, sizeof(why));

	if (r != PXY_OK)
		fail_msg("engine %s: %s (%s)", et_engine_name, why, pxy_err_str(r));
	return e;
}

void et_run(struct pxy_engine *e, struct pxy_job *jobs, size_t n)
{
	uint8_t seen[ET_BATCH] = { 0 };
	uint64_t deadline = pxy_now_ns() + RUN_TIMEOUT_NS;
	size_t got = 0;

	assert_true(n <= ET_BATCH);
	for (size_t i = 0; i < n; i++) {
		int r;

		jobs[i].owner = jobs;
		jobs[i].tag = i;
		r = pxy_engine_submit(e, &jobs[i]);
		if (r != PXY_OK)
			fail_msg("submit of job %zu/%zu (type %u): %s", i, n, jobs[i].type, pxy_err_str(r));
	}
	pxy_engine_flush(e);
	while (got < n) {
		struct pollfd pfd = { .fd = e->event_fd, .events = POLLIN };
		struct pxy_job *out[ET_BATCH];
		size_t m;

		if (pxy_now_ns() > deadline)
			fail_msg("engine %s: %zu of %zu jobs did not come back within a minute", et_engine_name, n - got,
				 n);
		if (!(e->flags & PXY_ENGINE_F_SYNC)) /* a synchronous engine signals nothing */
			poll(&pfd, 1, 20);
		pxy_engine_ack(e);
		pxy_engine_flush(e);
		m = pxy_engine_poll(e, out, ET_BATCH);
		for (size_t i = 0; i < m; i++) {
			struct pxy_job *j = out[i];

			if (j->owner != jobs || j->tag >= n || seen[j->tag])
				fail_msg("poll returned a job that is not in flight (tag %llu)",
					 (unsigned long long)j->tag);
			seen[j->tag] = 1;
			if (__atomic_load_n(&j->completed, __ATOMIC_ACQUIRE) != 1)
				fail_msg("job %llu came back without `completed`", (unsigned long long)j->tag);
			if (j->status != PXY_OK)
				fail_msg("job %llu (type %u) failed: %s", (unsigned long long)j->tag, j->type,
					 pxy_err_str(j->status));
		}
		got += m;
	}
	assert_int_equal(e->stats.inflight, 0);
}

void et_delta(const struct pxy_engine_stats *before, const struct pxy_engine *e, struct et_delta *d)
{
	const struct pxy_engine_stats *s = &e->stats;

	d->launches = s->launches - before->launches;
	d->device = s->batched_jobs - before->batched_jobs;
	d->software = s->software_jobs - before->software_jobs;
	d->failures = s->device_failures - before->device_failures;
	d->faults = s->faults - before->faults;
	d->errors = s->errors - before->errors;
}

void et_print_delta(const char *what, size_t jobs, const struct et_delta *d)
{
	printf("  %-28s engine %s: jobs %zu: device %llu in %llu launches, software %llu, device failures %llu, "
	       "faults %llu, errors %llu\n",
	       what, et_engine_name, jobs, (unsigned long long)d->device, (unsigned long long)d->launches,
	       (unsigned long long)d->software, (unsigned long long)d->failures, (unsigned long long)d->faults,
	       (unsigned long long)d->errors);
	fflush(stdout);
}

void et_check_device(const char *what, const struct et_delta *d, uint64_t want_software)
{
	if (!et_is_device())
		return;
	if (d->device == 0)
		fail_msg("%s: no job ran on the kernels", what);
	/* failover, withheld RSA results and bad descriptors would hide a kernel's wrong answer */
	if (d->failures || d->faults || d->errors)
		fail_msg("%s: device failures %llu, faults %llu, errors %llu (all must be 0)", what,
			 (unsigned long long)d->failures, (unsigned long long)d->faults, (unsigned long long)d->errors);
	if (d->software != want_software)
		fail_msg("%s: %llu jobs ran in software, expected %llu (shapes the kernels do not take)", what,
			 (unsigned long long)d->software, (unsigned long long)want_software);
}

/* ---- random ----------------------------------------------------------------------- */

static uint64_t rng_state;

uint64_t et_seed(void)
{
	static uint64_t seed;
	const char *s = getenv("PXY_TEST_SEED");

	if (seed)
		return seed;
	if (s && *s) {
		seed = strtoull(s, NULL, 0);
	} else {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		seed = (uint64_t)ts.tv_sec * 1000003u ^ (uint64_t)ts.tv_nsec;
	}
	if (!seed)
		seed = 1;
	rng_state = seed;
	printf("seed %llu (set PXY_TEST_SEED=%llu to repeat this run)\n", (unsigned long long)seed,
	       (unsigned long long)seed);
	fflush(stdout);
	return seed;
}

uint64_t et_rand(void)
{
	if (!rng_state)
		et_seed();
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 2685821657736338717ull;
}

uint32_t et_below(uint32_t n)
{
	return n ? (uint32_t)((et_rand() >> 32) % n) : 0;
}

void et_rand_bytes(uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i += 8) {
		uint64_t v = et_rand();

		for (size_t j = 0; j < 8 && i + j < n; j++)
			p[i + j] = (uint8_t)(v >> (8 * j));
	}
}

/* ---- data ------------------------------------------------------------------------- */

static int nibble(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

uint8_t *et_unhex(const char *hex, size_t *len)
{
	size_t n = strlen(hex);
	uint8_t *b = malloc(n / 2 + 1);

	assert_non_null(b);
	if (n % 2)
		fail_msg("odd-length hex string: %.40s", hex);
	for (size_t i = 0; i < n / 2; i++) {
		int hi = nibble(hex[2 * i]), lo = nibble(hex[2 * i + 1]);

		if (hi < 0 || lo < 0)
			fail_msg("not hex: %.40s", hex);
		b[i] = (uint8_t)(hi << 4 | lo);
	}
	*len = n / 2;
	return b;
}
