#include "tls_ref.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "engine_util.h"
#include "tls/suites.h"

static EVP_MAC *tr_hmac_alg;

int tr_init(void)
{
	tr_hmac_alg = EVP_MAC_fetch(NULL, "HMAC", NULL);
	return tr_hmac_alg ? 0 : -1;
}

void tr_free(void)
{
	EVP_MAC_free(tr_hmac_alg);
	tr_hmac_alg = NULL;
}


int tr_is_gcm(const struct pxy_traffic_keys *k)
{
	return k->bulk == PXY_BULK_AES_128_GCM || k->bulk == PXY_BULK_AES_256_GCM;
}

size_t tr_explicit_len(const struct pxy_traffic_keys *k)
{
	if (k->version >= PXY_TLS13)
		return 0; /* RFC 8446 §5.3: no nonce in the record */
	return tr_is_gcm(k) ? 8 : k->version >= PXY_TLS11 ? 16 : 0;
}

/* RFC 8446 §5.3: the IV XOR the sequence number; §5.2: the AAD is the record header with the
 * ciphertext's length */
static void nonce13(const struct pxy_traffic_keys *k, uint64_t seq, uint8_t nonce[12])
{
	memcpy(nonce, k->iv, 12);
	for (int i = 0; i < 8; i++)
		nonce[4 + i] ^= (uint8_t)(seq >> (56 - 8 * i));
}

/* seq_num || type || version || length */
static void mac_header(uint8_t h[13], uint64_t seq, const uint8_t *rec, size_t len)
{
	for (int i = 0; i < 8; i++)
		h[i] = (uint8_t)(seq >> (56 - 8 * i));
	memcpy(h + 8, rec, 3);
	h[11] = (uint8_t)(len >> 8);
	h[12] = (uint8_t)len;
}

/* HMAC(mac_key, hdr || p) */
static void ref_hmac(const struct pxy_traffic_keys *k, const uint8_t hdr[13], const uint8_t *p, size_t n,
		     uint8_t out[48])
{
	static const char *const md[4] = { NULL, "SHA1", "SHA256", "SHA384" };
	EVP_MAC_CTX *c = EVP_MAC_CTX_new(tr_hmac_alg);
	OSSL_PARAM prm[2] = { OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)md[k->mac], 0),
			      OSSL_PARAM_construct_end() };
	size_t outl = 0;

	assert_non_null(c);
	assert_true(EVP_MAC_init(c, k->mac_key, k->mac_key_len, prm));
	assert_true(EVP_MAC_update(c, hdr, 13));
	assert_true(EVP_MAC_update(c, p, n));
	assert_true(EVP_MAC_final(c, out, &outl, 48));
	assert_int_equal(outl, k->mac_len);
	EVP_MAC_CTX_free(c);
}

/* AES-CBC without padding, n a multiple of 16; in place allowed */
static void ref_cbc(const struct pxy_traffic_keys *k, int enc, const uint8_t iv[16], const uint8_t *in, uint8_t *out,
		    size_t n)
{
	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
	int l1 = 0, l2 = 0;

	assert_true(EVP_CipherInit_ex(c, k->bulk == PXY_BULK_AES_128_CBC ? EVP_aes_128_cbc() : EVP_aes_256_cbc(), NULL,
				      k->key, iv, enc));
	EVP_CIPHER_CTX_set_padding(c, 0);
	assert_true(EVP_CipherUpdate(c, out, &l1, in, (int)n));
	assert_true(EVP_CipherFinal_ex(c, out + l1, &l2));
	assert_int_equal((size_t)(l1 + l2), n);
	EVP_CIPHER_CTX_free(c);
}

/* AES-GCM; open returns 1 if the tag verifies */
static int ref_gcm(const struct pxy_traffic_keys *k, int enc, const uint8_t nonce[12], const uint8_t *aad,
		   const uint8_t *in, uint8_t *out, size_t n, uint8_t tag[16])
{
	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
	int l = 0, ok;

	assert_true(EVP_CipherInit_ex(c, k->bulk == PXY_BULK_AES_128_GCM ? EVP_aes_128_gcm() : EVP_aes_256_gcm(), NULL,
				      k->key, nonce, enc));
	assert_true(EVP_CipherUpdate(c, NULL, &l, aad, k->version >= PXY_TLS13 ? 5 : 13));
	assert_true(EVP_CipherUpdate(c, out, &l, in, (int)n));
	if (!enc)
		assert_true(EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_SET_TAG, 16, tag));
	ok = EVP_CipherFinal_ex(c, out + l, &l) > 0;
	if (enc && ok)
		assert_true(EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_GET_TAG, 16, tag));
	EVP_CIPHER_CTX_free(c);
	return ok;
}


/* The plaintext bytes the padding starts after (data, and for MtE the MAC). */
size_t tr_padded_from(const struct pxy_traffic_keys *k, size_t n)
{
	return n + (k->etm ? 0 : k->mac_len);
}

/* A valid padding length for n plaintext bytes: any of them up to 255, or the least. */
unsigned tr_rand_pad(const struct pxy_traffic_keys *k, size_t n, int least)
{
	unsigned p0 = (unsigned)(15 - tr_padded_from(k, n) % 16);

	return least ? p0 : p0 + 16 * et_below((255 - p0) / 16 + 1);
}

/* A record as RFC 5246/5288/7366 build it; returns its length. */
size_t tr_seal(const struct pxy_traffic_keys *k, uint64_t seq, const struct tr_seal_opts *o, const uint8_t *pt,
		       size_t n, uint8_t *rec)
{
	size_t eiv = tr_explicit_len(k), frag;
	uint8_t hdr[13];

	rec[0] = o->type;
	rec[1] = (uint8_t)(k->version >> 8);
	rec[2] = (uint8_t)k->version;
	if (tr_is_gcm(k) && k->version >= PXY_TLS13) {
		/* TLS 1.3: inner plaintext = content || type, under the outer type 23 */
		uint8_t nonce[12], *inner = malloc(n + 1);

		assert_non_null(inner);
		memcpy(inner, pt, n);
		inner[n] = o->type;
		rec[0] = 23;
		frag = n + 1 + 16;
		rec[3] = (uint8_t)(frag >> 8);
		rec[4] = (uint8_t)frag;
		nonce13(k, seq, nonce);
		assert_true(ref_gcm(k, 1, nonce, rec, inner, rec + 5, n + 1, rec + 5 + n + 1));
		free(inner);
	} else if (tr_is_gcm(k)) {
		uint8_t nonce[12];

		memcpy(nonce, k->iv, 4);
		memcpy(nonce + 4, o->iv, 8);
		memcpy(rec + 5, o->iv, 8);
		mac_header(hdr, seq, rec, n);
		assert_true(ref_gcm(k, 1, nonce, hdr, pt, rec + 13, n, rec + 13 + n));
		frag = 8 + n + 16;
	} else {
		uint8_t *body = rec + 5 + eiv;
		size_t m = tr_padded_from(k, n), len = m + o->pad + 1;

		assert_int_equal(len % 16, 0);
		memmove(body, pt, n);
		if (!k->etm) {
			mac_header(hdr, seq, rec, n);
			ref_hmac(k, hdr, pt, n, body + n);
		}
		memset(body + m, (int)o->pad, o->pad + 1);
		if (o->bad_pad == 1) /* one byte other than the length byte */
			body[m + et_below(o->pad)] ^= (uint8_t)(1 + et_below(255));
		else if (o->bad_pad == 2) /* every byte claims 255: more padding than the record holds */
			memset(body + m, 255, o->pad + 1);
		if (eiv)
			memcpy(rec + 5, o->iv, 16);
		ref_cbc(k, 1, o->iv, body, body, len);
		frag = eiv + len;
		if (k->etm) {
			mac_header(hdr, seq, rec, frag);
			ref_hmac(k, hdr, rec + 5, frag, rec + 5 + frag);
			frag += k->mac_len;
		}
	}
	rec[3] = (uint8_t)(frag >> 8);
	rec[4] = (uint8_t)frag;
	return 5 + frag;
}

/* Open a record strictly (not in constant time: this is the judge); 1 if authentic. */
int tr_open(const struct pxy_traffic_keys *k, uint64_t seq, const uint8_t *rec, size_t len,
		    const uint8_t tls10_iv[16], uint8_t *pt, size_t *n)
{
	size_t eiv = tr_explicit_len(k), frag = len - 5, maclen = k->mac_len;
	uint8_t hdr[13], calc[48], *buf;
	int ok = 0;

	*n = 0;
	if (len < 5 || frag != ((size_t)rec[3] << 8 | rec[4]))
		return 0;
	buf = malloc(frag + 1);
	assert_non_null(buf);
	if (tr_is_gcm(k) && k->version >= PXY_TLS13) {
		uint8_t nonce[12], tag[16];

		if (frag >= 16) {
			nonce13(k, seq, nonce);
			memcpy(tag, rec + len - 16, 16);
			ok = ref_gcm(k, 0, nonce, rec, rec + 5, buf, frag - 16, tag);
			*n = frag - 16;
			/* the content type is the last non-zero byte; the plaintext is what precedes it */
			while (ok && *n && buf[*n - 1] == 0)
				(*n)--;
			if (ok && *n)
				(*n)--;
		}
	} else if (tr_is_gcm(k)) {
		uint8_t nonce[12], tag[16];

		if (frag >= 8 + 16) {
			memcpy(nonce, k->iv, 4);
			memcpy(nonce + 4, rec + 5, 8);
			memcpy(tag, rec + len - 16, 16);
			mac_header(hdr, seq, rec, frag - 24);
			ok = ref_gcm(k, 0, nonce, hdr, rec + 13, buf, frag - 24, tag);
			*n = frag - 24;
		}
	} else if (k->etm) {
		if (frag >= eiv + 16 + maclen && (frag - eiv - maclen) % 16 == 0) {
			size_t ct = frag - eiv - maclen;

			mac_header(hdr, seq, rec, frag - maclen);
			ref_hmac(k, hdr, rec + 5, frag - maclen, calc);
			if (!CRYPTO_memcmp(calc, rec + 5 + frag - maclen, maclen)) {
				unsigned p;

				ref_cbc(k, 0, eiv ? rec + 5 : tls10_iv, rec + 5 + eiv, buf, ct);
				p = buf[ct - 1];
				ok = p + 1 <= ct;
				for (size_t i = 0; ok && i <= p; i++)
					ok = buf[ct - 1 - i] == p;
				*n = ct - p - 1;
			}
		}
	} else if (frag >= eiv + 16 && (frag - eiv) % 16 == 0) {
		size_t ct = frag - eiv;
		unsigned p;

		ref_cbc(k, 0, eiv ? rec + 5 : tls10_iv, rec + 5 + eiv, buf, ct);
		p = buf[ct - 1];
		ok = p + 1 + maclen <= ct;
		for (size_t i = 0; ok && i <= p; i++)
			ok = buf[ct - 1 - i] == p;
		if (ok) {
			*n = ct - p - 1 - maclen;
			mac_header(hdr, seq, rec, *n);
			ref_hmac(k, hdr, buf, *n, calc);
			ok = !CRYPTO_memcmp(calc, buf + *n, maclen);
		}
	}
	if (ok)
		memcpy(pt, buf, *n);
	else
		*n = 0;
	free(buf);
	return ok;
}

