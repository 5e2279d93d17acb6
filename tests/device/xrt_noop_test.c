/*
 * The xrt provider and engine against the real XRT (Debian's libxrt1) in its
 * no-op emulation mode: XCL_EMULATION_MODE=noop, XILINX_XRT a folder of
 * links to the multiarch libraries, this build's emulation xclbin.
 *
 * XRT's noop shim accepts every call and computes nothing, so this checks
 * everything about how proxyssl drives XRT: open, xclbin load and UUID,
 * kernel lookup by name, argument groups, buffer alloc/map/sync/free, runs
 * with arguments, completion callbacks, and a clean teardown (XRT aborts at
 * exit on leaked buffers). Through the engine, the uncomputed results
 * (no PXY_K_DONE) must be detected as a card failure and every job must
 * still complete, from software, through the eventfd.
 *
 * Skipped (77) where libxrt is not installed.
 */
#include <dirent.h>
#include <dlfcn.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "device/dev.h"
#include "proxyssl/engine.h"
#include "proxyssl/kernel_abi.h"

#define CHECK(c)                                                                   \
	do {                                                                       \
		if (!(c)) {                                                        \
			fprintf(stderr, "xrt_noop_test: %s:%d: %s\n", __FILE__, __LINE__, #c); \
			exit(1);                                                   \
		}                                                                  \
	} while (0)

static char home[256];

/* XILINX_XRT=<tmp>/ with lib/ linking every libxrt* next to libxrt_coreutil.so.2 */
static int make_xrt_home(void)
{
	void *h = dlopen("libxrt_coreutil.so.2", RTLD_NOW | RTLD_LOCAL);
	void *sym;
	Dl_info info;
	char dir[256], lib[300];
	DIR *d;
	struct dirent *de;

	if (!h)
		return -1;
	sym = dlsym(h, "xrtDeviceOpen");
	if (!sym || !dladdr(sym, &info) || !info.dli_fname) {
		dlclose(h);
		return -1;
	}
	snprintf(dir, sizeof(dir), "%s", info.dli_fname);
	*strrchr(dir, '/') = '\0';
	dlclose(h);
	snprintf(home, sizeof(home), "/tmp/proxyssl-xrt-XXXXXX");
	CHECK(mkdtemp(home));
	snprintf(lib, sizeof(lib), "%s/lib", home);
	CHECK(mkdir(lib, 0755) == 0);
	d = opendir(dir);
	CHECK(d);
	while ((de = readdir(d))) {
		char from[600], to[600];

		if (strncmp(de->d_name, "libxrt", 6))
			continue;
		snprintf(from, sizeof(from), "%s/%s", dir, de->d_name);
		snprintf(to, sizeof(to), "%s/%s", lib, de->d_name);
		CHECK(symlink(from, to) == 0);
	}
	closedir(d);
	return 0;
}

static void remove_xrt_home(void)
{
	char lib[300], p[700];
	DIR *d;
	struct dirent *de;

	snprintf(lib, sizeof(lib), "%s/lib", home);
	d = opendir(lib);
	if (d) {
		while ((de = readdir(d)))
			if (de->d_name[0] != '.') {
				snprintf(p, sizeof(p), "%s/%s", lib, de->d_name);
				unlink(p);
			}
		closedir(d);
	}
	rmdir(lib);
	rmdir(home);
}

static volatile int cb_calls, cb_state;

static void on_end(void *run, int st, void *data)
{
	(void)run;
	CHECK(data == &cb_calls);
	cb_state = st;
	__atomic_fetch_add(&cb_calls, 1, __ATOMIC_ACQ_REL);
}

static void provider(const char *xclbin)
{
	const struct pxy_dev_provider *dp = pxy_dev_find("xrt");
	struct pxy_xclbin_info info;
	char err[256];
	void *dev, *k, *run, *bo[4];
	uint8_t uuid[16];
	const int args[4] = { PXY_K_RSA_ARG_KEYS, PXY_K_RSA_ARG_JOBS, PXY_K_RSA_ARG_RESULTS, -1 };
	int st;

	CHECK(dp);
	if (dp->open(0, &dev, err, sizeof(err)) != 0) {
		fprintf(stderr, "xrt_noop_test: open: %s\n", err);
		exit(1);
	}
	CHECK(dp->load_xclbin(dev, xclbin, uuid, err, sizeof(err)) == 0);
	CHECK(pxy_xclbin_info(xclbin, &info, err, sizeof(err)) == 0);
	CHECK(memcmp(uuid, info.uuid, 16) == 0);
	k = dp->kernel_open(dev, uuid, PXY_K_RSA_NAME);
	CHECK(k);
	for (int i = 0; i < 3; i++) {
		int g = dp->kernel_arg_group(k, args[i]);

		CHECK(g >= 0);
		bo[i] = dp->bo_alloc(dev, 64 * 1024, g);
		CHECK(bo[i]);
		CHECK(dp->bo_map(bo[i]));
		memset(dp->bo_map(bo[i]), 0x5a, 64 * 1024);
		CHECK(dp->bo_sync(bo[i], 1, 64 * 1024, 0) == 0);
		CHECK(dp->bo_sync(bo[i], 0, 4096, 4096) == 0);
	}
	run = dp->run_open(k);
	CHECK(run);
	for (int i = 0; i < 3; i++)
		CHECK(dp->run_set_arg_bo(run, args[i], bo[i]) == 0);
	CHECK(dp->run_set_arg_u32(run, PXY_K_RSA_ARG_N, 1) == 0);
	CHECK(dp->run_set_callback(run, on_end, (void *)&cb_calls) == 0);
	for (int round = 1; round <= 3; round++) {
		CHECK(dp->run_start(run) == 0);
		st = dp->run_wait(run, 5000);
		CHECK(st == PXY_RUN_COMPLETED);
		for (int i = 0; i < 1000 && __atomic_load_n(&cb_calls, __ATOMIC_ACQUIRE) < round; i++)
			poll(NULL, 0, 1);
		CHECK(cb_calls == round);
		CHECK(cb_state == PXY_RUN_COMPLETED);
	}
	dp->run_close(run);
	for (int i = 0; i < 3; i++)
		dp->bo_free(bo[i]);
	dp->kernel_close(k);
	CHECK(dp->kernel_open(dev, uuid, "no_such_kernel") == NULL);
	dp->close(dev);
	printf("xrt provider: open, load (uuid matches), kernel, 3 argument groups, 3 buffers, 3 runs with callbacks, teardown: ok\n");
}

struct hjob {
	struct pxy_job job;
	uint8_t key[32], in[256], out[64];
};

static void engine(const char *xclbin)
{
	struct pxy_engine_params p = { .threads = 1, .xclbin = xclbin };
	struct pxy_engine *e = NULL;
	struct hjob h[100];
	char why[256] = "";
	int done = 0;

	p.why = why;
	p.why_len = sizeof(why);
	if (pxy_engine_open("xrt", &p, &e) != PXY_OK) {
		fprintf(stderr, "xrt_noop_test: engine xrt: %s\n", why);
		exit(1);
	}
	for (int i = 0; i < 100; i++) {
		memset(&h[i], 0, sizeof(h[i]));
		h[i].job.type = PXY_JOB_PRIMITIVE;
		h[i].job.u.prim.op = PXY_PRIM_HMAC;
		h[i].job.u.prim.mac = PXY_MAC_SHA256;
		h[i].job.u.prim.key = h[i].key;
		h[i].job.u.prim.key_len = sizeof(h[i].key);
		h[i].job.u.prim.in = h[i].in;
		h[i].job.u.prim.in_len = (size_t)i;
		h[i].job.u.prim.out = h[i].out;
		h[i].job.u.prim.out_cap = sizeof(h[i].out);
		CHECK(RAND_bytes(h[i].key, sizeof(h[i].key)) == 1 && RAND_bytes(h[i].in, sizeof(h[i].in)) == 1);
		CHECK(pxy_engine_submit(e, &h[i].job) == PXY_OK);
	}
	pxy_engine_flush(e);
	for (int rounds = 0; done < 100; rounds++) {
		struct pollfd pfd = { .fd = e->event_fd, .events = POLLIN };
		struct pxy_job *out[32];
		size_t m;

		CHECK(rounds < 400);
		poll(&pfd, 1, 50);
		pxy_engine_ack(e);
		pxy_engine_flush(e);
		m = pxy_engine_poll(e, out, 32);
		for (size_t i = 0; i < m; i++) {
			struct hjob *j = (struct hjob *)out[i];
			uint8_t want[32];
			unsigned wl;

			CHECK(j->job.status == PXY_OK && j->job.u.prim.ok == 1 && j->job.u.prim.out_len == 32);
			CHECK(HMAC(EVP_sha256(), j->key, sizeof(j->key), j->in, j->job.u.prim.in_len, want, &wl));
			CHECK(memcmp(want, j->out, 32) == 0);
			done++;
		}
	}
	/* noop runs complete without computing: detected, and all work moved to software */
	CHECK(e->stats.launches >= 1);
	CHECK(e->stats.device_failures >= 1);
	CHECK(e->stats.software_jobs == 100);
	printf("xrt engine: %llu launch(es) completed without results -> card failure detected, 100/100 jobs right from "
	       "software via the eventfd\n",
	       (unsigned long long)e->stats.launches);
	pxy_engine_close(e);
}

int main(int argc, char **argv)
{
	const char *xclbin = argc > 1 ? argv[1] : pxy_emu_xclbin_path();

	if (!xclbin) {
		fprintf(stderr, "xrt_noop_test: no emulation xclbin\n");
		return 1;
	}
	if (make_xrt_home() < 0) {
		const char *allow = getenv("PXY_ALLOW_SKIP");
		int skip_ok = allow && !strcmp(allow, "1");

		printf("xrt_noop_test: libxrt_coreutil.so.2 not installed (Debian package libxrt1); %s\n",
		       skip_ok ? "skipped" : "cannot run");
		return skip_ok ? 77 : 1;
	}
	setenv("XILINX_XRT", home, 1);
	setenv("XCL_EMULATION_MODE", "noop", 1);
	provider(xclbin);
	engine(xclbin);
	remove_xrt_home();
	return 0;
}
