/*
 * Randomized cross-check of one engine (argv[1]) against an OpenSSL
 * reference written here from RFC 5246/5288/7366, for every suite shape the
 * engines implement (AES-128/256-GCM; AES-128/256-CBC with HMAC-SHA1/256/384,
 * MAC-then-encrypt and encrypt-then-MAC; TLS 1.0 chained IVs, 1.1 and 1.2
 * explicit IVs), with two key sets per suite (client->server, server->client):
 *  - records the reference seals, of random lengths (0..16384, with the
 *    boundary lengths), must open on the engine to the same plaintext;
 *  - records the engine seals must open with the reference;
 *  - a record with one random bit flipped (header, IV, ciphertext, MAC,
 *    padding or tag) must be rejected by the engine;
 * and RSA pre-master decryption (TLS mode) under 2048-, 3072- and 4096-bit
 * keys: good ones decrypt, bad padding, length or version give a secret
 * other than the encrypted one. The seed comes from PXY_TEST_SEED or the
 * clock and is printed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/core_names.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>

#include "eng_util.h"

#define PROG "engine.xcheck"
#define RECS 200 /* per suite and direction, each way */
#define FLIPS 40

static uint64_t rng;
static int failures;

static uint32_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (uint32_t)(rng >> 16);
}

static void rnd_bytes(uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)rnd();
}

static size_t rnd_len(void)
{
	static const size_t edge[] = { 0, 1, 15, 16, 17, 31, 32, 47, 48, 63, 64, 255, 256, 1023, 4096, 16383, 16384 };
	uint32_t r = rnd() % 4;

	if (r == 0)
		return edge[rnd() % (sizeof(edge) / sizeof(edge[0]))];
	if (r == 1)
		return rnd() % 64;
	if (r == 2)
		return rnd() % 2048;
	return rnd() % 16385;
}

#define CHECK(cond, ...)                                                                                            \
	do {                                                                                                        \
		if (!(cond)) {                                                                                      \
			fprintf(stderr, PROG ": FAIL " __VA_ARGS__);                                                \
			fputc('\n', stderr);                                                                        \
			failures++;                                                                                 \
		}                                                                                                   \
	} while (0)

struct suite {
	const char *name;
	uint8_t bulk, mac, etm;
	uint16_t version;
};

static const EVP_CIPHER *cipher(const struct pxy_traffic_keys *k)
{
	switch (k->bulk) {
	case PXY_BULK_AES_128_GCM: return EVP_aes_128_gcm();
	case PXY_BULK_AES_256_GCM: return EVP_aes_256_gcm();
	case PXY_BULK_AES_128_CBC: return EVP_aes_128_cbc();
	default: return EVP_aes_256_cbc();
	}
}

static const EVP_MD *md(const struct pxy_traffic_keys *k)
{
	return k->mac == PXY_MAC_SHA1 ? EVP_sha1() : k->mac == PXY_MAC_SHA256 ? EVP_sha256() : EVP_sha384();
}

static int is_gcm(const struct pxy_traffic_keys *k)
{
	return k->bulk == PXY_BULK_AES_128_GCM || k->bulk == PXY_BULK_AES_256_GCM;
}

static void make_keys(struct pxy_traffic_keys *k, const struct suite *s)
{
	memset(k, 0, sizeof(*k));
	k->bulk = s->bulk;
	k->mac = s->mac;
	k->etm = s->etm;
	k->version = s->version;
	k->key_len = (s->bulk == PXY_BULK_AES_128_GCM || s->bulk == PXY_BULK_AES_128_CBC) ? 16 : 32;
	k->mac_key_len = is_gcm(k) ? 0 : (uint8_t)EVP_MD_get_size(md(k));
	k->mac_len = is_gcm(k) ? 16 : k->mac_key_len;
	k->iv_len = is_gcm(k) ? 4 : (s->version <= 0x0301 ? 16 : 0);
	rnd_bytes(k->key, sizeof(k->key));
	rnd_bytes(k->mac_key, sizeof(k->mac_key));
	rnd_bytes(k->iv, sizeof(k->iv));
}

/* seq || type || version || length (RFC 5246 §6.2.3.1, §6.2.3.3) */
static void pseudo_hdr(uint8_t h[13], uint64_t seq, uint8_t type, uint16_t version, size_t len)
{
	for (int i = 0; i < 8; i++)
		h[i] = (uint8_t)(seq >> (56 - 8 * i));
	h[8] = type;
	h[9] = (uint8_t)(version >> 8);
	h[10] = (uint8_t)version;
	h[11] = (uint8_t)(len >> 8);
	h[12] = (uint8_t)len;
}

static void hmac2(const struct pxy_traffic_keys *k, const uint8_t h[13], const uint8_t *p, size_t n, uint8_t *out)
{
	EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
	EVP_MAC_CTX *c = mac ? EVP_MAC_CTX_new(mac) : NULL;
	OSSL_PARAM params[2] = { OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
								  (char *)EVP_MD_get0_name(md(k)), 0),
				 OSSL_PARAM_construct_end() };
	size_t ol = 0;

	if (!c || !EVP_MAC_init(c, k->mac_key, k->mac_key_len, params) || !EVP_MAC_update(c, h, 13) ||
	    (n && !EVP_MAC_update(c, p, n)) || !EVP_MAC_final(c, out, &ol, 64)) {
		fprintf(stderr, PROG ": HMAC failed\n");
		exit(1);
	}
	EVP_MAC_CTX_free(c);
	EVP_MAC_free(mac);
}

static size_t raw_cipher(const struct pxy_traffic_keys *k, const uint8_t *iv, int enc, const uint8_t *in, size_t n,
			 uint8_t *out)
{
	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
	int l = 0;

	if (!c || !EVP_CipherInit_ex(c, cipher(k), NULL, k->key, iv, enc) || !EVP_CIPHER_CTX_set_padding(c, 0) ||
	    (n && !EVP_CipherUpdate(c, out, &l, in, (int)n))) {
		fprintf(stderr, PROG ": AES-CBC failed\n");
		exit(1);
	}
	EVP_CIPHER_CTX_free(c);
	return (size_t)l;
}

/*
 * The reference sealer: a whole record (header + fragment) into rec, its
 * length returned. `iv` is the TLS 1.0 chained IV (or the explicit IV, or
 * for GCM the first 8 bytes are the explicit nonce).
 */
static size_t ref_seal(const struct pxy_traffic_keys *k, uint64_t seq, const uint8_t *pt, size_t n,
		       const uint8_t iv[16], uint8_t *rec)
{
	uint8_t h[13], *frag = rec + 5;
	size_t flen;

	rec[0] = 23;
	rec[1] = (uint8_t)(k->version >> 8);
	rec[2] = (uint8_t)k->version;
	if (is_gcm(k)) {
		EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
		uint8_t nonce[12];
		int l = 0;

		memcpy(nonce, k->iv, 4);
		memcpy(nonce + 4, iv, 8);
		memcpy(frag, iv, 8);
		pseudo_hdr(h, seq, 23, k->version, n);
		if (!c || !EVP_EncryptInit_ex(c, cipher(k), NULL, k->key, nonce) ||
		    !EVP_EncryptUpdate(c, NULL, &l, h, 13) || (n && !EVP_EncryptUpdate(c, frag + 8, &l, pt, (int)n)) ||
		    !EVP_EncryptFinal_ex(c, frag + 8 + n, &l) ||
		    !EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_GET_TAG, 16, frag + 8 + n)) {
			fprintf(stderr, PROG ": AES-GCM failed\n");
			exit(1);
		}
		EVP_CIPHER_CTX_free(c);
		flen = 8 + n + 16;
	} else {
		size_t xiv = k->version >= 0x0302 ? 16 : 0, body, padlen;
		uint8_t *b = malloc(n + 64 + 256);

		if (xiv)
			memcpy(frag, iv, 16);
		memcpy(b, pt, n);
		body = n;
		if (!k->etm) {
			pseudo_hdr(h, seq, 23, k->version, n);
			hmac2(k, h, pt, n, b + body);
			body += k->mac_len;
		}
		/* any legal padding: 1..256 bytes of value padlen-1, to a block boundary */
		padlen = 16 - body % 16;
		padlen += 16 * (rnd() % ((256 - padlen) / 16 + 1));
		memset(b + body, (int)(padlen - 1), padlen);
		body += padlen;
		raw_cipher(k, iv, 1, b, body, frag + xiv);
		flen = xiv + body;
		if (k->etm) {
			pseudo_hdr(h, seq, 23, k->version, flen);
			hmac2(k, h, frag, flen, frag + flen);
			flen += k->mac_len;
		}
		free(b);
	}
	rec[3] = (uint8_t)(flen >> 8);
	rec[4] = (uint8_t)flen;
	return 5 + flen;
}

/* The reference opener (variable time is fine here): plaintext length, or -1. */
static long ref_open(const struct pxy_traffic_keys *k, uint64_t seq, const uint8_t *rec, size_t len,
		     const uint8_t iv[16], uint8_t *pt)
{
	const uint8_t *frag = rec + 5;
	size_t flen = len - 5;
	uint8_t h[13], mac[64];

	if (len < 5 || ((size_t)rec[3] << 8 | rec[4]) != flen || rec[0] != 23)
		return -1;
	if (is_gcm(k)) {
		EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
		uint8_t nonce[12];
		int l = 0, ok;
		size_t n;

		if (flen < 24)
			return -1;
		n = flen - 24;
		memcpy(nonce, k->iv, 4);
		memcpy(nonce + 4, frag, 8);
		pseudo_hdr(h, seq, 23, k->version, n);
		ok = c && EVP_DecryptInit_ex(c, cipher(k), NULL, k->key, nonce) &&
		     EVP_DecryptUpdate(c, NULL, &l, h, 13) && (!n || EVP_DecryptUpdate(c, pt, &l, frag + 8, (int)n)) &&
		     EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_SET_TAG, 16, (void *)(frag + 8 + n)) &&
		     EVP_DecryptFinal_ex(c, pt + n, &l) > 0;
		EVP_CIPHER_CTX_free(c);
		return ok ? (long)n : -1;
	} else {
		size_t xiv = k->version >= 0x0302 ? 16 : 0, body, padlen, n;
		const uint8_t *civ = xiv ? frag : iv;
		uint8_t *b;

		if (k->etm) {
			if (flen < xiv + 16 + k->mac_len)
				return -1;
			body = flen - k->mac_len;
			pseudo_hdr(h, seq, 23, k->version, body);
			hmac2(k, h, frag, body, mac);
			if (memcmp(mac, frag + body, k->mac_len))
				return -1;
			body -= xiv;
		} else {
			body = flen - xiv;
		}
		if (body == 0 || body % 16)
			return -1;
		b = malloc(body);
		raw_cipher(k, civ, 0, frag + xiv, body, b);
		padlen = (size_t)b[body - 1] + 1;
		if (padlen + (k->etm ? 0 : k->mac_len) > body) {
			free(b);
			return -1;
		}
		for (size_t i = 0; i < padlen; i++)
			if (b[body - 1 - i] != padlen - 1) {
				free(b);
				return -1;
			}
		n = body - padlen - (k->etm ? 0 : k->mac_len);
		if (!k->etm) {
			pseudo_hdr(h, seq, 23, k->version, n);
			hmac2(k, h, b, n, mac);
			if (memcmp(mac, b + n, k->mac_len)) {
				free(b);
				return -1;
			}
		}
		memcpy(pt, b, n);
		free(b);
		return (long)n;
	}
}

/* per-job state of one batch */
struct rec_slot {
	uint8_t rec[PXY_TLS_MAX_RECORD + 256];
	uint8_t pt[PXY_TLS_MAX_PLAINTEXT];
	size_t n;
	uint8_t iv[16];
	uint64_t seq;
	int kind; /* 0 open, 1 seal, 2 flipped */
	size_t flip_at;
};

static struct pxy_job jobs[EU_BATCH];
static struct rec_slot slots[EU_BATCH];

static void run_suite(struct pxy_engine *e, const struct suite *s)
{
	static uint8_t back[PXY_TLS_MAX_PLAINTEXT + 64];
	struct pxy_traffic_keys keys[2];
	int opened = 0, sealed = 0, flipped = 0;

	make_keys(&keys[0], s);
	make_keys(&keys[1], s);
	for (int dir = 0; dir < 2; dir++) {
		const struct pxy_traffic_keys *k = &keys[dir];
		int todo[3] = { RECS, RECS, FLIPS };
		uint64_t seq = rnd() % 1000; /* both directions count records from their own start */

		while (todo[0] + todo[1] + todo[2] > 0) {
			int nb = 0;

			for (; nb < EU_BATCH && todo[0] + todo[1] + todo[2] > 0; nb++) {
				struct rec_slot *sl = &slots[nb];
				struct pxy_job *j = &jobs[nb];
				int kind = todo[0] ? 0 : todo[1] ? 1 : 2;

				todo[kind]--;
				memset(j, 0, sizeof(*j));
				sl->kind = kind;
				sl->seq = seq++;
				sl->n = rnd_len();
				rnd_bytes(sl->pt, sl->n);
				rnd_bytes(sl->iv, 16);
				j->u.rec.keys = k;
				j->u.rec.seq = sl->seq;
				j->u.rec.rec = sl->rec;
				j->u.rec.rec_cap = sizeof(sl->rec);
				memcpy(j->u.rec.iv, sl->iv, 16);
				if (kind == 1) {
					j->type = PXY_JOB_RECORD_SEAL;
					sl->rec[0] = 23;
					sl->rec[1] = (uint8_t)(k->version >> 8);
					sl->rec[2] = (uint8_t)k->version;
					sl->rec[3] = (uint8_t)(sl->n >> 8);
					sl->rec[4] = (uint8_t)sl->n;
					memcpy(sl->rec + 5, sl->pt, sl->n);
					j->u.rec.rec_len = 5 + sl->n;
				} else {
					j->type = PXY_JOB_RECORD_OPEN;
					j->u.rec.rec_len = ref_seal(k, sl->seq, sl->pt, sl->n, sl->iv, sl->rec);
					if (kind == 2) {
						/* any bit but the length's: those make a different record shape */
						do
							sl->flip_at = rnd() % j->u.rec.rec_len;
						while (sl->flip_at == 3 || sl->flip_at == 4);
						sl->rec[sl->flip_at] ^= (uint8_t)(1u << (rnd() % 8));
					}
				}
			}
			eu_run(e, jobs, nb);
			for (int i = 0; i < nb; i++) {
				struct rec_slot *sl = &slots[i];
				struct pxy_rec_job *r = &jobs[i].u.rec;

				switch (sl->kind) {
				case 0:
					CHECK(jobs[i].status == PXY_OK && r->ok && r->pt_len == sl->n &&
						      !memcmp(sl->rec + r->pt_off, sl->pt, sl->n),
					      "%s dir %d seq %llu: a %zu-byte reference record did not open to its plaintext",
					      s->name, dir, (unsigned long long)sl->seq, sl->n);
					opened++;
					break;
				case 1: {
					long got = jobs[i].status == PXY_OK && r->ok
							   ? ref_open(k, sl->seq, sl->rec, r->rec_len, sl->iv, back)
							   : -2;

					CHECK(got == (long)sl->n && !memcmp(back, sl->pt, sl->n),
					      "%s dir %d seq %llu: a %zu-byte record sealed by the engine does not open with "
					      "the reference (%ld)",
					      s->name, dir, (unsigned long long)sl->seq, sl->n, got);
					sealed++;
					break;
				}
				default:
					CHECK(jobs[i].status != PXY_OK || (!r->ok && r->pt_len == 0),
					      "%s dir %d seq %llu: a %zu-byte record with byte %zu altered was accepted",
					      s->name, dir, (unsigned long long)sl->seq, sl->n, sl->flip_at);
					flipped++;
				}
			}
		}
	}
	printf(PROG ": %-34s opened=%d sealed=%d tampered-rejected=%d\n", s->name, opened, sealed, flipped);
}

/* RSA TLS mode: encrypted pre-master secrets, good and bad */
static void run_rsa(struct pxy_engine *e, int bits)
{
	EVP_PKEY *pk = EVP_RSA_gen((unsigned)bits);
	EVP_PKEY_CTX *c = pk ? EVP_PKEY_CTX_new(pk, NULL) : NULL;
	struct pxy_rsa_priv priv;
	uint8_t *store = NULL, pms[EU_BATCH][PXY_PMS_LEN + 1];
	int kinds[EU_BATCH], good = 0, bad = 0;
	uint32_t key_id;

	if (!c || eu_rsa_priv(pk, &priv, &store) < 0 || e->ops->key_load(e, &priv, &key_id) != PXY_OK ||
	    EVP_PKEY_encrypt_init(c) <= 0 || EVP_PKEY_CTX_set_rsa_padding(c, RSA_PKCS1_PADDING) <= 0) {
		fprintf(stderr, PROG ": RSA-%d setup failed\n", bits);
		exit(1);
	}
	for (int i = 0; i < EU_BATCH; i++) {
		struct pxy_rsa_job *r = &jobs[i].u.rsa;
		size_t ctl = PXY_RSA_MAX_BYTES, ml = PXY_PMS_LEN;

		/* 0: good; 1: wrong version; 2: 47 bytes; 3: 49 bytes; 4: random bytes */
		kinds[i] = i % 4 == 0 ? 1 + (int)(rnd() % 4) : 0;
		memset(&jobs[i], 0, sizeof(jobs[i]));
		jobs[i].type = PXY_JOB_RSA_DECRYPT;
		r->mode = PXY_RSA_TLS;
		r->key_id = key_id;
		r->client_version = 0x0303;
		rnd_bytes(pms[i], sizeof(pms[i]));
		pms[i][0] = 3;
		pms[i][1] = kinds[i] == 1 ? 1 : 3;
		ml = kinds[i] == 2 ? 47 : kinds[i] == 3 ? 49 : 48;
		if (kinds[i] == 4) {
			rnd_bytes(r->in, (size_t)bits / 8);
			r->in[0] = 0;
			ctl = (size_t)bits / 8;
		} else if (EVP_PKEY_encrypt(c, r->in, &ctl, pms[i], ml) <= 0) {
			fprintf(stderr, PROG ": RSA encryption failed\n");
			exit(1);
		}
		r->in_len = (uint16_t)ctl;
	}
	eu_run(e, jobs, EU_BATCH);
	for (int i = 0; i < EU_BATCH; i++) {
		int same = !memcmp(jobs[i].u.rsa.pms, pms[i], PXY_PMS_LEN);

		CHECK(jobs[i].status == PXY_OK, "RSA-%d job %d failed", bits, i);
		if (kinds[i] == 0) {
			CHECK(same, "RSA-%d: job %d did not recover its pre-master secret", bits, i);
			good++;
		} else {
			CHECK(!same, "RSA-%d: job %d (bad kind %d) returned the encrypted secret", bits, i, kinds[i]);
			bad++;
		}
	}
	printf(PROG ": RSA-%d TLS pre-master                 recovered=%d implicit-rejections=%d\n", bits, good, bad);
	EVP_PKEY_CTX_free(c);
	EVP_PKEY_free(pk);
	OPENSSL_clear_free(store, 8 * PXY_RSA_MAX_BYTES);
}

int main(int argc, char **argv)
{
	static const struct suite suites[] = {
		{ "AES128-GCM TLS1.2", PXY_BULK_AES_128_GCM, PXY_MAC_AEAD, 0, 0x0303 },
		{ "AES256-GCM TLS1.2", PXY_BULK_AES_256_GCM, PXY_MAC_AEAD, 0, 0x0303 },
		{ "AES128-CBC-SHA1 TLS1.0", PXY_BULK_AES_128_CBC, PXY_MAC_SHA1, 0, 0x0301 },
		{ "AES128-CBC-SHA1 TLS1.0 EtM", PXY_BULK_AES_128_CBC, PXY_MAC_SHA1, 1, 0x0301 },
		{ "AES256-CBC-SHA1 TLS1.0", PXY_BULK_AES_256_CBC, PXY_MAC_SHA1, 0, 0x0301 },
		{ "AES128-CBC-SHA1 TLS1.1", PXY_BULK_AES_128_CBC, PXY_MAC_SHA1, 0, 0x0302 },
		{ "AES256-CBC-SHA1 TLS1.1 EtM", PXY_BULK_AES_256_CBC, PXY_MAC_SHA1, 1, 0x0302 },
		{ "AES128-CBC-SHA1 TLS1.2", PXY_BULK_AES_128_CBC, PXY_MAC_SHA1, 0, 0x0303 },
		{ "AES128-CBC-SHA1 TLS1.2 EtM", PXY_BULK_AES_128_CBC, PXY_MAC_SHA1, 1, 0x0303 },
		{ "AES256-CBC-SHA1 TLS1.2", PXY_BULK_AES_256_CBC, PXY_MAC_SHA1, 0, 0x0303 },
		{ "AES256-CBC-SHA1 TLS1.2 EtM", PXY_BULK_AES_256_CBC, PXY_MAC_SHA1, 1, 0x0303 },
		{ "AES128-CBC-SHA256 TLS1.2", PXY_BULK_AES_128_CBC, PXY_MAC_SHA256, 0, 0x0303 },
		{ "AES128-CBC-SHA256 TLS1.2 EtM", PXY_BULK_AES_128_CBC, PXY_MAC_SHA256, 1, 0x0303 },
		{ "AES256-CBC-SHA256 TLS1.2", PXY_BULK_AES_256_CBC, PXY_MAC_SHA256, 0, 0x0303 },
		{ "AES256-CBC-SHA256 TLS1.2 EtM", PXY_BULK_AES_256_CBC, PXY_MAC_SHA256, 1, 0x0303 },
		{ "AES256-CBC-SHA384 TLS1.2", PXY_BULK_AES_256_CBC, PXY_MAC_SHA384, 0, 0x0303 },
		{ "AES256-CBC-SHA384 TLS1.2 EtM", PXY_BULK_AES_256_CBC, PXY_MAC_SHA384, 1, 0x0303 },
	};
	const char *seed_env = getenv("PXY_TEST_SEED");
	struct pxy_engine *e;
	uint64_t dev0;

	if (argc != 2) {
		fprintf(stderr, "usage: %s cpu|emu|xrt\n", argv[0]);
		return 2;
	}
	rng = seed_env ? strtoull(seed_env, NULL, 0) : (uint64_t)time(NULL) * 2654435761u;
	if (!rng)
		rng = 1;
	printf(PROG ": seed %llu (PXY_TEST_SEED=%llu reproduces this run)\n", (unsigned long long)rng,
	       (unsigned long long)rng);
	e = eu_open(PROG, argv[1]);
	for (size_t i = 0; i < sizeof(suites) / sizeof(suites[0]); i++)
		run_suite(e, &suites[i]);
	eu_stats(PROG, "records", e);
	dev0 = e->stats.batched_jobs;
	if (strcmp(argv[1], "cpu") && dev0 == 0) {
		fprintf(stderr, PROG ": FAIL no record ran on the kernels\n");
		failures++;
	}
	run_rsa(e, 2048);
	run_rsa(e, 3072);
	run_rsa(e, 4096);
	eu_stats(PROG, "total", e);
	if (strcmp(argv[1], "cpu") && (e->stats.batched_jobs == dev0 || e->stats.device_failures)) {
		fprintf(stderr, PROG ": FAIL the RSA jobs did not run on the kernels, or the device failed\n");
		failures++;
	}
	pxy_engine_close(e);
	printf(PROG ": %s\n", failures ? "FAILED" : "every record and secret matched the reference");
	return failures ? 1 : 0;
}
