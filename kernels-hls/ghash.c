#include "ghash.h"

/*
 * 64x64 -> 128 carry-less product. Split x and y into five bit-combs
 * (bits i with i % 5 == k). An integer product of two combs adds at most
 * ceil(64/5) = 13 one-bit terms into any position, so its carries (< 2^4)
 * stay inside the four-bit gaps; keeping only the positions of the comb the
 * pair contributes to yields the XOR of the bit products.
 */
static void clmul64(uint64_t x, uint64_t y, uint64_t *hi, uint64_t *lo)
{
	static const uint64_t m[5] = {
		0x1084210842108421ull, 0x2108421084210842ull, 0x4210842108421084ull,
		0x8421084210842108ull, 0x0842108421084210ull,
	};
	/* the combs of the 128-bit result, bit positions p with p % 5 == k: the low
	 * word is m[k]; in the high word position 64 + q has residue (q + 4) % 5 */
	static const uint64_t rh[5] = {
		0x2108421084210842ull, 0x4210842108421084ull, 0x8421084210842108ull,
		0x0842108421084210ull, 0x1084210842108421ull,
	};
	uint64_t xs[5], ys[5], h = 0, l = 0;

	for (int k = 0; k < 5; k++) {
		xs[k] = x & m[k];
		ys[k] = y & m[k];
	}
GHASH_COMB:
	for (int k = 0; k < 5; k++) {
		uint64_t zh = 0, zl = 0;

		/* sum over i + j == k (mod 5) */
		for (int i = 0; i < 5; i++) {
			int j = (k - i + 5) % 5;
			limb_t ph, pl;

			pxyk_mac(xs[i], ys[j], 0, 0, &ph, &pl);
			zh ^= ph;
			zl ^= pl;
		}
		h |= zh & rh[k];
		l |= zl & m[k];
	}
	*hi = h;
	*lo = l;
}

/*
 * GF(2^128) product in GCM's bit order (the first bit of the block is the
 * coefficient of x^0): reflect, multiply (Karatsuba, three 64-bit products),
 * shift, reduce by x^128 + x^7 + x^2 + x + 1.
 */
PXYK_INLINE uint64_t rev64(uint64_t x)
{
	x = ((x >> 1) & 0x5555555555555555ull) | ((x & 0x5555555555555555ull) << 1);
	x = ((x >> 2) & 0x3333333333333333ull) | ((x & 0x3333333333333333ull) << 2);
	x = ((x >> 4) & 0x0f0f0f0f0f0f0f0full) | ((x & 0x0f0f0f0f0f0f0f0full) << 4);
	x = ((x >> 8) & 0x00ff00ff00ff00ffull) | ((x & 0x00ff00ff00ff00ffull) << 8);
	x = ((x >> 16) & 0x0000ffff0000ffffull) | ((x & 0x0000ffff0000ffffull) << 16);
	return (x >> 32) | (x << 32);
}

static void gf_mul(uint64_t *yh, uint64_t *yl, uint64_t hh, uint64_t hl)
{
	/* reflected: bit i of a0 is the coefficient of x^i, of a1 that of x^(64+i) */
	uint64_t a0 = rev64(*yh), a1 = rev64(*yl), b0 = rev64(hh), b1 = rev64(hl);
	uint64_t z0h, z0l, z2h, z2l, z1h, z1l;
	uint64_t r0, r1, r2, r3, t;

	clmul64(a0, b0, &z0h, &z0l);
	clmul64(a1, b1, &z2h, &z2l);
	clmul64(a0 ^ a1, b0 ^ b1, &z1h, &z1l);
	z1h ^= z0h ^ z2h;
	z1l ^= z0l ^ z2l;
	r0 = z0l;
	r1 = z0h ^ z1l;
	r2 = z2l ^ z1h;
	r3 = z2h;
	/* reduce r3:r2:r1:r0 (256 bits) modulo x^128 + x^7 + x^2 + x + 1 */
	t = r3; /* x^(192+i) = x^(64+i) (x^7 + x^2 + x + 1) */
	r1 ^= t ^ (t << 1) ^ (t << 2) ^ (t << 7);
	r2 ^= (t >> 63) ^ (t >> 62) ^ (t >> 57);
	t = r2; /* x^(128+i) = x^i (x^7 + x^2 + x + 1) */
	r0 ^= t ^ (t << 1) ^ (t << 2) ^ (t << 7);
	r1 ^= (t >> 63) ^ (t >> 62) ^ (t >> 57);
	*yh = rev64(r0);
	*yl = rev64(r1);
}

void ghash_init(struct ghash *g, const uint8_t h[16])
{
	g->hh = pxyk_be64(h);
	g->hl = pxyk_be64(h + 8);
	g->yh = g->yl = 0;
}

void ghash_update(struct ghash *g, const uint8_t *p, uint32_t n)
{
GHASH_BLOCKS:
	for (uint32_t off = 0; off < n; off += 16) {
		uint8_t b[16];
		uint32_t len = n - off < 16 ? n - off : 16;

		pxyk_zero(b, 16);
		pxyk_copy(b, p + off, len);
		g->yh ^= pxyk_be64(b);
		g->yl ^= pxyk_be64(b + 8);
		gf_mul(&g->yh, &g->yl, g->hh, g->hl);
	}
}

void ghash_final(struct ghash *g, uint64_t aad_len, uint64_t ct_len, uint8_t out[16])
{
	g->yh ^= aad_len * 8;
	g->yl ^= ct_len * 8;
	gf_mul(&g->yh, &g->yl, g->hh, g->hl);
	pxyk_put_be64(out, g->yh);
	pxyk_put_be64(out + 8, g->yl);
}
