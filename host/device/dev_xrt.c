/*
 * The XRT provider: XRT's native C API (xrt_device.h, xrt_kernel.h,
 * xrt_bo.h), loaded at run time with dlopen("libxrt_coreutil.so.2") so the
 * binary has no link-time dependency on XRT and starts on machines without
 * it.
 *
 * XRT aborts the process when XILINX_XRT is unset (it looks up its
 * installation from there), so open() refuses to touch the library then.
 * XRT's handles are opaque pointers; its run callback has XRT's signature,
 * so each run carries a small trampoline record that turns it into ours.
 *
 * Every call into XRT catches its C++ exceptions on XRT's side and returns
 * NULL / -1 with a message on stderr; this file turns those into errors.
 */
#include "device/dev.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define XRT_LIB "libxrt_coreutil.so.2"

/* XRT's enum xclBOSyncDirection */
#define XCL_BO_SYNC_BO_TO_DEVICE 0
#define XCL_BO_SYNC_BO_FROM_DEVICE 1

typedef void *xrt_handle;
typedef void (*xrt_run_cb)(xrt_handle run, int state, void *data);

static struct {
	pthread_once_t once;
	void *lib;
	char err[256];
	xrt_handle (*device_open)(unsigned);
	int (*device_close)(xrt_handle);
	int (*load_xclbin_file)(xrt_handle, const char *);
	int (*get_xclbin_uuid)(xrt_handle, unsigned char *);
	xrt_handle (*kernel_open)(xrt_handle, const unsigned char *, const char *);
	int (*kernel_close)(xrt_handle);
	int (*kernel_arg_group)(xrt_handle, int);
	xrt_handle (*bo_alloc)(xrt_handle, size_t, uint64_t, int);
	void *(*bo_map)(xrt_handle);
	int (*bo_sync)(xrt_handle, int, size_t, size_t);
	int (*bo_free)(xrt_handle);
	xrt_handle (*run_open)(xrt_handle);
	int (*run_set_arg)(xrt_handle, int, ...);
	int (*run_set_callback)(xrt_handle, int, xrt_run_cb, void *);
	int (*run_start)(xrt_handle);
	int (*run_wait_for)(xrt_handle, unsigned);
	int (*run_state)(xrt_handle);
	int (*run_close)(xrt_handle);
} X = { .once = PTHREAD_ONCE_INIT };

static void xrt_load(void)
{
	static const struct {
		const char *name;
		size_t off;
	} syms[] = {
#define S(field, sym) { sym, offsetof(__typeof__(X), field) }
		S(device_open, "xrtDeviceOpen"),
		S(device_close, "xrtDeviceClose"),
		S(load_xclbin_file, "xrtDeviceLoadXclbinFile"),
		S(get_xclbin_uuid, "xrtDeviceGetXclbinUUID"),
		S(kernel_open, "xrtPLKernelOpen"),
		S(kernel_close, "xrtKernelClose"),
		S(kernel_arg_group, "xrtKernelArgGroupId"),
		S(bo_alloc, "xrtBOAlloc"),
		S(bo_map, "xrtBOMap"),
		S(bo_sync, "xrtBOSync"),
		S(bo_free, "xrtBOFree"),
		S(run_open, "xrtRunOpen"),
		S(run_set_arg, "xrtRunSetArg"),
		S(run_set_callback, "xrtRunSetCallback"),
		S(run_start, "xrtRunStart"),
		S(run_wait_for, "xrtRunWaitFor"),
		S(run_state, "xrtRunState"),
		S(run_close, "xrtRunClose"),
#undef S
	};
	void *lib = dlopen(XRT_LIB, RTLD_NOW | RTLD_LOCAL);

	if (!lib) {
		snprintf(X.err, sizeof(X.err), "cannot load XRT (%s): %s", XRT_LIB, dlerror());
		return;
	}
	for (size_t i = 0; i < sizeof(syms) / sizeof(syms[0]); i++) {
		void *f = dlsym(lib, syms[i].name);

		if (!f) {
			snprintf(X.err, sizeof(X.err), "%s has no %s (XRT too old?)", XRT_LIB, syms[i].name);
			dlclose(lib);
			return;
		}
		memcpy((char *)&X + syms[i].off, &f, sizeof(f));
	}
	X.lib = lib;
}

struct xrt_dev {
	xrt_handle dev;
};

struct xrt_run {
	xrt_handle run;
	pxy_run_cb cb;
	void *cb_data;
};

static int xrt_open(unsigned index, void **out, char *err, size_t n)
{
	struct xrt_dev *d;
	const char *home = getenv("XILINX_XRT");

	if (!home || !*home) {
		snprintf(err, n, "XILINX_XRT is not set (source /opt/xilinx/xrt/setup.sh)");
		return -1;
	}
	pthread_once(&X.once, xrt_load);
	if (!X.lib) {
		snprintf(err, n, "%s", X.err);
		return -1;
	}
	d = calloc(1, sizeof(*d));
	if (!d) {
		snprintf(err, n, "out of memory");
		return -1;
	}
	d->dev = X.device_open(index);
	if (!d->dev) {
		snprintf(err, n, "XRT: no device %u (%s)", index, strerror(errno));
		free(d);
		return -1;
	}
	*out = d;
	return 0;
}

static int xrt_load_xclbin(void *dv, const char *path, uint8_t uuid[16], char *err, size_t n)
{
	struct xrt_dev *d = dv;

	if (X.load_xclbin_file(d->dev, path) != 0) {
		snprintf(err, n, "XRT: cannot load %s (%s)", path, strerror(errno));
		return -1;
	}
	if (X.get_xclbin_uuid(d->dev, uuid) != 0) {
		snprintf(err, n, "XRT: no UUID for %s", path);
		return -1;
	}
	return 0;
}

static void xrt_close(void *dv)
{
	struct xrt_dev *d = dv;

	if (!d)
		return;
	X.device_close(d->dev);
	free(d);
}

static void *xrt_kernel_open(void *dv, const uint8_t uuid[16], const char *name)
{
	return X.kernel_open(((struct xrt_dev *)dv)->dev, uuid, name);
}

static int xrt_kernel_arg_group(void *k, int argno)
{
	return X.kernel_arg_group(k, argno);
}

static void xrt_kernel_close(void *k)
{
	if (k)
		X.kernel_close(k);
}

static void *xrt_bo_alloc(void *dv, size_t size, int group)
{
	/* flags 0: XRT_BO_FLAGS_NONE, a device buffer with a host-side copy */
	return X.bo_alloc(((struct xrt_dev *)dv)->dev, size, 0, group);
}

static void *xrt_bo_map(void *bo)
{
	return X.bo_map(bo);
}

static int xrt_bo_sync(void *bo, int to_device, size_t size, size_t off)
{
	return X.bo_sync(bo, to_device ? XCL_BO_SYNC_BO_TO_DEVICE : XCL_BO_SYNC_BO_FROM_DEVICE, size, off) == 0 ? 0 : -1;
}

static void xrt_bo_free(void *bo)
{
	if (bo)
		X.bo_free(bo);
}

static void *xrt_run_open(void *k)
{
	struct xrt_run *r = calloc(1, sizeof(*r));

	if (!r)
		return NULL;
	r->run = X.run_open(k);
	if (!r->run) {
		free(r);
		return NULL;
	}
	return r;
}

static int xrt_run_set_arg_bo(void *rv, int index, void *bo)
{
	return X.run_set_arg(((struct xrt_run *)rv)->run, index, (xrt_handle)bo) == 0 ? 0 : -1;
}

static int xrt_run_set_arg_u32(void *rv, int index, uint32_t v)
{
	/* XRT reads a 4-byte scalar from the va_list as unsigned int (xrtRunSetArgV is
	 * not exported with C linkage in every release) */
	return X.run_set_arg(((struct xrt_run *)rv)->run, index, (unsigned int)v) == 0 ? 0 : -1;
}

static void trampoline(xrt_handle run, int state, void *data)
{
	struct xrt_run *r = data;

	(void)run;
	r->cb(r, state, r->cb_data);
}

/*
 * XRT calls back when the run reaches the given state "or any end state";
 * registering for COMPLETED therefore also reports ERROR and ABORT.
 */
static int xrt_run_set_callback(void *rv, pxy_run_cb cb, void *data)
{
	struct xrt_run *r = rv;

	r->cb = cb;
	r->cb_data = data;
	return X.run_set_callback(r->run, PXY_RUN_COMPLETED, trampoline, r) == 0 ? 0 : -1;
}

static int xrt_run_start(void *rv)
{
	return X.run_start(((struct xrt_run *)rv)->run) == 0 ? 0 : -1;
}

static int xrt_run_wait(void *rv, unsigned timeout_ms)
{
	return X.run_wait_for(((struct xrt_run *)rv)->run, timeout_ms);
}

static int xrt_run_state(void *rv)
{
	return X.run_state(((struct xrt_run *)rv)->run);
}

static void xrt_run_close(void *rv)
{
	struct xrt_run *r = rv;

	if (!r)
		return;
	X.run_close(r->run);
	free(r);
}

const struct pxy_dev_provider pxy_dev_xrt = {
	.name = "xrt",
	.open = xrt_open,
	.load_xclbin = xrt_load_xclbin,
	.close = xrt_close,
	.kernel_open = xrt_kernel_open,
	.kernel_arg_group = xrt_kernel_arg_group,
	.kernel_close = xrt_kernel_close,
	.bo_alloc = xrt_bo_alloc,
	.bo_map = xrt_bo_map,
	.bo_sync = xrt_bo_sync,
	.bo_free = xrt_bo_free,
	.run_open = xrt_run_open,
	.run_set_arg_bo = xrt_run_set_arg_bo,
	.run_set_arg_u32 = xrt_run_set_arg_u32,
	.run_set_callback = xrt_run_set_callback,
	.run_start = xrt_run_start,
	.run_wait = xrt_run_wait,
	.run_state = xrt_run_state,
	.run_close = xrt_run_close,
};
