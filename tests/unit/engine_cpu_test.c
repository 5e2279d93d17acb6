/*
 * The cpu engine: record seal/open round trips for every cipher, MAC and
 * EtM mode; every tampering detected; hand-built CBC records with good and
 * bad padding; RSA implicit rejection; threads, eventfd and back-pressure.
 */
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>

#include "engine/cpu_crypto.h"
#include "testutil.h"
#include "tls/suites.h"

static struct tu_ident srv;

static void keys(struct pxy_traffic_keys *k, uint8_t bulk, uint8_t mac, int etm, uint16_t version)
{
	memset(k, 0, sizeof(*k));
	k->bulk = bulk;
	k->mac = mac;
	k->version = version;
	k->key_len = (uint8_t)pxy_bulk_key_len(bulk);
	k->mac_key_len = (uint8_t)pxy_mac_len(mac);
	k->mac_len = mac == PXY_MAC_AEAD ? 16 : k->mac_key_len;
	k->iv_len = mac == PXY_MAC_AEAD ? 4 : (version <= 0x0301 ? 16 : 0);
	k->etm = (uint8_t)etm;
	RAND_bytes(k->key, sizeof(k->key));
	RAND_bytes(k->mac_key, sizeof(k->mac_key));
	RAND_bytes(k->iv, sizeof(k->iv));
}

/* A record of n plaintext bytes, sealed; the caller frees j->rec. */
static void seal(struct pxy_cpu_ctx *c, const struct pxy_traffic_keys *k, uint64_t seq, const uint8_t *pt, size_t n,
		 struct pxy_rec_job *j)
{
	size_t cap = pxy_record_sealed_len(k, n);

	memset(j, 0, sizeof(*j));
	j->keys = k;
	j->seq = seq;
	j->rec = malloc(cap);
	j->rec_cap = cap;
	j->rec_len = 5 + n;
	j->rec[0] = 23;
	j->rec[1] = (uint8_t)(k->version >> 8);
	j->rec[2] = (uint8_t)k->version;
	j->rec[3] = (uint8_t)(n >> 8);
	j->rec[4] = (uint8_t)n;
	memcpy(j->rec + 5, pt, n);
	RAND_bytes(j->iv, 16);
	assert_int_equal(pxy_cpu_record_seal(c, j), PXY_OK);
	assert_int_equal(j->rec_len, cap);
}

static int open_copy(struct pxy_cpu_ctx *c, const struct pxy_rec_job *sealed, uint64_t seq, const uint8_t *iv,
		     uint8_t *out, size_t *out_len)
{
	struct pxy_rec_job j = *sealed;
	int ok;

	j.rec = malloc(sealed->rec_len);
	memcpy(j.rec, sealed->rec, sealed->rec_len);
	j.seq = seq;
	if (iv)
		memcpy(j.iv, iv, 16);
	assert_int_equal(pxy_cpu_record_open(c, &j), PXY_OK);
	ok = (int)j.ok;
	if (ok && out) {
		memcpy(out, j.rec + j.pt_off, j.pt_len);
		*out_len = j.pt_len;
	}
	if (!ok)
		assert_int_equal(j.pt_len, 0);
	free(j.rec);
	return ok;
}

static void test_roundtrip_every_mode(void **state)
{
	static const size_t lens[] = { 0, 1, 15, 16, 17, 31, 32, 33, 255, 256, 1000, 4095, 16384 };
	struct {
		uint8_t bulk, mac;
		int etm;
		uint16_t version;
	} modes[] = {
		{ PXY_BULK_AES_128_GCM, PXY_MAC_AEAD, 0, 0x0303 }, { PXY_BULK_AES_256_GCM, PXY_MAC_AEAD, 0, 0x0303 },
		{ PXY_BULK_AES_128_CBC, PXY_MAC_SHA1, 0, 0x0303 }, { PXY_BULK_AES_128_CBC, PXY_MAC_SHA1, 1, 0x0303 },
		{ PXY_BULK_AES_256_CBC, PXY_MAC_SHA1, 0, 0x0303 }, { PXY_BULK_AES_256_CBC, PXY_MAC_SHA1, 1, 0x0303 },
		{ PXY_BULK_AES_128_CBC, PXY_MAC_SHA256, 0, 0x0303 }, { PXY_BULK_AES_128_CBC, PXY_MAC_SHA256, 1, 0x0303 },
		{ PXY_BULK_AES_256_CBC, PXY_MAC_SHA256, 0, 0x0303 }, { PXY_BULK_AES_256_CBC, PXY_MAC_SHA384, 0, 0x0303 },
		{ PXY_BULK_AES_256_CBC, PXY_MAC_SHA384, 1, 0x0303 }, { PXY_BULK_AES_128_CBC, PXY_MAC_SHA1, 0, 0x0302 },
		{ PXY_BULK_AES_128_CBC, PXY_MAC_SHA1, 0, 0x0301 }, { PXY_BULK_AES_128_CBC, PXY_MAC_SHA1, 1, 0x0301 },
	};
	struct pxy_cpu_ctx *c = pxy_cpu_ctx_new();
	uint8_t *pt = malloc(16384), *out = malloc(16384 + 2048);

	(void)state;
	assert_non_null(c);
	for (size_t m = 0; m < sizeof(modes) / sizeof(modes[0]); m++) {
		struct pxy_traffic_keys k;

		keys(&k, modes[m].bulk, modes[m].mac, modes[m].etm, modes[m].version);
		for (size_t l = 0; l < sizeof(lens) / sizeof(lens[0]); l++) {
			struct pxy_rec_job j;
			size_t n = lens[l], got = 0;
			uint64_t seq = (uint64_t)(m * 1000 + l);

			tu_fill(pt, n, (uint32_t)(m * 31 + l));
			seal(c, &k, seq, pt, n, &j);
			assert_true(open_copy(c, &j, seq, j.iv, out, &got));
			assert_int_equal(got, n);
			assert_memory_equal(out, pt, n);
			/* another sequence number: the MAC or tag no longer matches */
			assert_false(open_copy(c, &j, seq + 1, j.iv, NULL, NULL));
			free(j.rec);
		}
	}
	pxy_cpu_ctx_free(c);
	free(pt);
	free(out);
}

/* Every bulk cipher of the descriptor table this OpenSSL provides, with its MACs, in TLS 1.0 and 1.2:
 * seal, open, and a wrong sequence number refused. A stream cipher's records go in order through
 * one sealing and one opening context (its keystream runs on); a refused one is tried on a copy. */
static void test_roundtrip_every_cipher(void **state)
{
	static const size_t lens[] = { 0, 1, 7, 8, 9, 16, 100, 4095, 16384 };
	static const uint8_t macs[] = { PXY_MAC_SHA1, PXY_MAC_SHA256, PXY_MAC_SHA384, PXY_MAC_MD5 };
	uint8_t *pt = malloc(16384), *out = malloc(16384 + 2048);
	int tried = 0;

	(void)state;
	for (uint8_t b = 1; b < PXY_BULK__COUNT; b++) {
		const struct pxy_bulk_desc *d = pxy_bulk_desc(b);

		if (!pxy_bulk_available(b, NULL))
			continue;
		for (size_t mi = 0; mi < (d->kind == PXY_BK_AEAD ? 1 : sizeof(macs)); mi++)
			for (uint16_t v = 0x0301; v <= 0x0303; v += 2) {
				struct pxy_cpu_ctx *sc, *oc;
				struct pxy_traffic_keys k;

				if (d->kind == PXY_BK_AEAD && v < 0x0303)
					continue; /* AEAD suites are TLS 1.2's */
				sc = pxy_cpu_ctx_new();
				oc = pxy_cpu_ctx_new();
				assert_true(sc && oc);
				memset(&k, 0, sizeof(k));
				k.bulk = b;
				k.mac = d->kind == PXY_BK_AEAD ? PXY_MAC_AEAD : macs[mi];
				k.version = v;
				k.key_len = d->key_len;
				k.mac_key_len = (uint8_t)pxy_mac_len(k.mac);
				k.mac_len = d->kind == PXY_BK_AEAD ? d->tag_len : k.mac_key_len;
				k.iv_len = d->kind == PXY_BK_AEAD ? d->fixed_iv : d->kind == PXY_BK_CBC && v == 0x0301 ? d->block : 0;
				RAND_bytes(k.key, sizeof(k.key));
				RAND_bytes(k.mac_key, sizeof(k.mac_key));
				RAND_bytes(k.iv, sizeof(k.iv));
				for (size_t l = 0; l < sizeof(lens) / sizeof(lens[0]); l++) {
					struct pxy_rec_job j;
					size_t n = lens[l], got = 0;

					tu_fill(pt, n, (uint32_t)(b * 97 + l));
					seal(sc, &k, l, pt, n, &j);
					if (d->kind != PXY_BK_STREAM && open_copy(oc, &j, l + 1, j.iv, NULL, NULL))
						fail_msg("%s mac %u version %04x: a %zu-byte record opened under another sequence number",
							 d->name, k.mac, v, n);
					if (!open_copy(oc, &j, l, j.iv, out, &got))
						fail_msg("%s mac %u version %04x: a %zu-byte record did not open", d->name, k.mac, v, n);
					assert_int_equal(got, n);
					assert_memory_equal(out, pt, n);
					free(j.rec);
				}
				tried++;
				pxy_cpu_ctx_free(sc);
				pxy_cpu_ctx_free(oc);
			}
	}
	assert_true(tried >= 30);
	free(pt);
	free(out);
}

/* Every byte of a sealed record matters (the length bytes are the reader's business). */
static void test_every_tampering_detected(void **state)
{
	struct {
		uint8_t bulk, mac;
		int etm;
	} modes[] = {
		{ PXY_BULK_AES_128_GCM, PXY_MAC_AEAD, 0 },
		{ PXY_BULK_AES_128_CBC, PXY_MAC_SHA1, 0 },
		{ PXY_BULK_AES_256_CBC, PXY_MAC_SHA256, 1 },
	};
	struct pxy_cpu_ctx *c = pxy_cpu_ctx_new();
	uint8_t pt[100];

	(void)state;
	tu_fill(pt, sizeof(pt), 4);
	for (size_t m = 0; m < 3; m++) {
		struct pxy_traffic_keys k;
		struct pxy_rec_job j;

		keys(&k, modes[m].bulk, modes[m].mac, modes[m].etm, 0x0303);
		seal(c, &k, 7, pt, sizeof(pt), &j);
		for (size_t i = 0; i < j.rec_len; i++) {
			if (i == 3 || i == 4)
				continue;
			for (int bit = 0; bit < 8; bit += 3) {
				j.rec[i] ^= (uint8_t)(1u << bit);
				assert_false(open_copy(c, &j, 7, NULL, NULL, NULL));
				j.rec[i] ^= (uint8_t)(1u << bit);
			}
		}
		assert_true(open_copy(c, &j, 7, NULL, NULL, NULL));
		/* truncated records (public lengths) are refused without reading past the end */
		for (size_t cut = 5; cut < j.rec_len; cut += 7) {
			struct pxy_rec_job t = j;
			t.rec_len = cut;
			assert_false(open_copy(c, &t, 7, NULL, NULL, NULL));
		}
		free(j.rec);
	}
	pxy_cpu_ctx_free(c);
}

/* Build a MAC-then-encrypt CBC record by hand, with any padding. */
static size_t build_cbc(const struct pxy_traffic_keys *k, uint64_t seq, const uint8_t *pt, size_t n,
			const uint8_t *pad, size_t padn, uint8_t *rec)
{
	uint8_t hdr[13], mac[64], iv[16];
	size_t macl = 0, body, outl;
	int l1 = 0, l2 = 0;
	const char *md = k->mac == PXY_MAC_SHA1 ? "SHA1" : k->mac == PXY_MAC_SHA256 ? "SHA256" : "SHA384";
	EVP_CIPHER_CTX *cc = EVP_CIPHER_CTX_new();
	uint8_t *plain = malloc(n + 64 + padn);

	for (int i = 0; i < 8; i++)
		hdr[i] = (uint8_t)(seq >> (56 - 8 * i));
	hdr[8] = 23;
	hdr[9] = 3;
	hdr[10] = 3;
	hdr[11] = (uint8_t)(n >> 8);
	hdr[12] = (uint8_t)n;
	{
		uint8_t *m = malloc(13 + n);
		memcpy(m, hdr, 13);
		memcpy(m + 13, pt, n);
		EVP_Q_mac(NULL, "HMAC", NULL, md, NULL, k->mac_key, k->mac_key_len, m, 13 + n, mac, sizeof(mac), &macl);
		free(m);
	}
	memcpy(plain, pt, n);
	memcpy(plain + n, mac, macl);
	memcpy(plain + n + macl, pad, padn);
	body = n + macl + padn;
	assert_int_equal(body % 16, 0);
	RAND_bytes(iv, 16);
	rec[0] = 23;
	rec[1] = 3;
	rec[2] = 3;
	rec[3] = (uint8_t)((16 + body) >> 8);
	rec[4] = (uint8_t)(16 + body);
	memcpy(rec + 5, iv, 16);
	EVP_EncryptInit_ex(cc, k->bulk == PXY_BULK_AES_128_CBC ? EVP_aes_128_cbc() : EVP_aes_256_cbc(), NULL, k->key, iv);
	EVP_CIPHER_CTX_set_padding(cc, 0);
	EVP_EncryptUpdate(cc, rec + 21, &l1, plain, (int)body);
	EVP_EncryptFinal_ex(cc, rec + 21 + l1, &l2);
	outl = (size_t)(l1 + l2);
	EVP_CIPHER_CTX_free(cc);
	free(plain);
	return 21 + outl;
}

static int open_raw(struct pxy_cpu_ctx *c, const struct pxy_traffic_keys *k, uint64_t seq, uint8_t *rec, size_t len,
		    size_t *pt_len)
{
	struct pxy_rec_job j = { .keys = k, .seq = seq, .rec = rec, .rec_len = len, .rec_cap = len };

	assert_int_equal(pxy_cpu_record_open(c, &j), PXY_OK);
	*pt_len = j.pt_len;
	return (int)j.ok;
}

static void test_cbc_padding(void **state)
{
	struct pxy_cpu_ctx *c = pxy_cpu_ctx_new();
	uint8_t pt[300], pad[256], rec[1024];
	size_t got;

	(void)state;
	tu_fill(pt, sizeof(pt), 11);
	for (int mac = PXY_MAC_SHA1; mac <= PXY_MAC_SHA384; mac++) {
		struct pxy_traffic_keys k;
		size_t macl = pxy_mac_len((uint8_t)mac);

		keys(&k, PXY_BULK_AES_256_CBC, (uint8_t)mac, 0, 0x0303);
		/* every legal padding length, up to 255: the MAC is found wherever it sits */
		for (size_t n = 0; n < 40; n += 13) {
			for (size_t padn = 1; padn <= 256; padn++) {
				size_t len;

				if ((n + macl + padn) % 16)
					continue;
				memset(pad, (int)(padn - 1), padn);
				len = build_cbc(&k, 5, pt, n, pad, padn, rec);
				assert_true(open_raw(c, &k, 5, rec, len, &got));
				assert_int_equal(got, n);
				/* one wrong padding byte anywhere: refused */
				if (padn > 1) {
					pad[padn / 2] ^= 1;
					len = build_cbc(&k, 5, pt, n, pad, padn, rec);
					assert_false(open_raw(c, &k, 5, rec, len, &got));
					assert_int_equal(got, 0);
				}
			}
		}
		/* a padding length that reaches into the MAC, and one beyond the record */
		{
			size_t n = 16 - (macl % 16) + 16, len;
			memset(pad, 200, 16);
			len = build_cbc(&k, 5, pt, n, pad, 16, rec);
			assert_false(open_raw(c, &k, 5, rec, len, &got));
		}
	}
	pxy_cpu_ctx_free(c);
}

/* ---- RSA ------------------------------------------------------------------------ */

static size_t rsa_encrypt(const uint8_t *m, size_t n, int padding, uint8_t *out)
{
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(srv.pkey, NULL);
	size_t outlen = 512;

	assert_true(EVP_PKEY_encrypt_init(ctx) > 0);
	assert_true(EVP_PKEY_CTX_set_rsa_padding(ctx, padding) > 0);
	assert_true(EVP_PKEY_encrypt(ctx, out, &outlen, m, n) > 0);
	EVP_PKEY_CTX_free(ctx);
	return outlen;
}

static void test_rsa_implicit_rejection(void **state)
{
	struct pxy_identity id;
	struct pxy_rsa_priv priv;
	struct pxy_rsa_job j, j2;
	uint8_t pms[48], block[256];
	void *pk;
	char err[256];

	(void)state;
	assert_int_equal(pxy_identity_load(&id, srv.cert_path, srv.key_path, err, sizeof(err)), 0);
	assert_int_equal(pxy_identity_rsa_priv(&id, &priv), 0);
	pk = pxy_cpu_rsa_key(&priv);
	assert_non_null(pk);

	RAND_bytes(pms, 48);
	pms[0] = 3;
	pms[1] = 3;
	memset(&j, 0, sizeof(j));
	j.client_version = 0x0303;
	j.in_len = (uint16_t)rsa_encrypt(pms, 48, RSA_PKCS1_PADDING, j.in);
	assert_int_equal(pxy_cpu_rsa_decrypt(pk, &j), PXY_OK);
	assert_memory_equal(j.pms, pms, 48);

	/* wrong version bytes: a random secret, different each time, still PXY_OK */
	j.client_version = 0x0302;
	j2 = j;
	assert_int_equal(pxy_cpu_rsa_decrypt(pk, &j), PXY_OK);
	assert_int_equal(pxy_cpu_rsa_decrypt(pk, &j2), PXY_OK);
	assert_memory_not_equal(j.pms, pms, 48);
	assert_memory_not_equal(j.pms, j2.pms, 48);

	/* not PKCS#1 type 2 at all */
	RAND_bytes(block, sizeof(block));
	block[0] = 0;
	j.client_version = 0x0303;
	j.in_len = (uint16_t)rsa_encrypt(block, 256, RSA_NO_PADDING, j.in);
	assert_int_equal(pxy_cpu_rsa_decrypt(pk, &j), PXY_OK);
	/* a 47-byte secret inside valid padding */
	j.in_len = (uint16_t)rsa_encrypt(pms, 47, RSA_PKCS1_PADDING, j.in);
	assert_int_equal(pxy_cpu_rsa_decrypt(pk, &j), PXY_OK);
	assert_memory_not_equal(j.pms, pms, 47);
	/* wrong lengths, empty, over the modulus */
	j.in_len = 255;
	assert_int_equal(pxy_cpu_rsa_decrypt(pk, &j), PXY_OK);
	j.in_len = 0;
	assert_int_equal(pxy_cpu_rsa_decrypt(pk, &j), PXY_OK);
	memset(j.in, 0xff, 256);
	j.in_len = 256;
	assert_int_equal(pxy_cpu_rsa_decrypt(pk, &j), PXY_OK);

	pxy_cpu_rsa_key_free(pk);
	pxy_rsa_priv_free(&priv);
	pxy_identity_free(&id);
}

/* ---- the engine: threads, eventfd, bounds --------------------------------------- */

static void test_engine_threads_and_busy(void **state)
{
	struct pxy_identity id;
	struct pxy_engine *e = tu_engine(&srv, &id, 2);
	struct pxy_traffic_keys k;
	enum { N = 600 };
	struct pxy_job *jobs = calloc(N, sizeof(*jobs));
	struct pxy_cpu_ctx *c = pxy_cpu_ctx_new();
	uint8_t pt[1000];
	size_t done = 0;

	(void)state;
	assert_non_null(e);
	keys(&k, PXY_BULK_AES_128_GCM, PXY_MAC_AEAD, 0, 0x0303);
	for (int i = 0; i < N; i++) {
		tu_fill(pt, sizeof(pt), (uint32_t)i);
		jobs[i].type = PXY_JOB_RECORD_OPEN;
		seal(c, &k, (uint64_t)i, pt, (size_t)(i % 1000), &jobs[i].u.rec);
		jobs[i].tag = (uint64_t)i;
		assert_int_equal(pxy_engine_submit(e, &jobs[i]), PXY_OK);
	}
	while (done < N) {
		struct pollfd pfd = { .fd = e->event_fd, .events = POLLIN };
		struct pxy_job *out[64];
		size_t n;

		assert_true(poll(&pfd, 1, 5000) >= 0);
		pxy_engine_ack(e);
		while ((n = pxy_engine_poll(e, out, 64)) > 0) {
			for (size_t i = 0; i < n; i++) {
				assert_int_equal(out[i]->status, PXY_OK);
				assert_true(out[i]->u.rec.ok);
				assert_int_equal(out[i]->u.rec.pt_len, out[i]->tag % 1000);
				free(out[i]->u.rec.rec);
			}
			done += n;
		}
	}
	assert_int_equal(e->stats.rec_open, N);
	pxy_engine_close(e);
	pxy_identity_free(&id);

	/* max_jobs is a hard bound */
	{
		struct pxy_engine_params ep = { .threads = 0, .max_jobs = 3 };
		struct pxy_engine *b = NULL;
		struct pxy_job x[4];

		assert_int_equal(pxy_engine_open("cpu", &ep, &b), PXY_OK);
		memset(x, 0, sizeof(x));
		for (int i = 0; i < 4; i++) {
			x[i].type = PXY_JOB_RECORD_OPEN;
			seal(c, &k, 1, pt, 10, &x[i].u.rec);
		}
		for (int i = 0; i < 3; i++)
			assert_int_equal(pxy_engine_submit(b, &x[i]), PXY_OK);
		assert_int_equal(pxy_engine_submit(b, &x[3]), PXY_E_BUSY);
		{
			struct pxy_job *out[4];

			/* synchronous: the jobs run in flush(), on this thread */
			assert_int_equal(pxy_engine_poll(b, out, 4), 0);
			pxy_engine_flush(b);
			assert_int_equal(pxy_engine_poll(b, out, 4), 3);
		}
		assert_int_equal(pxy_engine_submit(b, &x[3]), PXY_OK);
		for (int i = 0; i < 4; i++)
			free(x[i].u.rec.rec);
		pxy_engine_close(b);
	}
	assert_null(pxy_engine_find("nope"));
	{
		struct pxy_engine *n = NULL;
		assert_int_equal(pxy_engine_open("nope", NULL, &n), PXY_E_NO_ENGINE);
	}
	pxy_cpu_ctx_free(c);
	free(jobs);
}

static int setup(void **state)
{
	(void)state;
	return tu_ident_make(&srv, 2048, "engine");
}

static int teardown(void **state)
{
	(void)state;
	tu_ident_free(&srv);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip_every_mode),
		cmocka_unit_test(test_roundtrip_every_cipher),
		cmocka_unit_test(test_every_tampering_detected),
		cmocka_unit_test(test_cbc_padding),
		cmocka_unit_test(test_rsa_implicit_rejection),
		cmocka_unit_test(test_engine_threads_and_busy),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
