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
 *             constant time; the plaintext is released only with it.
 *   seal      the inverse, for RECORD_SEAL jobs.
 *
 * Descriptors are checked against the buffers' bounds first (public data):
 * a bad one is flagged, never followed.
 *
 * Microarchitecture. The batch runs in groups of REC_G records through four
 * stages that overlap across groups (DATAFLOW: while one group is being
 * stored, the next is being decrypted, the one after loaded):
 *
 *   setup   descriptors, checks, AES key expansion          (descs ->)
 *   load    the records, 512-bit beats, into local buffers   (in ->)
 *   crypt   per record, one beat per cycle: GCM as one pass of CTR and
 *           GHASH (8 blocks per 2 cycles: two passes of the unrolled AES
 *           pipeline, 8 GHASH products on 4 multipliers); CBC decryption 4
 *           blocks per cycle; padding checks; the received MAC; the MAC
 *           units' input copied into their own buffers
 *   finish  the group's HMACs on REC_G units at once (one record each: a
 *           MAC is serial within a record, parallel across records); the
 *           verdicts; the plaintext out under the verdict's mask (-> out)
 *
 * Every loop carries its trip count (LOOP_TRIPCOUNT: min, max, avg for
 * 16 KiB records) and, for firmware/perf_model.py, PXYK_TRIP and the pragmas
 * its cycle count depends on.
 *
 * With the host's arithmetic (emulation only, kernel_abi.h), records are read
 * where they lie in `in` and written in place in `out`, as a card's DMA
 * costs the host nothing; the synthesis form always stages them.
 */
#include "aes.h"
#include "ghash.h"
#include "sha.h"

#define BULK_AES_128_GCM 1
#define BULK_AES_256_GCM 2
#define BULK_AES_128_CBC 3
#define BULK_AES_256_CBC 4

/* ---- geometry (firmware/perf_model.py reads these) ----------------------------------- */

#define REC_G 16      /* records per group: HMAC units in the finish stage */
#define REC_BEAT 64   /* bytes per AXI beat (512 bits) */
#define GCM_CH (AES_BLOCKS > GH_L ? AES_BLOCKS : GH_L) /* blocks per GCM chunk: 8 (synthesis) */
/* a local record buffer: a slot, and room for a whole AES pass read past its end */
#define REC_BUF (PXY_K_REC_SLOT + 16 * AES_BLOCKS + REC_BEAT)

/* What a seal can grow a record by, at most: explicit IV or nonce, MAC, padding block. */
#define SEAL_GROWTH (16 + 48 + 16)

enum { MAC_NONE = 0, MAC_MTE = 1, MAC_ETM = 2, MAC_RAW = 3 };

PXYK_INLINE int bulk_key_len(uint32_t bulk)
{
	return bulk == BULK_AES_128_GCM || bulk == BULK_AES_128_CBC ? 16 : 32;
}

PXYK_INLINE int bulk_gcm(uint32_t bulk)
{
	return bulk == BULK_AES_128_GCM || bulk == BULK_AES_256_GCM;
}

/* setup -> crypt */
struct rec_ctx {
	struct pxy_k_rec_desc d;
	uint32_t go;    /* the operation runs (else its result is final: a bad descriptor, a record too short) */
	uint32_t flags; /* PXY_K_F_BADDESC */
	struct aes_key key;
};

/* setup -> load */
struct rec_ld {
	uint32_t off, len;
};

/* crypt -> finish */
struct rec_st {
	uint32_t ok;       /* the verdict so far: all-ones if good */
	uint32_t out_len;  /* the result's length if good */
	uint32_t store;    /* bytes of output to write (public) */
	uint32_t flags;
	uint32_t mac_kind; /* MAC_*: what finish computes */
	uint32_t mac_alg, mac_key_len, mac_len; /* mac_len: public length (MtE: the most the data can be) */
	uint32_t data_len; /* MtE: the data's length (secret) */
	uint32_t in_off, out_off;
	uint8_t hdr[13];
	uint8_t got[SHA_MAX_DIGEST]; /* the record's own MAC */
	uint8_t mac_key[PXY_K_MAC_KEY_MAX];
};

static void mac_header(uint8_t h[13], uint64_t seq, uint8_t type, const uint8_t *ver, uint32_t len)
{
	pxyk_put_be64(h, seq);
	h[8] = type;
	h[9] = ver[0];
	h[10] = ver[1];
	h[11] = (uint8_t)(len >> 8);
	h[12] = (uint8_t)len;
}

/* all-ones if the n (<= 48) bytes are equal */
static uint32_t ct_eq_bytes(const uint8_t *a, const uint8_t *b, uint32_t n)
{
	uint32_t acc = 0;

EQ_BYTES:
	for (uint32_t i = 0; i < SHA_MAX_DIGEST; i++) {
#pragma HLS UNROLL
#pragma HLS LOOP_TRIPCOUNT min = 48 max = 48
		if (i < n)
			acc |= (uint32_t)(a[i] ^ b[i]);
	}
	return (uint32_t)pxyk_eqmask(acc, 0);
}

/* n bytes (public), a beat per cycle; the buffers may be at any offset */
static void copy_beats(uint8_t *d, const uint8_t *s, uint32_t n)
{
COPY_BEATS:
	for (uint32_t off = 0; off < n; off += REC_BEAT) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 0 max = 290 avg = 257
		PXYK_TRIP(COPY_BEATS);
	COPY_BEAT_BYTES:
		for (uint32_t i = 0; i < REC_BEAT; i++) {
#pragma HLS UNROLL
#pragma HLS LOOP_TRIPCOUNT min = 64 max = 64
			if (off + i < n)
				d[off + i] = s[off + i];
		}
	}
}

/* ---- GCM --------------------------------------------------------------------------------- */

/*
 * One GCM operation: CTR over n bytes from ib[src..) to ob[dst..) (separate
 * buffers), GHASH over the AAD (hdr when aad_hdr, else ib[0..alen)) and
 * the ciphertext (the input when opening, the output when sealing), and the
 * tag. The GHASH stream is padded in front with zero blocks (which leave it
 * unchanged) to whole groups of GH_L blocks, the length block last; one
 * chunk of GCM_CH stream blocks per iteration, with the keystream of the
 * ciphertext blocks that fall in it.
 */
static void gcm_record(const struct aes_key *k, const uint8_t nonce[12], const uint8_t hdr[13], int aad_hdr,
		       uint32_t alen, const uint8_t *ib, uint32_t src, uint8_t *ob, uint32_t dst, uint32_t n, int seal,
		       uint8_t tag[16])
{
	/* one AES pipeline (a beat per cycle): a chunk's GCM_CH blocks in two */
#pragma HLS ALLOCATION function instances = aes_encrypt_blocks limit = 1
	uint8_t first[16 * AES_BLOCKS], lenb[16];
	struct ghash_key gh;
	struct gh_state y;
	uint32_t ab = (alen + 15) / 16, cb = (n + 15) / 16;
	uint32_t fill = (GH_L - (ab + cb + 1) % GH_L) % GH_L, total = fill + ab + cb + 1;

	/* one pass: block 0 the zero block (H), block 1 J0 (for the tag) */
	pxyk_zero(first, sizeof(first));
	pxyk_copy(first + 16, nonce, 12);
	first[31] = 1;
	aes_encrypt_blocks(k, first);
	ghash_init(&gh, first);
	gh_start(&y);
	pxyk_put_be64(lenb, (uint64_t)alen * 8);
	pxyk_put_be64(lenb + 8, (uint64_t)n * 8);

GCM_CHUNKS:
	for (uint32_t v0 = 0; v0 < total; v0 += GCM_CH) {
#pragma HLS PIPELINE II = 2
#pragma HLS LATENCY max = 48
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 130 avg = 129
		PXYK_TRIP(GCM_CHUNKS);
		uint8_t ks[16 * GCM_CH], blk[16 * GCM_CH];
		uint32_t j0 = v0 - fill - ab; /* the chunk's first ciphertext block (mod 2^32) */

	GCM_COUNTERS:
		for (uint32_t t = 0; t < GCM_CH; t++) {
#pragma HLS UNROLL
#pragma HLS LOOP_TRIPCOUNT min = 8 max = 32
			pxyk_copy(ks + 16 * t, nonce, 12);
			pxyk_put_be32(ks + 16 * t + 12, 2 + j0 + t); /* inc32(J0) is the first */
		}
	GCM_PASSES:
		for (uint32_t p = 0; p < GCM_CH / AES_BLOCKS; p++) {
#pragma HLS UNROLL
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 2
			aes_encrypt_blocks(k, ks + 16 * AES_BLOCKS * p);
		}
	GCM_BYTES:
		for (uint32_t i = 0; i < 16 * GCM_CH; i++) {
#pragma HLS UNROLL
#pragma HLS LOOP_TRIPCOUNT min = 128 max = 512
			uint32_t v = v0 + i / 16, o = i % 16;
			uint8_t x = 0;

			if (v >= fill && v < fill + ab) {
				uint32_t a = 16 * (v - fill) + o;

				if (a < alen)
					x = aad_hdr ? hdr[a] : ib[a];
			} else if (v >= fill + ab && v < fill + ab + cb) {
				uint32_t pos = 16 * (v - fill - ab) + o;

				if (pos < n) {
					uint8_t in = ib[src + pos], c = (uint8_t)(in ^ ks[i]);

					ob[dst + pos] = c;
					x = seal ? c : in;
				}
			} else if (v == total - 1) {
				x = lenb[o];
			}
			blk[i] = x;
		}
	GCM_GROUPS:
		for (uint32_t q = 0; q < GCM_CH / GH_L; q++) {
#pragma HLS UNROLL
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 4
			/* the stream is whole groups, not always whole chunks */
			if (v0 + GH_L * q < total)
				gh_group(&y, &gh, blk + 16 * GH_L * q, v0 + GH_L * (q + 1) == total);
		}
	}
	gh_finish(&y, tag);
GCM_TAG:
	for (int i = 0; i < 16; i++) {
#pragma HLS UNROLL
#pragma HLS LOOP_TRIPCOUNT min = 16 max = 16
		tag[i] ^= first[16 + i];
	}
}

/* GCM through the host's arithmetic when lent (emulation): 1 if it did; *ok for an open */
static int gcm_host(int seal, const struct pxy_k_rec_desc *d, const uint8_t nonce[12], const uint8_t *aad,
		    uint32_t alen, const uint8_t *in, uint32_t n, uint8_t *tag, uint8_t *out, uint32_t *ok)
{
#ifdef PXYK_HAVE_HOST
	if (pxyk_host && pxyk_host->gcm(seal, d->key, (uint32_t)bulk_key_len(d->bulk), nonce, aad, alen, in, n, tag, out,
					ok) == 0)
		return 1;
#else
	(void)seal;
	(void)d;
	(void)nonce;
	(void)aad;
	(void)alen;
	(void)in;
	(void)n;
	(void)tag;
	(void)out;
	(void)ok;
#endif
	return 0;
}

/* ---- CBC ------------------------------------------------------------------------------------ */

/* AES-CBC: the host's when lent, else the kernel's bitsliced AES with the expanded key */
static void cbc_crypt(int enc, const struct aes_key *k, const struct pxy_k_rec_desc *d, const uint8_t iv[16],
		      const uint8_t *in, uint8_t *out, uint32_t n)
{
#ifdef PXYK_HAVE_HOST
	if (pxyk_host && pxyk_host->cbc(enc, d->key, (uint32_t)bulk_key_len(d->bulk), iv, in, out, n) == 0)
		return;
#else
	(void)d;
#endif
	if (enc)
		aes_cbc_encrypt(k, iv, in, out, n);
	else
		aes_cbc_decrypt(k, iv, in, out, n);
}

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
#pragma HLS PIPELINE II = 1
#pragma HLS UNROLL factor = 64
#pragma HLS LATENCY max = 4
#pragma HLS LOOP_TRIPCOUNT min = 256 max = 256
		PXYK_TRIP(PAD_SCAN);
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

	pxyk_zero(rotated, SHA_MAX_DIGEST);
MAC_SCAN:
	for (uint32_t i = 0; i < 256 + SHA_MAX_DIGEST; i++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LATENCY max = 3
#pragma HLS LOOP_TRIPCOUNT min = 304 max = 304
		PXYK_TRIP(MAC_SCAN);
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
#pragma HLS PIPELINE II = 1
#pragma HLS LATENCY max = 3
#pragma HLS LOOP_TRIPCOUNT min = 48 max = 48
		PXYK_TRIP(MAC_ROTATE);
		uint32_t idx = rot + m;
		uint8_t v = 0;

		idx = (uint32_t)pxyk_sel(pxyk_ltmask(idx, mac_len), idx, idx - mac_len);
	MAC_ROTATE_SCAN:
		for (uint32_t i = 0; i < SHA_MAX_DIGEST; i++) {
#pragma HLS UNROLL
#pragma HLS LOOP_TRIPCOUNT min = 48 max = 48
			v |= (uint8_t)(rotated[i] & (uint8_t)pxyk_eqmask(i, idx));
		}
		if (m < mac_len)
			out[m] = v;
	}
}

/* ---- the operations (crypt stage) --------------------------------------------------------------- */

/*
 * The record's nonce and AAD. TLS 1.2 (RFC 5288): salt (4) || the record's
 * explicit nonce (8); AAD seq || type || version || length (13). TLS 1.3
 * (RFC 8446 §5.2-5.3): the 12-byte IV XOR the sequence number, nothing in the
 * record; AAD the record header (5), the length being the ciphertext's.
 */
static uint32_t gcm_nonce_aad(const struct pxy_k_rec_desc *d, const uint8_t *hdr5, const uint8_t *explicit_nonce,
			      uint32_t n, uint32_t frag_len, uint8_t nonce[12], uint8_t aad[13])
{
	if (d->version >= 0x0304) {
		uint8_t sb[8];

		pxyk_copy(nonce, d->iv, 12);
		pxyk_put_be64(sb, d->seq);
	GCM13_NONCE:
		for (int i = 0; i < 8; i++) {
#pragma HLS UNROLL
#pragma HLS LOOP_TRIPCOUNT min = 8 max = 8
			nonce[4 + i] ^= sb[i];
		}
		pxyk_copy(aad, hdr5, 3);
		aad[3] = (uint8_t)(frag_len >> 8);
		aad[4] = (uint8_t)frag_len;
		return 5;
	}
	pxyk_copy(nonce, d->iv, 4);
	pxyk_copy(nonce + 4, explicit_nonce, 8);
	mac_header(aad, d->seq, hdr5[0], hdr5 + 1, n);
	return 13;
}

static void tls_gcm_open(const struct rec_ctx *c, const uint8_t *ib, uint8_t *ob, struct rec_st *t)
{
	const struct pxy_k_rec_desc *d = &c->d;
	/* TLS 1.3: the plaintext opened still ends with the content type and padding (the host reads them) */
	uint32_t riv = d->version >= 0x0304 ? 0 : 8, n = d->in_len - 5 - riv - 16, ok, alen;
	uint8_t nonce[12], hdr[13], calc[16];

	alen = gcm_nonce_aad(d, ib, ib + 5, n, d->in_len - 5, nonce, hdr);
	if (gcm_host(0, d, nonce, hdr, alen, ib + 5 + riv, n, (uint8_t *)ib + 5 + riv + n, ob, &ok)) {
		t->ok = 0 - (ok & 1);
	} else {
		gcm_record(&c->key, nonce, hdr, 1, alen, ib, 5 + riv, ob, 0, n, 0, calc);
		t->ok = ct_eq_bytes(calc, ib + 5 + riv + n, 16);
	}
	t->out_len = n;
	t->store = n;
}

static void tls_gcm_seal(const struct rec_ctx *c, const uint8_t *ib, uint8_t *ob, struct rec_st *t)
{
	const struct pxy_k_rec_desc *d = &c->d;
	/* TLS 1.3: `in` is the header and the inner plaintext (content, type, padding) */
	uint32_t riv = d->version >= 0x0304 ? 0 : 8, n = d->in_len - 5, ok, alen;
	uint8_t nonce[12], hdr[13];

	pxyk_copy(ob, ib, 5);
	t->out_len = 5 + riv + n + 16;
	ob[3] = (uint8_t)((t->out_len - 5) >> 8);
	ob[4] = (uint8_t)(t->out_len - 5);
	/* TLS 1.2: the explicit nonce is the sequence number */
	if (riv)
		pxyk_put_be64(ob + 5, d->seq);
	alen = gcm_nonce_aad(d, ob, ob + 5, n, t->out_len - 5, nonce, hdr);
	if (!gcm_host(1, d, nonce, hdr, alen, ib + 5, n, ob + 5 + riv + n, ob + 5 + riv, &ok))
		gcm_record(&c->key, nonce, hdr, 1, alen, ib, 5, ob, 5 + riv, n, 1, ob + 5 + riv + n);
	t->ok = 0xffffffffu;
	t->store = t->out_len;
}

static void raw_gcm(const struct rec_ctx *c, const uint8_t *ib, uint8_t *ob, struct rec_st *t)
{
	const struct pxy_k_rec_desc *d = &c->d;
	uint32_t a = d->aad_len, ok;
	uint8_t calc[16];

	if (d->op == PXY_K_OP_GCM_OPEN) {
		uint32_t n = d->in_len - a - 16;

		if (gcm_host(0, d, d->iv, ib, a, ib + a, n, (uint8_t *)ib + a + n, ob, &ok)) {
			t->ok = 0 - (ok & 1);
		} else {
			gcm_record(&c->key, d->iv, d->iv, 0, a, ib, a, ob, 0, n, 0, calc);
			t->ok = ct_eq_bytes(calc, ib + a + n, 16);
		}
		t->out_len = n;
		t->store = n;
	} else {
		uint32_t n = d->in_len - a;

		if (!gcm_host(1, d, d->iv, ib, a, ib + a, n, ob + n, ob, &ok))
			gcm_record(&c->key, d->iv, d->iv, 0, a, ib, a, ob, 0, n, 1, ob + n);
		t->out_len = n + 16;
		t->store = n + 16;
		t->ok = 0xffffffffu;
	}
}

/* mb: where finish reads an encrypt-then-MAC record's MAC input (the IV and ciphertext) */
static void tls_cbc_open(const struct rec_ctx *c, const uint8_t *ib, uint8_t *ob, uint8_t *mb, int copy_mac_input,
			 struct rec_st *t)
{
	const struct pxy_k_rec_desc *d = &c->d;
	uint32_t flen = d->in_len - 5, explicit_iv = d->version >= 0x0302 ? 16 : 0, maclen = sha_digest_len(d->mac);
	const uint8_t *iv = explicit_iv ? ib + 5 : d->iv;
	uint32_t ctlen, pad, good;

	if (d->etm) {
		uint32_t enc_len = flen - maclen;

		mac_header(t->hdr, d->seq, ib[0], ib + 1, enc_len);
		if (copy_mac_input)
			copy_beats(mb, ib + 5, enc_len);
		pxyk_copy(t->got, ib + 5 + enc_len, maclen);
		ctlen = enc_len - explicit_iv;
		cbc_crypt(0, &c->key, d, iv, ib + 5 + explicit_iv, ob, ctlen);
		pad = ob[ctlen - 1];
		good = ct_check_padding(ob, ctlen, pad, 1);
		t->mac_kind = MAC_ETM;
		t->mac_len = enc_len;
		t->out_len = ctlen - pad - 1;
	} else {
		uint32_t data_len, max_data;

		ctlen = flen - explicit_iv;
		cbc_crypt(0, &c->key, d, iv, ib + 5 + explicit_iv, ob, ctlen);
		pad = ob[ctlen - 1];
		good = ct_check_padding(ob, ctlen, pad, 1) & ~(uint32_t)pxyk_ltmask(ctlen, pad + 1 + maclen);
		/* RFC 5246 §6.2.3.2: with a bad padding, compute the MAC as if there were none */
		pad &= good;
		max_data = ctlen - 1 - maclen;
		data_len = max_data - pad;
		mac_header(t->hdr, d->seq, ib[0], ib + 1, data_len);
		ct_copy_mac(t->got, ob, ctlen, maclen, data_len);
		/* the MAC units read their own copy, so that the plaintext buffers need no port per record */
		if (copy_mac_input)
			copy_beats(mb, ob, max_data);
		t->mac_kind = MAC_MTE;
		t->mac_len = max_data;
		t->data_len = data_len;
		t->out_len = data_len;
	}
	t->ok = good;
	t->store = ctlen;
}

/* MAC-then-encrypt or encrypt-then-MAC, serial: the MAC (MtE) before, CBC after, each block after the last */
static void tls_cbc_seal(const struct rec_ctx *c, const uint8_t *ib, uint8_t *ob, struct rec_st *t)
{
	const struct pxy_k_rec_desc *d = &c->d;
	uint32_t n = d->in_len - 5, explicit_iv = d->version >= 0x0302 ? 16 : 0, maclen = sha_digest_len(d->mac);
	uint8_t *body = ob + 5 + explicit_iv;
	uint32_t m = n, padded, pad;
	uint8_t hdr[13];

	pxyk_copy(ob, ib, 5);
	if (explicit_iv)
		pxyk_copy(ob + 5, d->iv, 16);
	copy_beats(body, ib + 5, n);
	if (!d->etm) {
		mac_header(hdr, d->seq, ib[0], ib + 1, n);
		hmac(d->mac, d->mac_key, d->mac_key_len, hdr, 13, ib + 5, n, body + n);
		m += maclen;
	}
	padded = (m / 16 + 1) * 16;
	pad = padded - m - 1;
SEAL_PAD:
	for (uint32_t i = 0; i < 16; i++) {
#pragma HLS UNROLL
#pragma HLS LOOP_TRIPCOUNT min = 16 max = 16
		if (m + i < padded)
			body[m + i] = (uint8_t)pad;
	}
	cbc_crypt(1, &c->key, d, d->iv, body, body, padded);
	if (d->etm) {
		mac_header(hdr, d->seq, ib[0], ib + 1, explicit_iv + padded);
		hmac(d->mac, d->mac_key, d->mac_key_len, hdr, 13, ob + 5, explicit_iv + padded, body + padded);
		padded += maclen;
	}
	t->out_len = 5 + explicit_iv + padded;
	ob[3] = (uint8_t)((t->out_len - 5) >> 8);
	ob[4] = (uint8_t)(t->out_len - 5);
	t->ok = 0xffffffffu;
	t->store = t->out_len;
}

static void raw_cbc_dec(const struct rec_ctx *c, const uint8_t *ib, uint8_t *ob, struct rec_st *t)
{
	const struct pxy_k_rec_desc *d = &c->d;
	uint32_t n = d->in_len, pad;

	cbc_crypt(0, &c->key, d, d->iv, ib, ob, n);
	pad = ob[n - 1];
	t->ok = ct_check_padding(ob, n, pad, 0);
	t->out_len = n - pad;
	t->store = n;
}

/* ---- the stages ------------------------------------------------------------------------------------ */

/* PXY_K_F_BADDESC, or 0 with *go = 1 if the operation runs (0: its result is no output) */
static uint32_t rec_check(const struct pxy_k_rec_desc *d, uint32_t *go)
{
	uint32_t gcm = (uint32_t)bulk_gcm(d->bulk), maclen = sha_digest_len(d->mac), mac_ok = d->mac >= SHA_1 && d->mac <= SHA_384;
	uint32_t flen = d->in_len - 5, explicit_iv = d->version >= 0x0302 ? 16 : 0;

	*go = 0;
	/* every slot is PXY_K_REC_SLOT bytes: a descriptor may not reach outside its own */
	if (d->in_off % PXY_K_REC_SLOT || d->out_off % PXY_K_REC_SLOT || d->in_off / PXY_K_REC_SLOT >= PXY_K_REC_MAX_BATCH ||
	    d->out_off / PXY_K_REC_SLOT >= PXY_K_REC_MAX_BATCH || d->in_len > PXY_K_REC_SLOT || d->out_cap > PXY_K_REC_SLOT)
		return PXY_K_F_BADDESC;
	switch (d->op) {
	case PXY_K_OP_TLS_OPEN:
		if (d->in_len < 5 || d->out_cap < d->in_len)
			return PXY_K_F_BADDESC;
		/* TLS 1.3 records are AEAD only */
		if (d->version >= 0x0304 && !gcm)
			return PXY_K_F_BADDESC;
		/* public: too short for the suite, or not whole blocks: no output, not authentic */
		if (gcm)
			*go = d->in_len >= 5 + (d->version >= 0x0304 ? 0u : 8u) + 16;
		else if (!mac_ok)
			*go = 0;
		else if (d->etm)
			*go = flen >= explicit_iv + 16 + maclen && (flen - maclen - explicit_iv) % 16 == 0;
		else
			*go = flen >= explicit_iv + 16 && (flen - explicit_iv) % 16 == 0 && flen - explicit_iv >= maclen + 1;
		return 0;
	case PXY_K_OP_TLS_SEAL:
		if (d->in_len < 5 || d->in_len - 5 > 16384 + 256 || d->out_cap < d->in_len + SEAL_GROWTH || (!gcm && !mac_ok) ||
		    (d->version >= 0x0304 && !gcm))
			return PXY_K_F_BADDESC;
		break;
	case PXY_K_OP_GCM_OPEN:
		if (d->aad_len > d->in_len || d->in_len - d->aad_len < 16 || d->out_cap < d->in_len)
			return PXY_K_F_BADDESC;
		break;
	case PXY_K_OP_GCM_SEAL:
		if (d->aad_len > d->in_len || d->out_cap < d->in_len - d->aad_len + 16)
			return PXY_K_F_BADDESC;
		break;
	case PXY_K_OP_CBC_DEC:
		if (d->in_len == 0 || d->in_len % 16 || d->out_cap < d->in_len)
			return PXY_K_F_BADDESC;
		break;
	case PXY_K_OP_HMAC:
		if (!mac_ok || d->mac_key_len > sha_block_len(d->mac))
			return PXY_K_F_BADDESC;
		break;
	default:
		return PXY_K_F_BADDESC;
	}
	*go = 1;
	return 0;
}

static void rec_setup(const struct pxy_k_rec_desc *descs, uint32_t g0, uint32_t n, struct rec_ctx ctx[REC_G],
		      struct rec_ld ld[REC_G])
{
	uint32_t cnt = n - g0 < REC_G ? n - g0 : REC_G;

SETUP_RECS:
	for (uint32_t r = 0; r < cnt; r++) {
#pragma HLS PIPELINE off
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 16 avg = 16
		PXYK_TRIP(SETUP_RECS);
		struct rec_ctx *c = &ctx[r];

		pxyk_copy_words(&c->d, &descs[g0 + r], sizeof(c->d));
		c->flags = rec_check(&c->d, &c->go);
		ld[r].off = c->d.in_off;
		ld[r].len = c->go ? c->d.in_len : 0;
		/* the key schedule, whatever the operation (HMAC has none: its key is then unused) */
		aes_expand(&c->key, c->d.key, bulk_key_len(c->d.bulk));
	}
}

static void rec_load(const uint8_t *in, uint32_t g0, uint32_t n, const struct rec_ld ld[REC_G], int direct,
		     uint8_t ibuf[REC_G][REC_BUF])
{
	uint32_t cnt = n - g0 < REC_G ? n - g0 : REC_G;

LOAD_RECS:
	for (uint32_t r = 0; r < cnt; r++) {
#pragma HLS PIPELINE off
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 16 avg = 16
		PXYK_TRIP(LOAD_RECS);
	LOAD_BEATS:
		for (uint32_t off = 0; !direct && off < ld[r].len; off += REC_BEAT) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 0 max = 289 avg = 257
			PXYK_TRIP(LOAD_BEATS);
		LOAD_BYTES:
			for (uint32_t i = 0; i < REC_BEAT; i++) {
#pragma HLS UNROLL
#pragma HLS LOOP_TRIPCOUNT min = 64 max = 64
				ibuf[r][off + i] = in[ld[r].off + off + i];
			}
		}
	}
}

static void rec_crypt(const struct rec_ctx ctx[REC_G], const uint8_t ibuf[REC_G][REC_BUF], const uint8_t *in,
		      uint8_t *out, uint32_t g0, uint32_t n, int direct, uint8_t obuf[REC_G][REC_BUF],
		      uint8_t mbuf[REC_G][REC_BUF], struct rec_st st[REC_G])
{
	uint32_t cnt = n - g0 < REC_G ? n - g0 : REC_G;

CRYPT_RECS:
	for (uint32_t r = 0; r < cnt; r++) {
#pragma HLS PIPELINE off
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 16 avg = 16
		PXYK_TRIP(CRYPT_RECS);
		const struct rec_ctx *c = &ctx[r];
		const struct pxy_k_rec_desc *d = &c->d;
		struct rec_st *t = &st[r];
		const uint8_t *ib = direct ? in + d->in_off : ibuf[r];
		uint8_t *ob = direct ? out + d->out_off : obuf[r];
		int gcm = bulk_gcm(d->bulk);

		t->ok = 0;
		t->out_len = 0;
		t->store = 0;
		t->flags = c->flags;
		t->mac_kind = MAC_NONE;
		t->mac_alg = d->mac;
		t->mac_key_len = d->mac_key_len;
		t->mac_len = 0;
		t->data_len = 0;
		t->in_off = d->in_off;
		t->out_off = d->out_off;
		pxyk_copy(t->mac_key, d->mac_key, PXY_K_MAC_KEY_MAX);
		if (!c->go)
			continue;
		switch (d->op) {
		case PXY_K_OP_TLS_OPEN:
			if (gcm)
				tls_gcm_open(c, ib, ob, t);
			else
				tls_cbc_open(c, ib, ob, mbuf[r], !direct, t);
			break;
		case PXY_K_OP_TLS_SEAL:
			if (gcm)
				tls_gcm_seal(c, ib, ob, t);
			else
				tls_cbc_seal(c, ib, ob, t);
			break;
		case PXY_K_OP_GCM_OPEN:
		case PXY_K_OP_GCM_SEAL:
			raw_gcm(c, ib, ob, t);
			break;
		case PXY_K_OP_CBC_DEC:
			raw_cbc_dec(c, ib, ob, t);
			break;
		default: /* PXY_K_OP_HMAC */
			if (!direct)
				copy_beats(mbuf[r], ib, d->in_len);
			t->mac_kind = MAC_RAW;
			t->mac_len = d->in_len;
			t->ok = 0xffffffffu;
			t->out_len = sha_digest_len(d->mac);
			break;
		}
	}
}

/* what finish's MAC unit u hashes: the plaintext (MtE), the fragment (EtM), the input (HMAC) */
PXYK_INLINE const uint8_t *mac_input(const struct rec_st *t, const uint8_t *in, const uint8_t *out, int direct,
				     const uint8_t *obuf, const uint8_t *mbuf)
{
	(void)obuf;
	if (!direct)
		return mbuf;
	if (t->mac_kind == MAC_MTE)
		return out + t->out_off;
	return in + t->in_off + (t->mac_kind == MAC_ETM ? 5 : 0);
}

static void rec_finish(const struct rec_st st[REC_G], const uint8_t obuf[REC_G][REC_BUF],
		       const uint8_t mbuf[REC_G][REC_BUF], const uint8_t *in, uint32_t g0, uint32_t n, int direct,
		       uint8_t *out, struct pxy_k_rec_result *results)
{
	uint32_t cnt = n - g0 < REC_G ? n - g0 : REC_G;
	uint8_t calc[REC_G][SHA_MAX_DIGEST];

	/* the group's MACs: one unit per record, all at once */
FINISH_MACS:
	for (uint32_t u = 0; u < REC_G; u++) {
#pragma HLS UNROLL
#pragma HLS LOOP_TRIPCOUNT min = 16 max = 16
		PXYK_TRIP(FINISH_MACS);
		const struct rec_st *t = &st[u];
		const uint8_t *p;

		if (u >= cnt)
			continue;
		p = mac_input(t, in, out, direct, obuf[u], mbuf[u]);
		pxyk_zero(calc[u], SHA_MAX_DIGEST);
		if (t->mac_kind == MAC_MTE)
			hmac_ct(t->mac_alg, t->mac_key, t->mac_key_len, t->hdr, p, t->data_len, t->mac_len, calc[u]);
		else if (t->mac_kind == MAC_ETM)
			hmac(t->mac_alg, t->mac_key, t->mac_key_len, t->hdr, 13, p, t->mac_len, calc[u]);
		else if (t->mac_kind == MAC_RAW)
			hmac(t->mac_alg, t->mac_key, t->mac_key_len, p, 0, p, t->mac_len, calc[u]);
	}

FINISH_RECS:
	for (uint32_t r = 0; r < cnt; r++) {
#pragma HLS PIPELINE off
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 16 avg = 16
		PXYK_TRIP(FINISH_RECS);
		const struct rec_st *t = &st[r];
		struct pxy_k_rec_result res;
		uint32_t ok = t->ok;
		uint8_t *dst = out + t->out_off;
		const uint8_t *ob = direct ? dst : obuf[r];

		if (t->mac_kind == MAC_MTE || t->mac_kind == MAC_ETM)
			ok &= ct_eq_bytes(calc[r], t->got, sha_digest_len(t->mac_alg));
		res.status = PXY_K_DONE;
		res.flags = t->flags;
		res.ok = ok & 1;
		res.out_len = t->out_len & ok;
	RESULT_MAC:
		for (int i = 0; i < 64; i++) {
#pragma HLS UNROLL
#pragma HLS LOOP_TRIPCOUNT min = 64 max = 64
			res.mac[i] = t->mac_kind == MAC_RAW && i < SHA_MAX_DIGEST ? calc[r][i] : 0;
		}
		/* the output under the verdict's mask, whole beats (zero past the end; a slot is whole beats).
		 * In place (emulation), the plaintext is already where it goes, and a record that failed is
		 * wiped: the verdict is the result's own, which the host reads anyway */
#ifdef PXYK_HAVE_HOST
		if (direct && !ok)
			pxyk_zero(dst, t->store);
#endif
	STORE_BEATS:
		for (uint32_t off = 0; !direct && off < t->store; off += REC_BEAT) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 0 max = 290 avg = 257
			PXYK_TRIP(STORE_BEATS);
		STORE_BYTES:
			for (uint32_t i = 0; i < REC_BEAT; i++) {
#pragma HLS UNROLL
#pragma HLS LOOP_TRIPCOUNT min = 64 max = 64
				uint32_t pos = off + i;

				dst[pos] = pos < t->store ? (uint8_t)(ob[pos] & (uint8_t)ok) : 0;
			}
		}
		pxyk_copy_words(&results[g0 + r], &res, sizeof(res));
	}
}

void tls_record_crypt(const struct pxy_k_rec_desc *descs, const uint8_t *in, uint8_t *out,
		      struct pxy_k_rec_result *results, uint32_t n_descs)
{
#pragma HLS INTERFACE m_axi port = descs offset = slave bundle = gmem0 depth = 128
#pragma HLS INTERFACE m_axi port = in offset = slave bundle = gmem1 depth = 2375680 max_widen_bitwidth = 512
#pragma HLS INTERFACE m_axi port = out offset = slave bundle = gmem2 depth = 2375680 max_widen_bitwidth = 512
#pragma HLS INTERFACE m_axi port = results offset = slave bundle = gmem3 depth = 128
#pragma HLS INTERFACE s_axilite port = descs
#pragma HLS INTERFACE s_axilite port = in
#pragma HLS INTERFACE s_axilite port = out
#pragma HLS INTERFACE s_axilite port = results
#pragma HLS INTERFACE s_axilite port = n_descs
#pragma HLS INTERFACE s_axilite port = return
	struct rec_ctx ctx[REC_G];
	struct rec_ld ld[REC_G];
	struct rec_st st[REC_G];
	uint8_t ibuf[REC_G][REC_BUF], obuf[REC_G][REC_BUF], mbuf[REC_G][REC_BUF];
	uint32_t n = n_descs < PXY_K_REC_MAX_BATCH ? n_descs : PXY_K_REC_MAX_BATCH;
	int direct = 0;

	/* 512-bit words; the MAC inputs one buffer per record (the finish stage's units read theirs at
	 * once), the records in and out one buffer per group (one record at a time) */
#pragma HLS ARRAY_PARTITION variable = mbuf type = complete dim = 1
#pragma HLS ARRAY_RESHAPE variable = ibuf type = cyclic factor = 64 dim = 2
#pragma HLS ARRAY_RESHAPE variable = obuf type = cyclic factor = 64 dim = 2
#pragma HLS ARRAY_RESHAPE variable = mbuf type = cyclic factor = 64 dim = 2
#pragma HLS BIND_STORAGE variable = ibuf type = ram_2p impl = uram
#pragma HLS BIND_STORAGE variable = obuf type = ram_2p impl = uram
#pragma HLS BIND_STORAGE variable = mbuf type = ram_2p impl = bram

#ifdef PXYK_HAVE_HOST
	direct = pxyk_host != NULL;
#endif
	/* canonical form (from 0, by 1, to a bound): what dataflow in a loop asks for */
REC_GROUPS:
	for (uint32_t g = 0; g < (n + REC_G - 1) / REC_G; g++) {
#pragma HLS DATAFLOW
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 8 avg = 8
		PXYK_TRIP(REC_GROUPS);
		uint32_t g0 = g * REC_G;

		rec_setup(descs, g0, n, ctx, ld);
		rec_load(in, g0, n, ld, direct, ibuf);
		rec_crypt(ctx, ibuf, in, out, g0, n, direct, obuf, mbuf, st);
		rec_finish(st, obuf, mbuf, in, g0, n, direct, out, results);
	}
}
