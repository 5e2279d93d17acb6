/*
 * TLS record protection and RSA pre-master decryption on OpenSSL.
 *
 * Constant-time reasoning, path by path (the engine sees secrets: plaintext,
 * padding, MAC keys, pre-master secrets):
 *
 * - GCM open: OpenSSL checks the tag with CRYPTO_memcmp; on failure the
 *   plaintext is wiped and only `ok = 0` leaves. Lengths are public.
 * - CBC MAC-then-encrypt open (RFC 5246 §6.2.3.2): the padding byte is
 *   secret. The padding is checked over min(256, len) bytes under masks; a
 *   bad padding is treated as zero-length padding; the MAC is computed over
 *   the secret-length data and then a dummy hash of exactly the compression
 *   blocks that the longest possible data would have cost is run (Lucky
 *   Thirteen; the s2n-tls approach), so the number of compression-function
 *   calls depends only on the public record length. The received MAC is
 *   copied out of a secret offset by scanning a fixed window and rotating
 *   under masks. Padding and MAC results are combined with `&` and leave as
 *   one bit.
 * - CBC encrypt-then-MAC open (RFC 7366): the MAC covers public bytes and is
 *   compared in constant time before any decryption; padding is checked
 *   under masks.
 * - RSA: OpenSSL's RSA_PKCS1_WITH_TLS_PADDING mode checks PKCS#1 type 2
 *   padding and the version bytes in constant time and substitutes a random
 *   48-byte secret on failure (RFC 5246 §7.4.7.1). Its only error returns
 *   are for public conditions (ciphertext length or value against the
 *   modulus); those, too, leave a random secret and status PXY_OK.
 */
#include "engine/cpu_crypto.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>

#include "tls/suites.h"
#include "util/ct.h"
#include "util/util.h"

#define AES_BLOCK 16
#define MAX_MAC 48
#define N_MD 5 /* enum pxy_mac: SHA-1, SHA-256, SHA-384, MD5 */

/*
 * Keyed contexts, kept across records: a bulk transfer reuses one direction's
 * keys for every record, so the AES key schedule (and GCM's hash key tables)
 * and the HMAC pads are computed once per key, not once per record; a record
 * then only sets its IV, or restarts HMAC from the saved pads. A few entries,
 * least recently used out first, so interleaved connections still hit. An
 * entry is found by its key bytes (compared in constant time; whether two
 * keys are equal is not a secret worth protecting: it says "the same
 * session"), and pxy_cpu_ctx_forget() wipes them all.
 */
#define KEYED 8

struct keyed_cipher {
	EVP_CIPHER_CTX *cc;
	uint64_t used; /* LRU stamp; 0: empty */
	uint8_t bulk, enc;
	uint8_t key[32];
};

#define MAX_MAC_KEY 128 /* one SHA-384 block: longer HMAC keys are hashed first (RFC 2104 §2) */

struct keyed_mac {
	EVP_MAC_CTX *m;
	uint64_t used;
	uint8_t mac, key_len;
	uint8_t key[MAX_MAC_KEY];
};

struct pxy_cpu_ctx {
	EVP_CIPHER *cipher[PXY_BULK__COUNT]; /* by enum pxy_bulk, fetched when first used */
	EVP_MAC *hmac;
	EVP_MD *md[N_MD];
	EVP_MD_CTX *dummy;
	struct keyed_cipher kc[KEYED];
	struct keyed_mac km[KEYED];
	EVP_CIPHER_CTX *cc; /* the current record's, from kc */
	uint64_t clock;
	uint8_t zeros[PXY_TLS_MAX_CIPHERTEXT + 256];
};


struct pxy_cpu_ctx *pxy_cpu_ctx_new(void)
{
	struct pxy_cpu_ctx *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
	c->dummy = EVP_MD_CTX_new();
	if (!c->hmac || !c->dummy)
		goto fail;
	for (int i = PXY_BULK_AES_128_GCM; i <= PXY_BULK_AES_256_CBC; i++)
		if (!(c->cipher[i] = EVP_CIPHER_fetch(NULL, pxy_bulk_desc((uint8_t)i)->evp, NULL)))
			goto fail;
	for (int i = 1; i < N_MD; i++)
		if (!(c->md[i] = EVP_MD_fetch(NULL, pxy_mac_md((uint8_t)i), NULL)))
			goto fail;
	for (int i = 0; i < KEYED; i++)
		if (!(c->kc[i].cc = EVP_CIPHER_CTX_new()) || !(c->km[i].m = EVP_MAC_CTX_new(c->hmac)))
			goto fail;
	return c;
fail:
	pxy_cpu_ctx_free(c);
	ERR_clear_error();
	return NULL;
}

void pxy_cpu_ctx_forget(struct pxy_cpu_ctx *c)
{
	if (!c)
		return;
	/* the AES key schedules and HMAC pads of the last records, and the keys they were found by */
	for (int i = 0; i < KEYED; i++) {
		if (c->kc[i].used) {
			EVP_CIPHER_CTX_reset(c->kc[i].cc);
			pxy_wipe(c->kc[i].key, sizeof(c->kc[i].key));
			c->kc[i].used = 0;
		}
		if (c->km[i].used) {
			/* OpenSSL keeps the pads until the context is rekeyed or freed: rekey with zeros */
			EVP_MAC_init(c->km[i].m, c->zeros, 32, NULL);
			pxy_wipe(c->km[i].key, sizeof(c->km[i].key));
			c->km[i].used = 0;
		}
	}
	c->cc = NULL;
	ERR_clear_error();
}

void pxy_cpu_ctx_free(struct pxy_cpu_ctx *c)
{
	if (!c)
		return;
	for (int i = 0; i < KEYED; i++) {
		EVP_CIPHER_CTX_free(c->kc[i].cc);
		EVP_MAC_CTX_free(c->km[i].m);
	}
	pxy_wipe(c->kc, sizeof(c->kc));
	pxy_wipe(c->km, sizeof(c->km));
	for (int i = 0; i < PXY_BULK__COUNT; i++)
		EVP_CIPHER_free(c->cipher[i]);
	for (int i = 0; i < N_MD; i++)
		EVP_MD_free(c->md[i]);
	EVP_MAC_free(c->hmac);
	EVP_MD_CTX_free(c->dummy);
	free(c);
}

/*
 * The keyed cipher context for (bulk, key) (a cached one, or the least
 * recently used one rekeyed), its IV set. A stream cipher's context is never
 * re-initialized: its keystream runs on from the last record (the caller
 * keeps one context per direction, see pxy_cpu_record_open). CCM's nonce and
 * tag lengths are set before its key, as OpenSSL requires.
 */
static int keyed_cipher(struct pxy_cpu_ctx *c, uint8_t bulk, const uint8_t *key, const uint8_t *iv, int enc)
{
	const struct pxy_bulk_desc *d = pxy_bulk_desc(bulk);
	struct keyed_cipher *hit = NULL, *lru = &c->kc[0];
	size_t kl;

	c->cc = NULL;
	if (!d || !d->evp || !pxy_bulk_available(bulk, NULL))
		return PXY_E_STATE;
	if (!c->cipher[bulk] && !(c->cipher[bulk] = EVP_CIPHER_fetch(NULL, d->evp, NULL)))
		return PXY_E_CRYPTO_LIB;
	kl = d->key_len;
	for (int i = 0; i < KEYED; i++) {
		struct keyed_cipher *e = &c->kc[i];

		if (e->used && e->bulk == bulk && e->enc == enc && pxy_ct_memeq(e->key, key, kl))
			hit = e;
		if (e->used < lru->used)
			lru = e;
	}
	if (hit) {
		/* only the IV: the key schedule (and GCM's hash key) stay */
		if (d->kind != PXY_BK_STREAM && !EVP_CipherInit_ex(hit->cc, NULL, NULL, NULL, iv, enc)) {
			hit->used = 0;
			return PXY_E_CRYPTO_LIB;
		}
	} else {
		hit = lru;
		hit->used = 0;
		if (d->ccm) {
			/* RFC 6655 §3: a 12-byte nonce (L = 3) and a tag of 16 or 8 bytes */
			if (!EVP_CipherInit_ex(hit->cc, c->cipher[bulk], NULL, NULL, NULL, enc) ||
			    !EVP_CIPHER_CTX_ctrl(hit->cc, EVP_CTRL_AEAD_SET_IVLEN, 12, NULL) ||
			    !EVP_CIPHER_CTX_ctrl(hit->cc, EVP_CTRL_AEAD_SET_TAG, d->tag_len, NULL) ||
			    !EVP_CipherInit_ex(hit->cc, NULL, NULL, key, iv, enc))
				return PXY_E_CRYPTO_LIB;
		} else if (!EVP_CipherInit_ex(hit->cc, c->cipher[bulk], NULL, key, iv, enc)) {
			return PXY_E_CRYPTO_LIB;
		}
		if (d->kind == PXY_BK_CBC)
			EVP_CIPHER_CTX_set_padding(hit->cc, 0);
		hit->bulk = bulk;
		hit->enc = (uint8_t)enc;
		memcpy(hit->key, key, kl);
	}
	hit->used = ++c->clock;
	c->cc = hit->cc;
	return PXY_OK;
}

static int cipher_init(struct pxy_cpu_ctx *c, const struct pxy_traffic_keys *k, const uint8_t *iv, int enc)
{
	return keyed_cipher(c, k->bulk, k->key, iv, enc);
}

/* The keyed HMAC context for (mac, key), started afresh (from its saved pads when cached). */
static EVP_MAC_CTX *keyed_mac(struct pxy_cpu_ctx *c, uint8_t mac, const uint8_t *key, size_t key_len)
{
	struct keyed_mac *hit = NULL, *lru = &c->km[0];

	if (mac < PXY_MAC_SHA1 || mac >= N_MD || key_len > MAX_MAC_KEY)
		return NULL;
	for (int i = 0; i < KEYED; i++) {
		struct keyed_mac *e = &c->km[i];

		if (e->used && e->mac == mac && e->key_len == key_len && pxy_ct_memeq(e->key, key, key_len))
			hit = e;
		if (e->used < lru->used)
			lru = e;
	}
	if (hit) {
		if (!EVP_MAC_init(hit->m, NULL, 0, NULL)) {
			hit->used = 0;
			return NULL;
		}
	} else {
		OSSL_PARAM p[2] = { OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)pxy_mac_md(mac), 0),
				    OSSL_PARAM_construct_end() };

		hit = lru;
		hit->used = 0;
		if (!EVP_MAC_init(hit->m, key, key_len, p))
			return NULL;
		hit->mac = mac;
		hit->key_len = (uint8_t)key_len;
		memcpy(hit->key, key, key_len);
	}
	hit->used = ++c->clock;
	return hit->m;
}

static int cipher_run(struct pxy_cpu_ctx *c, uint8_t *buf, size_t len)
{
	int outl = 0;

	if (len == 0)
		return PXY_OK;
	if (!EVP_CipherUpdate(c->cc, buf, &outl, buf, (int)len) || (size_t)outl != len)
		return PXY_E_CRYPTO_LIB;
	return PXY_OK;
}

/* seq_num || type || version || length (RFC 5246 §6.2.3.1 and §6.2.3.3) */
static void mac_header(uint8_t h[13], uint64_t seq, uint8_t type, const uint8_t version[2], size_t len)
{
	for (int i = 0; i < 8; i++)
		h[i] = (uint8_t)(seq >> (56 - 8 * i));
	h[8] = type;
	h[9] = version[0];
	h[10] = version[1];
	h[11] = (uint8_t)(len >> 8);
	h[12] = (uint8_t)len;
}

static size_t mac_out_len(uint8_t mac)
{
	return pxy_mac_len(mac);
}

int pxy_cpu_hmac(struct pxy_cpu_ctx *c, uint8_t mac, const uint8_t *key, size_t key_len, const uint8_t *hdr,
		 size_t hdr_len, const uint8_t *msg, size_t msg_len, uint8_t out[48])
{
	EVP_MAC_CTX *m = keyed_mac(c, mac, key, key_len);
	size_t outl = 0;

	if (!m || (hdr_len && !EVP_MAC_update(m, hdr, hdr_len)) || !EVP_MAC_update(m, msg, msg_len) ||
	    !EVP_MAC_final(m, out, &outl, MAX_MAC) || outl != mac_out_len(mac))
		return PXY_E_CRYPTO_LIB;
	return PXY_OK;
}

static int hmac(struct pxy_cpu_ctx *c, const struct pxy_traffic_keys *k, const uint8_t hdr[13], const uint8_t *p,
		size_t n, uint8_t out[MAX_MAC])
{
	if (k->mac < PXY_MAC_SHA1 || k->mac >= N_MD || k->mac_key_len > MAX_MAC)
		return PXY_E_STATE;
	return pxy_cpu_hmac(c, k->mac, k->mac_key, k->mac_key_len, hdr, 13, p, n, out);
}

/* Compression-function calls of HMAC's inner hash over a 13-byte header and
 * n bytes: one key block, the data, then 0x80 and the length field. */
static uint32_t hmac_inner_blocks(uint32_t n, uint32_t bs_log2, uint32_t len_field)
{
	uint32_t bs = 1u << bs_log2;

	/* a shift, not a division: n is secret and a divider's time can depend on its operands */
	return (bs + 13 + n + 1 + len_field + bs - 1) >> bs_log2;
}

int pxy_cpu_hmac_ct(struct pxy_cpu_ctx *c, uint8_t mac, const uint8_t *key, size_t key_len, const uint8_t hdr13[13],
		    const uint8_t *msg, uint32_t len, uint32_t max_len, uint8_t out[48])
{
	uint32_t bs_log2 = mac == PXY_MAC_SHA384 ? 7 : 6;
	uint32_t lf = mac == PXY_MAC_SHA384 ? 16 : 8;
	uint32_t extra;

	if (mac < PXY_MAC_SHA1 || mac >= N_MD || len > max_len || max_len > PXY_TLS_MAX_CIPHERTEXT)
		return PXY_E_STATE;
	extra = (hmac_inner_blocks(max_len, bs_log2, lf) - hmac_inner_blocks(len, bs_log2, lf)) << bs_log2;
	PXY_TRY(pxy_cpu_hmac(c, mac, key, key_len, hdr13, 13, msg, len, out));
	if (!EVP_DigestInit_ex(c->dummy, c->md[mac], NULL) || !EVP_DigestUpdate(c->dummy, c->zeros, extra))
		return PXY_E_CRYPTO_LIB;
	return PXY_OK;
}

/* HMAC over a secret-length prefix, padded out with dummy compressions to the
 * cost of max_len (public). */
static int hmac_ct(struct pxy_cpu_ctx *c, const struct pxy_traffic_keys *k, uint64_t seq, uint8_t type,
		   const uint8_t version[2], const uint8_t *p, uint32_t len, uint32_t max_len, uint8_t out[MAX_MAC])
{
	uint8_t hdr[13];

	if (k->mac_key_len > MAX_MAC)
		return PXY_E_STATE;
	mac_header(hdr, seq, type, version, len);
	return pxy_cpu_hmac_ct(c, k->mac, k->mac_key, k->mac_key_len, hdr, p, len, max_len, out);
}

/* Copy mac_len bytes from the secret offset mac_start of p[0..len) without a
 * secret-dependent address (scan a fixed window, rotate under masks). The
 * caller guarantees mac_start + mac_len <= len and mac_start + 256 + mac_len >= len. */
static void ct_copy_mac(uint8_t *out, const uint8_t *p, uint32_t len, uint32_t mac_len, uint32_t mac_start)
{
	uint8_t rotated[MAX_MAC] = { 0 };
	uint32_t scan_start = len > mac_len + 256 ? len - mac_len - 256 : 0;
	uint32_t rot = 0, j = 0;

	for (uint32_t i = scan_start; i < len; i++) {
		uint32_t in_mac = pxy_ct_ge(i, mac_start) & pxy_ct_lt(i, mac_start + mac_len);

		rot |= j & pxy_ct_mask(pxy_ct_eq(i, mac_start));
		rotated[j] |= (uint8_t)(p[i] & pxy_ct_mask(in_mac));
		j++;
		j &= pxy_ct_mask(pxy_ct_lt(j, mac_len));
	}
	for (uint32_t m = 0; m < mac_len; m++) {
		uint32_t idx = rot + m;
		uint8_t b = 0;

		idx = pxy_ct_select(pxy_ct_lt(idx, mac_len), idx, idx - mac_len);
		for (uint32_t i = 0; i < mac_len; i++)
			b |= (uint8_t)(rotated[i] & pxy_ct_mask(pxy_ct_eq(i, idx)));
		out[m] = b;
	}
}

/* 1 if p[len-1-i] == pad for every i <= pad, scanning min(256, len) bytes. */
static uint32_t ct_check_padding(const uint8_t *p, uint32_t len, uint32_t pad)
{
	uint32_t to_check = len < 256 ? len : 256;
	uint32_t good = 1;

	for (uint32_t i = 0; i < to_check; i++) {
		uint32_t in_pad = pxy_ct_lt(i, pad + 1);
		uint32_t b = p[len - 1 - i];

		good &= ~in_pad | pxy_ct_eq(b, pad);
	}
	return good & pxy_ct_ge(len, pad + 1) & 1u;
}

/* seq_num || type || version || length, and the AEAD nonce: fixed (key block) || explicit (record) */
/*
 * The record's AEAD nonce. RFC 5288 §3, RFC 6655 §3, RFC 6209: salt (4, key
 * block) || explicit nonce (8, the record's). RFC 7905 and RFC 8446 §5.3: the
 * 12-byte IV XORed with the sequence number, nothing in the record.
 */
static void aead_nonce(const struct pxy_traffic_keys *k, const struct pxy_bulk_desc *d, uint64_t seq,
		       const uint8_t *frag, uint8_t nonce[12])
{
	if (k->iv_len == 12) {
		memcpy(nonce, k->iv, 12);
		for (int i = 0; i < 8; i++)
			nonce[4 + i] ^= (uint8_t)(seq >> (56 - 8 * i));
	} else {
		memcpy(nonce, k->iv, 4);
		memcpy(nonce + 4, frag, d->record_iv);
	}
}

/* The explicit nonce's bytes in the record: none under TLS 1.3 or an XORed nonce */
static size_t aead_record_iv(const struct pxy_traffic_keys *k, const struct pxy_bulk_desc *d)
{
	return k->iv_len == 12 ? 0 : d->record_iv;
}

/* The AAD: TLS 1.2's seq || type || version || length (13), TLS 1.3's record header (5) */
static size_t aead_aad(const struct pxy_traffic_keys *k, uint64_t seq, const uint8_t *rec, size_t ctlen,
		       uint8_t aad[13])
{
	if (k->version >= 0x0304) {
		memcpy(aad, rec, PXY_TLS_HDR_LEN);
		return PXY_TLS_HDR_LEN;
	}
	mac_header(aad, seq, rec[0], rec + 1, ctlen);
	return 13;
}

static int aead_start(struct pxy_cpu_ctx *c, const struct pxy_traffic_keys *k, const struct pxy_bulk_desc *d,
		      const uint8_t nonce[12], const uint8_t *aad, size_t aad_len, size_t len, int enc,
		      const uint8_t *tag)
{
	int outl = 0;

	PXY_TRY(keyed_cipher(c, k->bulk, k->key, nonce, enc));
	if (d->ccm) {
		/* CCM: the expected tag (opening), then the message length, before any data */
		if ((!enc && !EVP_CIPHER_CTX_ctrl(c->cc, EVP_CTRL_AEAD_SET_TAG, d->tag_len, (void *)tag)) ||
		    !EVP_CipherUpdate(c->cc, NULL, &outl, NULL, (int)len))
			return PXY_E_CRYPTO_LIB;
	}
	if (!EVP_CipherUpdate(c->cc, NULL, &outl, aad, (int)aad_len))
		return PXY_E_CRYPTO_LIB;
	return PXY_OK;
}

/* ---- GCM from a block cipher's CTR mode (NIST SP 800-38D), for ciphers OpenSSL has no GCM of ------ */

struct u128 {
	uint64_t hi, lo; /* big-endian halves: bit 0 of GCM's order is the top bit of hi */
};

static struct u128 be128(const uint8_t b[16])
{
	struct u128 r = { 0, 0 };

	for (int i = 0; i < 8; i++) {
		r.hi = r.hi << 8 | b[i];
		r.lo = r.lo << 8 | b[8 + i];
	}
	return r;
}

/* X * H in GF(2^128), GCM's bit order, in constant time (a fixed 128 steps, masks for every branch) */
static struct u128 gf_mul(struct u128 x, struct u128 h)
{
	struct u128 z = { 0, 0 }, v = h;

	for (int i = 0; i < 128; i++) {
		uint64_t bit = (i < 64 ? x.hi >> (63 - i) : x.lo >> (127 - i)) & 1, m = 0 - bit;
		uint64_t r = 0 - (v.lo & 1); /* reduce by x^128 + x^7 + x^2 + x + 1 */

		z.hi ^= v.hi & m;
		z.lo ^= v.lo & m;
		v.lo = (v.lo >> 1) | (v.hi << 63);
		v.hi = (v.hi >> 1) ^ (0xe100000000000000ull & r);
	}
	return z;
}

static void ghash_blocks(struct u128 *y, struct u128 h, const uint8_t *p, size_t n)
{
	uint8_t last[16];

	for (; n >= 16; p += 16, n -= 16) {
		struct u128 x = be128(p);

		y->hi ^= x.hi;
		y->lo ^= x.lo;
		*y = gf_mul(*y, h);
	}
	if (n) {
		memset(last, 0, sizeof(last));
		memcpy(last, p, n);
		ghash_blocks(y, h, last, 16);
	}
}

/*
 * One GCM record over the cipher's CTR mode: H = E(0), the tag mask E(J0)
 * (J0 = nonce || 1) and the keystream from inc32(J0) all come from the CTR
 * context (a record is at most 1,025 blocks from a counter of 2: the 32-bit
 * counter never wraps, so CTR's 128-bit increment is GCM's inc32). Opening
 * checks the tag before anything is released; *ok says whether it matched.
 */
static int ghash_gcm(struct pxy_cpu_ctx *c, const struct pxy_traffic_keys *k, const uint8_t nonce[12],
		     const uint8_t aad[13], uint8_t *data, size_t n, int enc, uint8_t tag[16], uint32_t *ok)
{
	uint8_t blk[16] = { 0 }, j0[16], lens[16], calc[16];
	struct u128 h, y = { 0, 0 };

	*ok = 0;
	PXY_TRY(keyed_cipher(c, k->bulk, k->key, blk, 1));
	PXY_TRY(cipher_run(c, blk, 16)); /* E(0) */
	h = be128(blk);
	memcpy(j0, nonce, 12);
	j0[12] = j0[13] = j0[14] = 0;
	j0[15] = 1;
	PXY_TRY(keyed_cipher(c, k->bulk, k->key, j0, 1));
	memset(calc, 0, sizeof(calc));
	PXY_TRY(cipher_run(c, calc, 16)); /* E(J0), then the data's keystream */
	ghash_blocks(&y, h, aad, 13);
	if (!enc)
		ghash_blocks(&y, h, data, n);
	PXY_TRY(cipher_run(c, data, n));
	if (enc)
		ghash_blocks(&y, h, data, n);
	memset(lens, 0, sizeof(lens));
	lens[7] = 13 * 8;
	for (int i = 0; i < 8; i++)
		lens[15 - i] = (uint8_t)(((uint64_t)n * 8) >> (8 * i));
	ghash_blocks(&y, h, lens, 16);
	for (int i = 0; i < 8; i++) {
		calc[i] ^= (uint8_t)(y.hi >> (56 - 8 * i));
		calc[8 + i] ^= (uint8_t)(y.lo >> (56 - 8 * i));
	}
	if (enc) {
		memcpy(tag, calc, 16);
		*ok = 1;
	} else {
		*ok = pxy_ct_memeq(calc, tag, 16);
		if (!*ok)
			pxy_wipe(data, n);
	}
	pxy_wipe(calc, sizeof(calc));
	pxy_wipe(&h, sizeof(h));
	return PXY_OK;
}

static int aead_open(struct pxy_cpu_ctx *c, struct pxy_rec_job *j, const struct pxy_bulk_desc *d)
{
	const struct pxy_traffic_keys *k = j->keys;
	uint8_t *frag = j->rec + PXY_TLS_HDR_LEN;
	size_t flen = j->rec_len - PXY_TLS_HDR_LEN, ctlen, riv = aead_record_iv(k, d), aad_len;
	uint8_t aad[13], fin[16], nonce[12];
	int outl = 0, ok;

	j->pt_off = PXY_TLS_HDR_LEN + riv;
	if (flen < riv + d->tag_len)
		return PXY_OK; /* public: too short to be a record of this suite */
	ctlen = flen - riv - d->tag_len;
	aad_len = aead_aad(k, j->seq, j->rec, ctlen, aad);
	aead_nonce(k, d, j->seq, frag, nonce);
	if (d->ghash) {
		uint32_t good;

		PXY_TRY(ghash_gcm(c, k, nonce, aad, frag + riv, ctlen, 0, frag + riv + ctlen, &good));
		j->pt_len = good ? ctlen : 0;
		j->ok = good;
		return PXY_OK;
	}
	PXY_TRY(aead_start(c, k, d, nonce, aad, aad_len, ctlen, 0, frag + riv + ctlen));
	if (d->ccm) {
		/* CCM checks the tag as it decrypts: a failed update is a forgery */
		ok = EVP_CipherUpdate(c->cc, frag + riv, &outl, frag + riv, (int)ctlen) > 0;
	} else {
		PXY_TRY(cipher_run(c, frag + riv, ctlen));
		if (!EVP_CIPHER_CTX_ctrl(c->cc, EVP_CTRL_AEAD_SET_TAG, d->tag_len, frag + riv + ctlen))
			return PXY_E_CRYPTO_LIB;
		ok = EVP_CipherFinal_ex(c->cc, fin, &outl) > 0;
	}
	if (!ok) {
		/* unauthenticated plaintext never leaves the engine */
		pxy_wipe(frag + riv, ctlen);
		ERR_clear_error();
		return PXY_OK;
	}
	j->pt_len = ctlen;
	j->ok = 1;
	if (k->version >= 0x0304)
		pxy_rec_job_tls13_inner(j);
	return PXY_OK;
}

/*
 * A stream cipher's or NULL's record (MAC-then-encrypt, no padding): all
 * lengths are public, so the MAC is computed and compared plainly. RC4's
 * keystream runs on across the direction's records: the caller opens them
 * in order on one context of their own.
 */
static int stream_open(struct pxy_cpu_ctx *c, struct pxy_rec_job *j, const struct pxy_bulk_desc *d)
{
	const struct pxy_traffic_keys *k = j->keys;
	uint8_t *frag = j->rec + PXY_TLS_HDR_LEN;
	size_t flen = j->rec_len - PXY_TLS_HDR_LEN, data_len;
	uint8_t hdr[13], calc[MAX_MAC];

	j->pt_off = PXY_TLS_HDR_LEN;
	if (d->kind == PXY_BK_STREAM) {
		PXY_TRY(keyed_cipher(c, k->bulk, k->key, NULL, 0));
		PXY_TRY(cipher_run(c, frag, flen)); /* the MAC too: the keystream covers it */
	}
	if (flen < k->mac_len)
		return PXY_OK;
	data_len = flen - k->mac_len;
	mac_header(hdr, j->seq, j->rec[0], j->rec + 1, data_len);
	PXY_TRY(hmac(c, k, hdr, frag, data_len, calc));
	if (!pxy_ct_memeq(calc, frag + data_len, k->mac_len)) {
		pxy_wipe(frag, flen);
		return PXY_OK;
	}
	j->pt_len = data_len;
	j->ok = 1;
	return PXY_OK;
}

int pxy_cpu_gcm(struct pxy_cpu_ctx *c, int enc, const uint8_t *key, size_t key_len, const uint8_t nonce[12],
		const uint8_t *aad, size_t aad_len, const uint8_t *in, size_t n, uint8_t tag[16], uint8_t *out,
		uint32_t *ok)
{
	uint8_t fin[16];
	int outl = 0;

	*ok = 0;
	if ((key_len != 16 && key_len != 32) || n > INT32_MAX || aad_len > INT32_MAX)
		return PXY_E_STATE;
	PXY_TRY(keyed_cipher(c, key_len == 16 ? PXY_BULK_AES_128_GCM : PXY_BULK_AES_256_GCM, key, nonce, enc));
	if ((aad_len && !EVP_CipherUpdate(c->cc, NULL, &outl, aad, (int)aad_len)) ||
	    (n && (!EVP_CipherUpdate(c->cc, out, &outl, in, (int)n) || (size_t)outl != n)))
		return PXY_E_CRYPTO_LIB;
	if (enc) {
		if (EVP_CipherFinal_ex(c->cc, fin, &outl) <= 0 || !EVP_CIPHER_CTX_ctrl(c->cc, EVP_CTRL_AEAD_GET_TAG, 16, tag))
			return PXY_E_CRYPTO_LIB;
		*ok = 1;
		return PXY_OK;
	}
	if (!EVP_CIPHER_CTX_ctrl(c->cc, EVP_CTRL_AEAD_SET_TAG, 16, tag))
		return PXY_E_CRYPTO_LIB;
	if (EVP_CipherFinal_ex(c->cc, fin, &outl) > 0) {
		*ok = 1;
	} else {
		pxy_wipe(out, n); /* unauthenticated plaintext never leaves */
		ERR_clear_error();
	}
	return PXY_OK;
}

int pxy_cpu_cbc(struct pxy_cpu_ctx *c, int enc, const uint8_t *key, size_t key_len, const uint8_t iv[16],
		const uint8_t *in, uint8_t *out, size_t n)
{
	int outl = 0;

	if ((key_len != 16 && key_len != 32) || n % AES_BLOCK || n > INT32_MAX)
		return PXY_E_STATE;
	PXY_TRY(keyed_cipher(c, key_len == 16 ? PXY_BULK_AES_128_CBC : PXY_BULK_AES_256_CBC, key, iv, enc));
	if (n && (!EVP_CipherUpdate(c->cc, out, &outl, in, (int)n) || (size_t)outl != n))
		return PXY_E_CRYPTO_LIB;
	return PXY_OK;
}

static int cbc_open(struct pxy_cpu_ctx *c, struct pxy_rec_job *j, const struct pxy_bulk_desc *d)
{
	const struct pxy_traffic_keys *k = j->keys;
	uint8_t *frag = j->rec + PXY_TLS_HDR_LEN;
	uint32_t flen = (uint32_t)(j->rec_len - PXY_TLS_HDR_LEN);
	uint32_t bs = d->block, explicit_iv = k->version >= 0x0302 ? bs : 0;
	uint32_t maclen = k->mac_len;
	uint8_t calc[MAX_MAC], got[MAX_MAC];
	const uint8_t *iv = explicit_iv ? frag : j->iv;
	uint8_t *ct = frag + explicit_iv;
	uint32_t ctlen, pad, good, data_len, max_data;

	j->pt_off = PXY_TLS_HDR_LEN + explicit_iv;
	if (k->etm) {
		/* RFC 7366 §3: MAC over IV + ciphertext, checked before decrypting */
		uint32_t enc_len;
		uint8_t hdr[13];

		if (flen < explicit_iv + bs + maclen || (flen - maclen - explicit_iv) % bs)
			return PXY_OK;
		enc_len = flen - maclen;
		mac_header(hdr, j->seq, j->rec[0], j->rec + 1, enc_len);
		PXY_TRY(hmac(c, k, hdr, frag, enc_len, calc));
		if (!pxy_ct_memeq(calc, frag + enc_len, maclen))
			return PXY_OK;
		ctlen = enc_len - explicit_iv;
		PXY_TRY(cipher_init(c, k, iv, 0));
		PXY_TRY(cipher_run(c, ct, ctlen));
		pad = ct[ctlen - 1];
		good = ct_check_padding(ct, ctlen, pad);
		j->pt_len = pxy_ct_select(good, ctlen - pad - 1, 0);
		j->ok = good;
		if (!good)
			pxy_wipe(ct, ctlen);
		return PXY_OK;
	}

	/* MAC-then-encrypt: the ciphertext must hold at least the MAC and one padding byte */
	if (flen < explicit_iv + bs || (flen - explicit_iv) % bs || flen - explicit_iv < maclen + 1)
		return PXY_OK; /* public lengths */
	ctlen = flen - explicit_iv;
	PXY_TRY(cipher_init(c, k, iv, 0));
	PXY_TRY(cipher_run(c, ct, ctlen));
	pad = ct[ctlen - 1];
	good = ct_check_padding(ct, ctlen, pad) & pxy_ct_ge(ctlen, pad + 1 + maclen);
	/* RFC 5246 §6.2.3.2: with a bad padding, compute the MAC as if there were none */
	pad = pxy_ct_select(good, pad, 0);
	max_data = ctlen - 1 - maclen;
	data_len = max_data - pad;
	PXY_TRY(hmac_ct(c, k, j->seq, j->rec[0], j->rec + 1, ct, data_len, max_data, calc));
	ct_copy_mac(got, ct, ctlen, maclen, data_len);
	good &= pxy_ct_memeq(calc, got, maclen);
	pxy_wipe(calc, sizeof(calc));
	j->pt_len = pxy_ct_select(good, data_len, 0);
	j->ok = good;
	if (!good)
		pxy_wipe(ct, ctlen);
	/* TLS 1.0 chains IVs: the next record's IV is this one's last ciphertext block,
	 * which the caller takes from the record before opening it. */
	return PXY_OK;
}

int pxy_cpu_record_open(struct pxy_cpu_ctx *c, struct pxy_rec_job *j)
{
	const struct pxy_bulk_desc *d;
	int r;

	j->ok = 0;
	j->pt_len = 0;
	j->pt_off = PXY_TLS_HDR_LEN;
	j->pt_ext = NULL; /* opened in place: the plaintext is in rec */
	if (!j->keys || j->rec_len < PXY_TLS_HDR_LEN || !(d = pxy_bulk_desc(j->keys->bulk)))
		return PXY_E_STATE;
	switch (d->kind) {
	case PXY_BK_AEAD: r = aead_open(c, j, d); break;
	case PXY_BK_CBC: r = cbc_open(c, j, d); break;
	default: r = stream_open(c, j, d); break;
	}
	if (r < 0)
		ERR_clear_error();
	return r;
}

size_t pxy_record_sealed_len(const struct pxy_traffic_keys *k, size_t pt_len)
{
	const struct pxy_bulk_desc *d = pxy_bulk_desc(k->bulk);
	size_t bs, explicit_iv, body;

	if (!d)
		return 0;
	if (d->kind == PXY_BK_AEAD)
		return PXY_TLS_HDR_LEN + aead_record_iv(k, d) + pt_len + (k->version >= 0x0304) + d->tag_len;
	if (d->kind != PXY_BK_CBC)
		return PXY_TLS_HDR_LEN + pt_len + k->mac_len;
	bs = d->block;
	explicit_iv = k->version >= 0x0302 ? bs : 0;
	if (k->etm)
		body = (pt_len / bs + 1) * bs + k->mac_len;
	else
		body = ((pt_len + k->mac_len) / bs + 1) * bs;
	return PXY_TLS_HDR_LEN + explicit_iv + body;
}

static void set_len(uint8_t *rec, size_t frag_len)
{
	rec[3] = (uint8_t)(frag_len >> 8);
	rec[4] = (uint8_t)frag_len;
}

int pxy_cpu_record_seal(struct pxy_cpu_ctx *c, struct pxy_rec_job *j)
{
	const struct pxy_traffic_keys *k = j->keys;
	const struct pxy_bulk_desc *d = k ? pxy_bulk_desc(k->bulk) : NULL;
	size_t pt_len = j->rec_len - PXY_TLS_HDR_LEN;
	size_t need = d ? pxy_record_sealed_len(k, pt_len) : 0;
	uint8_t *frag = j->rec + PXY_TLS_HDR_LEN;
	uint8_t hdr[13], mac[MAX_MAC];
	int outl = 0;

	j->ok = 0;
	if (!d)
		return PXY_E_STATE;
	if (need > j->rec_cap || pt_len > PXY_TLS_MAX_PLAINTEXT)
		return PXY_E_LIMIT;
	if (d->kind == PXY_BK_AEAD) {
		size_t riv = aead_record_iv(k, d), aad_len;
		uint8_t fin[16], *body = frag + riv, *tag, nonce[12];

		memmove(body, frag, pt_len);
		if (k->version >= 0x0304) {
			/* RFC 8446 §5.2: the real type after the content, and the outer type 23 */
			body[pt_len++] = j->rec[0];
			j->rec[0] = 23;
		}
		tag = body + pt_len;
		/* the explicit nonce is the sequence number, as OpenSSL and GnuTLS send it */
		for (size_t i = 0; i < riv; i++)
			frag[i] = (uint8_t)(j->seq >> (56 - 8 * i));
		set_len(j->rec, need - PXY_TLS_HDR_LEN); /* TLS 1.3's AAD is the final header */
		aad_len = aead_aad(k, j->seq, j->rec, pt_len, hdr);
		aead_nonce(k, d, j->seq, frag, nonce);
		if (d->ghash) {
			uint32_t done;

			PXY_TRY(ghash_gcm(c, k, nonce, hdr, body, pt_len, 1, tag, &done));
			j->rec_len = need;
			j->ok = 1;
			return PXY_OK;
		}
		PXY_TRY(aead_start(c, k, d, nonce, hdr, aad_len, pt_len, 1, NULL));
		PXY_TRY(cipher_run(c, body, pt_len));
		if (EVP_CipherFinal_ex(c->cc, fin, &outl) <= 0 ||
		    !EVP_CIPHER_CTX_ctrl(c->cc, EVP_CTRL_AEAD_GET_TAG, d->tag_len, tag))
			return PXY_E_CRYPTO_LIB;
	} else if (d->kind == PXY_BK_CBC) {
		size_t bs = d->block, explicit_iv = k->version >= 0x0302 ? bs : 0;
		uint8_t *body = frag + explicit_iv;
		size_t n = pt_len, padded;
		uint8_t pad;

		memmove(body, frag, pt_len);
		if (explicit_iv)
			memcpy(frag, j->iv, bs);
		if (!k->etm) {
			mac_header(hdr, j->seq, j->rec[0], j->rec + 1, pt_len);
			PXY_TRY(hmac(c, k, hdr, body, pt_len, mac));
			memcpy(body + n, mac, k->mac_len);
			n += k->mac_len;
		}
		padded = (n / bs + 1) * bs;
		pad = (uint8_t)(padded - n - 1);
		memset(body + n, pad, padded - n);
		PXY_TRY(cipher_init(c, k, j->iv, 1));
		PXY_TRY(cipher_run(c, body, padded));
		if (k->etm) {
			mac_header(hdr, j->seq, j->rec[0], j->rec + 1, explicit_iv + padded);
			PXY_TRY(hmac(c, k, hdr, frag, explicit_iv + padded, mac));
			memcpy(body + padded, mac, k->mac_len);
		}
	} else {
		/* stream or NULL: data || MAC, then the keystream over both */
		mac_header(hdr, j->seq, j->rec[0], j->rec + 1, pt_len);
		PXY_TRY(hmac(c, k, hdr, frag, pt_len, mac));
		memcpy(frag + pt_len, mac, k->mac_len);
		if (d->kind == PXY_BK_STREAM) {
			PXY_TRY(keyed_cipher(c, k->bulk, k->key, NULL, 1));
			PXY_TRY(cipher_run(c, frag, pt_len + k->mac_len));
		}
	}
	set_len(j->rec, need - PXY_TLS_HDR_LEN);
	j->rec_len = need;
	j->ok = 1;
	return PXY_OK;
}

/* ---- RSA ------------------------------------------------------------------- */

void *pxy_cpu_rsa_key(const struct pxy_rsa_priv *k)
{
	static const char *const names[8] = {
		OSSL_PKEY_PARAM_RSA_N,         OSSL_PKEY_PARAM_RSA_E,         OSSL_PKEY_PARAM_RSA_D,
		OSSL_PKEY_PARAM_RSA_FACTOR1,   OSSL_PKEY_PARAM_RSA_FACTOR2,   OSSL_PKEY_PARAM_RSA_EXPONENT1,
		OSSL_PKEY_PARAM_RSA_EXPONENT2, OSSL_PKEY_PARAM_RSA_COEFFICIENT1,
	};
	const struct pxy_bn *v[8] = { &k->n, &k->e, &k->d, &k->p, &k->q, &k->dp, &k->dq, &k->qinv };
	BIGNUM *bn[8] = { 0 };
	OSSL_PARAM_BLD *b = OSSL_PARAM_BLD_new();
	OSSL_PARAM *params = NULL;
	EVP_PKEY_CTX *ctx = NULL;
	EVP_PKEY *pk = NULL;

	if (!b)
		goto out;
	for (int i = 0; i < 8; i++) {
		bn[i] = BN_secure_new();
		if (!bn[i] || !v[i]->p || !BN_bin2bn(v[i]->p, (int)v[i]->len, bn[i]) ||
		    !OSSL_PARAM_BLD_push_BN(b, names[i], bn[i]))
			goto out;
	}
	params = OSSL_PARAM_BLD_to_param(b);
	ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
	if (!params || !ctx || EVP_PKEY_fromdata_init(ctx) <= 0 ||
	    EVP_PKEY_fromdata(ctx, &pk, EVP_PKEY_KEYPAIR, params) <= 0)
		pk = NULL;
out:
	for (int i = 0; i < 8; i++)
		BN_clear_free(bn[i]);
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(b);
	EVP_PKEY_CTX_free(ctx);
	ERR_clear_error();
	return pk;
}

void pxy_cpu_rsa_key_free(void *pkey)
{
	EVP_PKEY_free(pkey);
}

int pxy_cpu_rsa_decrypt(void *pkey, struct pxy_rsa_job *j)
{
	EVP_PKEY_CTX *ctx;
	unsigned int cv = j->client_version;
	OSSL_PARAM params[2];
	uint8_t out[PXY_PMS_LEN];
	size_t outlen = sizeof(out);
	int r;

	if (j->mode == PXY_RSA_PKCS1) {
		/* known-answer tests: the message and a validity flag, no implicit rejection */
		size_t mlen = sizeof(j->msg);

		j->ok = 0;
		j->msg_len = 0;
		if (!pkey || j->in_len == 0)
			return PXY_OK;
		ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
		if (!ctx)
			return PXY_E_NOMEM;
		if (EVP_PKEY_decrypt_init(ctx) > 0 && EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) > 0 &&
		    EVP_PKEY_decrypt(ctx, j->msg, &mlen, j->in, j->in_len) > 0) {
			j->ok = 1;
			j->msg_len = (uint16_t)mlen;
		}
		EVP_PKEY_CTX_free(ctx);
		ERR_clear_error();
		return PXY_OK;
	}
	/* the fallback secret, drawn before anything is known about the ciphertext */
	if (RAND_priv_bytes(j->pms, PXY_PMS_LEN) != 1)
		return PXY_E_CRYPTO_LIB;
	/* a ciphertext of another length than the modulus is malformed (RFC 5246
	 * §7.4.7.1; OpenSSL would take a shorter one as left-padded): the
	 * fallback, as the kernel answers it. The length is public. */
	if (j->in_len == 0 || !pkey || (int)j->in_len != EVP_PKEY_get_size(pkey))
		return PXY_OK;
	ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
	if (!ctx)
		return PXY_E_NOMEM;
	params[0] = OSSL_PARAM_construct_uint(OSSL_ASYM_CIPHER_PARAM_TLS_CLIENT_VERSION, &cv);
	params[1] = OSSL_PARAM_construct_end();
	r = EVP_PKEY_decrypt_init(ctx) > 0 && EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_WITH_TLS_PADDING) > 0 &&
	    EVP_PKEY_CTX_set_params(ctx, params) > 0 &&
	    EVP_PKEY_decrypt(ctx, out, &outlen, j->in, j->in_len) > 0 && outlen == PXY_PMS_LEN;
	/* r is 0 only for public reasons (length/value against the modulus) */
	if (r)
		memcpy(j->pms, out, PXY_PMS_LEN);
	pxy_wipe(out, sizeof(out));
	EVP_PKEY_CTX_free(ctx);
	ERR_clear_error();
	return PXY_OK;
}

/* ---- raw primitives (known-answer tests) ------------------------------------------ */

static const EVP_CIPHER *prim_cipher(struct pxy_cpu_ctx *c, int gcm, size_t key_len)
{
	if (key_len == 16)
		return c->cipher[gcm ? PXY_BULK_AES_128_GCM : PXY_BULK_AES_128_CBC];
	if (key_len == 32)
		return c->cipher[gcm ? PXY_BULK_AES_256_GCM : PXY_BULK_AES_256_CBC];
	return NULL;
}

int pxy_cpu_primitive(struct pxy_cpu_ctx *c, struct pxy_prim_job *j)
{
	EVP_CIPHER_CTX *cc = EVP_CIPHER_CTX_new();
	int outl = 0, fin = 0, r = PXY_OK;
	const EVP_CIPHER *ci;

	j->ok = 0;
	j->out_len = 0;
	if (!cc)
		return PXY_E_NOMEM;
	switch (j->op) {
	case PXY_PRIM_GCM_OPEN:
	case PXY_PRIM_GCM_SEAL: {
		int open = j->op == PXY_PRIM_GCM_OPEN;
		size_t n = open ? (j->in_len >= 16 ? j->in_len - 16 : 0) : j->in_len;

		ci = prim_cipher(c, 1, j->key_len);
		if (!ci || (open && j->in_len < 16) || j->out_cap < (open ? n : n + 16)) {
			r = PXY_E_LIMIT;
			break;
		}
		if (!EVP_CipherInit_ex(cc, ci, NULL, NULL, NULL, !open) ||
		    !EVP_CIPHER_CTX_ctrl(cc, EVP_CTRL_AEAD_SET_IVLEN, (int)j->iv_len, NULL) ||
		    !EVP_CipherInit_ex(cc, NULL, NULL, j->key, j->iv, !open) ||
		    (j->aad_len && !EVP_CipherUpdate(cc, NULL, &outl, j->aad, (int)j->aad_len)) ||
		    (n && !EVP_CipherUpdate(cc, j->out, &outl, j->in, (int)n))) {
			r = PXY_E_CRYPTO_LIB;
			break;
		}
		if (open) {
			if (!EVP_CIPHER_CTX_ctrl(cc, EVP_CTRL_AEAD_SET_TAG, 16, (void *)(j->in + n)))
				r = PXY_E_CRYPTO_LIB;
			else if (EVP_CipherFinal_ex(cc, j->out + n, &fin) > 0) {
				j->ok = 1;
				j->out_len = n;
			} else {
				pxy_wipe(j->out, n);
			}
		} else if (EVP_CipherFinal_ex(cc, j->out + n, &fin) > 0 &&
			   EVP_CIPHER_CTX_ctrl(cc, EVP_CTRL_AEAD_GET_TAG, 16, j->out + n)) {
			j->ok = 1;
			j->out_len = n + 16;
		} else {
			r = PXY_E_CRYPTO_LIB;
		}
		break;
	}
	case PXY_PRIM_CBC_DECRYPT:
		ci = prim_cipher(c, 0, j->key_len);
		if (!ci || j->iv_len != 16 || j->out_cap < j->in_len) {
			r = PXY_E_LIMIT;
			break;
		}
		/* OpenSSL's PKCS#7 unpadding (EVP default padding) */
		if (EVP_DecryptInit_ex(cc, ci, NULL, j->key, j->iv) &&
		    EVP_DecryptUpdate(cc, j->out, &outl, j->in, (int)j->in_len) &&
		    EVP_DecryptFinal_ex(cc, j->out + outl, &fin) > 0) {
			j->ok = 1;
			j->out_len = (size_t)(outl + fin);
		}
		break;
	case PXY_PRIM_HMAC: {
		size_t ml = 0;

		if (j->mac < PXY_MAC_SHA1 || j->mac > PXY_MAC_SHA384 || j->out_cap < MAX_MAC) {
			r = PXY_E_LIMIT;
			break;
		}
		if (EVP_Q_mac(NULL, "HMAC", NULL, pxy_mac_md(j->mac), NULL, j->key, j->key_len, j->in, j->in_len, j->out,
			      j->out_cap, &ml)) {
			j->ok = 1;
			j->out_len = ml;
		} else {
			r = PXY_E_CRYPTO_LIB;
		}
		break;
	}
	default:
		r = PXY_E_STATE;
	}
	EVP_CIPHER_CTX_free(cc);
	ERR_clear_error();
	return r;
}
