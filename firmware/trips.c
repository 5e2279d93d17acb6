/*
 * pxy-trips: the kernels' loop trip counts, from a C-simulation run.
 *
 * The kernels of kernels-hls/ are compiled in their synthesis form
 * (PXYK_NO_VECTOR, no host arithmetic) with PXYK_TRIPS: every loop that
 * costs cycles opens its iteration with PXYK_TRIP(LABEL), which lands in
 * pxyk_trip_enter/leave below. They build the tree of loops as they ran
 * (a loop under the loop iteration it ran in), counting per loop its
 * entries (how many times it was started) and its iterations.
 *
 * Each scenario calls a kernel on a realistic batch (real RSA keys, TLS
 * records of full size) and prints the tree as JSON, which
 * firmware/perf_model.py turns into cycles with the II and latencies of the
 * pragmas. The kernels are constant time, so their trip counts depend on
 * public sizes only (key size, record length, suite), never on the data.
 *
 *   pxy-trips [--quick]    JSON on stdout (--quick: the smaller scenarios only)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>

#include "engine/kkey.h"
#include "kernel.h"
#include "proxyssl/engine.h"
#include "proxyssl/kernel_abi.h"
#include "tls/cert.h"

void rsa_crt_decrypt(const struct pxy_k_rsa_key *keys, const struct pxy_k_rsa_job *jobs,
		     struct pxy_k_rsa_result *results, uint32_t n_jobs);
void tls_record_crypt(const struct pxy_k_rec_desc *descs, const uint8_t *in, uint8_t *out,
		      struct pxy_k_rec_result *results, uint32_t n_descs);

/* ---- the counters -------------------------------------------------------------------------------- */

#define MAX_NODES 512

struct node {
	const char *name;
	int parent;            /* -1: the scenario's top */
	unsigned long long entries, iters;
	unsigned long long outer_serial; /* the serial of the outer iteration of this loop's last iteration */
	unsigned long long last_leave;   /* the event count when its last iteration ended */
	unsigned long long serial;       /* this loop's current iteration */
};

static struct node nodes[MAX_NODES];
static int n_nodes, cur = -1;
static unsigned long long events, serials, top_serial;

static int node_of(int parent, const char *name)
{
	for (int i = 0; i < n_nodes; i++)
		if (nodes[i].parent == parent && strcmp(nodes[i].name, name) == 0)
			return i;
	if (n_nodes == MAX_NODES) {
		fprintf(stderr, "pxy-trips: more than %d loops\n", MAX_NODES);
		exit(1);
	}
	nodes[n_nodes] = (struct node){.name = name, .parent = parent};
	return n_nodes++;
}

void pxyk_trip_enter(struct pxyk_trip *t, const char *name)
{
	int id = node_of(cur, name);
	struct node *nd = &nodes[id];
	unsigned long long outer = cur >= 0 ? nodes[cur].serial : top_serial;

	events++;
	/* the same loop going on: its last iteration ended just now, in the same outer iteration */
	if (!(nd->iters && nd->last_leave == events - 1 && nd->outer_serial == outer))
		nd->entries++;
	nd->iters++;
	nd->outer_serial = outer;
	nd->serial = ++serials;
	t->id = id;
	t->outer = cur;
	cur = id;
}

void pxyk_trip_leave(struct pxyk_trip *t)
{
	nodes[t->id].last_leave = ++events;
	cur = t->outer;
}

/* ---- output --------------------------------------------------------------------------------------- */

static int first_scenario = 1;

static void begin(void)
{
	n_nodes = 0;
	cur = -1;
	top_serial = ++serials;
}

static void emit(const char *name, const char *kernel, const char *what, unsigned units, unsigned long long bytes,
		 unsigned calls)
{
	printf("%s\n  \"%s\": {\"kernel\": \"%s\", \"what\": \"%s\", \"units\": %u, \"bytes\": %llu, \"calls\": %u,\n"
	       "    \"loops\": [",
	       first_scenario ? "" : ",", name, kernel, what, units, bytes, calls);
	for (int i = 0; i < n_nodes; i++)
		printf("%s\n      {\"id\": %d, \"name\": \"%s\", \"parent\": %d, \"entries\": %llu, \"iters\": %llu}",
		       i ? "," : "", i, nodes[i].name, nodes[i].parent, nodes[i].entries, nodes[i].iters);
	printf("]}");
	fflush(stdout);
	first_scenario = 0;
}

static void die(const char *what)
{
	fprintf(stderr, "pxy-trips: %s\n", what);
	exit(1);
}

/* ---- RSA: one full group of TLS decryptions under one key ------------------------------------------ */

static struct pxy_k_rsa_key keys[PXY_K_MAX_KEYS];
static struct pxy_k_rsa_job jobs[PXY_K_RSA_MAX_BATCH];
static struct pxy_k_rsa_result results[PXY_K_RSA_MAX_BATCH];

static void rsa_scenario(int bits, unsigned n_jobs)
{
	EVP_PKEY *pk = EVP_RSA_gen((unsigned)bits);
	EVP_PKEY_CTX *c;
	struct pxy_rsa_priv priv;
	char name[32];
	unsigned good = 0;

	if (!pk || pxy_rsa_priv_from_pkey(pk, &priv) != 0 || pxy_k_rsa_key_fill(&keys[0], &priv) != 0)
		die("RSA key");
	pxy_rsa_priv_free(&priv);
	c = EVP_PKEY_CTX_new(pk, NULL);
	if (!c || EVP_PKEY_encrypt_init(c) <= 0 || EVP_PKEY_CTX_set_rsa_padding(c, RSA_PKCS1_PADDING) <= 0)
		die("RSA encryption");
	for (unsigned i = 0; i < n_jobs; i++) {
		uint8_t pms[48];
		size_t len = PXY_K_RSA_MAX_BYTES;

		memset(&jobs[i], 0, sizeof(jobs[i]));
		jobs[i].key_id = 0;
		jobs[i].mode = PXY_K_RSA_TLS;
		jobs[i].client_version = 0x0303;
		if (RAND_bytes(pms, 48) != 1 || RAND_bytes(jobs[i].random, 48) != 1)
			die("RAND_bytes");
		pms[0] = 3;
		pms[1] = 3;
		if (EVP_PKEY_encrypt(c, jobs[i].in, &len, pms, 48) <= 0)
			die("RSA encryption");
		jobs[i].in_len = (uint32_t)len;
	}
	begin();
	rsa_crt_decrypt(keys, jobs, results, n_jobs);
	for (unsigned i = 0; i < n_jobs; i++)
		good += results[i].status == PXY_K_DONE && results[i].flags == 0;
	if (good != n_jobs)
		die("the RSA kernel did not decrypt its batch");
	snprintf(name, sizeof(name), "rsa%d", bits);
	emit(name, "rsa_crt_decrypt", "decryptions", n_jobs, 0, 1);
	EVP_PKEY_CTX_free(c);
	EVP_PKEY_free(pk);
}

/* ---- records: a full batch of TLS 1.2 records of one suite and length -------------------------------- */

static struct pxy_k_rec_desc descs[PXY_K_REC_MAX_BATCH];
static struct pxy_k_rec_result rresults[PXY_K_REC_MAX_BATCH];

static void rec_scenario(const char *name, uint32_t op, int bulk, int mac, int etm, unsigned n_rec, unsigned plain)
{
	static uint8_t *in, *out;
	int gcm = bulk == PXY_BULK_AES_128_GCM || bulk == PXY_BULK_AES_256_GCM;
	unsigned maclen = mac == PXY_MAC_SHA1 ? 20 : mac == PXY_MAC_SHA256 ? 32 : mac == PXY_MAC_SHA384 ? 48 : 0;
	unsigned flen, done = 0;
	unsigned long long bytes = 0;

	if (!in && (!(in = calloc(PXY_K_REC_MAX_BATCH, PXY_K_REC_SLOT)) || !(out = calloc(PXY_K_REC_MAX_BATCH, PXY_K_REC_SLOT))))
		die("out of memory");
	/* the fragment of a record carrying `plain` bytes (CBC: padded to whole blocks, explicit IV) */
	if (gcm)
		flen = 8 + plain + 16;
	else if (etm)
		flen = 16 + (plain + 16) / 16 * 16 + maclen;
	else
		flen = 16 + (plain + maclen + 16) / 16 * 16;
	for (unsigned i = 0; i < n_rec; i++) {
		struct pxy_k_rec_desc *d = &descs[i];
		uint8_t *r = in + (size_t)i * PXY_K_REC_SLOT;

		memset(d, 0, sizeof(*d));
		d->op = op;
		d->bulk = (uint8_t)bulk;
		d->mac = (uint8_t)mac;
		d->etm = (uint8_t)etm;
		d->mac_key_len = (uint8_t)maclen;
		d->version = 0x0303;
		d->seq = i;
		d->in_off = d->out_off = i * PXY_K_REC_SLOT;
		d->in_len = 5 + (op == PXY_K_OP_TLS_OPEN ? flen : plain);
		d->out_cap = PXY_K_REC_SLOT;
		if (RAND_bytes(d->key, 32) != 1 || RAND_bytes(d->iv, 16) != 1 || RAND_bytes(d->mac_key, 64) != 1 ||
		    RAND_bytes(r + 5, (int)(d->in_len - 5)) != 1)
			die("RAND_bytes");
		r[0] = 23;
		r[1] = 3;
		r[2] = 3;
		r[3] = (uint8_t)((d->in_len - 5) >> 8);
		r[4] = (uint8_t)(d->in_len - 5);
		bytes += plain;
	}
	begin();
	tls_record_crypt(descs, in, out, rresults, n_rec);
	/* random records fail authentication, but take every step a good one takes (constant time) */
	for (unsigned i = 0; i < n_rec; i++)
		done += rresults[i].status == PXY_K_DONE && rresults[i].flags == 0 && (op == PXY_K_OP_TLS_OPEN || rresults[i].ok);
	if (done != n_rec)
		die("the record kernel refused its batch");
	emit(name, "tls_record_crypt", "records", n_rec, bytes, 1);
}

int main(int argc, char **argv)
{
	int quick = argc > 1 && strcmp(argv[1], "--quick") == 0;

	if (argc > 1 && !quick) {
		fprintf(stderr, "usage: pxy-trips [--quick]\n");
		return 2;
	}
	printf("{\"trips\": 1, \"rsa_group\": %d, \"rec_group\": 16, \"scenarios\": {", 32);
	rsa_scenario(2048, 32);
	if (!quick) {
		rsa_scenario(3072, 32);
		rsa_scenario(4096, 32);
	}
	/* a full batch (8 groups) of 16 KiB records: the dataflow's steady state */
	rec_scenario("gcm128_open_16k", PXY_K_OP_TLS_OPEN, PXY_BULK_AES_128_GCM, PXY_MAC_AEAD, 0,
		     quick ? 32 : PXY_K_REC_MAX_BATCH, 16384);
	if (!quick) {
		rec_scenario("gcm256_open_16k", PXY_K_OP_TLS_OPEN, PXY_BULK_AES_256_GCM, PXY_MAC_AEAD, 0, 128, 16384);
		rec_scenario("gcm128_seal_16k", PXY_K_OP_TLS_SEAL, PXY_BULK_AES_128_GCM, PXY_MAC_AEAD, 0, 128, 16384);
		rec_scenario("gcm128_open_1k", PXY_K_OP_TLS_OPEN, PXY_BULK_AES_128_GCM, PXY_MAC_AEAD, 0, 128, 1024);
		rec_scenario("cbc128_sha256_open_16k", PXY_K_OP_TLS_OPEN, PXY_BULK_AES_128_CBC, PXY_MAC_SHA256, 0, 128, 16384);
		rec_scenario("cbc128_sha1_open_16k", PXY_K_OP_TLS_OPEN, PXY_BULK_AES_128_CBC, PXY_MAC_SHA1, 0, 32, 16384);
		rec_scenario("cbc256_sha384_open_16k", PXY_K_OP_TLS_OPEN, PXY_BULK_AES_256_CBC, PXY_MAC_SHA384, 0, 32, 16384);
		rec_scenario("cbc128_sha256_etm_open_16k", PXY_K_OP_TLS_OPEN, PXY_BULK_AES_128_CBC, PXY_MAC_SHA256, 1, 32,
			     16384);
	}
	printf("\n}}\n");
	return 0;
}
