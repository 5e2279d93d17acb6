/*
 * Wycheproof known answers through the engine named in argv[1], as jobs:
 * RSAES-PKCS1-v1_5 decryption (PXY_RSA_PKCS1 mode, RSA-2048/3072/4096, the
 * group's private key loaded into the engine's key table), AES-GCM open and
 * seal, AES-CBC decryption with PKCS#7 unpadding, HMAC-SHA1/256/384
 * (PXY_JOB_PRIMITIVE). Valid vectors must give the expected output, invalid
 * ones must be refused (or, for seal and HMAC, must not reproduce the
 * vector's ciphertext or tag). What the engine contract cannot express
 * (AES-192, GCM nonces other than 96 bits or tags other than 128 bits,
 * ciphertexts longer than PXY_RSA_MAX_BYTES) is counted and listed as n/a.
 *
 * Jobs go in batches of ET_BATCH, as the proxy's loop would submit them, so
 * that the device engines run them as kernel batches; per file the engine's
 * counters show where the jobs ran, and for the device engines every job
 * the kernels take must have run there.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "engine_util.h"
#include "util/util.h"

static const char *vectors_dir;

enum kind { K_RSA, K_GCM_OPEN, K_GCM_SEAL, K_CBC, K_HMAC };

struct want {
	enum kind kind;
	int valid;          /* the vector's result: 1 valid, 0 invalid, -1 acceptable (either) */
	const uint8_t *exp; /* msg (RSA, GCM open, CBC), ct || tag (GCM seal), tag (HMAC) */
	size_t exp_len;
	size_t vec;         /* its vector, in kat.vec */
};

struct vec {
	int tc;
	const char *comment;
	int failed;
};

struct na {
	char why[64];
	int *tc;
	size_t n, cap;
};

struct kat {
	const char *file;
	struct pxy_engine *e;
	struct pxy_engine_stats before;
	struct pxy_job jobs[ET_BATCH];
	struct want want[ET_BATCH];
	size_t njobs;
	struct vec vec[ET_BATCH];
	size_t nvec;
	void *mem[16 * ET_BATCH]; /* freed after each batch */
	size_t nmem;
	struct na na[8];
	size_t nna;
	size_t vectors, passed, failed, jobs_total;
	uint64_t want_software;
};

static void *keep(struct kat *k, void *p)
{
	assert_true(k->nmem < PXY_ARRAY_LEN(k->mem));
	k->mem[k->nmem++] = p;
	return p;
}

static uint8_t *unhex_keep(struct kat *k, json_object *o, const char *field, size_t *len)
{
	json_object *v;

	if (!json_object_object_get_ex(o, field, &v) || !json_object_is_type(v, json_type_string))
		fail_msg("%s: a vector without \"%s\"", k->file, field);
	return keep(k, et_unhex(json_object_get_string(v), len));
}

static uint8_t *alloc_keep(struct kat *k, size_t n)
{
	uint8_t *p = calloc(1, n ? n : 1);

	assert_non_null(p);
	return keep(k, p);
}

static json_object *field(json_object *o, const char *name)
{
	json_object *v;

	if (!json_object_object_get_ex(o, name, &v))
		fail_msg("no \"%s\" in the vectors", name);
	return v;
}

static void kat_start(struct kat *k, const char *file, json_object **root)
{
	char path[1024];

	memset(k, 0, sizeof(*k));
	k->file = file;
	snprintf(path, sizeof(path), "%s/%s", vectors_dir, file);
	*root = json_object_from_file(path);
	if (!*root)
		fail_msg("%s: %s", path, json_util_get_last_err());
	k->e = et_open();
	k->before = k->e->stats;
}

static void not_applicable(struct kat *k, const char *why, int tc)
{
	struct na *a = NULL;

	k->vectors++;
	for (size_t i = 0; i < k->nna; i++)
		if (!strcmp(k->na[i].why, why))
			a = &k->na[i];
	if (!a) {
		assert_true(k->nna < PXY_ARRAY_LEN(k->na));
		a = &k->na[k->nna++];
		snprintf(a->why, sizeof(a->why), "%s", why);
	}
	if (a->n == a->cap) {
		a->cap = a->cap ? 2 * a->cap : 32;
		a->tc = realloc(a->tc, a->cap * sizeof(*a->tc));
		assert_non_null(a->tc);
	}
	a->tc[a->n++] = tc;
}

static int result_of(json_object *t)
{
	const char *r = json_object_get_string(field(t, "result"));

	return !strcmp(r, "valid") ? 1 : !strcmp(r, "invalid") ? 0 : -1;
}

static void fail_vec(struct kat *k, size_t job, const char *what)
{
	struct vec *v = &k->vec[k->want[job].vec];

	printf("  FAIL %s tc %d (%s): %s\n", k->file, v->tc, v->comment, what);
	v->failed = 1;
}

static int same(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
	return alen == blen && (alen == 0 || !memcmp(a, b, alen));
}

static void check_job(struct kat *k, size_t i)
{
	const struct want *w = &k->want[i];
	const struct pxy_job *j = &k->jobs[i];

	switch (w->kind) {
	case K_RSA: {
		const struct pxy_rsa_job *r = &j->u.rsa;

		if (w->valid == 1 && !r->ok)
			fail_vec(k, i, "a valid ciphertext was refused");
		else if (w->valid == 1 && !same(r->msg, r->msg_len, w->exp, w->exp_len))
			fail_vec(k, i, "wrong message");
		else if (w->valid == 0 && r->ok)
			fail_vec(k, i, "an invalid ciphertext was accepted");
		else if (!r->ok && r->msg_len)
			fail_vec(k, i, "a message length with ok = 0");
		break;
	}
	case K_GCM_OPEN:
	case K_CBC: {
		const struct pxy_prim_job *p = &j->u.prim;

		if (w->valid == 1 && !p->ok)
			fail_vec(k, i, w->kind == K_CBC ? "CBC: valid padding refused" : "GCM open: authentic input refused");
		else if (w->valid == 1 && !same(p->out, p->out_len, w->exp, w->exp_len))
			fail_vec(k, i, w->kind == K_CBC ? "CBC: wrong plaintext" : "GCM open: wrong plaintext");
		else if (w->valid == 0 && p->ok)
			fail_vec(k, i, w->kind == K_CBC ? "CBC: invalid input accepted" : "GCM open: forgery accepted");
		else if (!p->ok && p->out_len)
			fail_vec(k, i, "output length with ok = 0");
		break;
	}
	case K_GCM_SEAL: {
		const struct pxy_prim_job *p = &j->u.prim;
		int eq = p->ok && same(p->out, p->out_len, w->exp, w->exp_len);

		if (!p->ok)
			fail_vec(k, i, "GCM seal: not done");
		else if (p->out_len != p->in_len + 16)
			fail_vec(k, i, "GCM seal: output length is not input + 16");
		else if (w->valid == 1 && !eq)
			fail_vec(k, i, "GCM seal: wrong ciphertext or tag");
		else if (w->valid == 0 && eq)
			fail_vec(k, i, "GCM seal: reproduced an invalid vector's ciphertext and tag");
		break;
	}
	case K_HMAC: {
		const struct pxy_prim_job *p = &j->u.prim;
		static const size_t full[4] = { 0, 20, 32, 48 };
		int eq = p->out_len >= w->exp_len && !memcmp(p->out, w->exp, w->exp_len);

		if (!p->ok)
			fail_vec(k, i, "HMAC: not done");
		else if (p->out_len != full[p->mac])
			fail_vec(k, i, "HMAC: output is not the hash's length");
		else if (w->valid == 1 && !eq)
			fail_vec(k, i, "HMAC: wrong tag");
		else if (w->valid == 0 && eq)
			fail_vec(k, i, "HMAC: matches an invalid (modified) tag");
		break;
	}
	}
}

static void run_batch(struct kat *k)
{
	if (k->njobs) {
		et_run(k->e, k->jobs, k->njobs);
		for (size_t i = 0; i < k->njobs; i++)
			check_job(k, i);
	}
	for (size_t v = 0; v < k->nvec; v++)
		if (k->vec[v].failed)
			k->failed++;
		else
			k->passed++;
	for (size_t i = 0; i < k->nmem; i++)
		free(k->mem[i]);
	k->jobs_total += k->njobs;
	k->njobs = k->nvec = k->nmem = 0;
}

/* A new vector needing `jobs` jobs, all in one batch; returns its first job. */
static struct pxy_job *add_vector(struct kat *k, json_object *t, size_t jobs)
{
	struct vec *v;

	if (k->njobs + jobs > ET_BATCH || k->nmem + 16 > PXY_ARRAY_LEN(k->mem))
		run_batch(k);
	k->vectors++;
	v = &k->vec[k->nvec++];
	v->tc = json_object_get_int(field(t, "tcId"));
	v->comment = json_object_get_string(field(t, "comment"));
	v->failed = 0;
	for (size_t i = 0; i < jobs; i++) {
		memset(&k->jobs[k->njobs + i], 0, sizeof(k->jobs[0]));
		k->want[k->njobs + i].vec = k->nvec - 1;
		k->want[k->njobs + i].valid = result_of(t);
	}
	k->njobs += jobs;
	return &k->jobs[k->njobs - jobs];
}

static void print_ranges(const int *tc, size_t n)
{
	for (size_t i = 0; i < n;) {
		size_t j = i;

		while (j + 1 < n && tc[j + 1] == tc[j] + 1)
			j++;
		printf(i ? ", %d" : "%d", tc[i]);
		if (j > i)
			printf("-%d", tc[j]);
		i = j + 1;
	}
}

static void kat_finish(struct kat *k, json_object *root)
{
	struct et_delta d;
	size_t na = 0;

	run_batch(k);
	for (size_t i = 0; i < k->nna; i++)
		na += k->na[i].n;
	printf("%s: vectors %zu, passed %zu, n/a %zu, failed %zu\n", k->file, k->vectors, k->passed, na, k->failed);
	for (size_t i = 0; i < k->nna; i++) {
		printf("  n/a (%s): %zu: tc ", k->na[i].why, k->na[i].n);
		print_ranges(k->na[i].tc, k->na[i].n);
		printf("\n");
		free(k->na[i].tc);
	}
	et_delta(&k->before, k->e, &d);
	et_print_delta(k->file, k->jobs_total, &d);
	pxy_engine_close(k->e);
	json_object_put(root);
	assert_int_equal(k->passed + k->failed + na, k->vectors);
	if (k->failed)
		fail_msg("%s: %zu vectors failed on the %s engine", k->file, k->failed, et_engine_name);
	et_check_device(k->file, &d, k->want_software);
}

/* ---- RSA ---------------------------------------------------------------------------- */

static void kat_rsa(const char *file, uint32_t bits)
{
	static const char *const names[8] = { "modulus",  "publicExponent", "privateExponent", "prime1",
					      "prime2",   "exponent1",      "exponent2",       "coefficient" };
	static struct kat k;
	json_object *root, *groups;

	kat_start(&k, file, &root);
	groups = field(root, "testGroups");
	for (size_t g = 0; g < json_object_array_length(groups); g++) {
		json_object *grp = json_object_array_get_idx(groups, g), *pk = field(grp, "privateKey");
		json_object *tests = field(grp, "tests");
		struct pxy_rsa_priv priv = { .bits = (uint32_t)json_object_get_int(field(grp, "keySize")) };
		struct pxy_bn *dst[8] = { &priv.n, &priv.e, &priv.d, &priv.p, &priv.q, &priv.dp, &priv.dq, &priv.qinv };
		uint8_t *raw[8];
		uint32_t key_id = 0;
		int r;

		assert_int_equal(priv.bits, bits);
		for (int i = 0; i < 8; i++) {
			raw[i] = et_unhex(json_object_get_string(field(pk, names[i])), &dst[i]->len);
			dst[i]->p = raw[i];
		}
		r = k.e->ops->key_load(k.e, &priv, &key_id);
		for (int i = 0; i < 8; i++)
			free(raw[i]);
		if (r != PXY_OK)
			fail_msg("%s: group %zu: key_load: %s", file, g, pxy_err_str(r));
		for (size_t t = 0; t < json_object_array_length(tests); t++) {
			json_object *tv = json_object_array_get_idx(tests, t);
			size_t ct_len, msg_len;
			uint8_t *ct = et_unhex(json_object_get_string(field(tv, "ct")), &ct_len);
			struct pxy_job *j;

			if (ct_len > PXY_RSA_MAX_BYTES) {
				not_applicable(&k, "ciphertext over PXY_RSA_MAX_BYTES", json_object_get_int(field(tv, "tcId")));
				free(ct);
				continue;
			}
			j = add_vector(&k, tv, 1);
			j->type = PXY_JOB_RSA_DECRYPT;
			j->u.rsa.key_id = key_id;
			j->u.rsa.mode = PXY_RSA_PKCS1;
			j->u.rsa.in_len = (uint16_t)ct_len;
			memcpy(j->u.rsa.in, ct, ct_len);
			free(ct);
			k.want[k.njobs - 1].kind = K_RSA;
			k.want[k.njobs - 1].exp = unhex_keep(&k, tv, "msg", &msg_len);
			k.want[k.njobs - 1].exp_len = msg_len;
		}
	}
	kat_finish(&k, root);
}

static void test_rsa_2048(void **state)
{
	(void)state;
	kat_rsa("rsa_pkcs1_2048_test.json", 2048);
}

static void test_rsa_3072(void **state)
{
	(void)state;
	kat_rsa("rsa_pkcs1_3072_test.json", 3072);
}

static void test_rsa_4096(void **state)
{
	(void)state;
	kat_rsa("rsa_pkcs1_4096_test.json", 4096);
}

/* ---- AES-GCM -------------------------------------------------------------------------- */

static void test_aes_gcm(void **state)
{
	static struct kat k;
	json_object *root, *groups;

	(void)state;
	kat_start(&k, "aes_gcm_test.json", &root);
	groups = field(root, "testGroups");
	for (size_t g = 0; g < json_object_array_length(groups); g++) {
		json_object *grp = json_object_array_get_idx(groups, g), *tests = field(grp, "tests");
		int key_bits = json_object_get_int(field(grp, "keySize"));
		int iv_bits = json_object_get_int(field(grp, "ivSize"));
		int tag_bits = json_object_get_int(field(grp, "tagSize"));

		for (size_t t = 0; t < json_object_array_length(tests); t++) {
			json_object *tv = json_object_array_get_idx(tests, t);
			int tc = json_object_get_int(field(tv, "tcId"));
			size_t key_len, iv_len, aad_len, msg_len, ct_len, tag_len;
			uint8_t *key, *iv, *aad, *msg, *ct, *tag, *sealed;
			struct pxy_job *j;

			if (key_bits == 192) {
				not_applicable(&k, "AES-192 key", tc);
				continue;
			}
			if (iv_bits != 96) {
				not_applicable(&k, "nonce not 96 bits", tc);
				continue;
			}
			if (tag_bits != 128) {
				not_applicable(&k, "tag not 128 bits", tc);
				continue;
			}
			j = add_vector(&k, tv, 2);
			key = unhex_keep(&k, tv, "key", &key_len);
			iv = unhex_keep(&k, tv, "iv", &iv_len);
			aad = unhex_keep(&k, tv, "aad", &aad_len);
			msg = unhex_keep(&k, tv, "msg", &msg_len);
			ct = unhex_keep(&k, tv, "ct", &ct_len);
			tag = unhex_keep(&k, tv, "tag", &tag_len);
			assert_int_equal(tag_len, 16);
			assert_int_equal(iv_len, 12);
			/* ct || tag: the open job's input and the seal job's expected output */
			sealed = alloc_keep(&k, ct_len + 16);
			memcpy(sealed, ct, ct_len);
			memcpy(sealed + ct_len, tag, 16);
			for (int s = 0; s < 2; s++) {
				struct pxy_prim_job *p = &j[s].u.prim;
				struct want *w = &k.want[k.njobs - 2 + (size_t)s];

				j[s].type = PXY_JOB_PRIMITIVE;
				p->op = s ? PXY_PRIM_GCM_SEAL : PXY_PRIM_GCM_OPEN;
				p->key = key;
				p->key_len = key_len;
				p->iv = iv;
				p->iv_len = iv_len;
				p->aad = aad;
				p->aad_len = aad_len;
				p->in = s ? msg : sealed;
				p->in_len = s ? msg_len : ct_len + 16;
				/* exactly the output's size: an overrun shows under ASan */
				p->out_cap = s ? msg_len + 16 : ct_len;
				p->out = alloc_keep(&k, p->out_cap);
				w->kind = s ? K_GCM_SEAL : K_GCM_OPEN;
				w->exp = s ? sealed : msg;
				w->exp_len = s ? ct_len + 16 : msg_len;
			}
		}
	}
	kat_finish(&k, root);
}

/* ---- AES-CBC with PKCS#7 ------------------------------------------------------------- */

static void test_aes_cbc(void **state)
{
	static struct kat k;
	json_object *root, *groups;

	(void)state;
	kat_start(&k, "aes_cbc_pkcs5_test.json", &root);
	groups = field(root, "testGroups");
	for (size_t g = 0; g < json_object_array_length(groups); g++) {
		json_object *grp = json_object_array_get_idx(groups, g), *tests = field(grp, "tests");
		int key_bits = json_object_get_int(field(grp, "keySize"));

		for (size_t t = 0; t < json_object_array_length(tests); t++) {
			json_object *tv = json_object_array_get_idx(tests, t);
			struct pxy_prim_job *p;
			struct want *w;

			if (key_bits == 192) {
				not_applicable(&k, "AES-192 key", json_object_get_int(field(tv, "tcId")));
				continue;
			}
			p = &add_vector(&k, tv, 1)->u.prim;
			w = &k.want[k.njobs - 1];
			k.jobs[k.njobs - 1].type = PXY_JOB_PRIMITIVE;
			p->op = PXY_PRIM_CBC_DECRYPT;
			p->key = unhex_keep(&k, tv, "key", &p->key_len);
			p->iv = unhex_keep(&k, tv, "iv", &p->iv_len);
			p->in = unhex_keep(&k, tv, "ct", &p->in_len);
			p->out_cap = p->in_len;
			p->out = alloc_keep(&k, p->out_cap);
			w->kind = K_CBC;
			w->exp = unhex_keep(&k, tv, "msg", &w->exp_len);
			/* the record kernel takes whole blocks only: an empty input is run in software */
			if (p->in_len == 0 || p->in_len % 16)
				k.want_software++;
		}
	}
	kat_finish(&k, root);
}

/* ---- HMAC -------------------------------------------------------------------------------- */

static void kat_hmac(const char *file, uint8_t mac)
{
	static struct kat k;
	json_object *root, *groups;

	kat_start(&k, file, &root);
	groups = field(root, "testGroups");
	for (size_t g = 0; g < json_object_array_length(groups); g++) {
		json_object *grp = json_object_array_get_idx(groups, g), *tests = field(grp, "tests");
		size_t tag_bytes = (size_t)json_object_get_int(field(grp, "tagSize")) / 8;

		for (size_t t = 0; t < json_object_array_length(tests); t++) {
			json_object *tv = json_object_array_get_idx(tests, t);
			struct pxy_prim_job *p = &add_vector(&k, tv, 1)->u.prim;
			struct want *w = &k.want[k.njobs - 1];

			k.jobs[k.njobs - 1].type = PXY_JOB_PRIMITIVE;
			p->op = PXY_PRIM_HMAC;
			p->mac = mac;
			p->key = unhex_keep(&k, tv, "key", &p->key_len);
			p->in = unhex_keep(&k, tv, "msg", &p->in_len);
			p->out_cap = 64; /* the device engines want room for any hash */
			p->out = alloc_keep(&k, p->out_cap);
			w->kind = K_HMAC;
			/* a truncated tag: the first tagSize bits of the HMAC */
			w->exp = unhex_keep(&k, tv, "tag", &w->exp_len);
			assert_int_equal(w->exp_len, tag_bytes);
		}
	}
	kat_finish(&k, root);
}

static void test_hmac_sha1(void **state)
{
	(void)state;
	kat_hmac("hmac_sha1_test.json", PXY_MAC_SHA1);
}

static void test_hmac_sha256(void **state)
{
	(void)state;
	kat_hmac("hmac_sha256_test.json", PXY_MAC_SHA256);
}

static void test_hmac_sha384(void **state)
{
	(void)state;
	kat_hmac("hmac_sha384_test.json", PXY_MAC_SHA384);
}

static const char *const files[] = {
	"rsa_pkcs1_2048_test.json", "rsa_pkcs1_3072_test.json", "rsa_pkcs1_4096_test.json", "aes_gcm_test.json",
	"aes_cbc_pkcs5_test.json",  "hmac_sha1_test.json",      "hmac_sha256_test.json",    "hmac_sha384_test.json",
};

int main(int argc, char **argv)
{
	int skip_ok;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rsa_2048),   cmocka_unit_test(test_rsa_3072),   cmocka_unit_test(test_rsa_4096),
		cmocka_unit_test(test_aes_gcm),    cmocka_unit_test(test_aes_cbc),    cmocka_unit_test(test_hmac_sha1),
		cmocka_unit_test(test_hmac_sha256), cmocka_unit_test(test_hmac_sha384),
	};
	int r = et_main_engine(argc, argv, "engine_kat_test");

	if (r)
		return r;
	vectors_dir = getenv("PXY_VECTORS");
	skip_ok = getenv("PXY_ALLOW_SKIP") && !strcmp(getenv("PXY_ALLOW_SKIP"), "1");
	if (!vectors_dir || !*vectors_dir) {
		printf("engine_kat_test: %s: PXY_VECTORS (the directory of Wycheproof's JSON test vectors, "
		       "tests/vectors/wycheproof) is not set\n", skip_ok ? "skipped" : "cannot run");
		return skip_ok ? 77 : 1;
	}
	for (size_t i = 0; i < PXY_ARRAY_LEN(files); i++) {
		char path[1024];
		struct stat st;

		snprintf(path, sizeof(path), "%s/%s", vectors_dir, files[i]);
		if (stat(path, &st) != 0) {
			printf("engine_kat_test: %s: no Wycheproof vectors (%s not found; PXY_VECTORS names the "
			       "directory, tests/vectors/wycheproof by default)\n",
			       skip_ok ? "skipped" : "cannot run", path);
			return skip_ok ? 77 : 1;
		}
	}
	return cmocka_run_group_tests(tests, NULL, NULL);
}
