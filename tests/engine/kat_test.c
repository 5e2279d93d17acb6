/*
 * Known-answer tests of one engine (argv[1]: cpu, emu or xrt) with every
 * Wycheproof vector of rsa_pkcs1_{2048,3072,4096}, aes_gcm, aes_cbc_pkcs5 and
 * hmac_sha{1,256,384}, read from $PXY_VECTORS. Each vector must give its
 * expected result; the ones the engine contract cannot express (AES-192, GCM
 * IVs over 128 bytes, RSA ciphertexts over 512 bytes) are counted as n/a.
 * Vectors go in batches of 64, so device engines run them as kernel
 * batches; the jobs that ran on the kernels are counted per file and, for a
 * device engine, must not be zero.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>
#include <openssl/bio.h>
#include <openssl/pem.h>

#include "eng_util.h"

#define PROG "engine.kat"

struct tally {
	int vectors, passed, na, failed;
};

enum { K_RSA, K_GCM_OPEN, K_GCM_SEAL, K_CBC, K_HMAC };

/* a vector's buffers, kept until its batch is checked */
struct vec {
	json_object *t;
	uint8_t *buf[6]; /* key, iv, aad (HMAC: tag), msg, ct (GCM open: ct || tag), tag */
	int expect_valid;
	int kind;
	size_t tag_len;
	uint8_t out[4096];
};

static const char *engine_name;
static struct pxy_engine *eng;
static struct pxy_engine_stats done; /* of the engines closed so far */
static struct pxy_job jobs[EU_BATCH];
static struct vec vecs[EU_BATCH];
static int nvec;

/* A fresh engine (each Wycheproof RSA group has its own key: the key table fills up). */
static void reopen(void)
{
	if (eng) {
		done.launches += eng->stats.launches;
		done.batched_jobs += eng->stats.batched_jobs;
		done.software_jobs += eng->stats.software_jobs;
		done.device_failures += eng->stats.device_failures;
		pxy_engine_close(eng);
	}
	eng = eu_open(PROG, engine_name);
}

/* jobs that ran on the kernels, over every engine opened */
static uint64_t on_device(void)
{
	return done.batched_jobs + eng->stats.batched_jobs;
}

static const char *str(json_object *o, const char *k)
{
	json_object *v;

	return json_object_object_get_ex(o, k, &v) ? json_object_get_string(v) : NULL;
}

static int num(json_object *o, const char *k)
{
	json_object *v;

	return json_object_object_get_ex(o, k, &v) ? json_object_get_int(v) : -1;
}

static uint8_t *hexfield(struct vec *v, int slot, const char *k, size_t *n)
{
	const char *h = str(v->t, k);

	*n = 0;
	if (!h)
		return NULL;
	v->buf[slot] = eu_unhex(h, n);
	if (!v->buf[slot]) {
		fprintf(stderr, PROG ": tcId %d: bad hex in %s\n", num(v->t, "tcId"), k);
		exit(1);
	}
	return v->buf[slot];
}

static void fail(struct tally *ty, const char *file, struct vec *v, const char *what)
{
	fprintf(stderr, PROG ": FAIL %s tcId %d (%s, expected %s): %s\n", file, num(v->t, "tcId"),
		str(v->t, "comment") ? str(v->t, "comment") : "", str(v->t, "result"), what);
	ty->failed++;
}

/* Run the batch and compare every result. */
static void flush_batch(struct tally *ty, const char *file)
{
	if (!nvec)
		return;
	eu_run(eng, jobs, nvec);
	for (int i = 0; i < nvec; i++) {
		struct vec *v = &vecs[i];
		struct pxy_job *j = &jobs[i];
		size_t n;
		int good = 0;

		switch (v->kind) {
		case K_RSA:
			n = strlen(str(v->t, "msg")) / 2;
			good = j->status == PXY_OK && (int)j->u.rsa.ok == v->expect_valid &&
			       (!v->expect_valid || (j->u.rsa.msg_len == n && !memcmp(j->u.rsa.msg, v->buf[3], n)));
			break;
		case K_GCM_OPEN:
		case K_CBC:
			n = strlen(str(v->t, "msg")) / 2;
			/* an input the engine refuses outright (a 0-byte IV) is a rejection too */
			good = (j->status == PXY_OK && j->u.prim.ok) == v->expect_valid &&
			       (!v->expect_valid || (j->u.prim.out_len == n && !memcmp(v->out, v->buf[3], n)));
			break;
		case K_GCM_SEAL:
			n = strlen(str(v->t, "ct")) / 2;
			good = j->status == PXY_OK && j->u.prim.ok && j->u.prim.out_len == n + 16 &&
			       !memcmp(v->out, v->buf[4], n) && !memcmp(v->out + n, v->buf[5], 16);
			break;
		case K_HMAC:
			good = j->status == PXY_OK && j->u.prim.ok && j->u.prim.out_len >= v->tag_len &&
			       (memcmp(v->out, v->buf[2], v->tag_len) == 0) == v->expect_valid;
			break;
		}
		if (good)
			ty->passed++;
		else
			fail(ty, file, v, j->status != PXY_OK ? "the job failed" : "wrong result");
		for (int b = 0; b < 6; b++) {
			free(v->buf[b]);
			v->buf[b] = NULL;
		}
	}
	nvec = 0;
}

static struct vec *next_vec(struct tally *ty, const char *file, json_object *t, int kind)
{
	struct vec *v;

	if (nvec == EU_BATCH)
		flush_batch(ty, file);
	v = &vecs[nvec];
	memset(v, 0, offsetof(struct vec, out));
	memset(&jobs[nvec], 0, sizeof(jobs[nvec]));
	v->t = t;
	v->kind = kind;
	v->expect_valid = !strcmp(str(t, "result"), "valid");
	ty->vectors++;
	nvec++;
	return v;
}

static json_object *groups_of(const char *dir, const char *file, json_object **root)
{
	char path[1024];
	json_object *groups;

	snprintf(path, sizeof(path), "%s/%s", dir, file);
	if (!(*root = json_object_from_file(path)) || !json_object_object_get_ex(*root, "testGroups", &groups)) {
		fprintf(stderr, PROG ": cannot read %s: %s\n", path, json_util_get_last_err());
		exit(1);
	}
	return groups;
}

static void rsa_file(const char *dir, const char *file, struct tally *ty)
{
	json_object *root, *groups = groups_of(dir, file, &root);

	for (size_t g = 0; g < json_object_array_length(groups); g++) {
		json_object *grp = json_object_array_get_idx(groups, g), *tests;
		const char *pem = str(grp, "privateKeyPem");
		BIO *bio = pem ? BIO_new_mem_buf(pem, -1) : NULL;
		EVP_PKEY *pk = bio ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL) : NULL;
		struct pxy_rsa_priv priv;
		uint8_t *store = NULL;
		uint32_t key_id = 0;
		int r = PXY_E_KEY;

		if (pk && eu_rsa_priv(pk, &priv, &store) == 0) {
			r = eng->ops->key_load(eng, &priv, &key_id);
			if (r == PXY_E_LIMIT) {
				reopen();
				r = eng->ops->key_load(eng, &priv, &key_id);
			}
		}
		if (r != PXY_OK) {
			fprintf(stderr, PROG ": %s group %zu: cannot load the private key\n", file, g);
			exit(1);
		}
		json_object_object_get_ex(grp, "tests", &tests);
		for (size_t i = 0; i < json_object_array_length(tests); i++) {
			json_object *t = json_object_array_get_idx(tests, i);
			struct pxy_rsa_job *rj;
			struct vec *v;
			size_t ctl, ml;
			uint8_t *ct;

			if (strlen(str(t, "ct")) / 2 > PXY_RSA_MAX_BYTES) {
				/* longer than any RSA-4096 ciphertext: the contract has no room for it */
				ty->vectors++;
				if (strcmp(str(t, "result"), "valid")) {
					ty->na++;
				} else {
					fprintf(stderr, PROG ": FAIL %s tcId %d: a valid ciphertext of over %d bytes\n", file,
						num(t, "tcId"), PXY_RSA_MAX_BYTES);
					ty->failed++;
				}
				continue;
			}
			v = next_vec(ty, file, t, K_RSA);
			ct = hexfield(v, 0, "ct", &ctl);
			hexfield(v, 3, "msg", &ml);
			jobs[nvec - 1].type = PXY_JOB_RSA_DECRYPT;
			rj = &jobs[nvec - 1].u.rsa;
			rj->mode = PXY_RSA_PKCS1;
			rj->key_id = key_id;
			rj->in_len = (uint16_t)ctl;
			if (ctl)
				memcpy(rj->in, ct, ctl);
		}
		flush_batch(ty, file);
		EVP_PKEY_free(pk);
		BIO_free(bio);
		OPENSSL_clear_free(store, 8 * PXY_RSA_MAX_BYTES);
	}
	json_object_put(root);
}

static void sym_file(const char *dir, const char *file, int kind, uint8_t mac, struct tally *ty)
{
	json_object *root, *groups = groups_of(dir, file, &root);

	for (size_t g = 0; g < json_object_array_length(groups); g++) {
		json_object *grp = json_object_array_get_idx(groups, g), *tests;
		int key_bits = num(grp, "keySize"), tag_bits = num(grp, "tagSize");
		/* AES-192 is no TLS cipher; GCM IVs over 128 bytes are past OpenSSL's limit, which
		 * the cpu engine and the device engines' software fallback share */
		int na = (kind != K_HMAC && key_bits != 128 && key_bits != 256) ||
			 (kind == K_GCM_OPEN && (tag_bits != 128 || num(grp, "ivSize") > 1024));

		json_object_object_get_ex(grp, "tests", &tests);
		for (size_t i = 0; i < json_object_array_length(tests); i++) {
			json_object *t = json_object_array_get_idx(tests, i);
			/* a valid GCM vector is also sealed */
			int passes = 1 + (kind == K_GCM_OPEN && !strcmp(str(t, "result"), "valid"));

			if (na) {
				ty->vectors += passes;
				ty->na += passes;
				continue;
			}
			for (int pass = 0; pass < passes; pass++) {
				struct vec *v = next_vec(ty, file, t, pass ? K_GCM_SEAL : kind);
				struct pxy_prim_job *p = &jobs[nvec - 1].u.prim;
				size_t kl, il = 0, al, ml, cl, tl;
				uint8_t *key = hexfield(v, 0, "key", &kl);
				uint8_t *iv = kind == K_HMAC ? NULL : hexfield(v, 1, "iv", &il);
				uint8_t *aad = hexfield(v, 2, kind == K_HMAC ? "tag" : "aad", &al);
				uint8_t *msg = hexfield(v, 3, "msg", &ml);
				uint8_t *ct = hexfield(v, 4, "ct", &cl);
				uint8_t *tag = hexfield(v, 5, "tag", &tl);

				jobs[nvec - 1].type = PXY_JOB_PRIMITIVE;
				p->key = key;
				p->key_len = kl;
				p->iv = iv;
				p->iv_len = il;
				p->out = v->out;
				p->out_cap = sizeof(v->out);
				switch (v->kind) {
				case K_GCM_OPEN: {
					uint8_t *in = malloc(cl + tl + 1);

					if (!in)
						exit(1);
					if (cl)
						memcpy(in, ct, cl);
					if (tl)
						memcpy(in + cl, tag, tl);
					p->op = PXY_PRIM_GCM_OPEN;
					p->aad = aad;
					p->aad_len = al;
					p->in = in;
					p->in_len = cl + tl;
					free(v->buf[4]);
					v->buf[4] = in;
					break;
				}
				case K_GCM_SEAL:
					v->expect_valid = 1;
					p->op = PXY_PRIM_GCM_SEAL;
					p->aad = aad;
					p->aad_len = al;
					p->in = msg;
					p->in_len = ml;
					break;
				case K_CBC:
					p->op = PXY_PRIM_CBC_DECRYPT;
					p->in = ct;
					p->in_len = cl;
					break;
				default: /* K_HMAC: buf[2] holds the expected (maybe truncated) tag */
					p->op = PXY_PRIM_HMAC;
					p->mac = mac;
					p->in = msg;
					p->in_len = ml;
					v->tag_len = al;
					break;
				}
				if (p->in_len + 64 > sizeof(v->out)) {
					fprintf(stderr, PROG ": %s tcId %d: input too long for the test's buffer\n", file,
						num(t, "tcId"));
					exit(1);
				}
			}
		}
	}
	flush_batch(ty, file);
	json_object_put(root);
}

int main(int argc, char **argv)
{
	static const struct {
		const char *file;
		int kind;
		uint8_t mac;
	} files[] = {
		{ "rsa_pkcs1_2048_test.json", K_RSA, 0 },
		{ "rsa_pkcs1_3072_test.json", K_RSA, 0 },
		{ "rsa_pkcs1_4096_test.json", K_RSA, 0 },
		{ "aes_gcm_test.json", K_GCM_OPEN, 0 },
		{ "aes_cbc_pkcs5_test.json", K_CBC, 0 },
		{ "hmac_sha1_test.json", K_HMAC, PXY_MAC_SHA1 },
		{ "hmac_sha256_test.json", K_HMAC, PXY_MAC_SHA256 },
		{ "hmac_sha384_test.json", K_HMAC, PXY_MAC_SHA384 },
	};
	const char *dir = getenv("PXY_VECTORS");
	int failed = 0, device_engine;
	char probe[1100];
	FILE *fp;

	if (argc != 2) {
		fprintf(stderr, "usage: %s cpu|emu|xrt\n", argv[0]);
		return 2;
	}
	snprintf(probe, sizeof(probe), "%s/%s", dir ? dir : ".", files[0].file);
	if (!dir || !(fp = fopen(probe, "r"))) {
		printf(PROG ": skipped: no Wycheproof vectors (PXY_VECTORS=%s)\n", dir ? dir : "unset");
		return 77;
	}
	fclose(fp);
	engine_name = argv[1];
	device_engine = strcmp(engine_name, "cpu") != 0;
	reopen();
	for (size_t f = 0; f < sizeof(files) / sizeof(files[0]); f++) {
		struct tally ty = { 0 };
		uint64_t dev0 = on_device();

		if (files[f].kind == K_RSA)
			rsa_file(dir, files[f].file, &ty);
		else
			sym_file(dir, files[f].file, files[f].kind, files[f].mac, &ty);
		printf(PROG ": %-26s vectors=%d passed=%d n/a=%d failed=%d on-device=%llu\n", files[f].file, ty.vectors,
		       ty.passed, ty.na, ty.failed, (unsigned long long)(on_device() - dev0));
		if (ty.passed + ty.na + ty.failed != ty.vectors || ty.passed == 0) {
			fprintf(stderr, PROG ": FAIL %s: the counts do not add up\n", files[f].file);
			ty.failed++;
		}
		if (device_engine && on_device() == dev0) {
			fprintf(stderr, PROG ": FAIL %s: no vector ran on the kernels\n", files[f].file);
			ty.failed++;
		}
		failed += ty.failed;
	}
	reopen(); /* folds the last engine's counters into `done` */
	printf(PROG ": total engine=%s launches=%llu batched_jobs=%llu software_jobs=%llu device_failures=%llu\n",
	       engine_name, (unsigned long long)done.launches, (unsigned long long)done.batched_jobs,
	       (unsigned long long)done.software_jobs, (unsigned long long)done.device_failures);
	if (device_engine && done.device_failures) {
		fprintf(stderr, PROG ": FAIL device failures during the tests\n");
		failed++;
	}
	pxy_engine_close(eng);
	printf(PROG ": %s\n", failed ? "FAILED" : "every vector gave its expected result");
	return failed ? 1 : 0;
}
