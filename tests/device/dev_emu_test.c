/*
 * The device layer's emulation provider and the emu engine's failover, on
 * this build's emulation xclbin:
 *  - xclbin reading: the real file passes; each kind of damage is refused
 *    with a message (never a crash), the layout matches XRT's own header;
 *  - buffers: device memory is apart from host memory, only a sync moves
 *    bytes (a kernel run on unsynced buffers sees zeros);
 *  - runs: states NEW -> COMPLETED, one callback per start, ERROR on a
 *    failed card (PXY_EMU_FAIL_AFTER);
 *  - the xrt provider refuses to load XRT without XILINX_XRT;
 *  - the emu engine: a card failing mid-burst, or hanging past the run
 *    timeout, loses no job and returns right results from software.
 */
#include <poll.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "device/axlf.h"
#include "device/dev.h"
#include "engine/emu_host.h"
#include "proxyssl/engine.h"
#include "proxyssl/kernel_abi.h"
#include "xrt_layout.h"


static uint8_t *slurp(const char *path, size_t *len)
{
	FILE *fp = fopen(path, "rb");
	uint8_t *b;
	long n;

	assert_non_null(fp);
	assert_int_equal(fseek(fp, 0, SEEK_END), 0);
	n = ftell(fp);
	assert_true(n > 0);
	rewind(fp);
	b = malloc((size_t)n);
	assert_non_null(b);
	assert_int_equal(fread(b, 1, (size_t)n, fp), (size_t)n);
	fclose(fp);
	*len = (size_t)n;
	return b;
}

static const char *xclbin(void)
{
	const char *p = pxy_emu_xclbin_path();

	assert_non_null(p);
	return p;
}

/* ---- xclbin ------------------------------------------------------------------------ */

static void test_xclbin_layout_matches_xrt(void **state)
{
	struct xrt_layout x;

	(void)state;
	if (!xrt_layout(&x))
		skip(); /* <xrt/xclbin.h> not installed */
	assert_int_equal(offsetof(struct axlf, header), x.header);
	assert_int_equal(offsetof(struct axlf, sections), x.sections);
	assert_int_equal(sizeof(struct axlf_header), x.header_size);
	assert_int_equal(sizeof(struct axlf_section_header), x.section_header_size);
	assert_int_equal(sizeof(struct axlf_mem_data), x.mem_data_size);
	assert_int_equal(sizeof(struct axlf_ip_data), x.ip_data_size);
	assert_int_equal(offsetof(struct axlf_ip_layout, ip), x.ip_layout_data);
	assert_int_equal(sizeof(struct axlf_connection), x.connection_size);
	assert_int_equal(AXLF_IP_LAYOUT, x.kind_ip_layout);
	assert_int_equal(AXLF_CONNECTIVITY, x.kind_connectivity);
	assert_int_equal(AXLF_EMBEDDED_METADATA, x.kind_metadata);
	assert_int_equal(AXLF_MEM_TOPOLOGY, x.kind_mem_topology);
	assert_int_equal(AXLF_BITSTREAM, x.kind_bitstream);
}

static void test_xclbin_info(void **state)
{
	struct pxy_xclbin_info info;
	char err[256];
	uint8_t zero[16] = { 0 };

	(void)state;
	assert_int_equal(pxy_xclbin_info(xclbin(), &info, err, sizeof(err)), 0);
	assert_int_equal(info.host_kernels, 1);
	assert_true(strlen(info.vbnv) > 0);
	assert_memory_not_equal(info.uuid, zero, 16);
	assert_int_equal(pxy_xclbin_info("/nonexistent/x.xclbin", &info, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "/nonexistent/x.xclbin"));
	assert_int_equal(pxy_xclbin_info("/etc/hostname", &info, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "not an xclbin"));
}

static struct axlf_section_header *find_section(uint8_t *f, uint32_t kind)
{
	struct axlf *a = (struct axlf *)f;

	for (uint32_t i = 0; i < a->header.num_sections; i++)
		if (a->sections[i].kind == kind)
			return &a->sections[i];
	fail_msg("no section %u", kind);
	return NULL;
}

static void expect_refused(const uint8_t *f, size_t len, const char *why, const char *what)
{
	char err[256] = "";

	if (pxy_emu_xclbin_check(f, len, err, sizeof(err)) == 0)
		fail_msg("%s: accepted", what);
	if (!strstr(err, why))
		fail_msg("%s: message '%s' lacks '%s'", what, err, why);
}

static void test_xclbin_damage_refused(void **state)
{
	size_t len;
	uint8_t *orig = slurp(xclbin(), &len), *f = malloc(len);
	char err[256];
	struct axlf_section_header *s;

	(void)state;
	assert_non_null(f);
	assert_int_equal(pxy_emu_xclbin_check(orig, len, err, sizeof(err)), 0);

	/* every prefix: never accepted, never a crash */
	for (size_t n = 0; n < len; n += n < 1024 ? 1 : 997)
		expect_refused(orig, n, "", "a truncated file");

	memcpy(f, orig, len);
	f[0] = 'X';
	expect_refused(f, len, "not an xclbin", "bad magic");

	memcpy(f, orig, len);
	((struct axlf *)f)->header.num_sections = 1000;
	expect_refused(f, len, "", "a section count beyond the file");

	memcpy(f, orig, len);
	s = find_section(f, AXLF_EMBEDDED_METADATA);
	s->offset = len - 2;
	expect_refused(f, len, "EMBEDDED_METADATA", "metadata beyond the end");

	memcpy(f, orig, len);
	s = find_section(f, AXLF_EMBEDDED_METADATA);
	memset(f + s->offset, '<', 8);
	expect_refused(f, len, "not XML", "metadata that is not XML");

	memcpy(f, orig, len);
	s = find_section(f, AXLF_BITSTREAM);
	f[s->offset + 1] = 'X';
	expect_refused(f, len, "not an emulation xclbin", "a BITSTREAM that is not a host library");

	memcpy(f, orig, len);
	s = find_section(f, AXLF_IP_LAYOUT);
	((struct axlf_ip_layout *)(f + s->offset))->count = 100000;
	expect_refused(f, len, "IP_LAYOUT", "an IP count beyond the section");

	memcpy(f, orig, len);
	s = find_section(f, AXLF_IP_LAYOUT);
	((struct axlf_ip_layout *)(f + s->offset))->count = 0;
	expect_refused(f, len, "no compute unit", "kernels without compute units");

	memcpy(f, orig, len);
	s = find_section(f, AXLF_CONNECTIVITY);
	((struct axlf_connectivity *)(f + s->offset))->count = -5;
	expect_refused(f, len, "CONNECTIVITY", "a negative connection count");
	free(f);
	free(orig);
}

/* ---- provider ---------------------------------------------------------------------- */

struct cb_log {
	int calls, last;
};

static void on_end(void *run, int st, void *data)
{
	struct cb_log *l = data;

	(void)run;
	__atomic_store_n(&l->last, st, __ATOMIC_RELEASE);
	__atomic_fetch_add(&l->calls, 1, __ATOMIC_ACQ_REL);
}

struct rig {
	const struct pxy_dev_provider *dp;
	void *dev, *k, *run;
	void *bo[4];
	uint8_t *map[4];
	uint8_t uuid[16];
	struct cb_log cb;
};

static void rig_open(struct rig *r)
{
	char err[256];
	const int args[4] = { PXY_K_REC_ARG_DESCS, PXY_K_REC_ARG_IN, PXY_K_REC_ARG_OUT, PXY_K_REC_ARG_RESULTS };
	const size_t sizes[4] = { sizeof(struct pxy_k_rec_desc) * PXY_K_REC_MAX_BATCH,
				  (size_t)PXY_K_REC_SLOT * PXY_K_REC_MAX_BATCH, (size_t)PXY_K_REC_SLOT * PXY_K_REC_MAX_BATCH,
				  sizeof(struct pxy_k_rec_result) * PXY_K_REC_MAX_BATCH };

	memset(r, 0, sizeof(*r));
	r->dp = pxy_dev_find("emu");
	assert_non_null(r->dp);
	assert_int_equal(r->dp->open(1, &r->dev, err, sizeof(err)), -1);
	assert_int_equal(r->dp->open(0, &r->dev, err, sizeof(err)), 0);
	assert_int_equal(r->dp->load_xclbin(r->dev, xclbin(), r->uuid, err, sizeof(err)), 0);
	assert_int_equal(r->dp->load_xclbin(r->dev, xclbin(), r->uuid, err, sizeof(err)), -1); /* once */
	assert_null(r->dp->kernel_open(r->dev, r->uuid, "no_such_kernel"));
	r->k = r->dp->kernel_open(r->dev, r->uuid, PXY_K_REC_NAME);
	assert_non_null(r->k);
	assert_int_equal(r->dp->kernel_arg_group(r->k, PXY_K_REC_ARG_N), -1); /* a scalar */
	for (int i = 0; i < 4; i++) {
		int g = r->dp->kernel_arg_group(r->k, args[i]);

		assert_true(g >= 0);
		r->bo[i] = r->dp->bo_alloc(r->dev, sizes[i], g);
		assert_non_null(r->bo[i]);
		r->map[i] = r->dp->bo_map(r->bo[i]);
		assert_non_null(r->map[i]);
	}
	r->run = r->dp->run_open(r->k);
	assert_non_null(r->run);
	assert_int_equal(r->dp->run_state(r->run), PXY_RUN_NEW);
	for (int i = 0; i < 4; i++)
		assert_int_equal(r->dp->run_set_arg_bo(r->run, args[i], r->bo[i]), 0);
	assert_int_equal(r->dp->run_set_arg_bo(r->run, PXY_K_REC_ARG_N, r->bo[0]), -1); /* not a buffer */
	assert_int_equal(r->dp->run_set_arg_u32(r->run, PXY_K_REC_ARG_IN, 1), -1);    /* not a scalar */
	assert_int_equal(r->dp->run_set_arg_u32(r->run, PXY_K_REC_ARG_N, 1), 0);
	assert_int_equal(r->dp->run_set_callback(r->run, on_end, &r->cb), 0);
}

static void rig_close(struct rig *r)
{
	r->dp->run_close(r->run);
	for (int i = 0; i < 4; i++)
		r->dp->bo_free(r->bo[i]);
	r->dp->kernel_close(r->k);
	r->dp->close(r->dev);
}

static int rig_run(struct rig *r)
{
	int calls = r->cb.calls, st;

	assert_int_equal(r->dp->run_start(r->run), 0);
	st = r->dp->run_wait(r->run, 10000);
	for (int i = 0; i < 1000 && __atomic_load_n(&r->cb.calls, __ATOMIC_ACQUIRE) == calls; i++)
		poll(NULL, 0, 1);
	assert_int_equal(r->cb.calls, calls + 1);
	assert_int_equal(r->cb.last, st);
	assert_int_equal(r->dp->run_state(r->run), st);
	return st;
}

/* one HMAC-SHA256 descriptor in slot 0 over `n` bytes of random input */
static void hmac_desc(struct rig *r, uint8_t key[16], size_t n)
{
	struct pxy_k_rec_desc *d = (struct pxy_k_rec_desc *)r->map[0];

	memset(d, 0, sizeof(*d));
	d->op = PXY_K_OP_HMAC;
	d->mac = PXY_MAC_SHA256;
	d->mac_key_len = 16;
	d->in_len = (uint32_t)n;
	d->out_cap = PXY_K_REC_SLOT;
	assert_int_equal(RAND_bytes(key, 16), 1);
	memcpy(d->mac_key, key, 16);
	assert_int_equal(RAND_bytes(r->map[1], (int)n), 1);
}

static void test_buffers_and_runs(void **state)
{
	struct rig r;
	uint8_t key[16], want[32];
	unsigned wl = 0;
	const struct pxy_k_rec_result *res;

	(void)state;
	rig_open(&r);
	res = (const struct pxy_k_rec_result *)r.map[3];
	hmac_desc(&r, key, 1000);

	/* nothing synced: the kernel reads zeros (an invalid descriptor), and its
	 * result stays on the device until synced back */
	assert_int_equal(rig_run(&r), PXY_RUN_COMPLETED);
	assert_int_equal(res->status, 0);
	assert_int_equal(r.dp->bo_sync(r.bo[3], 0, sizeof(*res), 0), 0);
	assert_int_equal(res->status, PXY_K_DONE);
	assert_int_equal(res->flags, PXY_K_F_BADDESC);

	/* synced: the right MAC */
	assert_int_equal(r.dp->bo_sync(r.bo[0], 1, sizeof(struct pxy_k_rec_desc), 0), 0);
	assert_int_equal(r.dp->bo_sync(r.bo[1], 1, 1000, 0), 0);
	assert_int_equal(rig_run(&r), PXY_RUN_COMPLETED);
	assert_int_equal(r.dp->bo_sync(r.bo[3], 0, sizeof(*res), 0), 0);
	assert_int_equal(res->status, PXY_K_DONE);
	assert_int_equal(res->flags, 0);
	assert_int_equal(res->out_len, 32);
	assert_non_null(HMAC(EVP_sha256(), key, 16, r.map[1], 1000, want, &wl));
	assert_memory_equal(res->mac, want, 32);

	/* syncs out of a buffer's bounds are refused */
	assert_int_equal(r.dp->bo_sync(r.bo[3], 0, 16, sizeof(struct pxy_k_rec_result) * PXY_K_REC_MAX_BATCH), -1);
	assert_int_equal(r.dp->bo_sync(r.bo[3], 0, SIZE_MAX, 1), -1);
	rig_close(&r);
}

static void test_failed_card_runs_end_in_error(void **state)
{
	struct rig r;
	uint8_t key[16];

	(void)state;
	setenv("PXY_EMU_FAIL_AFTER", "1", 1);
	rig_open(&r);
	unsetenv("PXY_EMU_FAIL_AFTER");
	hmac_desc(&r, key, 64);
	assert_int_equal(rig_run(&r), PXY_RUN_COMPLETED);
	assert_int_equal(rig_run(&r), PXY_RUN_ERROR);
	assert_int_equal(rig_run(&r), PXY_RUN_ERROR);
	rig_close(&r);
}

/* The host's arithmetic, counted: the kernels must call it when it is lent. */
static int host_calls;

static int count_hmac(int alg, const uint8_t *key, uint32_t key_len, const uint8_t *hdr, uint32_t hdr_len,
		      const uint8_t *msg, uint32_t msg_len, uint8_t *out)
{
	host_calls++;
	return pxy_emu_host()->hmac(alg, key, key_len, hdr, hdr_len, msg, msg_len, out);
}

static void test_inline_runs_and_host_arithmetic(void **state)
{
	struct rig r;
	struct pxy_k_emu_host counted = *pxy_emu_host();
	struct pxy_dev_emu_opts o = { .host = &counted, .inline_runs = 1 };
	uint8_t key[16], want[32];
	unsigned wl = 0;
	const struct pxy_k_rec_result *res;
	char err[256];
	void *dev;
	uint8_t uuid[16];

	(void)state;
	counted.hmac = count_hmac;
	/* configured after the xclbin is loaded and before any kernel is opened */
	memset(&r, 0, sizeof(r));
	r.dp = pxy_dev_find("emu");
	assert_int_equal(r.dp->open(0, &dev, err, sizeof(err)), 0);
	assert_int_equal(r.dp->emu_configure(dev, &o), -1); /* nothing loaded yet */
	r.dp->close(dev);
	assert_null(pxy_dev_find("xrt")->emu_configure); /* XRT has its own emulation settings */

	/* rig_open opens the kernel; reconfigure its device before that by hand */
	r.dp = pxy_dev_find("emu");
	assert_int_equal(r.dp->open(0, &r.dev, err, sizeof(err)), 0);
	assert_int_equal(r.dp->load_xclbin(r.dev, xclbin(), uuid, err, sizeof(err)), 0);
	assert_int_equal(r.dp->emu_configure(r.dev, &o), 1); /* the host build of the kernels takes it */
	r.k = r.dp->kernel_open(r.dev, uuid, PXY_K_REC_NAME);
	assert_non_null(r.k);
	for (int i = 0; i < 4; i++) {
		static const int args[4] = { PXY_K_REC_ARG_DESCS, PXY_K_REC_ARG_IN, PXY_K_REC_ARG_OUT,
					     PXY_K_REC_ARG_RESULTS };
		size_t sz = i == 0 ? sizeof(struct pxy_k_rec_desc) * PXY_K_REC_MAX_BATCH
			  : i == 3 ? sizeof(struct pxy_k_rec_result) * PXY_K_REC_MAX_BATCH
				   : (size_t)PXY_K_REC_SLOT * PXY_K_REC_MAX_BATCH;

		r.bo[i] = r.dp->bo_alloc(r.dev, sz, r.dp->kernel_arg_group(r.k, args[i]));
		r.map[i] = r.dp->bo_map(r.bo[i]);
		assert_non_null(r.map[i]);
	}
	r.run = r.dp->run_open(r.k);
	assert_non_null(r.run);
	assert_int_equal(r.dp->run_set_arg_bo(r.run, PXY_K_REC_ARG_DESCS, r.bo[0]), 0);
	assert_int_equal(r.dp->run_set_arg_bo(r.run, PXY_K_REC_ARG_IN, r.bo[1]), 0);
	assert_int_equal(r.dp->run_set_arg_bo(r.run, PXY_K_REC_ARG_OUT, r.bo[2]), 0);
	assert_int_equal(r.dp->run_set_arg_bo(r.run, PXY_K_REC_ARG_RESULTS, r.bo[3]), 0);
	assert_int_equal(r.dp->run_set_arg_u32(r.run, PXY_K_REC_ARG_N, 1), 0);
	assert_int_equal(r.dp->run_set_callback(r.run, on_end, &r.cb), 0);
	res = (const struct pxy_k_rec_result *)r.map[3];
	hmac_desc(&r, key, 1000);
	assert_int_equal(r.dp->bo_sync(r.bo[0], 1, sizeof(struct pxy_k_rec_desc), 0), 0);
	assert_int_equal(r.dp->bo_sync(r.bo[1], 1, 1000, 0), 0);

	/* inline: the run has ended, and called back, when run_start returns */
	host_calls = 0;
	assert_int_equal(r.dp->run_start(r.run), 0);
	assert_int_equal(r.cb.calls, 1);
	assert_int_equal(r.cb.last, PXY_RUN_COMPLETED);
	assert_int_equal(r.dp->run_state(r.run), PXY_RUN_COMPLETED);
	assert_int_equal(host_calls, 1);
	assert_int_equal(r.dp->bo_sync(r.bo[3], 0, sizeof(*res), 0), 0);
	assert_int_equal(res->status, PXY_K_DONE);
	assert_int_equal(res->out_len, 32);
	assert_non_null(HMAC(EVP_sha256(), key, 16, r.map[1], 1000, want, &wl));
	assert_memory_equal(res->mac, want, 32);

	/* taken back: the kernels' own arithmetic, the same answer */
	o.host = NULL;
	assert_int_equal(r.dp->emu_configure(r.dev, &o), 0);
	assert_int_equal(r.dp->run_start(r.run), 0);
	assert_int_equal(r.cb.calls, 2);
	assert_int_equal(host_calls, 1);
	assert_int_equal(r.dp->bo_sync(r.bo[3], 0, sizeof(*res), 0), 0);
	assert_memory_equal(res->mac, want, 32);
	rig_close(&r);
}

static void test_xrt_needs_xilinx_xrt(void **state)
{
	const struct pxy_dev_provider *x = pxy_dev_find("xrt");
	char err[256] = "";
	void *dev = NULL;
	char *saved = getenv("XILINX_XRT") ? strdup(getenv("XILINX_XRT")) : NULL;

	(void)state;
	assert_non_null(x);
	unsetenv("XILINX_XRT");
	assert_int_equal(x->open(0, &dev, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "XILINX_XRT"));
	if (saved) {
		setenv("XILINX_XRT", saved, 1);
		free(saved);
	}
	assert_null(pxy_dev_find("nope"));
}

/* ---- the emu engine across card failures ------------------------------------------- */

#define NJOBS 300

struct hjob {
	struct pxy_job job;
	uint8_t key[80], in[600], out[64];
	int seen;
};

static void run_burst(struct pxy_engine *e, struct hjob *h, int n)
{
	int done = 0, rounds = 0;

	for (int i = 0; i < n; i++) {
		struct pxy_prim_job *p = &h[i].job.u.prim;

		memset(&h[i], 0, sizeof(h[i]));
		h[i].job.type = PXY_JOB_PRIMITIVE;
		h[i].job.tag = (uint64_t)i;
		p->op = PXY_PRIM_HMAC;
		p->mac = (uint8_t)(PXY_MAC_SHA1 + i % 3);
		p->key = h[i].key;
		p->key_len = (size_t)(i % 80) + 1; /* some longer than a SHA-1/256 block */
		p->in = h[i].in;
		p->in_len = (size_t)(i * 7) % sizeof(h[i].in);
		p->out = h[i].out;
		p->out_cap = sizeof(h[i].out);
		assert_int_equal(RAND_bytes(h[i].key, sizeof(h[i].key)), 1);
		assert_int_equal(RAND_bytes(h[i].in, sizeof(h[i].in)), 1);
		assert_int_equal(pxy_engine_submit(e, &h[i].job), PXY_OK);
	}
	pxy_engine_flush(e);
	while (done < n) {
		struct pollfd pfd = { .fd = e->event_fd, .events = POLLIN };
		struct pxy_job *out[64];
		size_t m;

		poll(&pfd, 1, 50);
		pxy_engine_ack(e);
		pxy_engine_flush(e);
		m = pxy_engine_poll(e, out, 64);
		for (size_t i = 0; i < m; i++) {
			struct hjob *j = (struct hjob *)out[i];
			const EVP_MD *md = j->job.u.prim.mac == PXY_MAC_SHA1	 ? EVP_sha1()
					   : j->job.u.prim.mac == PXY_MAC_SHA256 ? EVP_sha256()
										 : EVP_sha384();
			uint8_t want[64];
			unsigned wl = 0;

			assert_int_equal(j->seen, 0);
			j->seen = 1;
			assert_int_equal(j->job.status, PXY_OK);
			assert_int_equal(j->job.u.prim.ok, 1);
			assert_non_null(HMAC(md, j->key, (int)j->job.u.prim.key_len, j->in, j->job.u.prim.in_len, want, &wl));
			assert_int_equal(j->job.u.prim.out_len, wl);
			assert_memory_equal(j->out, want, wl);
			done++;
		}
		assert_true(++rounds < 600); /* 30 s */
	}
	assert_int_equal(e->stats.inflight, 0);
}

static void test_engine_fails_over_on_error(void **state)
{
	struct pxy_engine_params p = { .threads = 1, .batch = 16 };
	struct pxy_engine *e = NULL;
	struct hjob *h = calloc(NJOBS, sizeof(*h));

	(void)state;
	setenv("PXY_EMU_FAIL_AFTER", "3", 1);
	assert_int_equal(pxy_engine_open("emu", &p, &e), PXY_OK);
	unsetenv("PXY_EMU_FAIL_AFTER");
	run_burst(e, h, NJOBS);
	assert_int_equal(e->stats.device_failures >= 1, 1);
	assert_true(e->stats.batched_jobs >= 3 * 16);
	assert_true(e->stats.software_jobs > 0);
	/* later work goes straight to software */
	run_burst(e, h, 20);
	pxy_engine_close(e);
	free(h);
}

static void test_engine_fails_over_on_hang(void **state)
{
	struct pxy_engine_params p = { .threads = 1, .run_timeout_ms = 150 };
	struct pxy_engine *e = NULL;
	struct hjob *h = calloc(NJOBS, sizeof(*h));

	(void)state;
	setenv("PXY_EMU_STALL_MS", "1000", 1);
	assert_int_equal(pxy_engine_open("emu", &p, &e), PXY_OK);
	unsetenv("PXY_EMU_STALL_MS");
	run_burst(e, h, 40);
	assert_int_equal(e->stats.device_failures, 1);
	assert_int_equal(e->stats.software_jobs, 40);
	pxy_engine_close(e); /* waits for the stalled run to end, then frees everything */
	free(h);
}

/* Inline (no thread to spare): the same failovers, with the engine synchronous. */
static void test_engine_inline_fails_over(void **state)
{
	struct pxy_engine_params p = { .threads = 0, .batch = 16 };
	struct pxy_engine *e = NULL;
	struct hjob *h = calloc(NJOBS, sizeof(*h));

	(void)state;
	assert_int_equal(pxy_engine_open("emu", &p, &e), PXY_OK);
	assert_true(e->flags & PXY_ENGINE_F_SYNC);
	run_burst(e, h, NJOBS);
	assert_int_equal(e->stats.software_jobs, 0);
	assert_int_equal(e->stats.device_failures, 0);
	pxy_engine_close(e);

	setenv("PXY_EMU_FAIL_AFTER", "3", 1);
	assert_int_equal(pxy_engine_open("emu", &p, &e), PXY_OK);
	unsetenv("PXY_EMU_FAIL_AFTER");
	run_burst(e, h, NJOBS);
	assert_int_equal(e->stats.device_failures >= 1, 1);
	assert_true(e->stats.software_jobs > 0);
	pxy_engine_close(e);

	/* a run that outlasts the timeout is a failed card, even when it ends */
	p.run_timeout_ms = 100;
	setenv("PXY_EMU_STALL_MS", "300", 1);
	assert_int_equal(pxy_engine_open("emu", &p, &e), PXY_OK);
	unsetenv("PXY_EMU_STALL_MS");
	run_burst(e, h, 40);
	assert_int_equal(e->stats.device_failures, 1);
	assert_int_equal(e->stats.software_jobs, 40);
	pxy_engine_close(e);
	free(h);
}

static void test_engine_on_many_compute_units(void **state)
{
	struct pxy_engine_params p = { .threads = 1, .batch = 4, .xclbin = PXY_EMU_MULTI };
	struct pxy_xclbin_info info;
	struct pxy_engine *e = NULL;
	struct hjob *h = calloc(NJOBS, sizeof(*h));
	char err[256];

	(void)state;
	assert_int_equal(pxy_xclbin_info(PXY_EMU_MULTI, &info, err, sizeof(err)), 0);
	assert_int_equal(info.ncus, 5);
	assert_string_equal(info.cu[2], "rsa_crt_decrypt:rsa_crt_decrypt_3");
	assert_int_equal(pxy_engine_open("emu", &p, &e), PXY_OK);
	run_burst(e, h, NJOBS);
	assert_int_equal(e->stats.software_jobs, 0);
	assert_true(e->stats.launches >= NJOBS / 4);
	pxy_engine_close(e);
	free(h);
}

static void test_engine_open_errors(void **state)
{
	struct pxy_engine_params p = { 0 };
	struct pxy_engine *e = NULL;
	char why[256];

	(void)state;
	p.why = why;
	p.why_len = sizeof(why);
	p.xclbin = "/nonexistent.xclbin";
	assert_int_equal(pxy_engine_open("emu", &p, &e), PXY_E_ENGINE);
	assert_null(e);
	assert_non_null(strstr(why, "/nonexistent.xclbin"));
	p.xclbin = NULL;
	assert_int_equal(pxy_engine_open("xrt", &p, &e), PXY_E_ENGINE);
	assert_non_null(strstr(why, "--xclbin"));
	/* auto without a card: the emulation, and why */
	unsetenv("XILINX_XRT");
	assert_int_equal(pxy_engine_open("auto", &p, &e), PXY_OK);
	assert_string_equal(e->ops->name, "emu");
	assert_non_null(strstr(why, "XILINX_XRT is not set"));
	pxy_engine_close(e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_xclbin_layout_matches_xrt),
		cmocka_unit_test(test_xclbin_info),
		cmocka_unit_test(test_xclbin_damage_refused),
		cmocka_unit_test(test_buffers_and_runs),
		cmocka_unit_test(test_failed_card_runs_end_in_error),
		cmocka_unit_test(test_inline_runs_and_host_arithmetic),
		cmocka_unit_test(test_xrt_needs_xilinx_xrt),
		cmocka_unit_test(test_engine_fails_over_on_error),
		cmocka_unit_test(test_engine_fails_over_on_hang),
		cmocka_unit_test(test_engine_inline_fails_over),
		cmocka_unit_test(test_engine_on_many_compute_units),
		cmocka_unit_test(test_engine_open_errors),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
