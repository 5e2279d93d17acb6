/*
 * The device engines `xrt` and `emu`: the HLS kernels of kernels-hls/ driven
 * through the device layer (host/device/dev.h), on a card through XRT or on
 * the in-process emulation device. The code path is the same; only the
 * provider differs.
 *
 * Batching. Each kernel has two launch slots (double buffering), each with
 * its own buffer objects, allocated once and reused; the RSA key table is one
 * device-resident buffer shared by the RSA slots, written once per key.
 * Submitted jobs wait in the kernel's queue; a slot is launched
 *   - at once when the queue holds a full batch (params.batch, at most the
 *     kernel's limit: 64 RSA jobs, 128 records) and a slot is free, and
 *   - at flush(), which the io_uring loop calls once per turn after handling
 *     its completions, with whatever is queued (a partial batch), and
 *   - when a running slot finishes and work is queued.
 * So under load, batches fill while the other slot runs; when idle, a job
 * waits at most one loop turn for its launch.
 *
 * Completion. The provider calls back from its own thread when a run ends;
 * the callback only queues the slot and writes the eventfd. poll(), on the
 * loop thread, syncs the results back, checks that every result carries
 * PXY_K_DONE, copies plaintext/secrets into the jobs and relaunches the slot.
 *
 * Inline. With threads = 0 (a machine with no core to spare) the emulation
 * device runs without compute-unit threads: a launch executes the kernel
 * inside run_start(), on the caller's thread, and the engine is synchronous
 * (PXY_ENGINE_F_SYNC): launches wait for flush(), its jobs are done when
 * flush() returns and nothing is signalled; its software fallback is the
 * synchronous cpu engine (which flush() runs too).
 * A run that took longer than run_timeout_ms is a card failure there too.
 *
 * Arithmetic. The emulation device lends the kernels the host's arithmetic
 * (engine/emu_host.c, on OpenSSL) unless PXY_EMU_PURE=1: the kernels' own
 * control flow runs (descriptor checks, layouts, constant-time padding and
 * MAC checks, Garner, the fault check, unpadding) with the heavy primitives
 * at the host's speed. A library in the synthesis form takes none of it.
 * Buffers share host and device memory, so a sync copies nothing, as DMA to
 * a card costs the host no copy (PXY_EMU_SEPARATE_MEMORY=1 keeps them apart,
 * copied on sync, so that a missing sync shows as wrong results).
 *
 * Failover. Inside each device engine runs a `cpu` engine signalling the same
 * eventfd. It takes the jobs the kernels do not implement (other key sizes,
 * IV lengths, oversized inputs), and every job once the card has failed: a
 * run ending in any state but COMPLETED, a run exceeding run_timeout_ms, or a
 * result the kernel never wrote. The failed batch is run again in software;
 * connections see nothing but a log line and the device_failures counter.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "device/dev.h"
#include "engine/cpu_crypto.h"
#include "engine/emu_host.h"
#include "engine/engines.h"
#include "engine/kkey.h"
#include "proxyssl/kernel_abi.h"
#include "util/ct.h"
#include "util/log.h"
#include "util/util.h"

#define SLOTS 2
#define DEFAULT_TIMEOUT_MS 10000u
#define CLOSE_WAIT_MS 5000u /* how long close() waits for runs still on the device */

enum { K_RSA = 0, K_REC = 1, K_N = 2 };

/* buffer objects per slot */
enum { B_JOBS = 0, B_IN = 1, B_OUT = 2, B_RES = 3, B_N = 4 };

struct fpga_engine;

struct slot {
	struct fpga_engine *e;
	int kind;
	void *run;
	void *bo[B_N];
	uint8_t *map[B_N];
	struct pxy_job *jobs[PXY_K_REC_MAX_BATCH];
	unsigned n;
	int busy;      /* launched, not yet collected (loop thread) */
	int abandoned; /* timed out: its jobs were rerun in software; ignore its end */
	uint64_t start_ns;
	int end_state; /* written by the callback before queueing the slot */
	int out_lent;  /* its outputs hold plaintext lent to the caller (pt_ext): wiped at the next flush */
	uint32_t out_len[PXY_K_REC_MAX_BATCH]; /* of each record, for that wipe */
	struct slot *done_next;
};

/* one compute unit: its kernel handle, its buffers (in the banks it is wired to) */
struct cu {
	void *k;
	void *key_bo; /* RSA: this unit's copy of the key table */
	struct pxy_k_rsa_key *key_map;
	struct slot slot[SLOTS];
};

struct kern {
	struct cu *cu;
	int ncu;
	struct pxy_job *q_head, *q_tail;
	unsigned qn, batch;
};

struct fpga_engine {
	struct pxy_engine base;
	const struct pxy_dev_provider *dp;
	void *dev;
	uint8_t uuid[16];
	struct kern kr[K_N];
	struct {
		uint32_t sw_id;
		int on_card;
		int used;
	} keys[PXY_K_MAX_KEYS];
	unsigned nkeys;
	struct pxy_engine *sw;
	pthread_mutex_t mu;
	struct slot *done_head; /* ended runs, from the callbacks (under mu) */
	struct pxy_job *out_head, *out_tail;
	unsigned inflight, max_jobs, timeout_ms;
	int failed;
	int sync;             /* runs execute inline: nothing is signalled */
	int host_arith;       /* emulation: the kernels took the host's arithmetic */
	uint64_t last_run_ns; /* sync: when the last run ended (0: the host's contexts forgot their keys) */
	struct pxy_dev_emu_timing timing; /* emu --emu-timing (timing.freq_hz == 0: none) */
	char name[8];
};

/* ---- helpers ------------------------------------------------------------------------ */

static void signal_fd(int fd)
{
	uint64_t one = 1;
	ssize_t r;

	do
		r = write(fd, &one, sizeof(one));
	while (r < 0 && errno == EINTR);
}

/* Tell the loop there is something for poll() (a synchronous engine's caller polls anyway). */
static void wake(struct fpga_engine *e)
{
	if (!e->sync)
		signal_fd(e->base.event_fd);
}

static void push_out(struct fpga_engine *e, struct pxy_job *j)
{
	j->next = NULL;
	__atomic_store_n(&j->completed, 1, __ATOMIC_RELEASE);
	if (e->out_tail)
		e->out_tail->next = j;
	else
		e->out_head = j;
	e->out_tail = j;
}

/* Hand a job to the software engine (its completion arrives through our eventfd). */
static void to_software(struct fpga_engine *e, struct pxy_job *j)
{
	j->next = NULL;
	j->status = PXY_OK;
	j->completed = 0;
	if (j->type == PXY_JOB_RECORD_OPEN || j->type == PXY_JOB_RECORD_SEAL)
		j->u.rec.on_device = 0;
	if (j->type == PXY_JOB_RSA_DECRYPT && j->u.rsa.key_id < e->nkeys)
		j->u.rsa.key_id = e->keys[j->u.rsa.key_id].sw_id;
	__atomic_fetch_add(&e->base.stats.software_jobs, 1, __ATOMIC_RELAXED);
	if (e->sw->ops->submit(e->sw, j) != PXY_OK) {
		j->status = PXY_E_BUSY;
		push_out(e, j);
		wake(e);
	}
}

static void device_failed(struct fpga_engine *e, const char *what, int state)
{
	__atomic_fetch_add(&e->base.stats.device_failures, 1, __ATOMIC_RELAXED);
	if (e->failed)
		return;
	e->failed = 1;
	pxy_warn("engine %s: device failure (%s, run state %d); this and all later jobs run on the cpu engine",
		 e->name, what, state);
	for (int k = 0; k < K_N; k++) {
		struct pxy_job *j = e->kr[k].q_head, *next;

		e->kr[k].q_head = e->kr[k].q_tail = NULL;
		e->kr[k].qn = 0;
		for (; j; j = next) {
			next = j->next;
			to_software(e, j);
		}
	}
}

static void slot_to_software(struct fpga_engine *e, struct slot *s)
{
	for (unsigned i = 0; i < s->n; i++)
		to_software(e, s->jobs[i]);
	s->n = 0;
}

/* ---- filling descriptors ------------------------------------------------------------ */

static const EVP_MD *mac_md(uint8_t mac)
{
	switch (mac) {
	case PXY_MAC_SHA1: return EVP_sha1();
	case PXY_MAC_SHA256: return EVP_sha256();
	case PXY_MAC_SHA384: return EVP_sha384();
	default: return NULL;
	}
}

static size_t explicit_len(const struct pxy_traffic_keys *k)
{
	if (k->version >= 0x0304)
		return 0; /* TLS 1.3: the nonce is not in the record */
	if (k->bulk == PXY_BULK_AES_128_GCM || k->bulk == PXY_BULK_AES_256_GCM)
		return 8;
	return k->version >= 0x0302 ? 16 : 0;
}

/* Can the kernels run this job? Public properties only (sizes, algorithms). */
static int kernel_takes(const struct fpga_engine *e, const struct pxy_job *j)
{
	switch (j->type) {
	case PXY_JOB_RSA_DECRYPT:
		return j->u.rsa.key_id < e->nkeys && e->keys[j->u.rsa.key_id].on_card &&
		       (j->u.rsa.mode == PXY_RSA_TLS || j->u.rsa.mode == PXY_RSA_PKCS1) &&
		       j->u.rsa.in_len <= PXY_K_RSA_MAX_BYTES;
	case PXY_JOB_RECORD_OPEN:
	case PXY_JOB_RECORD_SEAL: {
		const struct pxy_rec_job *r = &j->u.rec;
		const struct pxy_traffic_keys *k = r->keys;

		if (!k || k->bulk < PXY_BULK_AES_128_GCM || k->bulk > PXY_BULK_AES_256_CBC ||
		    (k->version >= 0x0304 && k->bulk != PXY_BULK_AES_128_GCM && k->bulk != PXY_BULK_AES_256_GCM) ||
		    k->mac_key_len > PXY_K_MAC_KEY_MAX || r->rec_len < PXY_TLS_HDR_LEN || r->rec_len > PXY_K_REC_MAX_IN)
			return 0;
		if (j->type == PXY_JOB_RECORD_SEAL)
			return r->rec_len - PXY_TLS_HDR_LEN <= PXY_TLS_MAX_PLAINTEXT &&
			       pxy_record_sealed_len(k, r->rec_len - PXY_TLS_HDR_LEN) <= r->rec_cap;
		return 1;
	}
	case PXY_JOB_PRIMITIVE: {
		const struct pxy_prim_job *p = &j->u.prim;

		switch (p->op) {
		case PXY_PRIM_GCM_OPEN:
		case PXY_PRIM_GCM_SEAL:
			return (p->key_len == 16 || p->key_len == 32) && p->iv_len == 12 && p->aad_len <= PXY_K_AAD_MAX &&
			       p->aad_len + p->in_len + 16 <= PXY_K_REC_SLOT &&
			       (p->op == PXY_PRIM_GCM_OPEN ? p->in_len >= 16 && p->out_cap >= p->in_len - 16
							   : p->out_cap >= p->in_len + 16);
		case PXY_PRIM_CBC_DECRYPT:
			return (p->key_len == 16 || p->key_len == 32) && p->iv_len == 16 && p->in_len > 0 &&
			       p->in_len % 16 == 0 && p->in_len <= PXY_K_REC_SLOT && p->out_cap >= p->in_len;
		case PXY_PRIM_HMAC:
			return mac_md(p->mac) && p->in_len <= PXY_K_REC_SLOT && p->out_cap >= 64;
		default:
			return 0;
		}
	}
	default:
		return 0;
	}
}

/* One RSA job into slot position i. */
static int fill_rsa(struct slot *s, unsigned i, struct pxy_job *j)
{
	struct pxy_k_rsa_job *kj = (struct pxy_k_rsa_job *)s->map[B_JOBS] + i;
	const struct pxy_rsa_job *r = &j->u.rsa;

	memset(kj, 0, sizeof(*kj));
	kj->key_id = r->key_id;
	kj->mode = r->mode == PXY_RSA_PKCS1 ? PXY_K_RSA_PKCS1 : PXY_K_RSA_TLS;
	kj->in_len = r->in_len;
	kj->client_version = r->client_version;
	/* the implicit-rejection secret, drawn before anything is known about the ciphertext */
	if (kj->mode == PXY_K_RSA_TLS && RAND_priv_bytes(kj->random, sizeof(kj->random)) != 1)
		return PXY_E_CRYPTO_LIB;
	memcpy(kj->in, r->in, r->in_len);
	return PXY_OK;
}

/* Hash an HMAC key longer than the hash's block, as HMAC itself does (RFC 2104 §2). */
static int hmac_key(uint8_t mac, const uint8_t *key, size_t len, uint8_t *out, uint8_t *out_len)
{
	const EVP_MD *md = mac_md(mac);
	unsigned int dl = 0;

	if (!md)
		return PXY_E_STATE;
	if (len <= (size_t)EVP_MD_get_block_size(md)) {
		memcpy(out, key, len);
		*out_len = (uint8_t)len;
		return PXY_OK;
	}
	if (EVP_Digest(key, len, out, &dl, md, NULL) != 1)
		return PXY_E_CRYPTO_LIB;
	*out_len = (uint8_t)dl;
	return PXY_OK;
}

static int fill_rec(struct slot *s, unsigned i, struct pxy_job *j)
{
	struct pxy_k_rec_desc *d = (struct pxy_k_rec_desc *)s->map[B_JOBS] + i;
	uint8_t *in = s->map[B_IN] + (size_t)i * PXY_K_REC_SLOT;

	memset(d, 0, sizeof(*d));
	d->in_off = d->out_off = i * PXY_K_REC_SLOT;
	d->out_cap = PXY_K_REC_SLOT;
	if (j->type != PXY_JOB_PRIMITIVE)
		j->u.rec.on_device = 1; /* to_software clears it if the batch fails over */
	if (j->type == PXY_JOB_PRIMITIVE) {
		const struct pxy_prim_job *p = &j->u.prim;
		int r;

		switch (p->op) {
		case PXY_PRIM_GCM_OPEN: d->op = PXY_K_OP_GCM_OPEN; break;
		case PXY_PRIM_GCM_SEAL: d->op = PXY_K_OP_GCM_SEAL; break;
		case PXY_PRIM_CBC_DECRYPT: d->op = PXY_K_OP_CBC_DEC; break;
		default: d->op = PXY_K_OP_HMAC; break;
		}
		if (d->op == PXY_K_OP_HMAC) {
			d->mac = p->mac;
			if ((r = hmac_key(p->mac, p->key, p->key_len, d->mac_key, &d->mac_key_len)) < 0)
				return r;
		} else {
			d->bulk = p->key_len == 16 ? (d->op == PXY_K_OP_CBC_DEC ? PXY_BULK_AES_128_CBC : PXY_BULK_AES_128_GCM)
						   : (d->op == PXY_K_OP_CBC_DEC ? PXY_BULK_AES_256_CBC : PXY_BULK_AES_256_GCM);
			memcpy(d->key, p->key, p->key_len);
			memcpy(d->iv, p->iv, p->iv_len);
		}
		if (d->op == PXY_K_OP_GCM_OPEN || d->op == PXY_K_OP_GCM_SEAL) {
			d->aad_len = (uint16_t)p->aad_len;
			if (p->aad_len)
				memcpy(in, p->aad, p->aad_len);
		}
		if (p->in_len)
			memcpy(in + d->aad_len, p->in, p->in_len);
		d->in_len = (uint32_t)(d->aad_len + p->in_len);
		return PXY_OK;
	}
	{
		const struct pxy_rec_job *r = &j->u.rec;
		const struct pxy_traffic_keys *k = r->keys;

		d->op = j->type == PXY_JOB_RECORD_OPEN ? PXY_K_OP_TLS_OPEN : PXY_K_OP_TLS_SEAL;
		d->bulk = k->bulk;
		d->mac = k->mac;
		d->etm = k->etm;
		d->mac_key_len = k->mac_key_len;
		d->version = k->version;
		d->seq = r->seq;
		memcpy(d->key, k->key, sizeof(k->key));
		memcpy(d->mac_key, k->mac_key, k->mac_key_len);
		if (k->bulk == PXY_BULK_AES_128_GCM || k->bulk == PXY_BULK_AES_256_GCM)
			memcpy(d->iv, k->iv, k->version >= 0x0304 ? 12 : 4); /* TLS 1.3: the IV; 1.2: the salt */
		else
			memcpy(d->iv, r->iv, 16); /* TLS 1.0: the chained IV; seal: the explicit IV */
		memcpy(in, r->rec, r->rec_len);
		d->in_len = (uint32_t)r->rec_len;
		if (j->type == PXY_JOB_RECORD_SEAL && k->version >= 0x0304) {
			/* TLS 1.3: the real type goes after the content, the header says application data */
			in[r->rec_len] = r->rec[0];
			in[0] = 23;
			d->in_len++;
		}
	}
	return PXY_OK;
}

/* ---- launching ------------------------------------------------------------------------ */

static void on_run_end(void *run, int state, void *data)
{
	struct slot *s = data;
	struct fpga_engine *e = s->e;
	int first;

	(void)run;
	if (e->sync) {
		/* inline (this is the loop's thread): a run that took longer than a card may is a
		 * failed card, as check_timeouts() decides for one still running elsewhere */
		e->last_run_ns = pxy_now_ns();
		if (e->last_run_ns - s->start_ns > (uint64_t)e->timeout_ms * 1000000u) {
			s->abandoned = 1;
			device_failed(e, "run timed out", state);
			slot_to_software(e, s);
		}
	}
	pthread_mutex_lock(&e->mu);
	s->end_state = state;
	first = e->done_head == NULL;
	s->done_next = e->done_head;
	e->done_head = s;
	pthread_mutex_unlock(&e->mu);
	if (first)
		wake(e);
}

/* A free slot, spreading launches over the compute units before doubling up on one. */
static struct slot *free_slot(struct kern *k)
{
	for (int i = 0; i < SLOTS; i++)
		for (int c = 0; c < k->ncu; c++)
			if (!k->cu[c].slot[i].busy)
				return &k->cu[c].slot[i];
	return NULL;
}

/* Move up to a batch of queued jobs into a free slot and start it. */
static void launch(struct fpga_engine *e, int kind)
{
	struct kern *k = &e->kr[kind];
	struct slot *s;
	size_t rec_stride = kind == K_RSA ? sizeof(struct pxy_k_rsa_job) : sizeof(struct pxy_k_rec_desc);

	while (!e->failed && k->q_head && (s = free_slot(k))) {
		unsigned n = 0;

		while (k->q_head && n < k->batch) {
			struct pxy_job *j = k->q_head;
			int r;

			k->q_head = j->next;
			k->qn--;
			j->next = NULL;
			r = kind == K_RSA ? fill_rsa(s, n, j) : fill_rec(s, n, j);
			if (r < 0) {
				j->status = r;
				__atomic_fetch_add(&e->base.stats.errors, 1, __ATOMIC_RELAXED);
				push_out(e, j);
				wake(e);
				continue;
			}
			s->jobs[n++] = j;
		}
		if (!k->q_head)
			k->q_tail = NULL;
		s->n = n;
		if (n == 0)
			continue;
		if (e->dp->bo_sync(s->bo[B_JOBS], 1, n * rec_stride, 0) < 0)
			goto fail;
		if (kind == K_REC)
			for (unsigned i = 0; i < n; i++) {
				const struct pxy_k_rec_desc *d = (const struct pxy_k_rec_desc *)s->map[B_JOBS] + i;

				if (e->dp->bo_sync(s->bo[B_IN], 1, d->in_len, d->in_off) < 0)
					goto fail;
			}
		if (e->dp->run_set_arg_u32(s->run, kind == K_RSA ? PXY_K_RSA_ARG_N : PXY_K_REC_ARG_N, n) < 0)
			goto fail;
		s->busy = 1;
		s->abandoned = 0;
		s->start_ns = pxy_now_ns();
		if (e->dp->run_start(s->run) < 0) {
			s->busy = 0;
			goto fail;
		}
		__atomic_fetch_add(&e->base.stats.launches, 1, __ATOMIC_RELAXED);
		__atomic_fetch_add(&e->base.stats.batched_jobs, n, __ATOMIC_RELAXED);
		continue;
fail:
		device_failed(e, "cannot start a run", 0);
		slot_to_software(e, s);
		return;
	}
}

/* ---- collecting ---------------------------------------------------------------------- */

static void finish_rsa(struct fpga_engine *e, struct pxy_job *j, const struct pxy_k_rsa_result *r)
{
	struct pxy_rsa_job *rj = &j->u.rsa;

	if (rj->mode == PXY_RSA_PKCS1) {
		rj->ok = r->ok & 1;
		rj->msg_len = (uint16_t)(rj->ok && r->out_len <= sizeof(rj->msg) ? r->out_len : 0);
		memcpy(rj->msg, r->out, rj->msg_len);
	} else {
		memcpy(rj->pms, r->out, PXY_PMS_LEN);
	}
	__atomic_fetch_add(&e->base.stats.rsa_ops, 1, __ATOMIC_RELAXED);
}

static int finish_rec(struct fpga_engine *e, struct slot *s, unsigned i, const struct pxy_k_rec_result *r)
{
	struct pxy_job *j = s->jobs[i];
	const uint8_t *out = s->map[B_OUT] + (size_t)i * PXY_K_REC_SLOT;
	size_t n = r->out_len;

	if (r->flags & PXY_K_F_BADDESC)
		return PXY_E_STATE; /* the host checked the shapes: a bad descriptor is our bug */
	if (n > PXY_K_REC_SLOT || (n && e->dp->bo_sync(s->bo[B_OUT], 0, n, (size_t)i * PXY_K_REC_SLOT) < 0))
		return PXY_E_ENGINE;
	if (j->type == PXY_JOB_PRIMITIVE) {
		struct pxy_prim_job *p = &j->u.prim;
		const uint8_t *src = p->op == PXY_PRIM_HMAC ? r->mac : out;

		p->ok = r->ok & 1;
		p->out_len = n;
		if (n > p->out_cap)
			return PXY_E_ENGINE;
		memcpy(p->out, src, n);
		return PXY_OK;
	}
	{
		struct pxy_rec_job *rj = &j->u.rec;

		rj->ok = r->ok & 1;
		if (j->type == PXY_JOB_RECORD_OPEN) {
			rj->pt_off = PXY_TLS_HDR_LEN + explicit_len(rj->keys);
			rj->pt_len = rj->ok ? n : 0;
			rj->pt_ext = NULL;
			if (rj->pt_off + rj->pt_len > rj->rec_len)
				return PXY_E_ENGINE;
			if (rj->pt_borrow && e->sync && rj->pt_len) {
				/* the caller takes it before the next flush, which wipes it */
				rj->pt_ext = out;
				s->out_lent = 1;
			} else {
				memcpy(rj->rec + rj->pt_off, out, rj->pt_len);
			}
			if (rj->ok && rj->keys->version >= 0x0304)
				pxy_rec_job_tls13_inner(rj); /* the content type after the plaintext, then padding */
			__atomic_fetch_add(&e->base.stats.rec_open, 1, __ATOMIC_RELAXED);
			__atomic_fetch_add(&e->base.stats.bytes_in, rj->rec_len, __ATOMIC_RELAXED);
			if (!rj->ok)
				__atomic_fetch_add(&e->base.stats.rec_bad, 1, __ATOMIC_RELAXED);
		} else {
			if (!rj->ok || n > rj->rec_cap)
				return PXY_E_ENGINE;
			memcpy(rj->rec, out, n);
			rj->rec_len = n;
			rj->pt_off = PXY_TLS_HDR_LEN + explicit_len(rj->keys);
			__atomic_fetch_add(&e->base.stats.rec_seal, 1, __ATOMIC_RELAXED);
		}
	}
	return PXY_OK;
}

/*
 * After a completed run nothing secret stays in the slot: the descriptors
 * (traffic keys, the RSA fallback secrets), the results (pre-master secrets)
 * and the record outputs (plaintext) are wiped in the host mapping, and the
 * descriptors and results on the device too (two small writes; the outputs
 * there are overwritten by the slot's next run).
 */
static void scrub(struct fpga_engine *e, struct slot *s)
{
	size_t js = s->kind == K_RSA ? sizeof(struct pxy_k_rsa_job) : sizeof(struct pxy_k_rec_desc);
	size_t rs = s->kind == K_RSA ? sizeof(struct pxy_k_rsa_result) : sizeof(struct pxy_k_rec_result);

	if (s->kind == K_REC)
		for (unsigned i = 0; i < s->n; i++) {
			const struct pxy_k_rec_result *r = (const struct pxy_k_rec_result *)s->map[B_RES] + i;

			s->out_len[i] = r->out_len < PXY_K_REC_SLOT ? r->out_len : PXY_K_REC_SLOT;
			if (!s->out_lent)
				pxy_wipe(s->map[B_OUT] + (size_t)i * PXY_K_REC_SLOT, s->out_len[i]);
		}
	if (s->out_lent) /* wiped at the next flush, once the caller has taken the plaintext */
		s->out_lent = (int)s->n;
	pxy_wipe(s->map[B_JOBS], s->n * js);
	pxy_wipe(s->map[B_RES], s->n * rs);
	if (e->dp->bo_sync(s->bo[B_JOBS], 1, s->n * js, 0) < 0 || e->dp->bo_sync(s->bo[B_RES], 1, s->n * rs, 0) < 0)
		__atomic_fetch_add(&e->base.stats.errors, 1, __ATOMIC_RELAXED);
}

static void collect(struct fpga_engine *e, struct slot *s)
{
	size_t res_size = s->kind == K_RSA ? sizeof(struct pxy_k_rsa_result) : sizeof(struct pxy_k_rec_result);

	if (s->end_state != PXY_RUN_COMPLETED) {
		device_failed(e, "run did not complete", s->end_state);
		slot_to_software(e, s);
		return;
	}
	if (e->dp->bo_sync(s->bo[B_RES], 0, s->n * res_size, 0) < 0) {
		device_failed(e, "cannot read results", s->end_state);
		slot_to_software(e, s);
		return;
	}
	/* every result must have been written by the kernel, or none is trusted */
	for (unsigned i = 0; i < s->n; i++) {
		const uint32_t *status = (const uint32_t *)(s->map[B_RES] + i * res_size);

		if (*status != PXY_K_DONE) {
			device_failed(e, "a result was not computed", s->end_state);
			slot_to_software(e, s);
			return;
		}
	}
	for (unsigned i = 0; i < s->n; i++) {
		struct pxy_job *j = s->jobs[i];

		if (s->kind == K_RSA) {
			const struct pxy_k_rsa_result *r = (const struct pxy_k_rsa_result *)s->map[B_RES] + i;

			if (r->flags & (PXY_K_F_FAULT | PXY_K_F_BADKEY)) {
				/* nothing from a faulty computation is released; software decides */
				__atomic_fetch_add(&e->base.stats.faults, 1, __ATOMIC_RELAXED);
				to_software(e, j);
				continue;
			}
			finish_rsa(e, j, r);
			/* the result buffer held a secret */
			pxy_wipe((void *)r->out, sizeof(r->out));
		} else {
			int st = finish_rec(e, s, i, (const struct pxy_k_rec_result *)s->map[B_RES] + i);

			if (st < 0) {
				__atomic_fetch_add(&e->base.stats.errors, 1, __ATOMIC_RELAXED);
				to_software(e, j);
				continue;
			}
		}
		push_out(e, j);
	}
	scrub(e, s);
	s->n = 0;
}

static void check_timeouts(struct fpga_engine *e)
{
	uint64_t now = pxy_now_ns();

	for (int k = 0; k < K_N; k++)
		for (int c = 0; c < e->kr[k].ncu; c++)
		for (int i = 0; i < SLOTS; i++) {
			struct slot *s = &e->kr[k].cu[c].slot[i];

			if (s->busy && !s->abandoned && now - s->start_ns > (uint64_t)e->timeout_ms * 1000000u) {
				s->abandoned = 1;
				device_failed(e, "run timed out", e->dp->run_state(s->run));
				slot_to_software(e, s);
			}
		}
}

/* ---- engine operations --------------------------------------------------------------- */

static int fpga_submit(struct pxy_engine *base, struct pxy_job *j)
{
	struct fpga_engine *e = (struct fpga_engine *)base;
	int kind;

	if (e->inflight >= e->max_jobs) {
		__atomic_fetch_add(&e->base.stats.busy_rejects, 1, __ATOMIC_RELAXED);
		return PXY_E_BUSY;
	}
	e->inflight++;
	e->base.stats.inflight = e->inflight;
	if (e->failed || !kernel_takes(e, j)) {
		to_software(e, j);
		return PXY_OK;
	}
	kind = j->type == PXY_JOB_RSA_DECRYPT ? K_RSA : K_REC;
	j->next = NULL;
	if (e->kr[kind].q_tail)
		e->kr[kind].q_tail->next = j;
	else
		e->kr[kind].q_head = j;
	e->kr[kind].q_tail = j;
	/* inline runs wait for flush(): the caller's I/O goes out first */
	if (++e->kr[kind].qn >= e->kr[kind].batch && !e->sync)
		launch(e, kind);
	return PXY_OK;
}

/* The record outputs lent to the caller since the last flush: taken by now, wiped. */
static void wipe_lent(struct fpga_engine *e)
{
	struct kern *k = &e->kr[K_REC];

	for (int c = 0; c < k->ncu; c++)
		for (int i = 0; i < SLOTS; i++) {
			struct slot *s = &k->cu[c].slot[i];

			for (int r = 0; r < s->out_lent; r++)
				pxy_wipe(s->map[B_OUT] + (size_t)r * PXY_K_REC_SLOT, s->out_len[r]);
			s->out_lent = 0;
		}
}

static void fpga_flush(struct pxy_engine *base)
{
	struct fpga_engine *e = (struct fpga_engine *)base;

	if (e->sync)
		wipe_lent(e);
	for (int k = 0; k < K_N; k++)
		if (e->kr[k].q_head)
			launch(e, k);
	check_timeouts(e);
	/* the software side (synchronous with inline runs: it runs what failed over, here) */
	pxy_engine_flush(e->sw);
	/* inline: the kernels ran on this thread; a while without runs and its contexts forget the keys */
	if (e->sync && e->host_arith && e->last_run_ns && pxy_now_ns() - e->last_run_ns > 10000000ull) {
		pxy_emu_host_idle();
		e->last_run_ns = 0;
	}
}

/* the software engine's jobs in this engine's counters */
static void count_software(struct fpga_engine *e, const struct pxy_job *j)
{
	struct pxy_engine_stats *st = &e->base.stats;

	if (j->status < 0)
		__atomic_fetch_add(&st->errors, 1, __ATOMIC_RELAXED);
	switch (j->type) {
	case PXY_JOB_RSA_DECRYPT:
		__atomic_fetch_add(&st->rsa_ops, 1, __ATOMIC_RELAXED);
		break;
	case PXY_JOB_RECORD_OPEN:
		__atomic_fetch_add(&st->rec_open, 1, __ATOMIC_RELAXED);
		__atomic_fetch_add(&st->bytes_in, j->u.rec.rec_len, __ATOMIC_RELAXED);
		if (!j->u.rec.ok)
			__atomic_fetch_add(&st->rec_bad, 1, __ATOMIC_RELAXED);
		break;
	case PXY_JOB_RECORD_SEAL:
		__atomic_fetch_add(&st->rec_seal, 1, __ATOMIC_RELAXED);
		break;
	default:
		break;
	}
}

static size_t fpga_poll(struct pxy_engine *base, struct pxy_job **out, size_t max)
{
	struct fpga_engine *e = (struct fpga_engine *)base;
	struct slot *done, *s;
	size_t n = 0;

	pthread_mutex_lock(&e->mu);
	done = e->done_head;
	e->done_head = NULL;
	pthread_mutex_unlock(&e->mu);
	for (; done; done = s) {
		s = done->done_next;
		if (!done->abandoned)
			collect(e, done);
		done->abandoned = 0;
		done->busy = 0;
		/* inline runs wait for flush() (which first wipes what this slot lent) */
		if (!e->sync)
			launch(e, done->kind);
	}
	check_timeouts(e);
	while (e->out_head && n < max) {
		struct pxy_job *j = e->out_head;

		e->out_head = j->next;
		j->next = NULL;
		out[n++] = j;
	}
	if (!e->out_head)
		e->out_tail = NULL;
	if (n < max) {
		size_t m = e->sw->ops->poll(e->sw, out + n, max - n);

		for (size_t i = n; i < n + m; i++)
			count_software(e, out[i]);
		n += m;
	}
	/* a batch larger than max leaves jobs behind: make sure the loop comes back */
	if (e->out_head)
		wake(e);
	e->inflight -= (unsigned)n;
	e->base.stats.inflight = e->inflight;
	return n;
}

static int fpga_key_load(struct pxy_engine *base, const struct pxy_rsa_priv *k, uint32_t *key_id)
{
	struct fpga_engine *e = (struct fpga_engine *)base;
	uint32_t id = 0, sw_id;
	int r;

	/* called from the io thread only, as key_unload is: no lock for the slot search */
	while (id < PXY_K_MAX_KEYS && e->keys[id].used)
		id++;
	if (id == PXY_K_MAX_KEYS)
		return PXY_E_LIMIT;
	/* software holds every key too: for failover */
	r = e->sw->ops->key_load(e->sw, k, &sw_id);
	if (r < 0)
		return r;
	e->keys[id].sw_id = sw_id;
	e->keys[id].on_card = 0;
	/* every RSA unit has its own copy of the table, in its own memory bank */
	if (pxy_k_rsa_key_fill(&e->kr[K_RSA].cu[0].key_map[id], k) == PXY_OK) {
		struct kern *kr = &e->kr[K_RSA];
		int ok = 1;

		for (int c = 0; c < kr->ncu; c++) {
			if (c)
				memcpy(&kr->cu[c].key_map[id], &kr->cu[0].key_map[id], sizeof(kr->cu[0].key_map[id]));
			ok &= e->dp->bo_sync(kr->cu[c].key_bo, 1, sizeof(kr->cu[c].key_map[id]),
					     id * sizeof(kr->cu[c].key_map[id])) == 0;
		}
		if (ok)
			e->keys[id].on_card = 1;
		else
			for (int c = 0; c < kr->ncu; c++)
				pxy_k_rsa_key_wipe(&kr->cu[c].key_map[id]);
	}
	if (!e->keys[id].on_card)
		pxy_info("engine %s: RSA-%u key %u runs in software (the kernel takes 2048, 3072 and 4096-bit keys "
			 "with equal-length primes)", e->name, k->bits, id);
	e->keys[id].used = 1;
	if (id >= e->nkeys)
		e->nkeys = id + 1;
	*key_id = id;
	return PXY_OK;
}

/* Wipe the key from every RSA unit's table on the card, and from software. */
static void fpga_key_unload(struct pxy_engine *base, uint32_t key_id)
{
	struct fpga_engine *e = (struct fpga_engine *)base;
	struct kern *kr = &e->kr[K_RSA];

	if (key_id >= PXY_K_MAX_KEYS || !e->keys[key_id].used)
		return;
	if (e->keys[key_id].on_card)
		for (int c = 0; c < kr->ncu; c++) {
			pxy_k_rsa_key_wipe(&kr->cu[c].key_map[key_id]);
			if (e->dp->bo_sync(kr->cu[c].key_bo, 1, sizeof(kr->cu[c].key_map[key_id]),
					   key_id * sizeof(kr->cu[c].key_map[key_id])) < 0)
				pxy_warn("engine %s: the card did not take the wiped key table entry %u of RSA unit %d: "
					 "the key stays in its memory until the engine closes",
					 base->ops->name, key_id, c);
		}
	e->keys[key_id].on_card = 0;
	e->keys[key_id].used = 0;
	if (e->sw->ops->key_unload)
		e->sw->ops->key_unload(e->sw, e->keys[key_id].sw_id);
}

static void fpga_close(struct pxy_engine *base)
{
	struct fpga_engine *e = (struct fpga_engine *)base;
	int leak = 0;

	if (!e)
		return;
	for (int k = 0; k < K_N; k++)
		for (int c = 0; c < e->kr[k].ncu; c++)
			for (int i = 0; i < SLOTS; i++) {
				struct slot *s = &e->kr[k].cu[c].slot[i];

				/* a run still on the device may write its buffers and call back: wait for it */
				if (s->busy && s->run && e->dp->run_wait(s->run, CLOSE_WAIT_MS) == PXY_RUN_TIMEOUT)
					leak = 1;
			}
	for (int c = 0; c < e->kr[K_RSA].ncu; c++) {
		struct cu *u = &e->kr[K_RSA].cu[c];

		if (u->key_bo && u->key_map) {
			explicit_bzero(u->key_map, PXY_K_MAX_KEYS * sizeof(*u->key_map));
			e->dp->bo_sync(u->key_bo, 1, PXY_K_MAX_KEYS * sizeof(*u->key_map), 0);
		}
	}
	if (leak) {
		/*
		 * A run that never ends may still write its buffers and call back into
		 * this engine and its eventfd: freeing any of it could corrupt memory or
		 * another file. Everything but the software engine stays allocated.
		 */
		pxy_warn("engine %s: a kernel run did not end within %u ms; its device and buffers stay allocated",
			 e->name, CLOSE_WAIT_MS);
		if (e->sw)
			e->sw->ops->close(e->sw);
		return;
	}
	for (int k = 0; k < K_N; k++) {
		for (int c = 0; c < e->kr[k].ncu; c++) {
			struct cu *u = &e->kr[k].cu[c];

			for (int i = 0; i < SLOTS; i++) {
				struct slot *s = &u->slot[i];

				if (s->run)
					e->dp->run_close(s->run);
				for (int b = 0; b < B_N; b++)
					if (s->bo[b])
						e->dp->bo_free(s->bo[b]);
			}
			if (u->key_bo)
				e->dp->bo_free(u->key_bo);
			if (u->k)
				e->dp->kernel_close(u->k);
		}
		free(e->kr[k].cu);
	}
	if (e->dev)
		e->dp->close(e->dev);
	if (e->sw)
		e->sw->ops->close(e->sw);
	if (e->base.event_fd >= 0)
		close(e->base.event_fd);
	pthread_mutex_destroy(&e->mu);
	free(e);
}

static void *alloc_bo(struct fpga_engine *e, size_t size, void *kernel, int arg, uint8_t **map)
{
	int group = e->dp->kernel_arg_group(kernel, arg);
	void *bo = e->dp->bo_alloc(e->dev, size, group < 0 ? 0 : group);

	*map = bo ? e->dp->bo_map(bo) : NULL;
	return *map ? bo : NULL;
}

/* One compute unit: its kernel handle, buffers in its banks, and a run per slot. */
static int setup_cu(struct fpga_engine *e, int kind, struct cu *u, const char *cu_name, char *why, size_t why_len)
{
	unsigned limit = kind == K_RSA ? PXY_K_RSA_MAX_BATCH : PXY_K_REC_MAX_BATCH;
	char name[160];
	const char *colon = strchr(cu_name, ':');

	/* XRT names one compute unit as "kernel:{instance}" */
	snprintf(name, sizeof(name), "%.*s:{%s}", (int)(colon - cu_name), cu_name, colon + 1);
	u->k = e->dp->kernel_open(e->dev, e->uuid, name);
	if (!u->k) {
		snprintf(why, why_len, "cannot open compute unit %s", name);
		return -1;
	}
	if (kind == K_RSA) {
		u->key_bo = alloc_bo(e, PXY_K_MAX_KEYS * sizeof(struct pxy_k_rsa_key), u->k, PXY_K_RSA_ARG_KEYS,
				     (uint8_t **)&u->key_map);
		if (!u->key_bo)
			goto nomem;
		memset(u->key_map, 0, PXY_K_MAX_KEYS * sizeof(struct pxy_k_rsa_key));
		if (e->dp->bo_sync(u->key_bo, 1, PXY_K_MAX_KEYS * sizeof(struct pxy_k_rsa_key), 0) < 0)
			goto nomem;
	}
	for (int i = 0; i < SLOTS; i++) {
		struct slot *s = &u->slot[i];
		int ok;

		s->e = e;
		s->kind = kind;
		if (kind == K_RSA) {
			s->bo[B_JOBS] = alloc_bo(e, limit * sizeof(struct pxy_k_rsa_job), u->k, PXY_K_RSA_ARG_JOBS,
						 &s->map[B_JOBS]);
			s->bo[B_RES] = alloc_bo(e, limit * sizeof(struct pxy_k_rsa_result), u->k, PXY_K_RSA_ARG_RESULTS,
						&s->map[B_RES]);
			ok = s->bo[B_JOBS] && s->bo[B_RES];
		} else {
			s->bo[B_JOBS] = alloc_bo(e, limit * sizeof(struct pxy_k_rec_desc), u->k, PXY_K_REC_ARG_DESCS,
						 &s->map[B_JOBS]);
			s->bo[B_IN] = alloc_bo(e, (size_t)limit * PXY_K_REC_SLOT, u->k, PXY_K_REC_ARG_IN, &s->map[B_IN]);
			s->bo[B_OUT] = alloc_bo(e, (size_t)limit * PXY_K_REC_SLOT, u->k, PXY_K_REC_ARG_OUT, &s->map[B_OUT]);
			s->bo[B_RES] = alloc_bo(e, limit * sizeof(struct pxy_k_rec_result), u->k, PXY_K_REC_ARG_RESULTS,
						&s->map[B_RES]);
			ok = s->bo[B_JOBS] && s->bo[B_IN] && s->bo[B_OUT] && s->bo[B_RES];
		}
		if (!ok)
			goto nomem;
		s->run = e->dp->run_open(u->k);
		if (!s->run) {
			snprintf(why, why_len, "cannot create a run of %s", name);
			return -1;
		}
		/* buffer arguments are fixed per slot; only the count changes per launch */
		if (kind == K_RSA)
			ok = !e->dp->run_set_arg_bo(s->run, PXY_K_RSA_ARG_KEYS, u->key_bo) &&
			     !e->dp->run_set_arg_bo(s->run, PXY_K_RSA_ARG_JOBS, s->bo[B_JOBS]) &&
			     !e->dp->run_set_arg_bo(s->run, PXY_K_RSA_ARG_RESULTS, s->bo[B_RES]);
		else
			ok = !e->dp->run_set_arg_bo(s->run, PXY_K_REC_ARG_DESCS, s->bo[B_JOBS]) &&
			     !e->dp->run_set_arg_bo(s->run, PXY_K_REC_ARG_IN, s->bo[B_IN]) &&
			     !e->dp->run_set_arg_bo(s->run, PXY_K_REC_ARG_OUT, s->bo[B_OUT]) &&
			     !e->dp->run_set_arg_bo(s->run, PXY_K_REC_ARG_RESULTS, s->bo[B_RES]);
		if (!ok || e->dp->run_set_callback(s->run, on_run_end, s) < 0) {
			snprintf(why, why_len, "cannot set the arguments of %s", name);
			return -1;
		}
	}
	return 0;
nomem:
	snprintf(why, why_len, "cannot allocate device buffers for %s", name);
	return -1;
}

/* Every compute unit of one kernel, as the xclbin's IP_LAYOUT lists them. */
static int setup_kernel(struct fpga_engine *e, int kind, const struct pxy_xclbin_info *info, unsigned batch,
			char *why, size_t why_len)
{
	struct kern *k = &e->kr[kind];
	const char *name = kind == K_RSA ? PXY_K_RSA_NAME : PXY_K_REC_NAME;
	unsigned limit = kind == K_RSA ? PXY_K_RSA_MAX_BATCH : PXY_K_REC_MAX_BATCH;
	size_t nl = strlen(name);

	k->batch = batch && batch < limit ? batch : limit;
	k->cu = calloc(PXY_XCLBIN_MAX_CUS, sizeof(*k->cu));
	if (!k->cu) {
		snprintf(why, why_len, "out of memory");
		return -1;
	}
	for (int i = 0; i < info->ncus; i++) {
		if (strncmp(info->cu[i], name, nl) || info->cu[i][nl] != ':')
			continue;
		if (setup_cu(e, kind, &k->cu[k->ncu++], info->cu[i], why, why_len) < 0)
			return -1;
	}
	if (k->ncu == 0) {
		snprintf(why, why_len, "the xclbin has no compute unit of %s", name);
		return -1;
	}
	return 0;
}

static int fpga_open_with(const struct pxy_dev_provider *dp, const struct pxy_engine_ops *ops,
			  const struct pxy_engine_params *p, struct pxy_engine **out)
{
	struct fpga_engine *e = calloc(1, sizeof(*e));
	struct pxy_engine_params sp;
	char scratch[256], *why = p && p->why ? p->why : scratch;
	size_t why_len = p && p->why ? p->why_len : sizeof(scratch);
	const char *xclbin = p && p->xclbin ? p->xclbin : dp == &pxy_dev_emu ? pxy_emu_xclbin_path() : NULL;
	const char *timing = p && p->emu_timing && p->emu_timing[0] ? p->emu_timing : NULL;
	struct pxy_xclbin_info info;

	if (!e)
		return PXY_E_NOMEM;
	e->base.ops = ops;
	e->base.event_fd = -1;
	e->dp = dp;
	snprintf(e->name, sizeof(e->name), "%s", ops->name);
	pthread_mutex_init(&e->mu, NULL);
	e->max_jobs = p && p->max_jobs ? p->max_jobs : 65536;
	e->timeout_ms = p && p->run_timeout_ms ? p->run_timeout_ms : DEFAULT_TIMEOUT_MS;
	e->base.event_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (e->base.event_fd < 0) {
		snprintf(why, why_len, "eventfd: %s", strerror(errno));
		goto fail;
	}
	/* no thread to spare: the emulated kernels run inline, and so does the fallback */
	e->sync = dp->emu_configure && p && p->threads == 0;
	if (e->sync)
		e->base.flags |= PXY_ENGINE_F_SYNC;
	memset(&sp, 0, sizeof(sp));
	sp.threads = p ? p->threads : 1;
	sp.max_jobs = e->max_jobs;
	sp.shared_event_fd = e->base.event_fd;
	if (pxy_cpu_engine_ops.open(&sp, &e->sw) != PXY_OK) {
		snprintf(why, why_len, "cannot start the software engine");
		goto fail;
	}
	if (timing) {
		/* the card's timing in emulation: the table, and an emulation xclbin with its compute units */
		if (dp != &pxy_dev_emu) {
			snprintf(why, why_len, "--emu-timing applies to the emu engine (a card has its own timing)");
			goto fail;
		}
		if (e->sync) {
			snprintf(why, why_len, "--emu-timing needs compute-unit threads (--engine-threads 1 or more): "
					       "a modelled run would hold the io loop");
			goto fail;
		}
		if (pxy_dev_emu_timing_load(timing, &e->timing, why, why_len) < 0)
			goto fail;
		e->timing.out = e->base.stats.cu;
		if (!(p && p->xclbin) && !(xclbin = pxy_emu_xclbin_path_for(e->timing.platform))) {
			snprintf(why, why_len, "--emu-timing %s: no emulation xclbin proxyssl_emu_%s.xclbin with the "
					       "card's compute units (give one with --xclbin)", timing, e->timing.platform);
			goto fail;
		}
	}
	if (!xclbin) {
		snprintf(why, why_len, dp == &pxy_dev_emu ? "no --xclbin given and no emulation xclbin installed"
							  : "the xrt engine needs --xclbin (the card's xclbin)");
		goto fail;
	}
	if (pxy_xclbin_info(xclbin, &info, why, why_len) < 0)
		goto fail;
	if (dp == &pxy_dev_emu && !info.host_kernels) {
		snprintf(why, why_len, "%s is a hardware xclbin (platform %s); the emu engine needs an emulation xclbin",
			 xclbin, info.vbnv);
		goto fail;
	}
	if (dp->open(p ? p->device : 0, &e->dev, why, why_len) < 0) {
		e->dev = NULL;
		goto fail;
	}
	if (dp->load_xclbin(e->dev, xclbin, e->uuid, why, why_len) < 0)
		goto fail;
	if (dp->emu_configure) {
		const char *pure = getenv("PXY_EMU_PURE"), *apart = getenv("PXY_EMU_SEPARATE_MEMORY");
		struct pxy_dev_emu_opts eo = {
			.host = pure && !strcmp(pure, "1") ? NULL : pxy_emu_host(),
			.idle = pxy_emu_host_idle,
			.inline_runs = e->sync,
			/* a sync costs what a card's DMA costs the host (nothing); the tests
			 * keep device memory apart so that a missing sync shows */
			.shared_memory = !(apart && !strcmp(apart, "1")),
			.timing = timing ? &e->timing : NULL,
		};
		int r = dp->emu_configure(e->dev, &eo);

		if (r < 0) {
			snprintf(why, why_len, "%s: the emulated kernels do not take the host's arithmetic", xclbin);
			goto fail;
		}
		e->host_arith = r == 1;
	}
	if (setup_kernel(e, K_RSA, &info, p ? p->batch : 0, why, why_len) < 0 ||
	    setup_kernel(e, K_REC, &info, p ? p->batch : 0, why, why_len) < 0)
		goto fail;
	if (timing) {
		char sc[48] = "";

		if (e->kr[K_RSA].ncu != e->timing.rsa_cus || e->kr[K_REC].ncu != e->timing.rec_cus) {
			snprintf(why, why_len, "--emu-timing %s models %d %s and %d %s compute unit(s), but %s has %d and %d",
				 timing, e->timing.rsa_cus, PXY_K_RSA_NAME, e->timing.rec_cus, PXY_K_REC_NAME, xclbin,
				 e->kr[K_RSA].ncu, e->kr[K_REC].ncu);
			goto fail;
		}
		e->base.stats.cu[K_RSA].cus = (uint32_t)e->kr[K_RSA].ncu;
		e->base.stats.cu[K_REC].cus = (uint32_t)e->kr[K_REC].ncu;
		if (e->timing.scale > 1)
			snprintf(sc, sizeof(sc), ", every time x%g", e->timing.scale);
		pxy_info("engine %s: card timing %s (firmware/perf_model.py's model) at %.0f MHz%s: runs end when the "
			 "card would end them", e->name, e->timing.platform, e->timing.freq_hz / 1e6, sc);
	}
	pxy_info("engine %s: %s on %s: %d %s and %d %s compute unit(s), batches of up to %u and %u%s", e->name,
		 xclbin, info.vbnv, e->kr[K_RSA].ncu, PXY_K_RSA_NAME, e->kr[K_REC].ncu, PXY_K_REC_NAME,
		 e->kr[K_RSA].batch, e->kr[K_REC].batch,
		 !dp->emu_configure ? ""
		 : e->host_arith   ? (e->sync ? "; kernels on the host's arithmetic (OpenSSL), run inline"
					      : "; kernels on the host's arithmetic (OpenSSL), one thread per unit")
				   : (e->sync ? "; kernels on their own arithmetic, run inline"
					      : "; kernels on their own arithmetic, one thread per unit"));
	*out = &e->base;
	return PXY_OK;
fail:
	fpga_close(&e->base);
	return PXY_E_ENGINE;
}

static int emu_open(const struct pxy_engine_params *p, struct pxy_engine **out)
{
	return fpga_open_with(&pxy_dev_emu, &pxy_emu_engine_ops, p, out);
}

static int xrt_open(const struct pxy_engine_params *p, struct pxy_engine **out)
{
	return fpga_open_with(&pxy_dev_xrt, &pxy_xrt_engine_ops, p, out);
}

const struct pxy_engine_ops pxy_emu_engine_ops = {
	.name = "emu",
	.open = emu_open,
	.key_load = fpga_key_load,
	.key_unload = fpga_key_unload,
	.submit = fpga_submit,
	.flush = fpga_flush,
	.poll = fpga_poll,
	.close = fpga_close,
};

const struct pxy_engine_ops pxy_xrt_engine_ops = {
	.name = "xrt",
	.open = xrt_open,
	.key_load = fpga_key_load,
	.key_unload = fpga_key_unload,
	.submit = fpga_submit,
	.flush = fpga_flush,
	.poll = fpga_poll,
	.close = fpga_close,
};
