#include "sha.h"

#define ROR32(x, n) (((x) >> (n)) | ((x) << (32 - (n))))
#define ROL32(x, n) (((x) << (n)) | ((x) >> (32 - (n))))
#define ROR64(x, n) (((x) >> (n)) | ((x) << (64 - (n))))

static const uint32_t k256[64] = {
	0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
	0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
	0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
	0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
	0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
	0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
	0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
	0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static const uint64_t k512[80] = {
	0x428a2f98d728ae22ull, 0x7137449123ef65cdull, 0xb5c0fbcfec4d3b2full, 0xe9b5dba58189dbbcull,
	0x3956c25bf348b538ull, 0x59f111f1b605d019ull, 0x923f82a4af194f9bull, 0xab1c5ed5da6d8118ull,
	0xd807aa98a3030242ull, 0x12835b0145706fbeull, 0x243185be4ee4b28cull, 0x550c7dc3d5ffb4e2ull,
	0x72be5d74f27b896full, 0x80deb1fe3b1696b1ull, 0x9bdc06a725c71235ull, 0xc19bf174cf692694ull,
	0xe49b69c19ef14ad2ull, 0xefbe4786384f25e3ull, 0x0fc19dc68b8cd5b5ull, 0x240ca1cc77ac9c65ull,
	0x2de92c6f592b0275ull, 0x4a7484aa6ea6e483ull, 0x5cb0a9dcbd41fbd4ull, 0x76f988da831153b5ull,
	0x983e5152ee66dfabull, 0xa831c66d2db43210ull, 0xb00327c898fb213full, 0xbf597fc7beef0ee4ull,
	0xc6e00bf33da88fc2ull, 0xd5a79147930aa725ull, 0x06ca6351e003826full, 0x142929670a0e6e70ull,
	0x27b70a8546d22ffcull, 0x2e1b21385c26c926ull, 0x4d2c6dfc5ac42aedull, 0x53380d139d95b3dfull,
	0x650a73548baf63deull, 0x766a0abb3c77b2a8ull, 0x81c2c92e47edaee6ull, 0x92722c851482353bull,
	0xa2bfe8a14cf10364ull, 0xa81a664bbc423001ull, 0xc24b8b70d0f89791ull, 0xc76c51a30654be30ull,
	0xd192e819d6ef5218ull, 0xd69906245565a910ull, 0xf40e35855771202aull, 0x106aa07032bbd1b8ull,
	0x19a4c116b8d2d0c8ull, 0x1e376c085141ab53ull, 0x2748774cdf8eeb99ull, 0x34b0bcb5e19b48a8ull,
	0x391c0cb3c5c95a63ull, 0x4ed8aa4ae3418acbull, 0x5b9cca4f7763e373ull, 0x682e6ff3d6b2b8a3ull,
	0x748f82ee5defb2fcull, 0x78a5636f43172f60ull, 0x84c87814a1f0ab72ull, 0x8cc702081a6439ecull,
	0x90befffa23631e28ull, 0xa4506cebde82bde9ull, 0xbef9a3f7b2c67915ull, 0xc67178f2e372532bull,
	0xca273eceea26619cull, 0xd186b8c721c0c207ull, 0xeada7dd6cde0eb1eull, 0xf57d4f7fee6ed178ull,
	0x06f067aa72176fbaull, 0x0a637dc5a2c898a6ull, 0x113f9804bef90daeull, 0x1b710b35131c471bull,
	0x28db77f523047d84ull, 0x32caab7b40c72493ull, 0x3c9ebe0a15c9bebcull, 0x431d67c49c100d4cull,
	0x4cc5d4becb3e42b6ull, 0x597f299cfc657e2aull, 0x5fcb6fab3ad6faecull, 0x6c44198c4a475817ull,
};

uint32_t sha_block_len(int alg)
{
	return alg == SHA_384 ? 128 : 64;
}

uint32_t sha_digest_len(int alg)
{
	return alg == SHA_1 ? 20 : alg == SHA_256 ? 32 : 48;
}

/*
 * The compression functions: one round per iteration (a pipeline at II = 1
 * whose only loop-carried path is the round itself), the message schedule
 * computed in the same iteration from a 16-word window.
 */
static void compress1(uint64_t h[8], const uint8_t *p)
{
	uint32_t w[16], a = (uint32_t)h[0], b = (uint32_t)h[1], c = (uint32_t)h[2], d = (uint32_t)h[3],
			e = (uint32_t)h[4];

SHA1_LOAD:
	for (int t = 0; t < 16; t++) {
#pragma HLS UNROLL
#pragma HLS LOOP_TRIPCOUNT min = 16 max = 16
		w[t] = pxyk_be32(p + 4 * t);
	}
SHA1_ROUNDS:
	for (int t = 0; t < 80; t++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LATENCY max = 2
#pragma HLS LOOP_TRIPCOUNT min = 80 max = 80
		PXYK_TRIP(SHA1_ROUNDS);
		uint32_t f, k, tmp, wt;

		if (t < 16) {
			wt = w[t];
		} else {
			wt = ROL32(w[(t - 3) & 15] ^ w[(t - 8) & 15] ^ w[(t - 14) & 15] ^ w[t & 15], 1);
			w[t & 15] = wt;
		}
		if (t < 20) {
			f = (b & c) | (~b & d);
			k = 0x5a827999;
		} else if (t < 40) {
			f = b ^ c ^ d;
			k = 0x6ed9eba1;
		} else if (t < 60) {
			f = (b & c) | (b & d) | (c & d);
			k = 0x8f1bbcdc;
		} else {
			f = b ^ c ^ d;
			k = 0xca62c1d6;
		}
		tmp = ROL32(a, 5) + f + e + k + wt;
		e = d;
		d = c;
		c = ROL32(b, 30);
		b = a;
		a = tmp;
	}
	h[0] = (uint32_t)(h[0] + a);
	h[1] = (uint32_t)(h[1] + b);
	h[2] = (uint32_t)(h[2] + c);
	h[3] = (uint32_t)(h[3] + d);
	h[4] = (uint32_t)(h[4] + e);
}

static void compress256(uint64_t h[8], const uint8_t *p)
{
	uint32_t w[16], s[8];

SHA256_LOAD:
	for (int t = 0; t < 16; t++) {
#pragma HLS UNROLL
#pragma HLS LOOP_TRIPCOUNT min = 16 max = 16
		w[t] = pxyk_be32(p + 4 * t);
	}
SHA256_STATE:
	for (int i = 0; i < 8; i++) {
#pragma HLS UNROLL
#pragma HLS LOOP_TRIPCOUNT min = 8 max = 8
		s[i] = (uint32_t)h[i];
	}
SHA256_ROUNDS:
	for (int t = 0; t < 64; t++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LATENCY max = 2
#pragma HLS LOOP_TRIPCOUNT min = 64 max = 64
		PXYK_TRIP(SHA256_ROUNDS);
		uint32_t wt;

		if (t < 16) {
			wt = w[t];
		} else {
			uint32_t w15 = w[(t - 15) & 15], w2 = w[(t - 2) & 15];
			uint32_t s0 = ROR32(w15, 7) ^ ROR32(w15, 18) ^ (w15 >> 3);
			uint32_t s1 = ROR32(w2, 17) ^ ROR32(w2, 19) ^ (w2 >> 10);

			wt = w[t & 15] + s0 + w[(t - 7) & 15] + s1;
			w[t & 15] = wt;
		}
		{
			uint32_t S1 = ROR32(s[4], 6) ^ ROR32(s[4], 11) ^ ROR32(s[4], 25);
			uint32_t ch = (s[4] & s[5]) ^ (~s[4] & s[6]);
			uint32_t t1 = s[7] + S1 + ch + k256[t] + wt;
			uint32_t S0 = ROR32(s[0], 2) ^ ROR32(s[0], 13) ^ ROR32(s[0], 22);
			uint32_t maj = (s[0] & s[1]) ^ (s[0] & s[2]) ^ (s[1] & s[2]);
			uint32_t t2 = S0 + maj;

			s[7] = s[6];
			s[6] = s[5];
			s[5] = s[4];
			s[4] = s[3] + t1;
			s[3] = s[2];
			s[2] = s[1];
			s[1] = s[0];
			s[0] = t1 + t2;
		}
	}
SHA256_ADD:
	for (int i = 0; i < 8; i++) {
#pragma HLS UNROLL
#pragma HLS LOOP_TRIPCOUNT min = 8 max = 8
		h[i] = (uint32_t)(h[i] + s[i]);
	}
}

static void compress512(uint64_t h[8], const uint8_t *p)
{
	uint64_t w[16], s[8];

SHA512_LOAD:
	for (int t = 0; t < 16; t++) {
#pragma HLS UNROLL
#pragma HLS LOOP_TRIPCOUNT min = 16 max = 16
		w[t] = pxyk_be64(p + 8 * t);
	}
SHA512_STATE:
	for (int i = 0; i < 8; i++) {
#pragma HLS UNROLL
#pragma HLS LOOP_TRIPCOUNT min = 8 max = 8
		s[i] = h[i];
	}
SHA512_ROUNDS:
	for (int t = 0; t < 80; t++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LATENCY max = 2
#pragma HLS LOOP_TRIPCOUNT min = 80 max = 80
		PXYK_TRIP(SHA512_ROUNDS);
		uint64_t wt;

		if (t < 16) {
			wt = w[t];
		} else {
			uint64_t w15 = w[(t - 15) & 15], w2 = w[(t - 2) & 15];
			uint64_t s0 = ROR64(w15, 1) ^ ROR64(w15, 8) ^ (w15 >> 7);
			uint64_t s1 = ROR64(w2, 19) ^ ROR64(w2, 61) ^ (w2 >> 6);

			wt = w[t & 15] + s0 + w[(t - 7) & 15] + s1;
			w[t & 15] = wt;
		}
		{
			uint64_t S1 = ROR64(s[4], 14) ^ ROR64(s[4], 18) ^ ROR64(s[4], 41);
			uint64_t ch = (s[4] & s[5]) ^ (~s[4] & s[6]);
			uint64_t t1 = s[7] + S1 + ch + k512[t] + wt;
			uint64_t S0 = ROR64(s[0], 28) ^ ROR64(s[0], 34) ^ ROR64(s[0], 39);
			uint64_t maj = (s[0] & s[1]) ^ (s[0] & s[2]) ^ (s[1] & s[2]);
			uint64_t t2 = S0 + maj;

			s[7] = s[6];
			s[6] = s[5];
			s[5] = s[4];
			s[4] = s[3] + t1;
			s[3] = s[2];
			s[2] = s[1];
			s[1] = s[0];
			s[0] = t1 + t2;
		}
	}
SHA512_ADD:
	for (int i = 0; i < 8; i++) {
#pragma HLS UNROLL
#pragma HLS LOOP_TRIPCOUNT min = 8 max = 8
		h[i] += s[i];
	}
}

static void compress(int alg, uint64_t h[8], const uint8_t *p)
{
	if (alg == SHA_1)
		compress1(h, p);
	else if (alg == SHA_256)
		compress256(h, p);
	else
		compress512(h, p);
}

void sha_init(struct sha_ctx *c, int alg)
{
	static const uint64_t iv1[5] = { 0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476, 0xc3d2e1f0 };
	static const uint64_t iv256[8] = { 0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
					   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19 };
	static const uint64_t iv384[8] = { 0xcbbb9d5dc1059ed8ull, 0x629a292a367cd507ull, 0x9159015a3070dd17ull,
					   0x152fecd8f70e5939ull, 0x67332667ffc00b31ull, 0x8eb44a8768581511ull,
					   0xdb0c2e0d64f98fa7ull, 0x47b5481dbefa4fa4ull };

	c->alg = alg;
	c->buf_len = 0;
	c->total = 0;
SHA_IV:
	for (int i = 0; i < 8; i++) {
#pragma HLS UNROLL
#pragma HLS LOOP_TRIPCOUNT min = 8 max = 8
		c->h[i] = alg == SHA_1 ? (i < 5 ? iv1[i] : 0) : alg == SHA_256 ? iv256[i] : iv384[i];
	}
}

/* Whole blocks per iteration: what fits in the buffer is taken at once (a shifter), a full buffer compressed. */
void sha_update(struct sha_ctx *c, const uint8_t *p, uint32_t n)
{
	uint32_t bs = sha_block_len(c->alg), i = 0;

	c->total += n;
SHA_UPDATE:
	for (uint32_t it = 0; i < n; it++) {
#pragma HLS PIPELINE off
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 290 avg = 257
		PXYK_TRIP(SHA_UPDATE);
		uint32_t take = n - i < bs - c->buf_len ? n - i : bs - c->buf_len;

	SHA_FILL:
		for (uint32_t j = 0; j < SHA_MAX_BLOCK; j++) {
#pragma HLS UNROLL
#pragma HLS LOOP_TRIPCOUNT min = 128 max = 128
			if (j < take)
				c->buf[c->buf_len + j] = p[i + j];
		}
		c->buf_len += take;
		i += take;
		if (c->buf_len == bs) {
			compress(c->alg, c->h, c->buf);
			c->buf_len = 0;
		}
	}
}

static void put_state(int alg, const uint64_t h[8], uint8_t *out)
{
	uint32_t dl = sha_digest_len(alg);

PUT_STATE:
	for (uint32_t i = 0; i < 8; i++) {
#pragma HLS UNROLL
#pragma HLS LOOP_TRIPCOUNT min = 8 max = 8
		if (alg == SHA_384 && i < dl / 8)
			pxyk_put_be64(out + 8 * i, h[i]);
		else if (alg != SHA_384 && i < dl / 4)
			pxyk_put_be32(out + 4 * i, (uint32_t)h[i]);
	}
}

void sha_final(struct sha_ctx *c, uint8_t *out)
{
	uint32_t bs = sha_block_len(c->alg), lf = c->alg == SHA_384 ? 16 : 8;
	uint64_t bits = c->total * 8;
	uint8_t pad[SHA_MAX_BLOCK * 2];
	uint32_t n = c->buf_len + 1 + lf <= bs ? bs - c->buf_len : 2 * bs - c->buf_len;

	pxyk_zero(pad, sizeof(pad));
	pad[0] = 0x80;
	pxyk_put_be64(pad + n - 8, bits);
	sha_update(c, pad, n);
	put_state(c->alg, c->h, out);
}

/* the ipad/opad blocks of a key no longer than a block */
static void hmac_pads(int alg, const uint8_t *key, uint32_t key_len, uint8_t *ipad, uint8_t *opad)
{
	uint32_t bs = sha_block_len(alg);

HMAC_PADS:
	for (uint32_t i = 0; i < SHA_MAX_BLOCK; i++) {
#pragma HLS UNROLL
#pragma HLS LOOP_TRIPCOUNT min = 128 max = 128
		uint8_t k = i < key_len && i < bs ? key[i] : 0;
		ipad[i] = k ^ 0x36;
		opad[i] = k ^ 0x5c;
	}
}

void hmac(int alg, const uint8_t *key, uint32_t key_len, const uint8_t *hdr, uint32_t hdr_len, const uint8_t *msg,
	  uint32_t msg_len, uint8_t *out)
{
	uint8_t ipad[SHA_MAX_BLOCK], opad[SHA_MAX_BLOCK], inner[SHA_MAX_DIGEST];
	struct sha_ctx c;

#ifdef PXYK_HAVE_HOST
	if (pxyk_host && pxyk_host->hmac(alg, key, key_len, hdr, hdr_len, msg, msg_len, out) == 0)
		return;
#endif
	hmac_pads(alg, key, key_len, ipad, opad);
	sha_init(&c, alg);
	sha_update(&c, ipad, sha_block_len(alg));
	sha_update(&c, hdr, hdr_len);
	sha_update(&c, msg, msg_len);
	sha_final(&c, inner);
	sha_init(&c, alg);
	sha_update(&c, opad, sha_block_len(alg));
	sha_update(&c, inner, sha_digest_len(alg));
	sha_final(&c, out);
	pxyk_zero(ipad, sizeof(ipad));
	pxyk_zero(opad, sizeof(opad));
}

void hmac_ct(int alg, const uint8_t *key, uint32_t key_len, const uint8_t hdr13[13], const uint8_t *msg,
	     uint32_t len, uint32_t max_len, uint8_t *out)
{
	uint32_t bs = sha_block_len(alg), lf = alg == SHA_384 ? 16 : 8;
	uint8_t ipad[SHA_MAX_BLOCK], opad[SHA_MAX_BLOCK], blk[SHA_MAX_BLOCK], inner[SHA_MAX_DIGEST];
	uint64_t h[8], keep[8];
	/* the stream after the key block: 13 header bytes, the message, 0x80, zeros, length */
	uint32_t end = 13 + len;                          /* secret: where 0x80 goes */
	uint32_t last = (end + 1 + lf + bs - 1) / bs - 1; /* secret: index of the final block */
	uint32_t nblocks = (13 + max_len + 1 + lf + bs - 1) / bs; /* public */
	uint64_t bits = (uint64_t)(bs + end) * 8;
	struct sha_ctx c;

#ifdef PXYK_HAVE_HOST
	if (pxyk_host && pxyk_host->hmac_ct(alg, key, key_len, hdr13, msg, len, max_len, out) == 0)
		return;
#endif
	hmac_pads(alg, key, key_len, ipad, opad);
	sha_init(&c, alg);
	compress(alg, c.h, ipad);
HMAC_CT_INIT:
	for (int i = 0; i < 8; i++) {
#pragma HLS UNROLL
#pragma HLS LOOP_TRIPCOUNT min = 8 max = 8
		h[i] = c.h[i];
		keep[i] = 0;
	}
HMAC_CT_BLOCKS:
	for (uint32_t b = 0; b < nblocks; b++) {
#pragma HLS PIPELINE off
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 290 avg = 257
		PXYK_TRIP(HMAC_CT_BLOCKS);
		uint32_t is_last = (uint32_t)pxyk_eqmask(b, last);

	HMAC_CT_BYTES:
		for (uint32_t j = 0; j < SHA_MAX_BLOCK; j++) {
#pragma HLS UNROLL
#pragma HLS LOOP_TRIPCOUNT min = 128 max = 128
			uint32_t k = b * bs + j;
			uint8_t v = 0;
			uint32_t in_msg = (uint32_t)pxyk_ltmask(k, end);
			uint32_t at_end = (uint32_t)pxyk_eqmask(k, end);
			uint32_t lenpos = is_last & ~(uint32_t)pxyk_ltmask(j, bs - lf);

			if (k < 13)
				v = hdr13[k];
			else if (k - 13 < max_len)
				v = (uint8_t)(msg[k - 13] & in_msg);
			v |= (uint8_t)(0x80 & at_end);
			/* the length field, big-endian, in the last lf bytes of the final block */
			{
				uint32_t from_end = bs - 1 - j; /* 0 for the last byte */
				uint8_t lb = from_end < 8 ? (uint8_t)(bits >> (8 * from_end)) : 0;
				v = (uint8_t)((v & ~lenpos) | (lb & lenpos));
			}
			if (j < bs)
				blk[j] = v;
		}
		compress(alg, h, blk);
	HMAC_CT_KEEP:
		for (int i = 0; i < 8; i++) {
#pragma HLS UNROLL
#pragma HLS LOOP_TRIPCOUNT min = 8 max = 8
			keep[i] |= h[i] & (0 - (uint64_t)(is_last & 1));
		}
	}
	put_state(alg, keep, inner);
	sha_init(&c, alg);
	sha_update(&c, opad, bs);
	sha_update(&c, inner, sha_digest_len(alg));
	sha_final(&c, out);
	pxyk_zero(ipad, sizeof(ipad));
	pxyk_zero(opad, sizeof(opad));
	pxyk_zero(blk, sizeof(blk));
}
