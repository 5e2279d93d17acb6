/*
 * libFuzzer target: the whole tap (records, handshake table, parsers,
 * policy, key recovery, Finished, record decryption) on arbitrary
 * interleavings of client and server bytes. The configured identity is the
 * key the seed corpus was recorded with, so mutations reach decryption.
 *
 * Built with PXY_FUZZ_KEYLOG (tap13_fuzz.c) the input starts with the
 * secrets the server forwarded: [u16 big-endian: bit 15 --require-keys,
 * the rest L][L bytes of key log lines], then the frames. The taps follow
 * the key store those lines fill (ECDHE, DHE and TLS 1.3 sessions), so
 * mutations reach the TLS 1.3 record layer and encrypted handshake.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "proxyssl/engine.h"
#include "tls/cert.h"
#include "tls/keystore.h"
#include "tls/tap.h"
#include "util/util.h"

#ifndef PXY_FUZZ_KEYS
#define PXY_FUZZ_KEYS "tests/fuzz/keys"
#endif

static struct pxy_engine *engine;
static struct pxy_identity identity;

static volatile uint8_t sink_acc;

static void sink(void *ctx, enum pxy_dir d, const uint8_t *p, size_t n)
{
	(void)ctx;
	(void)d;
	for (size_t i = 0; i < n; i++)
		sink_acc ^= p[i]; /* touch every byte handed out */
}

static void setup(void)
{
	struct pxy_engine_params ep = { .threads = 0, .max_jobs = 256 };
	struct pxy_rsa_priv priv;
	char err[512];
	const char *dir = getenv("PXY_FUZZ_KEYS") ? getenv("PXY_FUZZ_KEYS") : PXY_FUZZ_KEYS;
	char cert[512], key[512];

	snprintf(cert, sizeof(cert), "%s/fuzz.crt", dir);
	snprintf(key, sizeof(key), "%s/fuzz.key", dir);
	if (pxy_identity_load(&identity, cert, key, err, sizeof(err)) < 0 || pxy_engine_open("cpu", &ep, &engine) < 0 ||
	    pxy_identity_rsa_priv(&identity, &priv) < 0 ||
	    engine->ops->key_load(engine, &priv, &identity.key_id) < 0) {
		fprintf(stderr, "tap_fuzz: cannot set up: %s\n", err);
		abort();
	}
	pxy_rsa_priv_free(&priv);
}

static void drain(void)
{
	struct pxy_job *jobs[32];
	size_t n;

	pxy_engine_ack(engine);
	pxy_engine_flush(engine); /* the synchronous engine runs its jobs here */
	while ((n = pxy_engine_poll(engine, jobs, 32)) > 0) {
		for (size_t i = 0; i < n; i++)
			pxy_tap_job_done(jobs[i]);
		pxy_engine_flush(engine);
	}
}

static void report(struct pxy_tap *t, size_t size)
{
	enum pxy_reason r;
	enum pxy_outcome o = pxy_tap_outcome(t, &r);

	/* PXY_FUZZ_VERBOSE=1: what each connection did (for triaging crash inputs) */
	if (getenv("PXY_FUZZ_VERBOSE"))
		fprintf(stderr, "tap_fuzz: %zu bytes: %s reason=%s resumed=%u decrypted=%llu/%llu\n", size,
			pxy_outcome_name(o), pxy_reason_name(r), pxy_tap_info(t)->resumed,
			(unsigned long long)pxy_tap_info(t)->decrypted[0],
			(unsigned long long)pxy_tap_info(t)->decrypted[1]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pxy_tap_cfg cfg = { .identity = &identity, .max_hs_msg = 32768, .max_pending = 1 << 20 };
	struct pxy_tap_hooks hooks = { .plaintext = sink };
	struct pxy_tap *t;
	size_t i = 0;

	if (!engine)
		setup();
	cfg.engine = engine;
#ifdef PXY_FUZZ_KEYLOG
	{
		char err[128], why[160];
		size_t kl, start;

		if (size < 2)
			return 0;
		kl = PXY_MIN(((size_t)(data[0] & 0x7f) << 8 | data[1]), size - 2);
		cfg.require_keys = data[0] >> 7;
		cfg.key_wait_ms = 10;
		cfg.keys = pxy_keystore_new(NULL, 60, 64, err, sizeof(err));
		if (!cfg.keys)
			return 0;
		start = 2;
		for (size_t j = 2; j <= 2 + kl; j++)
			if (j == 2 + kl || data[j] == '\n') {
				(void)pxy_keystore_add_line(cfg.keys, (const char *)data + start, j - start, pxy_now_ns(), why,
							    sizeof(why));
				start = j + 1;
			}
		data += 2 + kl;
		size -= 2 + kl;
	}
#endif
	/* one cache per input: inputs stay independent of each other */
	cfg.sessions = pxy_sessions_new(8, 3600);
	t = cfg.sessions ? pxy_tap_new(&cfg, &hooks) : NULL;
	if (!t) {
		pxy_sessions_free(cfg.sessions);
		return 0;
	}
	while (i + 3 <= size) {
		uint8_t op = data[i] & 3;
		size_t len = (size_t)data[i + 1] << 8 | data[i + 2];

		if (data[i] & FUZZ_OP_NEXT_CONN) {
			report(t, size);
			pxy_tap_close(t);
			drain();
			t = pxy_tap_new(&cfg, &hooks);
			if (!t)
				break;
		}
		i += 3;
		if (len > size - i)
			len = size - i;
		if (op == FUZZ_OP_C2S || op == FUZZ_OP_S2C)
			pxy_tap_feed(t, (enum pxy_dir)op, data + i, len);
		else
			pxy_tap_eof(t, op == FUZZ_OP_EOF_C2S ? PXY_C2S : PXY_S2C);
		i += len;
		drain();
		/* what the io loop would ask after every read */
		(void)pxy_tap_verdict(t);
		(void)pxy_tap_alert_version(t, PXY_C2S);
	}
	if (t) {
		report(t, size);
		pxy_tap_close(t);
		drain();
	}
	pxy_sessions_free(cfg.sessions);
#ifdef PXY_FUZZ_KEYLOG
	pxy_keystore_free(cfg.keys);
#endif
	return 0;
}
