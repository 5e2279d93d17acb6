/*
 * The emulation provider: a device in this process.
 *
 * load_xclbin reads an axlf file (checking every offset and size against the
 * file before use), writes its BITSTREAM section - the kernels built for the
 * host - to a memfd and dlopen()s it, reads the kernels, arguments and
 * instances from EMBEDDED_METADATA, the compute units from IP_LAYOUT and the
 * memory bank of each argument from CONNECTIVITY.
 *
 * Buffers have host memory and separate device memory; only a sync moves
 * bytes between them, so a missing sync shows up as wrong results here too.
 * With shared memory (emu_configure) the two are one and a sync moves nothing:
 * what a card's DMA costs the host CPU, rather than what emulating it does.
 * Each compute unit is a worker thread taking runs from its kernel's queue;
 * a run goes NEW -> QUEUED -> RUNNING -> COMPLETED (or ERROR), and its
 * callback is invoked from the worker thread, as XRT invokes callbacks from
 * its own threads. With inline runs (emu_configure) there are no such
 * threads: a run executes inside run_start() on the caller's thread, the
 * callback before it returns; that is what a machine with no core to spare
 * wants.
 *
 * The kernels compute with their own arithmetic, or with the host's when
 * emu_configure lends it (kernel_abi.h, struct pxy_k_emu_host) and the
 * library is the host build that can take it.
 *
 * Test knobs, for the failover paths above this layer:
 *   PXY_EMU_FAIL_AFTER=N  every run after the first N ends in ERROR without
 *                         running, as on a card that stopped working;
 *   PXY_EMU_STALL_MS=N    every run waits N ms before it runs, as on a hung card.
 */
#include "device/dev.h"

#include <dlfcn.h>
#include <stddef.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <libxml/parser.h>
#include <libxml/tree.h>

#include "device/axlf.h"
#include "proxyssl/engine.h"
#include "proxyssl/kernel_abi.h"
#include "util/util.h"

#define EMU_MAX_KERNELS 8
#define EMU_MAX_ARGS 16
#define EMU_MAX_CUS 16
#define EMU_CU_STACK (16u << 20)

typedef int (*emu_entry)(const uint64_t *args, unsigned nargs);

struct emu_kernel_meta {
	char name[64];
	int nargs;
	int is_buffer[EMU_MAX_ARGS];
	int group[EMU_MAX_ARGS];
	int ncus;
};

struct emu_dev {
	void *lib;
	int lib_fd;
	uint8_t uuid[16];
	int loaded;
	struct emu_kernel_meta meta[EMU_MAX_KERNELS];
	int nkernels;
	long fail_after; /* < 0: never */
	long stall_ms;
	long runs_started;
	uint64_t link_free_ns; /* card timing: when the PCIe link is next free (under mu) */
	struct pxy_dev_emu_opts opts;
	pthread_mutex_t mu;
};

#define IDLE_MS 10 /* a compute unit without work this long calls opts.idle */

struct emu_run;

struct emu_kernel {
	struct emu_dev *dev;
	const struct emu_kernel_meta *meta;
	emu_entry entry;
	pthread_mutex_t mu;
	pthread_cond_t cv;   /* work for the compute units */
	pthread_cond_t done; /* a run finished */
	struct emu_run *q_head, *q_tail;
	int stopping;
	int ncus;
	pthread_t cus[EMU_MAX_CUS];
};

struct emu_bo {
	uint8_t *host, *device;
	size_t size;
};

struct emu_run {
	struct emu_kernel *k;
	uint64_t args[EMU_MAX_ARGS];
	int state;
	pxy_run_cb cb;
	void *cb_data;
	struct emu_run *next;
};

/* ---- xclbin --------------------------------------------------------------------- */

static int read_all(const char *path, uint8_t **out, size_t *len, char *err, size_t n)
{
	FILE *fp = fopen(path, "rb");
	uint8_t *buf = NULL;
	long sz;

	if (!fp) {
		snprintf(err, n, "%s: %s", path, strerror(errno));
		return -1;
	}
	if (fseek(fp, 0, SEEK_END) < 0 || (sz = ftell(fp)) < 0 || fseek(fp, 0, SEEK_SET) < 0 ||
	    sz > 512l * 1024 * 1024 || !(buf = malloc((size_t)sz + 1)) || fread(buf, 1, (size_t)sz, fp) != (size_t)sz) {
		snprintf(err, n, "%s: cannot read", path);
		free(buf);
		fclose(fp);
		return -1;
	}
	fclose(fp);
	*out = buf;
	*len = (size_t)sz;
	return 0;
}

/* the section of this kind, bounds-checked and aligned; NULL if absent, out of range or misaligned */
static const uint8_t *section(const uint8_t *f, size_t len, uint32_t kind, size_t *size)
{
	const struct axlf *a = (const struct axlf *)f;
	uint32_t n = a->header.num_sections;

	if (n > 64 || sizeof(struct axlf) + (size_t)n * sizeof(struct axlf_section_header) > len)
		return NULL;
	for (uint32_t i = 0; i < n; i++) {
		const struct axlf_section_header *s = &a->sections[i];

		if (s->kind != kind)
			continue;
		/* sections are read in place as structures: they must be 8-byte aligned, as
		 * xclbin writers lay them out (the file itself is in an aligned buffer) */
		if (s->offset > len || s->size > len - s->offset || s->offset % 8)
			return NULL;
		*size = s->size;
		return f + s->offset;
	}
	return NULL;
}

int pxy_xclbin_info(const char *path, struct pxy_xclbin_info *info, char *err, size_t err_len)
{
	struct axlf a;
	struct axlf_section_header sh;
	FILE *fp = fopen(path, "rb");
	uint8_t magic[4];

	memset(info, 0, sizeof(*info));
	if (!fp) {
		snprintf(err, err_len, "%s: %s", path, strerror(errno));
		return -1;
	}
	if (fread(&a, 1, sizeof(a), fp) != sizeof(a) || memcmp(a.magic, AXLF_MAGIC, sizeof(AXLF_MAGIC)) != 0) {
		snprintf(err, err_len, "%s: not an xclbin (no xclbin2 header)", path);
		fclose(fp);
		return -1;
	}
	memcpy(info->uuid, a.header.uuid, 16);
	memcpy(info->vbnv, a.header.platform_vbnv, 64);
	info->vbnv[64] = '\0';
	info->mode = a.header.mode;
	for (uint32_t i = 0; i < a.header.num_sections && i < 64; i++) {
		if (fseek(fp, (long)(offsetof(struct axlf, sections) + i * sizeof(sh)), SEEK_SET) < 0 ||
		    fread(&sh, 1, sizeof(sh), fp) != sizeof(sh))
			break;
		/* an emulation xclbin's BITSTREAM is an ELF shared object */
		if (sh.kind == AXLF_BITSTREAM && sh.size >= 4 && fseek(fp, (long)sh.offset, SEEK_SET) == 0 &&
		    fread(magic, 1, 4, fp) == 4 && !memcmp(magic, "\177ELF", 4))
			info->host_kernels = 1;
		if (sh.kind == AXLF_IP_LAYOUT && sh.size >= sizeof(struct axlf_ip_layout) &&
		    fseek(fp, (long)sh.offset, SEEK_SET) == 0) {
			struct axlf_ip_layout ipl;
			struct axlf_ip_data ip;

			if (fread(&ipl, 1, sizeof(ipl), fp) != sizeof(ipl) || ipl.count < 0)
				continue;
			for (int32_t k = 0; k < ipl.count && info->ncus < PXY_XCLBIN_MAX_CUS; k++) {
				if ((uint64_t)sizeof(ipl) + (uint64_t)(k + 1) * sizeof(ip) > sh.size ||
				    fread(&ip, 1, sizeof(ip), fp) != sizeof(ip))
					break;
				if (ip.type != AXLF_IP_KERNEL || !memchr(ip.name, ':', sizeof(ip.name)))
					continue;
				memcpy(info->cu[info->ncus], ip.name, sizeof(ip.name));
				info->cu[info->ncus][64] = '\0';
				info->ncus++;
			}
		}
	}
	fclose(fp);
	return 0;
}

static int xml_int(xmlNode *node, const char *attr, int *out)
{
	xmlChar *v = xmlGetProp(node, (const xmlChar *)attr);
	char *end;
	long x;

	if (!v)
		return -1;
	x = strtol((const char *)v, &end, 0);
	if (*end || x < 0 || x > 1 << 20) {
		xmlFree(v);
		return -1;
	}
	xmlFree(v);
	*out = (int)x;
	return 0;
}

/* project/platform/device/core/kernel[name]/arg[id, addressQualifier] */
static int parse_metadata(struct emu_dev *d, const uint8_t *xml, size_t len, char *err, size_t n)
{
	xmlDoc *doc = xmlReadMemory((const char *)xml, (int)len, "metadata.xml", NULL,
				    XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
	xmlNode *node[5];
	static const char *const path[4] = { "platform", "device", "core", "kernel" };
	int depth = 0, r = -1;

	if (!doc) {
		snprintf(err, n, "xclbin metadata is not XML");
		return -1;
	}
	node[0] = xmlDocGetRootElement(doc);
	if (!node[0] || xmlStrcmp(node[0]->name, (const xmlChar *)"project")) {
		snprintf(err, n, "xclbin metadata has no <project>");
		goto out;
	}
	/* walk down to every <kernel> under the first platform/device/core */
	for (depth = 0; depth < 3; depth++) {
		xmlNode *c;
		for (c = node[depth]->children; c; c = c->next)
			if (c->type == XML_ELEMENT_NODE && !xmlStrcmp(c->name, (const xmlChar *)path[depth]))
				break;
		if (!c) {
			snprintf(err, n, "xclbin metadata has no <%s>", path[depth]);
			goto out;
		}
		node[depth + 1] = c;
	}
	for (xmlNode *k = node[3]->children; k; k = k->next) {
		struct emu_kernel_meta *m;
		xmlChar *name;

		if (k->type != XML_ELEMENT_NODE || xmlStrcmp(k->name, (const xmlChar *)"kernel"))
			continue;
		if (d->nkernels == EMU_MAX_KERNELS) {
			snprintf(err, n, "xclbin has more than %d kernels", EMU_MAX_KERNELS);
			goto out;
		}
		m = &d->meta[d->nkernels];
		memset(m, 0, sizeof(*m));
		name = xmlGetProp(k, (const xmlChar *)"name");
		if (!name || strlen((const char *)name) >= sizeof(m->name)) {
			xmlFree(name);
			snprintf(err, n, "xclbin metadata: a kernel without a usable name");
			goto out;
		}
		snprintf(m->name, sizeof(m->name), "%s", (const char *)name);
		xmlFree(name);
		for (int a = 0; a < EMU_MAX_ARGS; a++)
			m->group[a] = -1;
		for (xmlNode *a = k->children; a; a = a->next) {
			int id, aq;

			if (a->type != XML_ELEMENT_NODE || xmlStrcmp(a->name, (const xmlChar *)"arg"))
				continue;
			if (xml_int(a, "id", &id) < 0 || xml_int(a, "addressQualifier", &aq) < 0 || id >= EMU_MAX_ARGS) {
				snprintf(err, n, "xclbin metadata: kernel %s has a bad <arg>", m->name);
				goto out;
			}
			m->is_buffer[id] = aq == 1;
			if (id + 1 > m->nargs)
				m->nargs = id + 1;
		}
		d->nkernels++;
	}
	r = 0;
out:
	xmlFreeDoc(doc);
	return r;
}

static struct emu_kernel_meta *find_meta(struct emu_dev *d, const char *name, size_t len)
{
	for (int i = 0; i < d->nkernels; i++)
		if (strlen(d->meta[i].name) == len && !strncmp(d->meta[i].name, name, len))
			return &d->meta[i];
	return NULL;
}

/* IP_LAYOUT names compute units "kernel:instance"; CONNECTIVITY maps (arg, cu) -> bank */
static int parse_layout(struct emu_dev *d, const uint8_t *f, size_t len, char *err, size_t n)
{
	size_t ipsz = 0, cnsz = 0;
	const uint8_t *ips = section(f, len, AXLF_IP_LAYOUT, &ipsz);
	const uint8_t *cns = section(f, len, AXLF_CONNECTIVITY, &cnsz);
	const struct axlf_ip_layout *ip = (const struct axlf_ip_layout *)ips;
	struct emu_kernel_meta *by_ip[256];

	if (!ips || ipsz < sizeof(*ip) || ip->count < 0 || ip->count > 256 ||
	    sizeof(*ip) + (size_t)ip->count * sizeof(ip->ip[0]) > ipsz) {
		snprintf(err, n, "xclbin: no valid IP_LAYOUT section");
		return -1;
	}
	for (int i = 0; i < ip->count; i++) {
		const char *nm = (const char *)ip->ip[i].name;
		const char *colon = memchr(nm, ':', sizeof(ip->ip[i].name));
		struct emu_kernel_meta *m;

		by_ip[i] = NULL;
		if (ip->ip[i].type != AXLF_IP_KERNEL || !colon)
			continue;
		m = find_meta(d, nm, (size_t)(colon - nm));
		if (!m)
			continue;
		if (m->ncus == EMU_MAX_CUS) {
			snprintf(err, n, "xclbin: kernel %s has more than %d compute units", m->name, EMU_MAX_CUS);
			return -1;
		}
		m->ncus++;
		by_ip[i] = m;
	}
	if (cns) {
		const struct axlf_connectivity *cn = (const struct axlf_connectivity *)cns;

		if (cnsz < sizeof(*cn) || cn->count < 0 || sizeof(*cn) + (size_t)cn->count * sizeof(cn->conn[0]) > cnsz) {
			snprintf(err, n, "xclbin: bad CONNECTIVITY section");
			return -1;
		}
		for (int i = 0; i < cn->count; i++) {
			const struct axlf_connection *c = &cn->conn[i];

			if (c->ip_layout_index < 0 || c->ip_layout_index >= ip->count || !by_ip[c->ip_layout_index] ||
			    c->arg_index < 0 || c->arg_index >= EMU_MAX_ARGS)
				continue;
			by_ip[c->ip_layout_index]->group[c->arg_index] = c->mem_data_index;
		}
	}
	return 0;
}

/* Every check of an emulation xclbin short of loading its kernels. */
static int parse_xclbin(struct emu_dev *d, const uint8_t *f, size_t len, const uint8_t **bits, size_t *bsz,
			char *err, size_t n)
{
	const struct axlf *a = (const struct axlf *)f;
	const uint8_t *meta;
	size_t msz = 0;

	d->nkernels = 0;
	if (len < sizeof(*a) || memcmp(a->magic, AXLF_MAGIC, sizeof(AXLF_MAGIC)) != 0 || a->header.length != len) {
		snprintf(err, n, "not an xclbin (bad header or length)");
		return -1;
	}
	*bits = section(f, len, AXLF_BITSTREAM, bsz);
	meta = section(f, len, AXLF_EMBEDDED_METADATA, &msz);
	if (!*bits || *bsz < 64 || memcmp(*bits, "\177ELF", 4) != 0) {
		snprintf(err, n, "not an emulation xclbin (its BITSTREAM is not a host library)");
		return -1;
	}
	if (!meta || msz > (size_t)1 << 24) {
		snprintf(err, n, "xclbin without usable EMBEDDED_METADATA");
		return -1;
	}
	if (parse_metadata(d, meta, msz, err, n) < 0 || parse_layout(d, f, len, err, n) < 0)
		return -1;
	for (int i = 0; i < d->nkernels; i++)
		if (d->meta[i].ncus == 0) {
			snprintf(err, n, "xclbin: kernel %s has no compute unit in IP_LAYOUT", d->meta[i].name);
			return -1;
		}
	return 0;
}

int pxy_emu_xclbin_check(const uint8_t *f, size_t len, char *err, size_t n)
{
	struct emu_dev d;
	const uint8_t *bits;
	size_t bsz;

	memset(&d, 0, sizeof(d));
	return parse_xclbin(&d, f, len, &bits, &bsz, err, n);
}

/* ---- device ------------------------------------------------------------------------ */

static int emu_open(unsigned index, void **out, char *err, size_t n)
{
	struct emu_dev *d;
	const char *fa = getenv("PXY_EMU_FAIL_AFTER");

	if (index != 0) {
		snprintf(err, n, "the emulation provider has one device (index 0)");
		return -1;
	}
	d = calloc(1, sizeof(*d));
	if (!d) {
		snprintf(err, n, "out of memory");
		return -1;
	}
	d->lib_fd = -1;
	d->fail_after = fa && *fa ? strtol(fa, NULL, 10) : -1;
	d->stall_ms = getenv("PXY_EMU_STALL_MS") ? strtol(getenv("PXY_EMU_STALL_MS"), NULL, 10) : 0;
	pthread_mutex_init(&d->mu, NULL);
	*out = d;
	return 0;
}

static int emu_load_xclbin(void *dv, const char *path, uint8_t uuid[16], char *err, size_t n)
{
	struct emu_dev *d = dv;
	uint8_t *f = NULL;
	size_t len = 0, bsz = 0;
	const uint8_t *bits;
	const struct axlf *a;
	unsigned (*abi)(void);
	char fdpath[64];

	if (d->loaded) {
		snprintf(err, n, "an xclbin is loaded already");
		return -1;
	}
	if (read_all(path, &f, &len, err, n) < 0)
		return -1;
	a = (const struct axlf *)f;
	if (parse_xclbin(d, f, len, &bits, &bsz, err, n) < 0) {
		size_t l = strlen(err);

		snprintf(err + l, n - l, " (%s)", path);
		goto fail;
	}
	/* the kernels, loaded from memory without touching the file system */
	d->lib_fd = memfd_create("proxyssl-kernels", MFD_CLOEXEC);
	if (d->lib_fd < 0 || write(d->lib_fd, bits, bsz) != (ssize_t)bsz) {
		snprintf(err, n, "memfd: %s", strerror(errno));
		goto fail;
	}
	snprintf(fdpath, sizeof(fdpath), "/proc/self/fd/%d", d->lib_fd);
	d->lib = dlopen(fdpath, RTLD_NOW | RTLD_LOCAL);
	if (!d->lib) {
		snprintf(err, n, "%s: the kernel library does not load: %s", path, dlerror());
		goto fail;
	}
	abi = (unsigned (*)(void))dlsym(d->lib, "pxyk_abi_version");
	if (!abi || abi() != PXY_K_ABI_VERSION) {
		snprintf(err, n, "%s: kernel ABI %u, this build needs %u", path, abi ? abi() : 0u, PXY_K_ABI_VERSION);
		goto fail;
	}
	memcpy(d->uuid, a->header.uuid, 16);
	memcpy(uuid, d->uuid, 16);
	d->loaded = 1;
	free(f);
	return 0;
fail:
	if (d->lib)
		dlclose(d->lib);
	d->lib = NULL;
	if (d->lib_fd >= 0)
		close(d->lib_fd);
	d->lib_fd = -1;
	d->nkernels = 0;
	free(f);
	return -1;
}

static void emu_close(void *dv)
{
	struct emu_dev *d = dv;

	if (!d)
		return;
	if (d->lib)
		dlclose(d->lib);
	if (d->lib_fd >= 0)
		close(d->lib_fd);
	pthread_mutex_destroy(&d->mu);
	free(d);
}

/* ---- kernels and compute units ----------------------------------------------------- */

/* ---- card timing ----------------------------------------------------------------------- */

/* The modelled run time of a run, in ns at the card's clock (scaled), and the bytes it moves
 * over PCIe in its busier direction; from its arguments, before the kernel runs. */
static double model_ns(const struct pxy_dev_emu_timing *t, int rsa, const uint64_t *args, double *link_bytes)
{
	double cycles;

	*link_bytes = 0;
	if (rsa) {
		const struct pxy_k_rsa_key *keys = (const void *)(uintptr_t)args[PXY_K_RSA_ARG_KEYS];
		const struct pxy_k_rsa_job *jobs = (const void *)(uintptr_t)args[PXY_K_RSA_ARG_JOBS];
		uint32_t n = (uint32_t)args[PXY_K_RSA_ARG_N], count[3] = { 0, 0, 0 };

		if (n > PXY_K_RSA_MAX_BATCH)
			n = PXY_K_RSA_MAX_BATCH;
		for (uint32_t i = 0; i < n; i++) {
			uint32_t id = jobs[i].key_id, bits = id < PXY_K_MAX_KEYS ? keys[id].bits : 0;

			if (bits == 2048 || bits == 3072 || bits == 4096)
				count[(bits - 2048) / 1024]++;
		}
		cycles = t->rec_fixed; /* launch overhead, as for records */
		for (int s = 0; s < 3; s++)
			cycles += (double)((count[s] + (uint32_t)t->rsa_group - 1) / (uint32_t)t->rsa_group) *
				  t->rsa_group_cycles[s];
		*link_bytes = (double)n * sizeof(struct pxy_k_rsa_job);
	} else {
		const struct pxy_k_rec_desc *d = (const void *)(uintptr_t)args[PXY_K_REC_ARG_DESCS];
		uint32_t n = (uint32_t)args[PXY_K_REC_ARG_N];
		double gcm = 0, cbc = 0;

		if (n > PXY_K_REC_MAX_BATCH)
			n = PXY_K_REC_MAX_BATCH;
		for (uint32_t i = 0; i < n; i++) {
			uint32_t len = d[i].in_len < PXY_K_REC_SLOT ? d[i].in_len : PXY_K_REC_SLOT;

			if (d[i].bulk == 1 || d[i].bulk == 2) /* AES-GCM (enum pxy_bulk) */
				gcm += len;
			else
				cbc += len;
		}
		cycles = t->rec_fixed + t->rec_per_record * n + t->rec_gcm_per_byte * gcm + t->rec_cbc_per_byte * cbc;
		*link_bytes = gcm + cbc + (double)n * sizeof(struct pxy_k_rec_desc);
	}
	return cycles / t->freq_hz * 1e9 * t->scale;
}

/* Hold a finished run until the card would have finished it; count what the model shows. */
static void timing_hold(struct emu_dev *d, int rsa, uint64_t t0, double ns, double link_bytes)
{
	struct pxy_dev_emu_timing *t = d->opts.timing;
	uint64_t end = t0 + (uint64_t)ns, now;

	/* the PCIe link, shared by every run: a run cannot end before its bytes have crossed it */
	if (!rsa && t->pcie_Bps > 0) {
		uint64_t xfer = (uint64_t)(link_bytes / t->pcie_Bps * 1e9 * t->scale), start;

		pthread_mutex_lock(&d->mu);
		start = d->link_free_ns > t0 ? d->link_free_ns : t0;
		d->link_free_ns = start + xfer;
		pthread_mutex_unlock(&d->mu);
		if (start + xfer > end)
			end = start + xfer;
	}
	now = pxy_now_ns();
	if (now < end) {
		struct timespec ts = { (time_t)(end / 1000000000u), (long)(end % 1000000000u) };

		while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
			;
	} else {
		if (t->out)
			__atomic_add_fetch(&t->out[!rsa].late_runs, 1, __ATOMIC_RELAXED);
		end = now;
	}
	if (t->out) {
		__atomic_add_fetch(&t->out[!rsa].runs, 1, __ATOMIC_RELAXED);
		__atomic_add_fetch(&t->out[!rsa].busy_ns, end - t0, __ATOMIC_RELAXED);
		__atomic_add_fetch(&t->out[!rsa].model_ns, (uint64_t)ns, __ATOMIC_RELAXED);
	}
}

static int parse_timing(FILE *f, struct pxy_dev_emu_timing *t, char *err, size_t n)
{
	static const struct {
		const char *key;
		size_t off;
	} keys[] = {
		{ "freq_mhz", offsetof(struct pxy_dev_emu_timing, freq_hz) },
		{ "rsa2048_group_cycles", offsetof(struct pxy_dev_emu_timing, rsa_group_cycles[0]) },
		{ "rsa3072_group_cycles", offsetof(struct pxy_dev_emu_timing, rsa_group_cycles[1]) },
		{ "rsa4096_group_cycles", offsetof(struct pxy_dev_emu_timing, rsa_group_cycles[2]) },
		{ "rec_fixed", offsetof(struct pxy_dev_emu_timing, rec_fixed) },
		{ "rec_per_record", offsetof(struct pxy_dev_emu_timing, rec_per_record) },
		{ "rec_gcm_per_byte", offsetof(struct pxy_dev_emu_timing, rec_gcm_per_byte) },
		{ "rec_cbc_per_byte", offsetof(struct pxy_dev_emu_timing, rec_cbc_per_byte) },
		{ "pcie_GBps", offsetof(struct pxy_dev_emu_timing, pcie_Bps) },
	};
	char line[256];
	unsigned seen = 0, lineno = 0;

	while (fgets(line, sizeof(line), f)) {
		char key[64], val[64];
		double v;
		char *end;
		int found = 0;

		lineno++;
		if (line[0] == '#' || line[strspn(line, " \t\r\n")] == 0)
			continue;
		if (sscanf(line, " %63[A-Za-z0-9_] = %63s", key, val) != 2) {
			snprintf(err, n, "line %u: expected key = value", lineno);
			return -1;
		}
		if (!strcmp(key, "platform")) {
			snprintf(t->platform, sizeof(t->platform), "%.31s", val);
			continue;
		}
		v = strtod(val, &end);
		if (*end || !(v >= 0) || v > 1e12) {
			snprintf(err, n, "line %u: %s = %s is not a number", lineno, key, val);
			return -1;
		}
		if (!strcmp(key, "rsa_cus") || !strcmp(key, "rec_cus") || !strcmp(key, "rsa_group")) {
			int *dst = !strcmp(key, "rsa_cus") ? &t->rsa_cus : !strcmp(key, "rec_cus") ? &t->rec_cus : &t->rsa_group;

			*dst = (int)v;
			seen |= 1u << (9 + (dst == &t->rec_cus) + 2 * (dst == &t->rsa_group));
			continue;
		}
		for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
			if (!strcmp(key, keys[i].key)) {
				*(double *)((char *)t + keys[i].off) = v;
				seen |= 1u << i;
				found = 1;
			}
		(void)found; /* keys this build does not know are left for newer tables */
	}
	if (seen != 0xfffu) {
		snprintf(err, n, "incomplete table (freq_mhz, rsa_cus, rec_cus, rsa_group, rsa{2048,3072,4096}_group_cycles, "
				 "rec_fixed, rec_per_record, rec_gcm_per_byte, rec_cbc_per_byte and pcie_GBps are needed)");
		return -1;
	}
	if (t->freq_hz <= 0 || t->rsa_group < 1 || t->rsa_cus < 1 || t->rec_cus < 1) {
		snprintf(err, n, "freq_mhz, rsa_group, rsa_cus and rec_cus must be positive");
		return -1;
	}
	t->freq_hz *= 1e6;
	t->pcie_Bps *= 1e9;
	return 0;
}

int pxy_dev_emu_timing_load(const char *spec, struct pxy_dev_emu_timing *t, char *err, size_t n)
{
	static const char *const dirs[] = {
#ifdef PXY_TIMING_DIR_BUILD
		PXY_TIMING_DIR_BUILD,
#endif
#ifdef PXY_TIMING_DIR_INSTALL
		PXY_TIMING_DIR_INSTALL,
#endif
	};
	char name[512], path[1024], sub[1024];
	const char *colon = strrchr(spec, ':');
	FILE *f = NULL;
	double scale = 1;

	memset(t, 0, sizeof(*t));
	if (colon) {
		char *end;

		scale = strtod(colon + 1, &end);
		if (*end || !(scale >= 1) || scale > 1e6) {
			snprintf(err, n, "--emu-timing %s: the scale after ':' must be a number >= 1", spec);
			return -1;
		}
	}
	snprintf(name, sizeof(name), "%.*s", colon ? (int)(colon - spec) : (int)strlen(spec), spec);
	if (strchr(name, '/')) {
		snprintf(path, sizeof(path), "%s", name);
		f = fopen(path, "r");
	} else {
		if (!name[0] || strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789_-") != strlen(name)) {
			snprintf(err, n, "--emu-timing %s: expected a card (u250, u55c) or a file", spec);
			return -1;
		}
		for (size_t i = 0; !f && i < sizeof(dirs) / sizeof(dirs[0]); i++) {
			snprintf(path, sizeof(path), "%s/%s.timing", dirs[i], name);
			f = fopen(path, "r");
		}
	}
	if (!f) {
		snprintf(err, n, "--emu-timing %s: no timing table %s%s (firmware/perf_model.py --emit-timing writes one)",
			 spec, strchr(name, '/') ? name : name, strchr(name, '/') ? "" : ".timing");
		return -1;
	}
	if (parse_timing(f, t, sub, sizeof(sub)) < 0) {
		snprintf(err, n, "--emu-timing: %s: %s", path, sub);
		fclose(f);
		return -1;
	}
	fclose(f);
	t->scale = scale;
	if (!t->platform[0])
		snprintf(t->platform, sizeof(t->platform), "%.31s", name);
	return 0;
}

/* Execute one run (on a compute unit's thread, or inline); its end state. */
static int run_exec(struct emu_kernel *k, struct emu_run *r)
{
	struct pxy_dev_emu_timing *t = k->dev->opts.timing;
	int rsa = !strcmp(k->meta->name, PXY_K_RSA_NAME), state;
	uint64_t t0 = t ? pxy_now_ns() : 0;
	double ns = 0, link_bytes = 0;
	long started;
	int fail;

	pthread_mutex_lock(&k->dev->mu);
	started = k->dev->runs_started++;
	fail = k->dev->fail_after >= 0 && started >= k->dev->fail_after;
	pthread_mutex_unlock(&k->dev->mu);
	if (k->dev->stall_ms > 0) {
		struct timespec ts = { k->dev->stall_ms / 1000, (k->dev->stall_ms % 1000) * 1000000 };

		nanosleep(&ts, NULL);
	}
	if (t)
		ns = model_ns(t, rsa, r->args, &link_bytes);
	state = !fail && k->entry(r->args, (unsigned)k->meta->nargs) == 0 ? PXY_RUN_COMPLETED : PXY_RUN_ERROR;
	if (t && state == PXY_RUN_COMPLETED)
		timing_hold(k->dev, rsa, t0, ns, link_bytes);
	return state;
}

static void *cu_main(void *arg)
{
	struct emu_kernel *k = arg;
	int worked = 0; /* a run since the last idle call */

	pthread_mutex_lock(&k->mu);
	for (;;) {
		struct emu_run *r;
		int state;

		while (!k->q_head && !k->stopping) {
			if (worked && k->dev->opts.idle) {
				struct timespec ts;

				pxy_deadline_ms(&ts, IDLE_MS);
				if (pthread_cond_timedwait(&k->cv, &k->mu, &ts) == ETIMEDOUT && !k->q_head) {
					pthread_mutex_unlock(&k->mu);
					k->dev->opts.idle();
					worked = 0;
					pthread_mutex_lock(&k->mu);
				}
			} else {
				pthread_cond_wait(&k->cv, &k->mu);
			}
		}
		if (!k->q_head)
			break;
		r = k->q_head;
		k->q_head = r->next;
		if (!k->q_head)
			k->q_tail = NULL;
		r->state = PXY_RUN_RUNNING;
		pthread_mutex_unlock(&k->mu);

		state = run_exec(k, r);
		worked = 1;

		pthread_mutex_lock(&k->mu);
		r->state = state;
		pthread_cond_broadcast(&k->done);
		pthread_mutex_unlock(&k->mu);
		if (r->cb)
			r->cb(r, state, r->cb_data);
		pthread_mutex_lock(&k->mu);
	}
	pthread_mutex_unlock(&k->mu);
	if (worked && k->dev->opts.idle)
		k->dev->opts.idle();
	return NULL;
}

static void *emu_kernel_open(void *dv, const uint8_t uuid[16], const char *name)
{
	struct emu_dev *d = dv;
	struct emu_kernel_meta *m;
	struct emu_kernel *k;
	char sym[96];

	const char *inst = strchr(name, ':');
	int ncus;

	if (!d->loaded || memcmp(uuid, d->uuid, 16) != 0)
		return NULL;
	m = find_meta(d, name, inst ? (size_t)(inst - name) : strlen(name));
	if (!m || m->ncus == 0)
		return NULL;
	ncus = m->ncus;
	if (inst) {
		/* one compute unit: "name:{name_N}", N in 1..ncus as IP_LAYOUT numbers them */
		size_t nl = (size_t)(inst - name);
		char *end;
		long n;

		if (inst[1] != '{' || strncmp(inst + 2, name, nl) || inst[2 + nl] != '_')
			return NULL;
		n = strtol(inst + 3 + nl, &end, 10);
		if (n < 1 || n > m->ncus || strcmp(end, "}"))
			return NULL;
		ncus = 1;
	}
	k = calloc(1, sizeof(*k));
	if (!k)
		return NULL;
	snprintf(sym, sizeof(sym), "pxyk_call_%s", m->name);
	*(void **)&k->entry = dlsym(d->lib, sym);
	if (!k->entry) {
		free(k);
		return NULL;
	}
	k->dev = d;
	k->meta = m;
	pthread_mutex_init(&k->mu, NULL);
	pthread_cond_init(&k->cv, NULL);
	pthread_cond_init(&k->done, NULL);
	/* the kernels keep their buffers on the stack (about 1 MiB for a record group): a stack
	 * size of our own, not whatever RLIMIT_STACK leaves the default */
	pthread_attr_t attr;

	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, EMU_CU_STACK);
	for (int i = 0; i < ncus && !d->opts.inline_runs; i++) {
		if (pthread_create(&k->cus[i], &attr, cu_main, k) != 0)
			break;
		k->ncus++;
	}
	pthread_attr_destroy(&attr);
	return k;
}

static int emu_kernel_arg_group(void *kv, int argno)
{
	struct emu_kernel *k = kv;

	if (argno < 0 || argno >= k->meta->nargs || !k->meta->is_buffer[argno])
		return -1;
	return k->meta->group[argno] < 0 ? 0 : k->meta->group[argno];
}

static void emu_kernel_close(void *kv)
{
	struct emu_kernel *k = kv;

	if (!k)
		return;
	pthread_mutex_lock(&k->mu);
	k->stopping = 1;
	pthread_cond_broadcast(&k->cv);
	pthread_mutex_unlock(&k->mu);
	for (int i = 0; i < k->ncus; i++)
		pthread_join(k->cus[i], NULL);
	pthread_mutex_destroy(&k->mu);
	pthread_cond_destroy(&k->cv);
	pthread_cond_destroy(&k->done);
	free(k);
}

/* ---- buffers ------------------------------------------------------------------------ */

static void *emu_bo_alloc(void *dv, size_t size, int group)
{
	struct emu_dev *d = dv;
	struct emu_bo *b = calloc(1, sizeof(*b));

	(void)group;
	if (!b || size == 0)
		goto fail;
	b->size = size;
	if (posix_memalign((void **)&b->host, 4096, size))
		goto fail;
	if (d->opts.shared_memory)
		b->device = b->host;
	else if (posix_memalign((void **)&b->device, 4096, size))
		goto fail;
	memset(b->host, 0, size);
	if (b->device != b->host)
		memset(b->device, 0, size);
	return b;
fail:
	if (b) {
		free(b->host);
		free(b);
	}
	return NULL;
}

static void *emu_bo_map(void *bv)
{
	return ((struct emu_bo *)bv)->host;
}

static int emu_bo_sync(void *bv, int to_device, size_t size, size_t off)
{
	struct emu_bo *b = bv;

	if (off > b->size || size > b->size - off)
		return -1;
	if (b->device == b->host)
		return 0; /* shared memory: nothing to move */
	if (to_device)
		memcpy(b->device + off, b->host + off, size);
	else
		memcpy(b->host + off, b->device + off, size);
	return 0;
}

static void emu_bo_free(void *bv)
{
	struct emu_bo *b = bv;

	if (!b)
		return;
	/* buffers held key material and plaintext */
	explicit_bzero(b->host, b->size);
	if (b->device != b->host) {
		explicit_bzero(b->device, b->size);
		free(b->device);
	}
	free(b->host);
	free(b);
}

/* ---- runs --------------------------------------------------------------------------- */

static void *emu_run_open(void *kv)
{
	struct emu_run *r = calloc(1, sizeof(*r));

	if (r) {
		r->k = kv;
		r->state = PXY_RUN_NEW;
	}
	return r;
}

static int emu_run_set_arg_bo(void *rv, int index, void *bv)
{
	struct emu_run *r = rv;

	if (index < 0 || index >= r->k->meta->nargs || !r->k->meta->is_buffer[index])
		return -1;
	r->args[index] = (uint64_t)(uintptr_t)((struct emu_bo *)bv)->device;
	return 0;
}

static int emu_run_set_arg_u32(void *rv, int index, uint32_t v)
{
	struct emu_run *r = rv;

	if (index < 0 || index >= r->k->meta->nargs || r->k->meta->is_buffer[index])
		return -1;
	r->args[index] = v;
	return 0;
}

static int emu_run_set_callback(void *rv, pxy_run_cb cb, void *data)
{
	struct emu_run *r = rv;

	r->cb = cb;
	r->cb_data = data;
	return 0;
}

static int emu_run_start(void *rv)
{
	struct emu_run *r = rv;
	struct emu_kernel *k = r->k;

	pthread_mutex_lock(&k->mu);
	if (r->state == PXY_RUN_QUEUED || r->state == PXY_RUN_RUNNING) {
		pthread_mutex_unlock(&k->mu);
		return -1;
	}
	if (k->dev->opts.inline_runs) {
		int state;

		r->state = PXY_RUN_RUNNING;
		pthread_mutex_unlock(&k->mu);
		state = run_exec(k, r);
		pthread_mutex_lock(&k->mu);
		r->state = state;
		pthread_mutex_unlock(&k->mu);
		if (r->cb)
			r->cb(r, state, r->cb_data);
		return 0;
	}
	r->state = PXY_RUN_QUEUED;
	r->next = NULL;
	if (k->q_tail)
		k->q_tail->next = r;
	else
		k->q_head = r;
	k->q_tail = r;
	pthread_cond_signal(&k->cv);
	pthread_mutex_unlock(&k->mu);
	return 0;
}

static int emu_run_wait(void *rv, unsigned timeout_ms)
{
	struct emu_run *r = rv;
	struct emu_kernel *k = r->k;
	struct timespec ts;
	int state;

	pxy_deadline_ms(&ts, timeout_ms);
	pthread_mutex_lock(&k->mu);
	while (r->state == PXY_RUN_QUEUED || r->state == PXY_RUN_RUNNING)
		if (pthread_cond_timedwait(&k->done, &k->mu, &ts) == ETIMEDOUT)
			break;
	state = r->state == PXY_RUN_QUEUED || r->state == PXY_RUN_RUNNING ? PXY_RUN_TIMEOUT : r->state;
	pthread_mutex_unlock(&k->mu);
	return state;
}

static int emu_run_state(void *rv)
{
	struct emu_run *r = rv;
	int s;

	pthread_mutex_lock(&r->k->mu);
	s = r->state;
	pthread_mutex_unlock(&r->k->mu);
	return s;
}

static void emu_run_close(void *rv)
{
	free(rv);
}

static int emu_configure(void *dv, const struct pxy_dev_emu_opts *o)
{
	struct emu_dev *d = dv;
	int (*bind)(const struct pxy_k_emu_host *);

	if (!d->loaded)
		return -1;
	d->opts = *o;
	*(void **)&bind = dlsym(d->lib, PXY_K_EMU_BIND);
	if (!bind) {
		d->opts.host = NULL; /* the synthesis form: its own arithmetic only */
		return 0;
	}
	if (bind(o->host) < 0) {
		d->opts.host = NULL;
		return -1;
	}
	return o->host ? 1 : 0;
}

const struct pxy_dev_provider pxy_dev_emu = {
	.name = "emu",
	.open = emu_open,
	.load_xclbin = emu_load_xclbin,
	.close = emu_close,
	.kernel_open = emu_kernel_open,
	.kernel_arg_group = emu_kernel_arg_group,
	.kernel_close = emu_kernel_close,
	.bo_alloc = emu_bo_alloc,
	.bo_map = emu_bo_map,
	.bo_sync = emu_bo_sync,
	.bo_free = emu_bo_free,
	.run_open = emu_run_open,
	.run_set_arg_bo = emu_run_set_arg_bo,
	.run_set_arg_u32 = emu_run_set_arg_u32,
	.run_set_callback = emu_run_set_callback,
	.run_start = emu_run_start,
	.run_wait = emu_run_wait,
	.run_state = emu_run_state,
	.run_close = emu_run_close,
	.emu_configure = emu_configure,
};

const struct pxy_dev_provider *pxy_dev_find(const char *name)
{
	if (!strcmp(name, "emu"))
		return &pxy_dev_emu;
	if (!strcmp(name, "xrt"))
		return &pxy_dev_xrt;
	return NULL;
}

const char *pxy_emu_xclbin_path_for(const char *platform)
{
	static char buf[1024];
	const char *base = pxy_emu_xclbin_path();
	const char *dot;

	if (!platform || !base || !(dot = strrchr(base, '.')))
		return NULL;
	/* .../proxyssl_emu.xclbin -> .../proxyssl_emu_<platform>.xclbin */
	snprintf(buf, sizeof(buf), "%.*s_%s%s", (int)(dot - base), base, platform, dot);
	return access(buf, R_OK) == 0 ? buf : NULL;
}

const char *pxy_emu_xclbin_path(void)
{
	static const char *const paths[] = {
#ifdef PXY_EMU_XCLBIN_BUILD
		PXY_EMU_XCLBIN_BUILD,
#endif
#ifdef PXY_EMU_XCLBIN_INSTALL
		PXY_EMU_XCLBIN_INSTALL,
#endif
	};

	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++)
		if (access(paths[i], R_OK) == 0)
			return paths[i];
	return NULL;
}
