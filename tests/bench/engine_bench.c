/*
 * Engine throughput: RSA private-key decryptions per second (TLS pre-master,
 * RSA-2048 and RSA-4096) and TLS record opens in GB/s of plaintext (16 KiB
 * records, AES-128-GCM and AES-128-CBC-HMAC-SHA1), for each engine asked
 * for, at each batch size: `batch` jobs are submitted, flushed and all
 * collected before the next `batch` (for device engines it is also the most
 * jobs per kernel launch). Every result is checked, not just counted.
 *
 * One line per measurement, for tests/bench/engine_bench.sh to set beside
 * `openssl speed`:
 *   engine=emu op=rsa2048 batch=8 jobs=123 seconds=2.001 rate=61.47 unit=ops/s
 *
 * With --emu-timing CARD[:SCALE] (the emu engine with the card's compute
 * units and firmware/perf_model.py's timing) the jobs stream instead:
 * --inflight jobs are kept submitted, each launch carrying up to `batch`,
 * and the line adds the model's rate for full launches on every compute
 * unit (model=, divided by SCALE), the share of it reached
 * (of_model=), how busy the compute units were (cu_busy=: run time over
 * units x wall time) and the runs the host emulated too slowly to keep to
 * the model (late_runs=; raise SCALE when there are any).
 */
#include <getopt.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>

#include "device/dev.h"
#include "engine/cpu_crypto.h"
#include "tls/cert.h"
#include "proxyssl/engine.h"
#include "proxyssl/kernel_abi.h"

#define MAX_BATCH 64
#define MAX_INFLIGHT 1024
#define REC_PT 16384

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *m)
{
	fprintf(stderr, "engine_bench: %s\n", m);
	exit(1);
}

/* Collect exactly n jobs. */
static void collect(struct pxy_engine *e, int n)
{
	int got = 0;

	pxy_engine_flush(e);
	while (got < n) {
		struct pollfd p = { .fd = e->event_fd, .events = POLLIN };
		struct pxy_job *out[MAX_BATCH];
		size_t m;

		poll(&p, 1, 100);
		pxy_engine_ack(e);
		pxy_engine_flush(e);
		m = pxy_engine_poll(e, out, MAX_BATCH);
		for (size_t i = 0; i < m; i++)
			if (out[i]->status != PXY_OK)
				die("a job failed");
		got += (int)m;
	}
}

/* The engine under test, at this batch size; exits if it cannot start. */
static struct pxy_engine *open_engine(const char *engine, const struct pxy_engine_params *ep, int batch)
{
	struct pxy_engine_params p = *ep;
	struct pxy_engine *e = NULL;
	char why[256] = "";

	p.batch = (unsigned)batch;
	p.why = why;
	p.why_len = sizeof(why);
	if (pxy_engine_open(engine, &p, &e) != PXY_OK) {
		fprintf(stderr, "engine_bench: %s: %s\n", engine, why);
		exit(1);
	}
	return e;
}

/* ---- streaming, for the card timing ---------------------------------------------------------- */

static struct pxy_dev_emu_timing timing; /* --emu-timing: the table (timing.freq_hz == 0: none) */
static int inflight = 512;
static struct pxy_engine_cu_stats cu_at_stop[2]; /* the units' counters when the measurement ended */

typedef void (*job_init)(struct pxy_job *j, int i, void *ctx);
typedef void (*job_check)(const struct pxy_job *j, int i, void *ctx);

/* Keep `inflight` jobs submitted for `secs`, every result checked; the number done by then (the jobs
 * still out are collected and checked, outside the measurement). */
static long stream(struct pxy_engine *e, struct pxy_job *jobs, job_init init, job_check check, void *ctx, double secs,
		   double *took)
{
	double t0 = now_s();
	long done = 0, measured = 0;
	int outstanding = 0, stop = 0;

	for (int i = 0; i < inflight; i++) {
		init(&jobs[i], i, ctx);
		if (pxy_engine_submit(e, &jobs[i]) != PXY_OK)
			die("submit");
		outstanding++;
	}
	pxy_engine_flush(e);
	while (outstanding) {
		struct pollfd p = { .fd = e->event_fd, .events = POLLIN };
		struct pxy_job *out[64];
		size_t m;

		poll(&p, 1, 100);
		pxy_engine_ack(e);
		m = pxy_engine_poll(e, out, 64);
		if (!stop && now_s() - t0 >= secs) {
			stop = 1;
			*took = now_s() - t0;
			measured = done;
			memcpy(cu_at_stop, e->stats.cu, sizeof(cu_at_stop));
		}
		for (size_t k = 0; k < m; k++) {
			int i = (int)(out[k] - jobs);

			if (out[k]->status != PXY_OK)
				die("a job failed");
			check(out[k], i, ctx);
			done++;
			outstanding--;
			if (!stop) {
				init(out[k], i, ctx);
				if (pxy_engine_submit(e, out[k]) != PXY_OK)
					die("submit");
				outstanding++;
			}
		}
		pxy_engine_flush(e);
	}
	return measured;
}

/* The card-timing fields of a result line: the model's rate, the share reached, busy, late runs. */
static void print_timing(const struct pxy_engine *e, int rsa, double model_rate, double rate, double secs)
{
	const struct pxy_engine_cu_stats *c = &cu_at_stop[rsa ? 0 : 1];

	(void)e;
	printf(" inflight=%d model=%.4g of_model=%.3f cu_busy=%.3f late_runs=%llu runs=%llu scale=%g", inflight,
	       model_rate, model_rate > 0 ? rate / model_rate : 0.0,
	       c->cus ? (double)c->busy_ns / 1e9 / ((double)c->cus * secs) : 0.0, (unsigned long long)c->late_runs,
	       (unsigned long long)c->runs, timing.scale);
}

/* ---- RSA --------------------------------------------------------------------------- */

struct rsa_ctx {
	uint32_t key_id;
	const uint8_t *ct, *pms;
	size_t ctlen;
};

static void rsa_init(struct pxy_job *j, int i, void *ctx)
{
	const struct rsa_ctx *c = ctx;

	(void)i;
	memset(j, 0, sizeof(*j));
	j->type = PXY_JOB_RSA_DECRYPT;
	j->u.rsa.key_id = c->key_id;
	j->u.rsa.client_version = 0x0303;
	j->u.rsa.in_len = (uint16_t)c->ctlen;
	memcpy(j->u.rsa.in, c->ct, c->ctlen);
}

static void rsa_check(const struct pxy_job *j, int i, void *ctx)
{
	(void)i;
	if (memcmp(j->u.rsa.pms, ((const struct rsa_ctx *)ctx)->pms, PXY_PMS_LEN))
		die("wrong pre-master secret");
}

static void bench_rsa(const char *engine, const struct pxy_engine_params *ep, int bits, int batch, double secs)
{
	EVP_PKEY *pk = EVP_RSA_gen((unsigned)bits);
	EVP_PKEY_CTX *c = EVP_PKEY_CTX_new(pk, NULL);
	struct pxy_engine *e;
	struct pxy_rsa_priv priv;
	static struct pxy_job jobs[MAX_BATCH];
	uint8_t pms[PXY_PMS_LEN], ct[PXY_RSA_MAX_BYTES];
	size_t ctlen = sizeof(ct);
	uint32_t key_id;
	long n = 0;
	double t0, t;

	if (!pk || !c)
		die("RSA key generation");
	RAND_bytes(pms, sizeof(pms));
	pms[0] = 3;
	pms[1] = 3;
	if (EVP_PKEY_encrypt_init(c) <= 0 || EVP_PKEY_CTX_set_rsa_padding(c, RSA_PKCS1_PADDING) <= 0 ||
	    EVP_PKEY_encrypt(c, ct, &ctlen, pms, sizeof(pms)) <= 0)
		die("RSA encryption");
	e = open_engine(engine, ep, batch);
	if (pxy_rsa_priv_from_pkey(pk, &priv) != PXY_OK)
		die("RSA key parameters");
	if (e->ops->key_load(e, &priv, &key_id) != PXY_OK)
		die("key load");
	pxy_rsa_priv_free(&priv);
	if (timing.freq_hz > 0) {
		static struct pxy_job sj[MAX_INFLIGHT];
		struct rsa_ctx rc = { key_id, ct, pms, ctlen };
		double took, g = timing.rsa_group_cycles[(bits - 2048) / 1024] / timing.freq_hz * timing.scale;
		long done = stream(e, sj, rsa_init, rsa_check, &rc, secs, &took);

		printf("engine=%s-%s op=rsa%d batch=%d jobs=%ld seconds=%.3f rate=%.2f unit=ops/s software_jobs=%llu",
		       engine, timing.platform, bits, batch, done, took, (double)done / took,
		       (unsigned long long)e->stats.software_jobs);
		/* the model: every unit busy with full groups */
		print_timing(e, 1, timing.rsa_cus * timing.rsa_group / g, (double)done / took, took);
		printf("\n");
		fflush(stdout);
		pxy_engine_close(e);
		EVP_PKEY_CTX_free(c);
		EVP_PKEY_free(pk);
		return;
	}
	t0 = now_s();
	do {
		for (int i = 0; i < batch; i++) {
			memset(&jobs[i], 0, sizeof(jobs[i]));
			jobs[i].type = PXY_JOB_RSA_DECRYPT;
			jobs[i].u.rsa.key_id = key_id;
			jobs[i].u.rsa.client_version = 0x0303;
			jobs[i].u.rsa.in_len = (uint16_t)ctlen;
			memcpy(jobs[i].u.rsa.in, ct, ctlen);
			if (pxy_engine_submit(e, &jobs[i]) != PXY_OK)
				die("submit");
		}
		collect(e, batch);
		for (int i = 0; i < batch; i++)
			if (memcmp(jobs[i].u.rsa.pms, pms, sizeof(pms)))
				die("wrong pre-master secret");
		n += batch;
		t = now_s() - t0;
	} while (t < secs);
	printf("engine=%s op=rsa%d batch=%d jobs=%ld seconds=%.3f rate=%.2f unit=ops/s software_jobs=%llu\n", engine,
	       bits, batch, n, t, (double)n / t, (unsigned long long)e->stats.software_jobs);
	fflush(stdout);
	pxy_engine_close(e);
	EVP_PKEY_CTX_free(c);
	EVP_PKEY_free(pk);
}

/* ---- records ------------------------------------------------------------------------- */

struct rec_ctx {
	struct pxy_traffic_keys *k;
	uint8_t (*recs)[PXY_TLS_MAX_RECORD];
	const uint8_t *pristine, *pt;
	size_t rec_len;
};

static void rec_init(struct pxy_job *j, int i, void *ctx)
{
	const struct rec_ctx *c = ctx;

	memset(j, 0, sizeof(*j));
	memcpy(c->recs[i], c->pristine, c->rec_len);
	j->type = PXY_JOB_RECORD_OPEN;
	j->u.rec.keys = c->k;
	j->u.rec.seq = 7;
	j->u.rec.rec = c->recs[i];
	j->u.rec.rec_len = c->rec_len;
	j->u.rec.rec_cap = sizeof(c->recs[i]);
}

static void rec_check(const struct pxy_job *j, int i, void *ctx)
{
	const struct rec_ctx *c = ctx;

	if (!j->u.rec.ok || j->u.rec.pt_len != REC_PT || memcmp(c->recs[i] + j->u.rec.pt_off, c->pt, REC_PT))
		die("wrong plaintext");
}

static void bench_rec(const char *engine, const struct pxy_engine_params *ep, int gcm, int batch, double secs)
{
	struct pxy_engine *e;
	struct pxy_traffic_keys k;
	struct pxy_cpu_ctx *cc = pxy_cpu_ctx_new();
	struct pxy_rec_job seal;
	static struct pxy_job jobs[MAX_BATCH];
	static uint8_t recs[MAX_BATCH][PXY_TLS_MAX_RECORD], pristine[PXY_TLS_MAX_RECORD], pt[REC_PT];
	size_t rec_len;
	long n = 0;
	double t0, t;

	memset(&k, 0, sizeof(k));
	k.bulk = gcm ? PXY_BULK_AES_128_GCM : PXY_BULK_AES_128_CBC;
	k.mac = gcm ? PXY_MAC_AEAD : PXY_MAC_SHA1;
	k.key_len = 16;
	k.mac_key_len = gcm ? 0 : 20;
	k.mac_len = gcm ? 16 : 20;
	k.iv_len = gcm ? 4 : 0;
	k.version = 0x0303;
	RAND_bytes(k.key, sizeof(k.key));
	RAND_bytes(k.mac_key, sizeof(k.mac_key));
	RAND_bytes(k.iv, sizeof(k.iv));
	RAND_bytes(pt, sizeof(pt));
	/* one record, sealed by OpenSSL's code (the cpu engine's) */
	pristine[0] = 23;
	pristine[1] = 3;
	pristine[2] = 3;
	pristine[3] = REC_PT >> 8;
	pristine[4] = REC_PT & 0xff;
	memcpy(pristine + 5, pt, REC_PT);
	memset(&seal, 0, sizeof(seal));
	seal.keys = &k;
	seal.seq = 7;
	seal.rec = pristine;
	seal.rec_len = 5 + REC_PT;
	seal.rec_cap = sizeof(pristine);
	RAND_bytes(seal.iv, sizeof(seal.iv));
	if (!cc || pxy_cpu_record_seal(cc, &seal) != PXY_OK)
		die("sealing the test record");
	rec_len = seal.rec_len;

	e = open_engine(engine, ep, batch);
	if (timing.freq_hz > 0) {
		static struct pxy_job sj[MAX_INFLIGHT];
		static uint8_t srecs[MAX_INFLIGHT][PXY_TLS_MAX_RECORD];
		struct rec_ctx rc = { &k, srecs, pristine, pt, rec_len };
		double took, per_byte = gcm ? timing.rec_gcm_per_byte : timing.rec_cbc_per_byte;
		/* the model: full launches of `batch` records on every unit, within the PCIe link */
		double launch = (timing.rec_fixed + batch * (timing.rec_per_record + per_byte * (double)rec_len)) /
				timing.freq_hz * timing.scale;
		double model = timing.rec_cus * batch * (double)REC_PT / launch / 1e9;
		double link = timing.pcie_Bps / timing.scale * REC_PT / (double)(rec_len + sizeof(struct pxy_k_rec_desc)) / 1e9;
		long done = stream(e, sj, rec_init, rec_check, &rc, secs, &took);

		printf("engine=%s-%s op=%s batch=%d jobs=%ld seconds=%.3f rate=%.4f unit=GB/s software_jobs=%llu", engine,
		       timing.platform, gcm ? "aes128gcm" : "aes128cbc-sha1", batch, done, took,
		       (double)done * REC_PT / took / 1e9, (unsigned long long)e->stats.software_jobs);
		print_timing(e, 0, model < link ? model : link, (double)done * REC_PT / took / 1e9, took);
		printf("\n");
		fflush(stdout);
		pxy_engine_close(e);
		pxy_cpu_ctx_free(cc);
		return;
	}
	t0 = now_s();
	do {
		for (int i = 0; i < batch; i++) {
			memset(&jobs[i], 0, sizeof(jobs[i]));
			memcpy(recs[i], pristine, rec_len);
			jobs[i].type = PXY_JOB_RECORD_OPEN;
			jobs[i].u.rec.keys = &k;
			jobs[i].u.rec.seq = 7;
			jobs[i].u.rec.rec = recs[i];
			jobs[i].u.rec.rec_len = rec_len;
			jobs[i].u.rec.rec_cap = sizeof(recs[i]);
			if (pxy_engine_submit(e, &jobs[i]) != PXY_OK)
				die("submit");
		}
		collect(e, batch);
		for (int i = 0; i < batch; i++)
			if (!jobs[i].u.rec.ok || jobs[i].u.rec.pt_len != REC_PT ||
			    memcmp(recs[i] + jobs[i].u.rec.pt_off, pt, REC_PT))
				die("wrong plaintext");
		n += batch;
		t = now_s() - t0;
	} while (t < secs);
	printf("engine=%s op=%s batch=%d jobs=%ld seconds=%.3f rate=%.4f unit=GB/s software_jobs=%llu\n", engine,
	       gcm ? "aes128gcm" : "aes128cbc-sha1", batch, n, t, (double)n * REC_PT / t / 1e9,
	       (unsigned long long)e->stats.software_jobs);
	fflush(stdout);
	pxy_engine_close(e);
	pxy_cpu_ctx_free(cc);
}

int main(int argc, char **argv)
{
	struct pxy_engine_params ep = { .threads = 1, .max_jobs = 4096 };
	char engines[128] = "cpu,emu", ops[128] = "rsa2048,rsa4096,gcm,cbc", batches[64] = "1,8,64";
	double secs = 2;
	int ch;
	static const struct option lo[] = { { "engines", required_argument, NULL, 'e' },
					    { "ops", required_argument, NULL, 'o' },
					    { "batches", required_argument, NULL, 'b' },
					    { "seconds", required_argument, NULL, 's' },
					    { "emu-timing", required_argument, NULL, 't' },
					    { "inflight", required_argument, NULL, 'i' },
					    { "threads", required_argument, NULL, 'T' },
					    { "help", no_argument, NULL, 'h' },
					    { NULL, 0, NULL, 0 } };

	while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (ch) {
		case 'e': snprintf(engines, sizeof(engines), "%s", optarg); break;
		case 'o': snprintf(ops, sizeof(ops), "%s", optarg); break;
		case 'b': snprintf(batches, sizeof(batches), "%s", optarg); break;
		case 's': secs = atof(optarg); break;
		case 't': {
			char err[512];

			if (pxy_dev_emu_timing_load(optarg, &timing, err, sizeof(err)) < 0)
				die(err);
			ep.emu_timing = optarg;
			break;
		}
		case 'i':
			inflight = atoi(optarg);
			if (inflight < 1 || inflight > MAX_INFLIGHT)
				die("--inflight: 1..1024");
			break;
		case 'T': ep.threads = (unsigned)atoi(optarg); break;
		default:
			printf("usage: engine_bench [--engines cpu,emu] [--ops rsa2048,rsa4096,gcm,cbc] [--batches 1,8,64] "
			       "[--seconds 2] [--emu-timing CARD[:SCALE] [--inflight N]] [--threads N]\n");
			return ch == 'h' ? 0 : 2;
		}
	}
	for (char *es = engines, *eng; (eng = strtok_r(es, ",", &es));) {
		char opl[128];

		snprintf(opl, sizeof(opl), "%s", ops);
		for (char *os = opl, *op; (op = strtok_r(os, ",", &os));) {
			char bl[64];

			snprintf(bl, sizeof(bl), "%s", batches);
			for (char *bs = bl, *b; (b = strtok_r(bs, ",", &bs));) {
				int batch = atoi(b);

				if (batch < 1 || batch > (timing.freq_hz > 0 ? 128 : MAX_BATCH))
					die("batch sizes are 1..64 (1..128 with --emu-timing)");
				if (!strcmp(op, "rsa2048"))
					bench_rsa(eng, &ep, 2048, batch, secs);
				else if (!strcmp(op, "rsa4096"))
					bench_rsa(eng, &ep, 4096, batch, secs);
				else if (!strcmp(op, "gcm"))
					bench_rec(eng, &ep, 1, batch, secs);
				else if (!strcmp(op, "cbc"))
					bench_rec(eng, &ep, 0, batch, secs);
				else
					die("unknown op (rsa2048, rsa4096, gcm, cbc)");
			}
		}
	}
	return 0;
}
