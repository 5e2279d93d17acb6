/*
 * pxy-xclbin: writes the emulation xclbin, a real axlf container whose
 * BITSTREAM section is the kernels compiled for the host (a shared object),
 * with the metadata XRT and the emulation device read: EMBEDDED_METADATA
 * (kernels, arguments, ports, instances), IP_LAYOUT (compute units),
 * CONNECTIVITY (argument -> memory bank) and MEM_TOPOLOGY. The argument
 * order comes from include/proxyssl/kernel_abi.h, as in the HLS sources.
 *
 *   pxy-xclbin --kernels libpxykernels.so --out proxyssl_emu.xclbin
 *              [--rsa-cus N] [--rec-cus N] [--platform VBNV] [--mode flat|sw_emu]
 *
 * It also reads any xclbin, its own or one linked by v++, and prints what
 * firmware/setup.sh matches against a card (one "key: value" per line):
 *
 *   pxy-xclbin --info FILE.xclbin
 *     xclbin: FILE.xclbin
 *     uuid: 8-4-4-4-12 hex digits, as xbutil prints it
 *     platform: the platform VBNV the xclbin was linked for
 *     mode: flat | pr | tandem-stage2 | tandem-stage2-pr | hw_emu | sw_emu | hw_emu_pr
 *     kernel: NAME N CU(s): INSTANCE...     (one line per kernel, from IP_LAYOUT)
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>

#include "device/axlf.h"
#include "proxyssl/kernel_abi.h"

struct arg_def {
	const char *name, *type;
	int buffer; /* AXI master (a buffer object) or AXI-lite scalar */
	int bundle; /* M_AXI_GMEM<bundle> */
};

struct kernel_def {
	const char *name;
	int nargs;
	struct arg_def args[8];
	int cus;
};

static struct kernel_def kernels[] = {
	{ PXY_K_RSA_NAME,
	  PXY_K_RSA_NARGS,
	  {
		  [PXY_K_RSA_ARG_KEYS] = { "keys", "const pxy_k_rsa_key*", 1, 0 },
		  [PXY_K_RSA_ARG_JOBS] = { "jobs", "const pxy_k_rsa_job*", 1, 1 },
		  [PXY_K_RSA_ARG_RESULTS] = { "results", "pxy_k_rsa_result*", 1, 2 },
		  [PXY_K_RSA_ARG_N] = { "n_jobs", "unsigned int", 0, 0 },
	  },
	  1 },
	{ PXY_K_REC_NAME,
	  PXY_K_REC_NARGS,
	  {
		  [PXY_K_REC_ARG_DESCS] = { "descs", "const pxy_k_rec_desc*", 1, 0 },
		  [PXY_K_REC_ARG_IN] = { "in", "const unsigned char*", 1, 1 },
		  [PXY_K_REC_ARG_OUT] = { "out", "unsigned char*", 1, 2 },
		  [PXY_K_REC_ARG_RESULTS] = { "results", "pxy_k_rec_result*", 1, 3 },
		  [PXY_K_REC_ARG_N] = { "n_descs", "unsigned int", 0, 0 },
	  },
	  1 },
};
#define NKERNELS (sizeof(kernels) / sizeof(kernels[0]))

/* HLS control registers: 0x00-0x0f ap_ctrl/interrupts, then the arguments,
 * each followed by a reserved word */
static unsigned arg_offset(const struct kernel_def *k, int a)
{
	unsigned off = 0x10;

	for (int i = 0; i < a; i++)
		off += (k->args[i].buffer ? 8 : 4) + 4;
	return off;
}

struct buf {
	char *p;
	size_t len, cap;
};

static void put(struct buf *b, const void *p, size_t n)
{
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 4096;
		while (cap < b->len + n)
			cap *= 2;
		b->p = realloc(b->p, cap);
		if (!b->p) {
			perror("pxy-xclbin");
			exit(1);
		}
		b->cap = cap;
	}
	if (n)
		memcpy(b->p + b->len, p, n);
	b->len += n;
}

static void putf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(struct buf *b, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	put(b, line, (size_t)n);
}

static void xml(struct buf *b, const char *vbnv)
{
	unsigned base = 0x1800000;
	int total = 0;

	for (size_t k = 0; k < NKERNELS; k++)
		total += kernels[k].cus;
	putf(b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<project name=\"proxyssl\">\n");
	putf(b, "  <platform vendor=\"proxyssl\" boardid=\"emulation\" name=\"%s\" featureRomTime=\"0\">\n", vbnv);
	putf(b, "    <version major=\"%d\" minor=\"0\"/>\n    <description/>\n", PXY_K_ABI_VERSION);
	putf(b, "    <device name=\"fpga0\" fpgaDevice=\"emulation\" addrWidth=\"0\">\n");
	putf(b, "      <core name=\"OCL_REGION_0\" target=\"bitstream\" type=\"clc_region\" clockFreq=\"300MHz\" "
		"numComputeUnits=\"%d\">\n",
	     total);
	for (size_t k = 0; k < NKERNELS; k++) {
		const struct kernel_def *kd = &kernels[k];
		int nb = 0;

		putf(b, "        <kernel name=\"%s\" language=\"c\" vlnv=\"proxyssl:hls:%s:1.0\" "
			"preferredWorkGroupSizeMultiple=\"0\" workGroupSize=\"1\" interrupt=\"true\" "
			"hwControlProtocol=\"ap_ctrl_chain\">\n",
		     kd->name, kd->name);
		for (int a = 0; a < kd->nargs; a++)
			if (kd->args[a].buffer && kd->args[a].bundle + 1 > nb)
				nb = kd->args[a].bundle + 1;
		for (int p = 0; p < nb; p++)
			putf(b, "          <port name=\"M_AXI_GMEM%d\" mode=\"master\" range=\"0xFFFFFFFFFFFFFFFF\" "
				"dataWidth=\"512\" portType=\"addressable\" base=\"0x0\"/>\n",
			     p);
		putf(b, "          <port name=\"S_AXI_CONTROL\" mode=\"slave\" range=\"0x1000\" dataWidth=\"32\" "
			"portType=\"addressable\" base=\"0x0\"/>\n");
		for (int a = 0; a < kd->nargs; a++) {
			const struct arg_def *ad = &kd->args[a];
			char port[32];

			if (ad->buffer)
				snprintf(port, sizeof(port), "M_AXI_GMEM%d", ad->bundle);
			else
				snprintf(port, sizeof(port), "S_AXI_CONTROL");
			putf(b, "          <arg name=\"%s\" addressQualifier=\"%d\" id=\"%d\" port=\"%s\" size=\"0x%x\" "
				"offset=\"0x%x\" hostOffset=\"0x0\" hostSize=\"0x%x\" type=\"%s\"/>\n",
			     ad->name, ad->buffer, a, port, ad->buffer ? 8 : 4, arg_offset(kd, a), ad->buffer ? 8 : 4,
			     ad->type);
		}
		for (int c = 0; c < kd->cus; c++) {
			putf(b, "          <instance name=\"%s_%d\">\n", kd->name, c + 1);
			putf(b, "            <addrRemap base=\"0x%x\" port=\"S_AXI_CONTROL\"/>\n", base);
			putf(b, "          </instance>\n");
			base += 0x10000;
		}
		putf(b, "        </kernel>\n");
	}
	putf(b, "      </core>\n    </device>\n  </platform>\n</project>\n");
}

static void align8(struct buf *b)
{
	static const char zero[8];
	put(b, zero, (8 - b->len % 8) % 8);
}

static int read_file(const char *path, struct buf *b)
{
	FILE *fp = fopen(path, "rb");
	char chunk[65536];
	size_t n;

	if (!fp)
		return -1;
	while ((n = fread(chunk, 1, sizeof(chunk), fp)) > 0)
		put(b, chunk, n);
	fclose(fp);
	return 0;
}

/* ---- --info ------------------------------------------------------------------ */

/* the values of XRT's enum XCLBIN_MODE */
static const char *mode_name(unsigned mode)
{
	static const char *const names[] = { "flat", "pr", "tandem-stage2", "tandem-stage2-pr",
					     "hw_emu", "sw_emu", "hw_emu_pr" };

	return mode < sizeof(names) / sizeof(names[0]) ? names[mode] : "unknown";
}

static int read_at(FILE *fp, uint64_t off, void *p, size_t n)
{
	if (off > (uint64_t)INT64_MAX || fseeko(fp, (off_t)off, SEEK_SET) != 0)
		return -1;
	return fread(p, 1, n, fp) == n ? 0 : -1;
}

/* A printable copy of a fixed-size, maybe unterminated, name field. */
static void field(char *dst, size_t dst_len, const uint8_t *src, size_t src_len)
{
	size_t i;

	for (i = 0; i < src_len && i + 1 < dst_len && src[i]; i++)
		dst[i] = (src[i] >= 0x20 && src[i] < 0x7f) ? (char)src[i] : '?';
	dst[i] = '\0';
}

/* "kernel:instance" split in two (an instance without a kernel part is its own kernel) */
static void cu_name(const struct axlf_ip_data *ip, char *kernel, size_t klen, char *inst, size_t ilen)
{
	char name[sizeof(ip->name) + 1], *colon;

	field(name, sizeof(name), ip->name, sizeof(ip->name));
	colon = strchr(name, ':');
	snprintf(inst, ilen, "%s", colon ? colon + 1 : name);
	if (colon)
		*colon = '\0';
	snprintf(kernel, klen, "%s", name);
}

static int same_kernel(const struct axlf_ip_data *a, const struct axlf_ip_data *b)
{
	char ka[65], kb[65], ia[65], ib[65];

	cu_name(a, ka, sizeof(ka), ia, sizeof(ia));
	cu_name(b, kb, sizeof(kb), ib, sizeof(ib));
	return !strcmp(ka, kb);
}

#define INFO_MAX_IPS 4096 /* far more compute units than any card holds */

/* The file comes from anywhere: every offset and count is checked against its size. */
static int info(const char *path)
{
	FILE *fp = fopen(path, "rb");
	struct axlf a;
	uint64_t size;
	int have_ip = 0, nkernels = 0, rc = 1;
	char vbnv[65];
	struct axlf_ip_data *ips = NULL;
	int32_t nips = 0;

	if (!fp) {
		fprintf(stderr, "pxy-xclbin: %s: %s\n", path, strerror(errno));
		return 1;
	}
	if (fseeko(fp, 0, SEEK_END) != 0 || (size = (uint64_t)ftello(fp)) == (uint64_t)-1 ||
	    read_at(fp, 0, &a, sizeof(a)) < 0 || memcmp(a.magic, AXLF_MAGIC, sizeof(AXLF_MAGIC)) != 0) {
		fprintf(stderr, "pxy-xclbin: %s: not an xclbin (no xclbin2 header)\n", path);
		goto out;
	}
	if (a.header.num_sections > 1024 ||
	    sizeof(struct axlf) + (uint64_t)a.header.num_sections * sizeof(struct axlf_section_header) > size) {
		fprintf(stderr, "pxy-xclbin: %s: truncated or corrupt section table (%" PRIu32 " sections)\n", path,
			a.header.num_sections);
		goto out;
	}
	for (uint32_t i = 0; i < a.header.num_sections && !have_ip; i++) {
		struct axlf_section_header sh;
		struct axlf_ip_layout il;

		if (read_at(fp, offsetof(struct axlf, sections) + (uint64_t)i * sizeof(sh), &sh, sizeof(sh)) < 0)
			break;
		if (sh.kind != AXLF_IP_LAYOUT)
			continue;
		if (sh.offset > size || sh.size > size - sh.offset || sh.size < sizeof(il) ||
		    read_at(fp, sh.offset, &il, sizeof(il)) < 0 || il.count < 0 || il.count > INFO_MAX_IPS ||
		    sizeof(il) + (uint64_t)il.count * sizeof(struct axlf_ip_data) > sh.size) {
			fprintf(stderr, "pxy-xclbin: %s: corrupt IP_LAYOUT section\n", path);
			goto out;
		}
		ips = calloc((size_t)il.count + 1, sizeof(*ips));
		if (!ips || (il.count &&
			     read_at(fp, sh.offset + sizeof(il), ips, (size_t)il.count * sizeof(*ips)) < 0)) {
			fprintf(stderr, "pxy-xclbin: %s: cannot read IP_LAYOUT\n", path);
			goto out;
		}
		nips = il.count;
		have_ip = 1;
	}

	field(vbnv, sizeof(vbnv), a.header.platform_vbnv, sizeof(a.header.platform_vbnv));
	printf("xclbin: %s\n", path);
	printf("uuid: ");
	for (int i = 0; i < 16; i++)
		printf("%02x%s", a.header.uuid[i], i == 3 || i == 5 || i == 7 || i == 9 ? "-" : "");
	printf("\nplatform: %s\n", vbnv);
	printf("mode: %s\n", mode_name(a.header.mode));
	/* IP_LAYOUT names compute units "kernel:instance"; list them by kernel, in file order */
	for (int32_t i = 0; i < nips; i++) {
		int n = 0, seen = 0;

		if (ips[i].type != AXLF_IP_KERNEL)
			continue;
		for (int32_t j = 0; j < i && !seen; j++)
			seen = ips[j].type == AXLF_IP_KERNEL && same_kernel(&ips[i], &ips[j]);
		if (seen)
			continue;
		for (int32_t j = i; j < nips; j++)
			n += ips[j].type == AXLF_IP_KERNEL && same_kernel(&ips[i], &ips[j]);
		{
			char kernel[65], inst[65];

			cu_name(&ips[i], kernel, sizeof(kernel), inst, sizeof(inst));
			printf("kernel: %s %d CU%s:", kernel, n, n == 1 ? "" : "s");
			nkernels++;
		}
		for (int32_t j = i; j < nips; j++) {
			char kernel[65], inst[65];

			if (ips[j].type != AXLF_IP_KERNEL || !same_kernel(&ips[i], &ips[j]))
				continue;
			cu_name(&ips[j], kernel, sizeof(kernel), inst, sizeof(inst));
			printf(" %s", inst);
		}
		printf("\n");
	}
	if (!nkernels)
		printf("kernels: none%s\n", have_ip ? "" : " (no IP_LAYOUT section)");
	rc = 0;
out:
	free(ips);
	fclose(fp);
	return rc;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "kernels", required_argument, NULL, 'k' }, { "out", required_argument, NULL, 'o' },
		{ "rsa-cus", required_argument, NULL, 'r' }, { "rec-cus", required_argument, NULL, 'c' },
		{ "platform", required_argument, NULL, 'p' }, { "mode", required_argument, NULL, 'm' },
		{ "info", required_argument, NULL, 'i' }, { NULL, 0, NULL, 0 },
	};
	const char *so_path = NULL, *out_path = NULL, *info_path = NULL, *vbnv = "proxyssl_emulation_1_0";
	int mode = AXLF_MODE_FLAT, ch;
	struct buf so = { 0 }, meta = { 0 }, mem = { 0 }, ip = { 0 }, conn = { 0 }, file = { 0 };
	struct buf *sec_data[5];
	static const uint32_t sec_kind[5] = { AXLF_BITSTREAM, AXLF_EMBEDDED_METADATA, AXLF_MEM_TOPOLOGY,
					      AXLF_IP_LAYOUT, AXLF_CONNECTIVITY };
	static const char *const sec_name[5] = { "bitstream", "metadata", "mem_topology", "ip_layout",
						 "connectivity" };
	struct axlf hdr;
	struct axlf_section_header sh[5];
	uint8_t digest[32];
	FILE *fp;

	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (ch) {
		case 'k': so_path = optarg; break;
		case 'o': out_path = optarg; break;
		case 'r': kernels[0].cus = atoi(optarg); break;
		case 'c': kernels[1].cus = atoi(optarg); break;
		case 'p': vbnv = optarg; break;
		case 'm': mode = !strcmp(optarg, "sw_emu") ? AXLF_MODE_SW_EMU : AXLF_MODE_FLAT; break;
		case 'i': info_path = optarg; break;
		default:
			fprintf(stderr, "usage: pxy-xclbin --kernels LIB.so --out FILE.xclbin [--rsa-cus N] "
					"[--rec-cus N] [--platform VBNV] [--mode flat|sw_emu]\n"
					"       pxy-xclbin --info FILE.xclbin\n");
			return 2;
		}
	}
	if (info_path)
		return info(info_path);
	if (!so_path || !out_path || kernels[0].cus < 1 || kernels[1].cus < 1 || kernels[0].cus > 16 ||
	    kernels[1].cus > 16 || strlen(vbnv) >= 64) {
		fprintf(stderr, "pxy-xclbin: --kernels and --out are required; 1..16 CUs per kernel\n");
		return 2;
	}
	if (read_file(so_path, &so) < 0) {
		fprintf(stderr, "pxy-xclbin: %s: %s\n", so_path, strerror(errno));
		return 1;
	}
	xml(&meta, vbnv);

	/* one DDR bank: every argument of every compute unit lives there */
	{
		struct axlf_mem_topology mt = { .count = 1 };
		struct axlf_mem_data md;

		memset(&md, 0, sizeof(md));
		md.type = AXLF_MEM_DDR4;
		md.used = 1;
		md.size_kb = 16ull * 1024 * 1024;
		md.base_address = 0x4000000000ull;
		snprintf(md.tag, sizeof(md.tag), "DDR[0]");
		put(&mem, &mt, sizeof(mt));
		put(&mem, &md, sizeof(md));
	}
	{
		struct axlf_ip_layout il = { .count = 0 };
		struct axlf_connectivity cn = { .count = 0 };
		unsigned base = 0x1800000;
		int idx = 0;

		for (size_t k = 0; k < NKERNELS; k++)
			il.count += kernels[k].cus;
		put(&ip, &il, sizeof(il));
		for (size_t k = 0; k < NKERNELS; k++)
			for (int c = 0; c < kernels[k].cus; c++)
				for (int a = 0; a < kernels[k].nargs; a++)
					cn.count += kernels[k].args[a].buffer;
		put(&conn, &cn, sizeof(cn));
		for (size_t k = 0; k < NKERNELS; k++) {
			for (int c = 0; c < kernels[k].cus; c++, idx++) {
				struct axlf_ip_data d;

				memset(&d, 0, sizeof(d));
				d.type = AXLF_IP_KERNEL;
				d.properties = AXLF_IP_INT_ENABLE | (1u << AXLF_IP_CONTROL_SHIFT); /* ap_ctrl_chain */
				d.base_address = base;
				snprintf((char *)d.name, sizeof(d.name), "%s:%s_%d", kernels[k].name, kernels[k].name,
					 c + 1);
				put(&ip, &d, sizeof(d));
				base += 0x10000;
				for (int a = 0; a < kernels[k].nargs; a++) {
					struct axlf_connection x = { a, idx, 0 };
					if (kernels[k].args[a].buffer)
						put(&conn, &x, sizeof(x));
				}
			}
		}
	}

	sec_data[0] = &so;
	sec_data[1] = &meta;
	sec_data[2] = &mem;
	sec_data[3] = &ip;
	sec_data[4] = &conn;
	memset(&hdr, 0, sizeof(hdr));
	memcpy(hdr.magic, AXLF_MAGIC, sizeof(AXLF_MAGIC));
	hdr.signature_length = -1;
	memset(hdr.reserved, 0xff, sizeof(hdr.reserved));
	memset(hdr.key_block, 0xff, sizeof(hdr.key_block));
	hdr.header.time_stamp = (uint64_t)time(NULL);
	hdr.header.version_major = 2;
	hdr.header.version_minor = 13;
	hdr.header.mode = (uint16_t)mode;
	hdr.header.num_sections = 5;
	snprintf((char *)hdr.header.platform_vbnv, sizeof(hdr.header.platform_vbnv), "%s", vbnv);
	/* the UUID names the content: the kernels and their metadata */
	{
		EVP_MD_CTX *md = EVP_MD_CTX_new();
		unsigned dl = 0;

		EVP_DigestInit_ex(md, EVP_sha256(), NULL);
		EVP_DigestUpdate(md, so.p, so.len);
		EVP_DigestUpdate(md, meta.p, meta.len);
		EVP_DigestFinal_ex(md, digest, &dl);
		EVP_MD_CTX_free(md);
		memcpy(hdr.header.uuid, digest, 16);
		memcpy(&hdr.unique_id, digest + 16, 8);
	}

	put(&file, &hdr, sizeof(hdr));
	put(&file, sh, sizeof(sh)); /* filled below */
	for (int i = 0; i < 5; i++) {
		align8(&file);
		memset(&sh[i], 0, sizeof(sh[i]));
		sh[i].kind = sec_kind[i];
		snprintf(sh[i].name, sizeof(sh[i].name), "%s", sec_name[i]);
		sh[i].offset = file.len;
		sh[i].size = sec_data[i]->len;
		put(&file, sec_data[i]->p, sec_data[i]->len);
	}
	hdr.header.length = file.len;
	memcpy(file.p, &hdr, sizeof(hdr));
	memcpy(file.p + sizeof(hdr), sh, sizeof(sh));

	fp = fopen(out_path, "wb");
	if (!fp || fwrite(file.p, 1, file.len, fp) != file.len || fclose(fp) != 0) {
		fprintf(stderr, "pxy-xclbin: cannot write %s: %s\n", out_path, strerror(errno));
		return 1;
	}
	printf("pxy-xclbin: %s: %zu bytes, kernels %s x%d and %s x%d, uuid ", out_path, file.len, kernels[0].name,
	       kernels[0].cus, kernels[1].name, kernels[1].cus);
	for (int i = 0; i < 16; i++)
		printf("%02x", digest[i]);
	printf("\n");
	free(so.p);
	free(meta.p);
	free(mem.p);
	free(ip.p);
	free(conn.p);
	free(file.p);
	return 0;
}
