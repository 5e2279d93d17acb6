#include "eng_util.h"

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>

struct pxy_engine *eu_open(const char *prog, const char *name)
{
	struct pxy_engine_params p = { .threads = 1, .max_jobs = 1024 };
	struct pxy_engine *e = NULL;
	char why[512] = "";

	if (!strcmp(name, "xrt") && !getenv("XILINX_XRT")) {
		printf("%s: skipped: the xrt engine needs a card (XILINX_XRT is not set)\n", prog);
		exit(77);
	}
	/* emu: this build's emulation xclbin (or the synthesis-form one); xrt: the card's */
	p.xclbin = getenv(!strcmp(name, "xrt") ? "PXY_XCLBIN" : "PXY_EMU_XCLBIN");
	if (p.xclbin && !*p.xclbin)
		p.xclbin = NULL;
	if (!strcmp(name, "xrt") && !p.xclbin) {
		printf("%s: skipped: the xrt engine needs the card's xclbin in PXY_XCLBIN\n", prog);
		exit(77);
	}
	if (strcmp(name, "emu") && strcmp(name, "xrt"))
		p.xclbin = NULL;
	p.why = why;
	p.why_len = sizeof(why);
	if (pxy_engine_open(name, &p, &e) != PXY_OK) {
		fprintf(stderr, "%s: cannot open engine %s: %s\n", prog, name, why);
		exit(1);
	}
	return e;
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

int eu_run(struct pxy_engine *e, struct pxy_job *jobs, int n)
{
	uint64_t deadline = now_ms() + 60000;
	int got = 0, bad = 0;

	for (int i = 0; i < n; i++) {
		jobs[i].status = 0;
		jobs[i].completed = 0;
		if (pxy_engine_submit(e, &jobs[i]) != PXY_OK) {
			fprintf(stderr, "engine %s refused job %d of %d\n", e->ops->name, i, n);
			exit(1);
		}
	}
	pxy_engine_flush(e);
	while (got < n) {
		struct pollfd pf = { .fd = e->event_fd, .events = POLLIN };
		struct pxy_job *out[EU_BATCH];
		size_t m;

		if (now_ms() > deadline) {
			fprintf(stderr, "engine %s: %d of %d jobs did not come back within 60 s\n", e->ops->name,
				n - got, n);
			exit(1);
		}
		poll(&pf, 1, 100);
		pxy_engine_ack(e);
		pxy_engine_flush(e);
		m = pxy_engine_poll(e, out, EU_BATCH);
		for (size_t i = 0; i < m; i++)
			bad += out[i]->status != PXY_OK;
		got += (int)m;
	}
	return bad;
}

int eu_rsa_priv(EVP_PKEY *pk, struct pxy_rsa_priv *k, uint8_t **store)
{
	static const char *const names[8] = {
		OSSL_PKEY_PARAM_RSA_N,	       OSSL_PKEY_PARAM_RSA_E,	       OSSL_PKEY_PARAM_RSA_D,
		OSSL_PKEY_PARAM_RSA_FACTOR1,   OSSL_PKEY_PARAM_RSA_FACTOR2,   OSSL_PKEY_PARAM_RSA_EXPONENT1,
		OSSL_PKEY_PARAM_RSA_EXPONENT2, OSSL_PKEY_PARAM_RSA_COEFFICIENT1,
	};
	struct pxy_bn *dst[8] = { &k->n, &k->e, &k->d, &k->p, &k->q, &k->dp, &k->dq, &k->qinv };
	uint8_t *buf = calloc(8, PXY_RSA_MAX_BYTES);

	memset(k, 0, sizeof(*k));
	if (!buf)
		return -1;
	k->bits = (uint32_t)EVP_PKEY_get_bits(pk);
	for (int i = 0; i < 8; i++) {
		BIGNUM *bn = NULL;

		if (!EVP_PKEY_get_bn_param(pk, names[i], &bn) || BN_num_bytes(bn) > PXY_RSA_MAX_BYTES) {
			BN_free(bn);
			free(buf);
			return -1;
		}
		dst[i]->p = buf + (size_t)i * PXY_RSA_MAX_BYTES;
		dst[i]->len = (size_t)BN_bn2bin(bn, buf + (size_t)i * PXY_RSA_MAX_BYTES);
		BN_free(bn);
	}
	*store = buf;
	return 0;
}

void eu_stats(const char *prog, const char *what, const struct pxy_engine *e)
{
	printf("%s: %-22s engine=%s launches=%llu batched_jobs=%llu software_jobs=%llu device_failures=%llu\n", prog,
	       what, e->ops->name, (unsigned long long)e->stats.launches, (unsigned long long)e->stats.batched_jobs,
	       (unsigned long long)e->stats.software_jobs, (unsigned long long)e->stats.device_failures);
}

uint8_t *eu_unhex(const char *hex, size_t *n)
{
	size_t l = strlen(hex);
	uint8_t *p = malloc(l / 2 + 1);

	if (!p || l % 2) {
		free(p);
		return NULL;
	}
	for (size_t i = 0; i < l / 2; i++) {
		unsigned v;

		if (sscanf(hex + 2 * i, "%2x", &v) != 1) {
			free(p);
			return NULL;
		}
		p[i] = (uint8_t)v;
	}
	*n = l / 2;
	return p;
}
