/*
 * tls_record_crypt: a batch of TLS records (or raw AEAD/CBC/HMAC operations
 * for known-answer tests) per launch.
 *
 *   GCM open  (RFC 5288): tag over AAD || ciphertext compared in constant
 *             time before any plaintext is released; unverified plaintext is
 *             zeroed, never returned.
 *   CBC open  MAC-then-encrypt (RFC 5246 §6.2.3.2): padding checked over a
 *             fixed window under masks, the MAC computed with a number of
 *             compressions set by the public record length (hmac_ct), the
 *             received MAC taken from its secret offset by a masked rotation.
 *             Encrypt-then-MAC (RFC 7366): MAC over public bytes, compared in
 *             constant time, then decryption.
 *   seal      the inverse, for RECORD_SEAL jobs.
 *
 * Descriptors are checked against the buffers' bounds first (public data):
 * a bad one is flagged, never followed.
 */
#include "aes.h"
#include "ghash.h"
#include "sha.h"

#define BULK_AES_128_GCM 1
#define BULK_AES_256_GCM 2
#define BULK_AES_128_CBC 3
#define BULK_AES_256_CBC 4

PXYK_INLINE int bulk_key_len(uint32_t bulk)
{
	return bulk == BULK_AES_128_GCM || bulk == BULK_AES_128_CBC ? 16 : 32;
}

static void mac_header(uint8_t h[13], uint64_t seq, uint8_t type, const uint8_t *ver, uint32_t len)
{
	pxyk_put_be64(h, seq);
	h[8] = type;
	h[9] = ver[0];
	h[10] = ver[1];
	h[11] = (uint8_t)(len >> 8);
	h[12] = (uint8_t)len;
}

/* all-ones if the n bytes are equal */
static uint32_t ct_eq_bytes(const uint8_t *a, const uint8_t *b, uint32_t n)
{
	uint32_t acc = 0;

	for (uint32_t i = 0; i < n; i++)
		acc |= (uint32_t)(a[i] ^ b[i]);
	return (uint32_t)pxyk_eqmask(acc, 0);
}

/* ---- GCM --------------------------------------------------------------------------- */

/* the keystream blocks that come with H and E(J0) out of the first AES pass */
#define GCM_FIRST (AES_BLOCKS - 2)

struct gcm_ctx {
	struct aes_key key;
	struct ghash_key gh;
	uint8_t j0[16];
	/* E(0^128) = H, E(J0), then the keystream for counters 2 .. AES_BLOCKS - 1 */
	uint8_t first[16 * AES_BLOCKS];
};

static void gcm_start(struct gcm_ctx *c, const uint8_t *key, int key_len, const uint8_t nonce[12])
{
	aes_expand(&c->key, key, key_len);
	pxyk_copy(c->j0, nonce, 12);
	pxyk_put_be32(c->j0 + 12, 1);
	/* one pass: block 0 is the zero block, block b > 0 is J0 with counter b */
	pxyk_zero(c->first, 16);
	for (uint32_t b = 1; b < AES_BLOCKS; b++) {
		pxyk_copy(c->first + 16 * b, nonce, 12);
		pxyk_put_be32(c->first + 16 * b + 12, b);
	}
	aes_encrypt_blocks(&c->key, c->first);
	ghash_init(&c->gh, c->first);
}

/* the keystream starts at inc32(J0) */
static void gcm_ctr(struct gcm_ctx *c, const uint8_t *in, uint8_t *out, uint32_t n)
{
	uint32_t head = n < 16 * GCM_FIRST ? n : 16 * GCM_FIRST;
	uint8_t ctr[16];

	for (uint32_t i = 0; i < head; i++)
		out[i] = (uint8_t)(in[i] ^ c->first[32 + i]);
	pxyk_copy(ctr, c->j0, 12);
	pxyk_put_be32(ctr + 12, AES_BLOCKS);
	aes_ctr32(&c->key, ctr, in + head, out + head, n - head);
}

static void gcm_tag(struct gcm_ctx *c, const uint8_t *aad, uint32_t aad_len, const uint8_t *ct, uint32_t n,
		    uint8_t tag[16])
{
	ghash_gcm(&c->gh, aad, aad_len, ct, n, tag);
	for (int i = 0; i < 16; i++)
		tag[i] ^= c->first[16 + i];
}

/* open: ct (n bytes) then tag; plaintext to out only if authentic (else zeros) */
static uint32_t gcm_open(const uint8_t *key, int kl, const uint8_t nonce[12], const uint8_t *aad, uint32_t aad_len,
			 const uint8_t *ct, uint32_t n, const uint8_t *tag, uint8_t *out)
{
	struct gcm_ctx c;
	uint8_t calc[16];
	uint32_t ok;

#ifdef PXYK_HAVE_HOST
	if (pxyk_host && pxyk_host->gcm(0, key, (uint32_t)kl, nonce, aad, aad_len, ct, n, (uint8_t *)tag, out, &ok) == 0)
		return 0 - (ok & 1);
#endif
	gcm_start(&c, key, kl, nonce);
	gcm_tag(&c, aad, aad_len, ct, n, calc);
	ok = ct_eq_bytes(calc, tag, 16);
	gcm_ctr(&c, ct, out, n);
	for (uint32_t i = 0; i < n; i++)
		out[i] &= (uint8_t)ok;
	return ok;
}

static void gcm_seal(const uint8_t *key, int kl, const uint8_t nonce[12], const uint8_t *aad, uint32_t aad_len,
		     const uint8_t *pt, uint32_t n, uint8_t *out_ct, uint8_t tag[16])
{
	struct gcm_ctx c;

#ifdef PXYK_HAVE_HOST
	uint32_t ok;

	if (pxyk_host && pxyk_host->gcm(1, key, (uint32_t)kl, nonce, aad, aad_len, pt, n, tag, out_ct, &ok) == 0)
		return;
#endif
	gcm_start(&c, key, kl, nonce);
	gcm_ctr(&c, pt, out_ct, n);
	gcm_tag(&c, aad, aad_len, out_ct, n, tag);
}

/* ---- CBC with a raw key --------------------------------------------------------------- */

/* AES-CBC with a raw key (enc: encrypt): the host's when lent, else the kernel's bitsliced AES */
static void cbc_crypt(int enc, const uint8_t *key, int kl, const uint8_t iv[16], const uint8_t *in, uint8_t *out,
		      uint32_t n)
{
	struct aes_key k;

#ifdef PXYK_HAVE_HOST
	if (pxyk_host && pxyk_host->cbc(enc, key, (uint32_t)kl, iv, in, out, n) == 0)
		return;
#endif
	aes_expand(&k, key, kl);
	if (enc)
		aes_cbc_encrypt(&k, iv, in, out, n);
	else
		aes_cbc_decrypt(&k, iv, in, out, n);
}

/* ---- CBC padding and MAC, constant time ------------------------------------------------ */

/* all-ones if the last pad+1 bytes all equal pad (TLS) / pad+1 (PKCS#7, tls = 0), scanning min(256, len) */
static uint32_t ct_check_padding(const uint8_t *p, uint32_t len, uint32_t pad, uint32_t tls)
{
	uint32_t to_check = len < 256 ? len : 256;
	uint32_t good = 0xffffffffu;
	/* TLS: pad+1 bytes of value pad; PKCS#7: v bytes of value v (v >= 1) */
	uint32_t count = tls ? pad + 1 : pad;
	uint32_t value = pad;

PAD_SCAN:
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t in = (uint32_t)pxyk_ltmask(i, to_check) & (uint32_t)pxyk_ltmask(i, count);
		uint32_t b = i < len ? p[len - 1 - i] : 0;

		good &= ~in | (uint32_t)pxyk_eqmask(b, value);
	}
	good &= ~(uint32_t)pxyk_ltmask(len, count); /* len >= count */
	if (!tls)
		good &= ~(uint32_t)pxyk_eqmask(pad, 0) & (uint32_t)pxyk_ltmask(pad, 17);
	return good;
}

/* mac_len bytes from the secret offset mac_start of p[0..len) (mac_start + mac_len <= len,
 * len - mac_start <= 256 + mac_len): scan a fixed window, then rotate under masks */
static void ct_copy_mac(uint8_t *out, const uint8_t *p, uint32_t len, uint32_t mac_len, uint32_t mac_start)
{
	uint8_t rotated[SHA_MAX_DIGEST];
	uint32_t scan_start = len > mac_len + 256 ? len - mac_len - 256 : 0;
	uint32_t rot = 0, j = 0;

	for (uint32_t i = 0; i < SHA_MAX_DIGEST; i++)
		rotated[i] = 0;
MAC_SCAN:
	for (uint32_t i = 0; i < 256 + SHA_MAX_DIGEST; i++) {
		uint32_t pos = scan_start + i;
		uint32_t valid = (uint32_t)pxyk_ltmask(pos, len);
		uint32_t in_mac = (uint32_t)~pxyk_ltmask(pos, mac_start) & (uint32_t)pxyk_ltmask(pos, mac_start + mac_len) & valid;
		uint8_t b = pos < len ? p[pos] : 0;

		rot |= j & (uint32_t)pxyk_eqmask(pos, mac_start) & valid;
		rotated[j] |= (uint8_t)(b & in_mac);
		j = (j + 1) & (uint32_t)pxyk_ltmask(j + 1, mac_len);
	}
MAC_ROTATE:
	for (uint32_t m = 0; m < SHA_MAX_DIGEST; m++) {
		uint32_t idx = rot + m;
		uint8_t v = 0;

		idx = (uint32_t)pxyk_sel(pxyk_ltmask(idx, mac_len), idx, idx - mac_len);
		for (uint32_t i = 0; i < SHA_MAX_DIGEST; i++)
			v |= (uint8_t)(rotated[i] & (uint8_t)pxyk_eqmask(i, idx));
		if (m < mac_len)
			out[m] = v;
	}
}

/* ---- TLS records ------------------------------------------------------------------------ */

static void tls_gcm_open(const struct pxy_k_rec_desc *d, const uint8_t *rec, uint32_t len, uint8_t *out,
			 struct pxy_k_rec_result *r)
{
	uint8_t nonce[12], aad[13];
	uint32_t n;

	if (len < 5 + 8 + 16)
		return; /* public: too short for this suite */
	n = len - 5 - 8 - 16;
	pxyk_copy(nonce, d->iv, 4);
	pxyk_copy(nonce + 4, rec + 5, 8);
	mac_header(aad, d->seq, rec[0], rec + 1, n);
	r->ok = gcm_open(d->key, bulk_key_len(d->bulk), nonce, aad, 13, rec + 13, n, rec + 13 + n, out) & 1;
	r->out_len = n & (0 - r->ok);
}

static void tls_cbc_open(const struct pxy_k_rec_desc *d, const uint8_t *rec, uint32_t len, uint8_t *out,
			 struct pxy_k_rec_result *r)
{
	uint32_t flen = len - 5, explicit_iv = d->version >= 0x0302 ? 16 : 0, maclen = sha_digest_len(d->mac);
	const uint8_t *frag = rec + 5, *iv = explicit_iv ? frag : d->iv;
	uint8_t hdr[13], calc[SHA_MAX_DIGEST], got[SHA_MAX_DIGEST];
	uint32_t ctlen, pad, good;

	if (d->mac < SHA_1 || d->mac > SHA_384 || len < 5)
		return;
	if (d->etm) {
		uint32_t enc_len;

		if (flen < explicit_iv + 16 + maclen || (flen - maclen - explicit_iv) % 16)
			return;
		enc_len = flen - maclen;
		mac_header(hdr, d->seq, rec[0], rec + 1, enc_len);
		hmac(d->mac, d->mac_key, d->mac_key_len, hdr, 13, frag, enc_len, calc);
		good = ct_eq_bytes(calc, frag + enc_len, maclen);
		ctlen = enc_len - explicit_iv;
		cbc_crypt(0, d->key, bulk_key_len(d->bulk), iv, frag + explicit_iv, out, ctlen);
		pad = out[ctlen - 1];
		good &= ct_check_padding(out, ctlen, pad, 1);
		r->out_len = (ctlen - pad - 1) & good;
	} else {
		uint32_t data_len, max_data;

		if (flen < explicit_iv + 16 || (flen - explicit_iv) % 16 || flen - explicit_iv < maclen + 1)
			return;
		ctlen = flen - explicit_iv;
		cbc_crypt(0, d->key, bulk_key_len(d->bulk), iv, frag + explicit_iv, out, ctlen);
		pad = out[ctlen - 1];
		good = ct_check_padding(out, ctlen, pad, 1) & ~(uint32_t)pxyk_ltmask(ctlen, pad + 1 + maclen);
		/* RFC 5246 §6.2.3.2: with a bad padding, compute the MAC as if there were none */
		pad &= good;
		max_data = ctlen - 1 - maclen;
		data_len = max_data - pad;
		mac_header(hdr, d->seq, rec[0], rec + 1, data_len);
		hmac_ct(d->mac, d->mac_key, d->mac_key_len, hdr, out, data_len, max_data, calc);
		ct_copy_mac(got, out, ctlen, maclen, data_len);
		good &= ct_eq_bytes(calc, got, maclen);
		r->out_len = data_len & good;
	}
	for (uint32_t i = 0; i < ctlen; i++)
		out[i] &= (uint8_t)good;
	r->ok = good & 1;
}

static void tls_seal(const struct pxy_k_rec_desc *d, const uint8_t *pt_rec, uint32_t len, uint8_t *out,
		     struct pxy_k_rec_result *r)
{
	uint32_t n = len - 5;
	uint8_t hdr[13];

	pxyk_copy(out, pt_rec, 5);
	if (d->bulk == BULK_AES_128_GCM || d->bulk == BULK_AES_256_GCM) {
		uint8_t nonce[12];

		/* the explicit nonce is the sequence number */
		pxyk_put_be64(out + 5, d->seq);
		pxyk_copy(nonce, d->iv, 4);
		pxyk_copy(nonce + 4, out + 5, 8);
		mac_header(hdr, d->seq, pt_rec[0], pt_rec + 1, n);
		gcm_seal(d->key, bulk_key_len(d->bulk), nonce, hdr, 13, pt_rec + 5, n, out + 13, out + 13 + n);
		r->out_len = 5 + 8 + n + 16;
	} else {
		uint32_t explicit_iv = d->version >= 0x0302 ? 16 : 0, maclen = sha_digest_len(d->mac);
		uint8_t *body = out + 5 + explicit_iv;
		uint32_t m = n, padded, pad;

		if (explicit_iv)
			pxyk_copy(out + 5, d->iv, 16);
		pxyk_copy(body, pt_rec + 5, n);
		if (!d->etm) {
			mac_header(hdr, d->seq, pt_rec[0], pt_rec + 1, n);
			hmac(d->mac, d->mac_key, d->mac_key_len, hdr, 13, pt_rec + 5, n, body + n);
			m += maclen;
		}
		padded = (m / 16 + 1) * 16;
		pad = padded - m - 1;
		for (uint32_t i = m; i < padded; i++)
			body[i] = (uint8_t)pad;
		cbc_crypt(1, d->key, bulk_key_len(d->bulk), d->iv, body, body, padded);
		if (d->etm) {
			mac_header(hdr, d->seq, pt_rec[0], pt_rec + 1, explicit_iv + padded);
			hmac(d->mac, d->mac_key, d->mac_key_len, hdr, 13, out + 5, explicit_iv + padded, body + padded);
			padded += maclen;
		}
		r->out_len = 5 + explicit_iv + padded;
	}
	out[3] = (uint8_t)((r->out_len - 5) >> 8);
	out[4] = (uint8_t)(r->out_len - 5);
	r->ok = 1;
}

/* What a seal can grow a record by, at most: explicit IV or nonce, MAC, padding block. */
#define SEAL_GROWTH (16 + 48 + 16)

static void rec_one(const struct pxy_k_rec_desc *d, const uint8_t *in, uint8_t *out, struct pxy_k_rec_result *r)
{
	const uint8_t *src = in + d->in_off;
	uint8_t *dst = out + d->out_off;
	int kl = bulk_key_len(d->bulk);
	uint32_t gcm = d->bulk == BULK_AES_128_GCM || d->bulk == BULK_AES_256_GCM;

	r->ok = 0;
	r->out_len = 0;
	r->flags = 0;
	for (int i = 0; i < 64; i++)
		r->mac[i] = 0;
	switch (d->op) {
	case PXY_K_OP_TLS_OPEN:
		if (d->in_len < 5 || d->out_cap < d->in_len)
			goto bad;
		if (gcm)
			tls_gcm_open(d, src, d->in_len, dst, r);
		else
			tls_cbc_open(d, src, d->in_len, dst, r);
		break;
	case PXY_K_OP_TLS_SEAL:
		if (d->in_len < 5 || d->in_len - 5 > 16384 || d->out_cap < d->in_len + SEAL_GROWTH ||
		    (!gcm && (d->mac < SHA_1 || d->mac > SHA_384)))
			goto bad;
		tls_seal(d, src, d->in_len, dst, r);
		break;
	case PXY_K_OP_GCM_OPEN:
		if (d->aad_len > d->in_len || d->in_len - d->aad_len < 16 || d->out_cap < d->in_len)
			goto bad;
		{
			uint32_t n = d->in_len - d->aad_len - 16;
			r->ok = gcm_open(d->key, kl, d->iv, src, d->aad_len, src + d->aad_len, n, src + d->aad_len + n,
					 dst) & 1;
			r->out_len = n & (0 - r->ok);
		}
		break;
	case PXY_K_OP_GCM_SEAL:
		if (d->aad_len > d->in_len || d->out_cap < d->in_len - d->aad_len + 16)
			goto bad;
		{
			uint32_t n = d->in_len - d->aad_len;
			gcm_seal(d->key, kl, d->iv, src, d->aad_len, src + d->aad_len, n, dst, dst + n);
			r->out_len = n + 16;
			r->ok = 1;
		}
		break;
	case PXY_K_OP_CBC_DEC:
		if (d->in_len == 0 || d->in_len % 16 || d->out_cap < d->in_len)
			goto bad;
		{
			uint32_t pad, good;

			cbc_crypt(0, d->key, kl, d->iv, src, dst, d->in_len);
			pad = dst[d->in_len - 1];
			good = ct_check_padding(dst, d->in_len, pad, 0);
			for (uint32_t i = 0; i < d->in_len; i++)
				dst[i] &= (uint8_t)good;
			r->ok = good & 1;
			r->out_len = (d->in_len - pad) & good;
		}
		break;
	case PXY_K_OP_HMAC:
		if (d->mac < SHA_1 || d->mac > SHA_384 || d->mac_key_len > sha_block_len(d->mac))
			goto bad;
		hmac(d->mac, d->mac_key, d->mac_key_len, src, 0, src, d->in_len, r->mac);
		r->out_len = sha_digest_len(d->mac);
		r->ok = 1;
		break;
	default:
		goto bad;
	}
	r->status = PXY_K_DONE;
	return;
bad:
	r->flags = PXY_K_F_BADDESC;
	r->status = PXY_K_DONE;
}

void tls_record_crypt(const struct pxy_k_rec_desc *descs, const uint8_t *in, uint8_t *out,
		      struct pxy_k_rec_result *results, uint32_t n_descs)
{
#pragma HLS INTERFACE m_axi port = descs offset = slave bundle = gmem0 depth = 128
#pragma HLS INTERFACE m_axi port = in offset = slave bundle = gmem1 depth = 2375680
#pragma HLS INTERFACE m_axi port = out offset = slave bundle = gmem2 depth = 2375680
#pragma HLS INTERFACE m_axi port = results offset = slave bundle = gmem3 depth = 128
#pragma HLS INTERFACE s_axilite port = descs
#pragma HLS INTERFACE s_axilite port = in
#pragma HLS INTERFACE s_axilite port = out
#pragma HLS INTERFACE s_axilite port = results
#pragma HLS INTERFACE s_axilite port = n_descs
#pragma HLS INTERFACE s_axilite port = return
	struct pxy_k_rec_desc d;
	struct pxy_k_rec_result r;

REC_BATCH:
	for (uint32_t i = 0; i < PXY_K_REC_MAX_BATCH; i++) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 128
		if (i >= n_descs)
			break;
		pxyk_copy_words(&d, &descs[i], sizeof(d));
		/* every slot is PXY_K_REC_SLOT bytes: a descriptor may not reach outside its own */
		if (d.in_off % PXY_K_REC_SLOT || d.out_off % PXY_K_REC_SLOT || d.in_off / PXY_K_REC_SLOT >= PXY_K_REC_MAX_BATCH ||
		    d.out_off / PXY_K_REC_SLOT >= PXY_K_REC_MAX_BATCH || d.in_len > PXY_K_REC_SLOT ||
		    d.out_cap > PXY_K_REC_SLOT) {
			r.status = PXY_K_DONE;
			r.flags = PXY_K_F_BADDESC;
			r.ok = 0;
			r.out_len = 0;
			for (int j = 0; j < 64; j++)
				r.mac[j] = 0;
		} else {
			rec_one(&d, in, out, &r);
		}
		pxyk_copy_words(&results[i], &r, sizeof(r));
	}
}
