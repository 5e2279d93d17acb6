/*
 * Randomized cross-check of the engine named in argv[1] against a reference
 * record layer on OpenSSL's EVP primitives (tls_ref.c, from RFC 5246 §6.2.3,
 * RFC 5288 and RFC 7366), for every record protection the engines implement:
 * AES-128/256-GCM (TLS 1.2), AES-128/256-CBC with HMAC-SHA1/256/384, both
 * MAC-then-encrypt and encrypt-then-MAC, in TLS 1.2 and (SHA-1) in TLS 1.1
 * (explicit IVs) and TLS 1.0 (the chained IV given in the job). Per suite,
 * RECORDS records of random lengths (0..16384, with block, GHASH-group and
 * keystream-pass boundaries and the largest sizes favoured), fresh keys per
 * batch, random sequence numbers and content types:
 *  (a) records sealed by the reference, with a random valid padding length
 *      (up to 255) and random IVs or explicit nonces, open on the engine to
 *      the same plaintext;
 *  (b) records sealed by the engine open with the reference;
 *  (c) a reference record with one bit flipped (header type or version,
 *      explicit IV or nonce, ciphertext, MAC or tag, padding) or opened
 *      with another sequence number is refused, and so is a CBC record
 *      whose MAC is right but whose padding is not.
 * And RSA pre-master decryption (PXY_RSA_TLS) under 2048-, 3072- and
 * 4096-bit keys loaded side by side: secrets OpenSSL encrypted decrypt to
 * themselves; a wrong version, bad padding, a wrong length or a ciphertext
 * over the modulus give, as engine.h documents, status PXY_OK and a secret
 * that is neither the encrypted one nor the same twice.
 *
 * The seed (PXY_TEST_SEED, or the clock) is printed first; with it a run
 * repeats exactly, up to the engine's own random implicit-rejection secrets.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>

#include "engine_util.h"
#include "tls/cert.h"
#include "tls_ref.h"
#include "tls/suites.h"
#include "util/util.h"

#define RECORDS 256  /* per suite */
#define PER_BATCH 16 /* records per batch: up to four jobs each */
#define BUF (PXY_TLS_MAX_RECORD + 64)
#define MAX_REPORTS 20

struct suite {
	char name[48];
	uint8_t bulk, mac, etm;
	uint16_t version;
};

static struct suite suites[32];
static size_t nsuites;

static void new_keys(struct pxy_traffic_keys *k, const struct suite *s)
{
	memset(k, 0, sizeof(*k));
	k->bulk = s->bulk;
	k->mac = s->mac;
	k->etm = s->etm;
	k->version = s->version;
	k->key_len = (uint8_t)pxy_bulk_key_len(s->bulk);
	k->mac_key_len = (uint8_t)pxy_mac_len(s->mac);
	k->mac_len = s->mac == PXY_MAC_AEAD ? 16 : k->mac_key_len;
	k->iv_len = s->mac == PXY_MAC_AEAD ? (s->version >= PXY_TLS13 ? 12 : 4) : s->version <= PXY_TLS10 ? 16 : 0;
	et_rand_bytes(k->key, k->key_len);
	et_rand_bytes(k->mac_key, k->mac_key_len);
	et_rand_bytes(k->iv, k->iv_len);
}

/* ---- records through the engine --------------------------------------------------- */

enum tamper { T_HEADER, T_IV, T_DATA, T_MAC, T_PAD, T_SEQ, T_N };
static const char *const tamper_names[T_N] = { "header", "IV/nonce", "ciphertext", "MAC/tag", "padding", "seq" };

enum role { R_OPEN, R_SEAL, R_TAMPER, R_BADPAD };
static const char *const role_names[4] = { "open (reference sealed)", "seal (reference opens)", "tampered record",
					   "bad padding, good MAC" };

struct rcase {
	size_t n;
	uint64_t seq;
	uint8_t type;
	uint8_t iv[16];      /* the reference record's IV, or explicit nonce */
	uint8_t seal_iv[16]; /* the engine's, for its seal */
	unsigned pad;
	enum tamper t;
	size_t flip_at;      /* byte flipped: a record offset, or SIZE_MAX for the job's IV ... */
	unsigned iv_byte;    /* ... at this byte (TLS 1.0: the IV is not in the record) */
};

struct job_ref {
	size_t rc;
	enum role role;
};

static uint8_t pts[PER_BATCH][PXY_TLS_MAX_PLAINTEXT];
static uint8_t bufs[ET_BATCH][BUF];
static uint8_t scratch[BUF];
static struct pxy_job jobs[ET_BATCH];
static struct job_ref refs[ET_BATCH];
static struct rcase rcs[PER_BATCH];

static size_t rand_len(void)
{
	/* block edges, GHASH groups of 8 blocks (with the 13-byte AAD block and the length
	 * block), the keystream of the first AES pass (16 or 32 blocks), the largest records */
	static const size_t edge[] = { 0,   1,   2,    15,   16,   17,   31,   32,    33,    47,    48,    63,   64,
				       65,  95,  96,   97,   111,  112,  113,  127,   128,   129,   223,   224,  225,
				       239, 240, 241,  255,  256,  257,  479,  480,   481,   1023,  1024,  4096, 8192,
				       16368, 16369, 16383, 16384 };

	switch (et_below(8)) {
	case 0:
	case 1: return edge[et_below(PXY_ARRAY_LEN(edge))];
	case 2: return et_below(65);
	case 3: {
		size_t v = 16 * (size_t)et_below(1025) + et_below(3);
		return v ? PXY_MIN(v - 1, PXY_TLS_MAX_PLAINTEXT) : 0;
	}
	case 4: return PXY_TLS_MAX_PLAINTEXT - et_below(64);
	default: return et_below(PXY_TLS_MAX_PLAINTEXT + 1);
	}
}

static const uint8_t types[] = { 23, 23, 23, 22, 21, 20 };

/*
 * Where a single-bit change goes, by kind: a record offset, or SIZE_MAX for
 * byte c->iv_byte of the job's IV (TLS 1.0 MtE only: there the MAC covers the
 * first block the IV garbles; with EtM nothing covers the implicit IV, which
 * the previous record's MAC authenticated, so a change there may go unseen).
 */
static size_t pick_flip(const struct pxy_traffic_keys *k, struct rcase *c, size_t len)
{
	size_t eiv = tr_explicit_len(k), start = 5 + eiv, n = c->n;
	size_t m = start + tr_padded_from(k, n); /* CBC: where the padding starts */

	switch (c->t) {
	case T_HEADER: return et_below(3); /* type and version; the length is the reader's business */
	case T_IV:
		if (eiv)
			return 5 + et_below((uint32_t)eiv);
		if (k->version >= PXY_TLS13) {
			/* TLS 1.3: the nonce is not in the record (the sequence number is T_SEQ's): the data */
			c->t = T_DATA;
			goto data;
		}
		if (!k->etm) {
			c->iv_byte = et_below(16);
			return SIZE_MAX;
		}
		/* TLS 1.0 EtM: the MAC does not cover the implicit IV (the previous record's MAC did) */
		c->t = T_DATA;
		/* fall through */
	case T_DATA:
	data:
		if (n)
			return start + et_below((uint32_t)n);
		c->t = T_MAC;
		/* fall through */
	case T_MAC:
		if (tr_is_gcm(k) || k->etm)
			return len - k->mac_len + et_below(k->mac_len);
		return start + n + et_below(k->mac_len);
	case T_PAD:
		if (tr_is_gcm(k))
			return 5 + et_below((uint32_t)(len - 5));
		{
			size_t at = m + et_below(c->pad + 1);

			/* the padding's own ciphertext byte, or the one above it in the previous block,
			 * which flips exactly that padding bit */
			if (et_below(2))
				return at;
			if (at >= start - eiv + 16)
				return at - 16;
			if (eiv || k->etm)
				return at;
			c->iv_byte = (unsigned)(at - start); /* TLS 1.0 MtE: the IV byte above it */
			return SIZE_MAX;
		}
	default: return 0;
	}
}

static void rec_job(struct pxy_job *j, const struct pxy_traffic_keys *k, uint64_t seq, uint8_t *buf, size_t len,
		    uint32_t type, const uint8_t iv[16])
{
	memset(j, 0, sizeof(*j));
	j->type = type;
	j->u.rec.keys = k;
	j->u.rec.seq = seq;
	j->u.rec.rec = buf;
	j->u.rec.rec_len = len;
	j->u.rec.rec_cap = BUF;
	memcpy(j->u.rec.iv, iv, 16);
}

static size_t reports;

static void report(const struct suite *s, const struct rcase *c, enum role r, const char *what)
{
	if (reports++ < MAX_REPORTS)
		printf("  FAIL %s: %s: %s (plaintext %zu bytes, seq %llu, type %u%s%s)\n", s->name, role_names[r], what,
		       c->n, (unsigned long long)c->seq, c->type, r == R_TAMPER ? ", changed: " : "",
		       r == R_TAMPER ? tamper_names[c->t] : "");
}

/* One batch of PER_BATCH records under fresh keys; returns the number of jobs. */
static size_t record_batch(const struct suite *s)
{
	static struct pxy_traffic_keys k; /* the jobs point to it until they are checked */
	size_t nj = 0;

	new_keys(&k, s);
	for (size_t r = 0; r < PER_BATCH; r++) {
		struct rcase *c = &rcs[r];
		struct tr_seal_opts o = { 0 };
		size_t len;
		uint8_t *pristine;

		memset(c, 0, sizeof(*c));
		c->n = rand_len();
		c->seq = et_below(4) ? et_rand() >> et_below(64) : et_below(1000);
		c->type = types[et_below(PXY_ARRAY_LEN(types))];
		et_rand_bytes(c->iv, 16);
		et_rand_bytes(c->seal_iv, 16);
		et_rand_bytes(pts[r], c->n);
		c->pad = tr_is_gcm(&k) ? 0 : tr_rand_pad(&k, c->n, et_below(4) == 0);
		c->t = (enum tamper)et_below(T_N);
		o.type = c->type;
		o.iv = c->iv;
		o.pad = c->pad;

		/* (a) the reference seals, the engine opens */
		pristine = bufs[nj];
		len = tr_seal(&k, c->seq, &o, pts[r], c->n, pristine);
		rec_job(&jobs[nj], &k, c->seq, pristine, len, PXY_JOB_RECORD_OPEN, c->iv);
		refs[nj++] = (struct job_ref){ r, R_OPEN };

		/* (c) one bit changed, or another sequence number */
		memcpy(bufs[nj], pristine, len);
		rec_job(&jobs[nj], &k, c->seq, bufs[nj], len, PXY_JOB_RECORD_OPEN, c->iv);
		if (c->t == T_SEQ) {
			jobs[nj].u.rec.seq ^= 1ull << et_below(64);
		} else {
			c->flip_at = pick_flip(&k, c, len);
			if (c->flip_at == SIZE_MAX)
				jobs[nj].u.rec.iv[c->iv_byte] ^= (uint8_t)(1u << et_below(8));
			else
				bufs[nj][c->flip_at] ^= (uint8_t)(1u << et_below(8));
		}
		refs[nj++] = (struct job_ref){ r, R_TAMPER };

		/* (b) the engine seals, the reference opens */
		bufs[nj][0] = c->type;
		bufs[nj][1] = (uint8_t)(k.version >> 8);
		bufs[nj][2] = (uint8_t)k.version;
		bufs[nj][3] = (uint8_t)(c->n >> 8);
		bufs[nj][4] = (uint8_t)c->n;
		memcpy(bufs[nj] + 5, pts[r], c->n);
		rec_job(&jobs[nj], &k, c->seq, bufs[nj], 5 + c->n, PXY_JOB_RECORD_SEAL, c->seal_iv);
		refs[nj++] = (struct job_ref){ r, R_SEAL };

		/* (c) CBC: a right MAC over a wrong padding */
		if (!tr_is_gcm(&k) && r % 2 == 0) {
			o.pad = c->pad >= 16 ? c->pad : c->pad + 16;
			o.bad_pad = tr_padded_from(&k, c->n) + o.pad + 1 <= 255 && et_below(2) ? 2 : 1;
			len = tr_seal(&k, c->seq, &o, pts[r], c->n, bufs[nj]);
			rec_job(&jobs[nj], &k, c->seq, bufs[nj], len, PXY_JOB_RECORD_OPEN, c->iv);
			refs[nj++] = (struct job_ref){ r, R_BADPAD };
		}
	}
	assert_true(nj <= ET_BATCH);
	return nj;
}

static size_t check_batch(const struct suite *s, size_t nj)
{
	size_t bad = 0;

	for (size_t i = 0; i < nj; i++) {
		const struct pxy_rec_job *j = &jobs[i].u.rec;
		const struct rcase *c = &rcs[refs[i].rc];
		const uint8_t *pt = pts[refs[i].rc];
		size_t n = 0, eiv = tr_explicit_len(j->keys);
		const char *why = NULL;

		switch (refs[i].role) {
		case R_OPEN:
			if (!j->ok)
				why = "refused";
			else if (j->pt_len != c->n || j->pt_off != 5 + eiv)
				why = "wrong plaintext offset or length";
			else if (j->keys->version >= PXY_TLS13 && j->rec[0] != c->type)
				why = "wrong inner content type";
			else if (c->n && memcmp(j->rec + j->pt_off, pt, c->n))
				why = "wrong plaintext";
			break;
		case R_SEAL:
			if (!j->ok)
				why = "not sealed";
			else if (j->rec_len > j->rec_cap ||
				 j->rec[0] != (j->keys->version >= PXY_TLS13 ? 23 : c->type) || j->rec[1] != (j->keys->version >> 8) ||
				 j->rec[2] != (uint8_t)j->keys->version)
				why = "wrong header";
			else if (!tr_open(j->keys, c->seq, j->rec, j->rec_len, c->seal_iv, scratch, &n))
				why = "the reference refuses it";
			else if (n != c->n || (n && memcmp(scratch, pt, n)))
				why = "the reference opens it to another plaintext";
			break;
		case R_TAMPER:
		case R_BADPAD:
			if (j->ok)
				why = "accepted";
			else if (j->pt_len)
				why = "refused, but with a plaintext length";
			break;
		}
		if (why) {
			report(s, c, refs[i].role, why);
			bad++;
		}
	}
	return bad;
}

static void run_suite(const struct suite *s)
{
	struct pxy_engine *e = et_open();
	struct pxy_engine_stats before = e->stats;
	struct et_delta d;
	size_t jobs_total = 0, bad = 0;

	for (size_t b = 0; b < RECORDS / PER_BATCH; b++) {
		size_t nj = record_batch(s);

		et_run(e, jobs, nj);
		bad += check_batch(s, nj);
		jobs_total += nj;
	}
	et_delta(&before, e, &d);
	printf("%-34s records %d: failures %zu\n", s->name, RECORDS, bad);
	et_print_delta(s->name, jobs_total, &d);
	pxy_engine_close(e);
	if (bad)
		fail_msg("%s: %zu jobs wrong on the %s engine (seed %llu)", s->name, bad, et_engine_name,
			 (unsigned long long)et_seed());
	et_check_device(s->name, &d, 0);
}

static void add_suite(uint8_t bulk, uint8_t mac, uint8_t etm, uint16_t version)
{
	struct suite *s = &suites[nsuites++];
	static const char *const bulk_names[5] = { "", "AES-128-GCM", "AES-256-GCM", "AES-128-CBC", "AES-256-CBC" };
	static const char *const mac_names[4] = { "", "-SHA1", "-SHA256", "-SHA384" };
	char v[8];

	assert_true(nsuites <= PXY_ARRAY_LEN(suites));
	s->bulk = bulk;
	s->mac = mac;
	s->etm = etm;
	s->version = version;
	snprintf(s->name, sizeof(s->name), "%s%s%s %s", bulk_names[bulk], mac_names[mac],
		 mac == PXY_MAC_AEAD ? "" : etm ? " EtM" : " MtE", pxy_version_name(version, v));
}

static void test_records_gcm(void **state)
{
	(void)state;
	for (size_t i = 0; i < nsuites; i++)
		if (suites[i].mac == PXY_MAC_AEAD)
			run_suite(&suites[i]);
}

static void test_records_cbc(void **state)
{
	(void)state;
	for (size_t i = 0; i < nsuites; i++)
		if (suites[i].mac != PXY_MAC_AEAD)
			run_suite(&suites[i]);
}

/* ---- RSA pre-master secrets ------------------------------------------------------------ */

enum rsa_case {
	RSA_GOOD,       /* PKCS#1 v1.5 by OpenSSL, the ClientHello's version: decrypts */
	RSA_VERSION,    /* PKCS#1 v1.5 by OpenSSL, one version bit off */
	RSA_BT1,        /* block type 1 (signature padding) */
	RSA_FIRST_BYTE, /* the leading byte is 1, not 0 */
	RSA_NO_SEP,     /* no zero byte after the padding string */
	RSA_ZERO_IN_PS, /* a zero inside the padding string: a longer message */
	RSA_LEN47,      /* a 47-byte message */
	RSA_LEN49,      /* a 49-byte message */
	RSA_SHORT_PS,   /* a 7-byte padding string */
	RSA_TRUNCATED,  /* the ciphertext one byte short */
	RSA_EMPTY,      /* no ciphertext */
	RSA_OVER_N,     /* the ciphertext is the modulus */
	RSA_LEFT_SHORT, /* a good ciphertext whose value fits one byte less, sent without its leading zero */
	RSA_NCASES,
};
static const char *const rsa_case_names[RSA_NCASES] = {
	"good", "wrong version", "block type 1", "leading byte 1", "no separator", "zero in the padding string",
	"47-byte message", "49-byte message", "7-byte padding string", "truncated ciphertext", "empty ciphertext",
	"ciphertext = modulus", "ciphertext without its leading zero",
};

#define RSA_GOOD_PER_KEY 24
#define RSA_JOBS (3 * (RSA_GOOD_PER_KEY + 2 * (RSA_NCASES - 1)))

struct rsa_want {
	int key;
	enum rsa_case c;
	int group;          /* the two submissions of a bad case share it */
	uint8_t pms[48];    /* the secret inside (or near) the ciphertext */
};

static struct pxy_job rjobs[RSA_JOBS];
static struct rsa_want rwant[RSA_JOBS];

static size_t rsa_encrypt(EVP_PKEY *pk, const uint8_t *m, size_t n, int padding, uint8_t *out)
{
	EVP_PKEY_CTX *c = EVP_PKEY_CTX_new(pk, NULL);
	size_t outlen = PXY_RSA_MAX_BYTES;

	assert_non_null(c);
	assert_true(EVP_PKEY_encrypt_init(c) > 0);
	assert_true(EVP_PKEY_CTX_set_rsa_padding(c, padding) > 0);
	assert_true(EVP_PKEY_encrypt(c, out, &outlen, m, n) > 0);
	EVP_PKEY_CTX_free(c);
	return outlen;
}

static void nonzero_bytes(uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(1 + et_below(255));
}

/* The ciphertext of case c for secret pms under key pk (k bytes); returns its length. */
static size_t rsa_case_ct(EVP_PKEY *pk, size_t k, enum rsa_case c, const uint8_t pms[48], uint8_t *ct)
{
	uint8_t em[PXY_RSA_MAX_BYTES], m[48];
	BIGNUM *n = NULL;

	switch (c) {
	case RSA_GOOD:
	case RSA_TRUNCATED:
	case RSA_EMPTY: {
		size_t len = rsa_encrypt(pk, pms, 48, RSA_PKCS1_PADDING, ct);
		return c == RSA_GOOD ? len : c == RSA_TRUNCATED ? len - 1 : 0;
	}
	case RSA_VERSION:
		memcpy(m, pms, 48);
		m[et_below(2)] ^= (uint8_t)(1u << et_below(8));
		return rsa_encrypt(pk, m, 48, RSA_PKCS1_PADDING, ct);
	case RSA_LEFT_SHORT:
		/* RFC 5246 §7.4.7.1: the ciphertext is exactly k bytes; OpenSSL alone would left-pad this one */
		for (int tries = 0; tries < 100000; tries++) {
			size_t len = rsa_encrypt(pk, pms, 48, RSA_PKCS1_PADDING, ct);

			if (ct[0] == 0) {
				memmove(ct, ct + 1, len - 1);
				return len - 1;
			}
		}
		fail_msg("no ciphertext with a leading zero byte");
		return 0;
	case RSA_OVER_N:
		assert_true(EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_RSA_N, &n));
		assert_int_equal(BN_bn2binpad(n, ct, (int)k), (int)k);
		BN_free(n);
		return k;
	default:
		break;
	}
	/* 00 02 PS 00 M, then broken as the case says */
	if (k < 256 || k > sizeof(em))
		fail_msg("a %zu-byte modulus", k);
	em[0] = 0;
	em[1] = 2;
	nonzero_bytes(em + 2, k - 2);
	memcpy(em + k - 48, pms, 48);
	em[k - 49] = 0;
	switch (c) {
	case RSA_BT1: em[1] = 1; break;
	case RSA_FIRST_BYTE: em[0] = 1; break;
	case RSA_NO_SEP: nonzero_bytes(em + k - 49, 49); break;
	case RSA_ZERO_IN_PS: em[10 + et_below((uint32_t)(k - 60))] = 0; break;
	case RSA_LEN47: em[k - 49] = 1; em[k - 48] = 0; break;
	case RSA_LEN49: em[k - 49] = pms[0] | 1; em[k - 50] = 0; break;
	case RSA_SHORT_PS: nonzero_bytes(em + 2, k - 2 - 48); em[9] = 0; break;
	default: fail();
	}
	return rsa_encrypt(pk, em, k, RSA_NO_PADDING, ct);
}

static void test_rsa_tls(void **state)
{
	static const uint32_t bits[3] = { 2048, 3072, 4096 };
	struct pxy_engine *e = et_open();
	struct pxy_engine_stats before = e->stats;
	EVP_PKEY *pk[3];
	uint32_t key_id[3];
	size_t nj = 0, bad = 0;
	struct et_delta d;
	int groups = 0;

	(void)state;
	for (int i = 0; i < 3; i++) {
		struct pxy_rsa_priv priv;

		pk[i] = EVP_RSA_gen(bits[i]);
		assert_non_null(pk[i]);
		assert_int_equal(pxy_rsa_priv_from_pkey(pk[i], &priv), PXY_OK);
		assert_int_equal(e->ops->key_load(e, &priv, &key_id[i]), PXY_OK);
		pxy_rsa_priv_free(&priv);
	}
	for (int i = 0; i < 3; i++)
		for (int c = 0; c < RSA_NCASES; c++)
			for (int r = 0; r < (c == RSA_GOOD ? RSA_GOOD_PER_KEY : 1); r++, groups++) {
				uint16_t cv = et_below(4) ? (uint16_t)(PXY_TLS10 + et_below(3)) : (uint16_t)et_rand();
				struct pxy_job j = { .type = PXY_JOB_RSA_DECRYPT };
				struct rsa_want w = { .key = i, .c = (enum rsa_case)c, .group = groups };

				et_rand_bytes(w.pms, 48);
				w.pms[0] = (uint8_t)(cv >> 8);
				w.pms[1] = (uint8_t)cv;
				j.u.rsa.key_id = key_id[i];
				j.u.rsa.mode = PXY_RSA_TLS;
				j.u.rsa.client_version = cv;
				j.u.rsa.in_len = (uint16_t)rsa_case_ct(pk[i], bits[i] / 8, w.c, w.pms, j.u.rsa.in);
				/* a bad case twice: the secret must differ each time */
				for (int twice = 0; twice < (c == RSA_GOOD ? 1 : 2); twice++) {
					assert_true(nj < RSA_JOBS);
					rjobs[nj] = j;
					rwant[nj++] = w;
				}
			}
	/* all keys and cases mixed in every batch */
	for (size_t i = nj - 1; i > 0; i--) {
		size_t s = et_below((uint32_t)i + 1);
		struct pxy_job tj = rjobs[i];
		struct rsa_want tw = rwant[i];

		rjobs[i] = rjobs[s];
		rwant[i] = rwant[s];
		rjobs[s] = tj;
		rwant[s] = tw;
	}
	for (size_t off = 0; off < nj; off += ET_BATCH)
		et_run(e, rjobs + off, PXY_MIN((size_t)ET_BATCH, nj - off));
	for (size_t i = 0; i < nj; i++) {
		const struct rsa_want *w = &rwant[i];
		const uint8_t *got = rjobs[i].u.rsa.pms;
		static const uint8_t zero[48];
		const char *why = NULL;

		if (w->c == RSA_GOOD) {
			if (memcmp(got, w->pms, 48))
				why = "not the encrypted secret";
		} else if (!memcmp(got, w->pms, 48)) {
			why = "the secret came out: not rejected";
		} else if (!memcmp(got, zero, 48)) {
			why = "an all-zero secret";
		} else {
			for (size_t t = 0; t < nj; t++)
				if (t != i && rwant[t].group == w->group && !memcmp(rjobs[t].u.rsa.pms, got, 48))
					why = "the same secret twice: the rejection is predictable";
		}
		if (why) {
			bad++;
			if (bad <= MAX_REPORTS)
				printf("  FAIL RSA-%u %s (client_version 0x%04x, %u-byte ciphertext): %s\n", bits[w->key],
				       rsa_case_names[w->c], rjobs[i].u.rsa.client_version, rjobs[i].u.rsa.in_len, why);
		}
	}
	et_delta(&before, e, &d);
	printf("RSA TLS pre-master, 2048/3072/4096: %zu jobs, failures %zu\n", nj, bad);
	et_print_delta("RSA TLS", nj, &d);
	pxy_engine_close(e);
	for (int i = 0; i < 3; i++)
		EVP_PKEY_free(pk[i]);
	if (bad)
		fail_msg("RSA: %zu jobs wrong on the %s engine (seed %llu)", bad, et_engine_name,
			 (unsigned long long)et_seed());
	et_check_device("RSA TLS", &d, 0);
}

/*
 * Keys come and go (a reload): an unloaded key's slot is taken by the next
 * key loaded, and the keys around it keep working, on the card's table and
 * in software alike.
 */
static void test_key_unload(void **state)
{
	struct pxy_engine *e = et_open();
	EVP_PKEY *pk[3];
	uint32_t id[3];
	struct pxy_job j[2];

	(void)state;
	for (int i = 0; i < 3; i++) {
		struct pxy_rsa_priv priv;

		pk[i] = EVP_RSA_gen(2048);
		assert_non_null(pk[i]);
		assert_int_equal(pxy_rsa_priv_from_pkey(pk[i], &priv), PXY_OK);
		if (i < 2)
			assert_int_equal(e->ops->key_load(e, &priv, &id[i]), PXY_OK);
		if (i == 1) {
			/* the first goes, the third takes its slot */
			assert_non_null(e->ops->key_unload);
			e->ops->key_unload(e, id[0]);
		}
		if (i == 2) {
			assert_int_equal(e->ops->key_load(e, &priv, &id[2]), PXY_OK);
			assert_int_equal(id[2], id[0]);
		}
		pxy_rsa_priv_free(&priv);
	}
	for (int k = 0; k < 2; k++) {
		int key = k ? 2 : 1;
		uint8_t pms[48];

		et_rand_bytes(pms, 48);
		pms[0] = 3;
		pms[1] = 3;
		memset(&j[k], 0, sizeof(j[k]));
		j[k].type = PXY_JOB_RSA_DECRYPT;
		j[k].u.rsa.key_id = id[key];
		j[k].u.rsa.mode = PXY_RSA_TLS;
		j[k].u.rsa.client_version = 0x0303;
		j[k].u.rsa.in_len = (uint16_t)rsa_case_ct(pk[key], 256, RSA_GOOD, pms, j[k].u.rsa.in);
		et_run(e, &j[k], 1);
		assert_memory_equal(j[k].u.rsa.pms, pms, 48);
	}
	pxy_engine_close(e);
	for (int i = 0; i < 3; i++)
		EVP_PKEY_free(pk[i]);
}

static int setup(void **state)
{
	(void)state;
	et_seed();
	if (tr_init() < 0)
		return -1;
	add_suite(PXY_BULK_AES_128_GCM, PXY_MAC_AEAD, 0, PXY_TLS12);
	add_suite(PXY_BULK_AES_256_GCM, PXY_MAC_AEAD, 0, PXY_TLS12);
	add_suite(PXY_BULK_AES_128_GCM, PXY_MAC_AEAD, 0, PXY_TLS13); /* nonce IV^seq, header AAD, inner type */
	add_suite(PXY_BULK_AES_256_GCM, PXY_MAC_AEAD, 0, PXY_TLS13);
	for (uint8_t bulk = PXY_BULK_AES_128_CBC; bulk <= PXY_BULK_AES_256_CBC; bulk++)
		for (uint8_t mac = PXY_MAC_SHA1; mac <= PXY_MAC_SHA384; mac++)
			for (uint8_t etm = 0; etm < 2; etm++)
				add_suite(bulk, mac, etm, PXY_TLS12);
	for (uint16_t v = PXY_TLS10; v <= PXY_TLS11; v++)
		for (uint8_t bulk = PXY_BULK_AES_128_CBC; bulk <= PXY_BULK_AES_256_CBC; bulk++)
			for (uint8_t etm = 0; etm < 2; etm++)
				add_suite(bulk, PXY_MAC_SHA1, etm, v);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	tr_free();
	return 0;
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_records_gcm),
		cmocka_unit_test(test_records_cbc),
		cmocka_unit_test(test_rsa_tls),
		cmocka_unit_test(test_key_unload),
	};
	int r = et_main_engine(argc, argv, "engine_xcheck_test");

	if (r)
		return r;
	return cmocka_run_group_tests(tests, setup, teardown);
}
