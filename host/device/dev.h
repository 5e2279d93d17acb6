/*
 * The device layer: the shape of XRT's native C API (xrt_device.h,
 * xrt_kernel.h, xrt_bo.h), behind one table of functions with two
 * providers:
 *
 *   xrt  XRT itself, loaded with dlopen("libxrt_coreutil.so.2") (no
 *        link-time dependency; refused when XILINX_XRT is unset, where XRT
 *        would abort the process);
 *   emu  in-process: loads the emulation xclbin (an axlf whose BITSTREAM is
 *        the kernels compiled for the host), binds kernels by the names in
 *        its metadata, keeps device memory apart from host memory and copies
 *        on sync, runs each compute unit on a worker thread, and reports run
 *        states and completion callbacks as XRT does.
 *
 * The engines above this layer (host/engine/fpga.c) do not know which one
 * they drive.
 */
#ifndef PXY_DEV_H
#define PXY_DEV_H

#include <stddef.h>
#include <stdint.h>

/* run states: the values of XRT's enum ert_cmd_state */
enum pxy_run_state {
	PXY_RUN_NEW = 1,
	PXY_RUN_QUEUED = 2,
	PXY_RUN_RUNNING = 3,
	PXY_RUN_COMPLETED = 4,
	PXY_RUN_ERROR = 5,
	PXY_RUN_ABORT = 6,
	PXY_RUN_SUBMITTED = 7,
	PXY_RUN_TIMEOUT = 8,
	PXY_RUN_NORESPONSE = 9,
};

typedef void (*pxy_run_cb)(void *run, int state, void *data);

struct pxy_k_emu_host;
struct pxy_engine_cu_stats;

/* How the emulation device computes (the emu provider's own settings; XRT's emulation has emconfig.json). */
/*
 * Card timing in emulation (--emu-timing): a run ends no earlier than the
 * card would end it by firmware/perf_model.py's model of the kernels, read
 * from the table it writes (firmware/platforms/<card>.timing): cycles per
 * RSA group by key size; per record launch a fixed part, a part per record
 * and one per byte by suite; and a PCIe link per direction that all record
 * runs share. `scale` stretches every modelled time (a slower card), so that
 * a host slower than the card can still keep pace with the model.
 */
struct pxy_dev_emu_timing {
	char platform[32];
	double freq_hz, scale;
	int rsa_cus, rec_cus;        /* compute units the model places: the xclbin must have as many */
	int rsa_group;               /* jobs per lock-step group */
	double rsa_group_cycles[3];  /* RSA-2048, -3072, -4096 */
	double rec_fixed, rec_per_record, rec_gcm_per_byte, rec_cbc_per_byte;
	double pcie_Bps;             /* per direction */
	struct pxy_engine_cu_stats *out; /* [0] RSA, [1] records: counters the device keeps (atomics) */
};

/** Read a timing table: "u250", "u55c", or a file, with ":SCALE" (default 1). 0, or -1 with err. */
int pxy_dev_emu_timing_load(const char *spec, struct pxy_dev_emu_timing *t, char *err, size_t err_len);

/** The emulation xclbin of this build (or install) with the compute units `platform`'s model places
 * (proxyssl_emu_<platform>.xclbin); NULL for the default one with one unit per kernel. */
const char *pxy_emu_xclbin_path_for(const char *platform);

struct pxy_dev_emu_opts {
	const struct pxy_k_emu_host *host; /* lend the kernels the host's arithmetic (NULL: their own) */
	void (*idle)(void);  /* called on a compute unit's thread after it has had no work for a while */
	int inline_runs;     /* 1: no compute-unit threads; a run executes inside run_start() on the
			      * caller's thread and its callback is called before run_start() returns */
	int shared_memory;   /* 1: a buffer's device memory is its host memory and a sync moves
			      * nothing, as a card's DMA costs the host no copy (0: kept apart and
			      * copied on sync, so that a missing sync shows as wrong results) */
	struct pxy_dev_emu_timing *timing; /* card timing (NULL: runs end when the emulation ends) */
};

struct pxy_dev_provider {
	const char *name;
	/* device */
	int (*open)(unsigned index, void **dev, char *err, size_t err_len);
	int (*load_xclbin)(void *dev, const char *path, uint8_t uuid[16], char *err, size_t err_len);
	void (*close)(void *dev);
	/* kernels: "name" (any of its compute units) or "name:{instance}" (that one) */
	void *(*kernel_open)(void *dev, const uint8_t uuid[16], const char *name);
	int (*kernel_arg_group)(void *kernel, int argno); /* memory bank of a buffer argument */
	void (*kernel_close)(void *kernel);
	/* buffers: host memory, device memory, synced explicitly */
	void *(*bo_alloc)(void *dev, size_t size, int group);
	void *(*bo_map)(void *bo);
	int (*bo_sync)(void *bo, int to_device, size_t size, size_t offset);
	void (*bo_free)(void *bo);
	/* runs */
	void *(*run_open)(void *kernel);
	int (*run_set_arg_bo)(void *run, int index, void *bo);
	int (*run_set_arg_u32)(void *run, int index, uint32_t value);
	/* called once per start, from the provider's thread, when the run ends (any end state) */
	int (*run_set_callback)(void *run, pxy_run_cb cb, void *data);
	int (*run_start)(void *run);
	int (*run_wait)(void *run, unsigned timeout_ms); /* the state after waiting */
	int (*run_state)(void *run);
	void (*run_close)(void *run);
	/*
	 * Emulation only (NULL in the xrt provider): after load_xclbin, before
	 * kernel_open. Returns 1 if the kernels took the host's arithmetic, 0 if
	 * they compute on their own (not asked for, or a library in the synthesis
	 * form), -1 on error.
	 */
	int (*emu_configure)(void *dev, const struct pxy_dev_emu_opts *o);
};

extern const struct pxy_dev_provider pxy_dev_emu;
extern const struct pxy_dev_provider pxy_dev_xrt;

const struct pxy_dev_provider *pxy_dev_find(const char *name);

#define PXY_XCLBIN_MAX_CUS 64

struct pxy_xclbin_info {
	uint8_t uuid[16];
	char vbnv[65];    /* the platform it was built for */
	int mode;         /* axlf header mode */
	int host_kernels; /* 1: an emulation xclbin (its BITSTREAM is a host library) */
	int ncus;         /* compute units, from IP_LAYOUT */
	char cu[PXY_XCLBIN_MAX_CUS][65]; /* "kernel:instance" */
};

/** Read an xclbin's header and section table. 0, or -1 with err. */
int pxy_xclbin_info(const char *path, struct pxy_xclbin_info *info, char *err, size_t err_len);

/** Check an emulation xclbin in memory without loading its kernels (tests, fuzzing). 0 or -1 with err. */
int pxy_emu_xclbin_check(const uint8_t *f, size_t len, char *err, size_t err_len);

/** The emulation xclbin of this build (build tree, else installed); NULL if neither exists. */
const char *pxy_emu_xclbin_path(void);

#endif
