#include "ghash.h"

/* ---- lane operations ------------------------------------------------------------ */

#if defined(__SYNTHESIS__) || defined(PXYK_NO_VECTOR)
PXYK_INLINE gh_v gx(gh_v a, gh_v b)
{
	gh_v r;
	for (int i = 0; i < GH_L; i++)
		r.w[i] = a.w[i] ^ b.w[i];
	return r;
}

PXYK_INLINE gh_v go(gh_v a, gh_v b)
{
	gh_v r;
	for (int i = 0; i < GH_L; i++)
		r.w[i] = a.w[i] | b.w[i];
	return r;
}

PXYK_INLINE gh_v gand(gh_v a, uint64_t m)
{
	gh_v r;
	for (int i = 0; i < GH_L; i++)
		r.w[i] = a.w[i] & m;
	return r;
}

PXYK_INLINE gh_v gshr(gh_v a, int n)
{
	gh_v r;
	for (int i = 0; i < GH_L; i++)
		r.w[i] = a.w[i] >> n;
	return r;
}

PXYK_INLINE gh_v gshl(gh_v a, int n)
{
	gh_v r;
	for (int i = 0; i < GH_L; i++)
		r.w[i] = a.w[i] << n;
	return r;
}

/* all-ones in the lanes whose top bit is set */
PXYK_INLINE gh_v gtop(gh_v a)
{
	gh_v r;
	for (int i = 0; i < GH_L; i++)
		r.w[i] = 0 - (a.w[i] >> 63);
	return r;
}

/* 32x32 -> 64-bit integer product of the low halves */
PXYK_INLINE gh_v gmul(gh_v a, gh_v b)
{
	gh_v r;
	for (int i = 0; i < GH_L; i++)
		r.w[i] = (uint64_t)(uint32_t)a.w[i] * (uint32_t)b.w[i];
	return r;
}

PXYK_INLINE gh_v gsplat(uint64_t s)
{
	gh_v r;
	for (int i = 0; i < GH_L; i++)
		r.w[i] = s;
	return r;
}
#else
PXYK_INLINE gh_v gx(gh_v a, gh_v b) { return a ^ b; }
PXYK_INLINE gh_v go(gh_v a, gh_v b) { return a | b; }
PXYK_INLINE gh_v gand(gh_v a, uint64_t m) { return a & m; }
PXYK_INLINE gh_v gshr(gh_v a, int n) { return a >> n; }
PXYK_INLINE gh_v gshl(gh_v a, int n) { return a << n; }
PXYK_INLINE gh_v gtop(gh_v a) { return 0 - (a >> 63); }
/* both operands masked to 32 bits: one unsigned 32x32 -> 64 multiply per lane */
PXYK_INLINE gh_v gmul(gh_v a, gh_v b) { return (a & 0xffffffffull) * (b & 0xffffffffull); }
PXYK_INLINE gh_v gsplat(uint64_t s) { return (gh_v){0} + s; }
#endif

/* ---- carry-less products ---------------------------------------------------------- */

/* bit combs: bits i with i % 4 == k, of a 32-bit operand (C) and of a 64-bit product (R) */
#define C0 0x11111111ull
#define C1 0x22222222ull
#define C2 0x44444444ull
#define C3 0x88888888ull
#define R0 0x1111111111111111ull
#define R1 0x2222222222222222ull
#define R2 0x4444444444444444ull
#define R3 0x8888888888888888ull

/*
 * 32x32 -> 64 carry-less product of u (its low 32 bits) and v, given as its
 * four combs v[k] = v & Ck. A comb has at most 8 bits set, so an integer
 * product of two combs adds at most 8 one-bit terms into any position: the
 * sum stays below 16, within the three-bit gap up to the next position of
 * the same comb. XOR-ing the products that land on one comb and keeping only
 * its positions leaves the XOR of the bit products there.
 */
PXYK_INLINE gh_v clmul32(gh_v u, const gh_v v[4])
{
	gh_v u0 = gand(u, C0), u1 = gand(u, C1), u2 = gand(u, C2), u3 = gand(u, C3);
	gh_v z0 = gx(gx(gmul(u0, v[0]), gmul(u1, v[3])), gx(gmul(u2, v[2]), gmul(u3, v[1])));
	gh_v z1 = gx(gx(gmul(u0, v[1]), gmul(u1, v[0])), gx(gmul(u2, v[3]), gmul(u3, v[2])));
	gh_v z2 = gx(gx(gmul(u0, v[2]), gmul(u1, v[1])), gx(gmul(u2, v[0]), gmul(u3, v[3])));
	gh_v z3 = gx(gx(gmul(u0, v[3]), gmul(u1, v[2])), gx(gmul(u2, v[1]), gmul(u3, v[0])));

	return go(go(gand(z0, R0), gand(z1, R1)), go(gand(z2, R2), gand(z3, R3)));
}

/*
 * 64x64 -> 128 (hi:lo) by Karatsuba over 32-bit halves: v[0..3] are the
 * combs of the high half of the other operand, v[4..7] of its low half,
 * v[8..11] of their XOR.
 */
PXYK_INLINE void clmul64(gh_v x, const gh_v v[12], gh_v *hi, gh_v *lo)
{
	gh_v s = gshr(x, 32);
	gh_v p1 = clmul32(s, v), p0 = clmul32(x, v + 4), pm = clmul32(gx(x, s), v + 8);
	gh_v mid = gx(pm, gx(p1, p0));

	*hi = gx(p1, gshr(mid, 32));
	*lo = gx(p0, gshl(mid, 32));
}

/*
 * Bit order: a block loads as the 128-bit integer hi:lo (big-endian), whose
 * bit 127 - i is the coefficient of x^i. With that reflection the integer
 * carry-less product of two blocks is the 255-bit reflection of the
 * polynomial product, i.e. its 256-bit reflection divided by x; the
 * multiplier operand is therefore stored as B x^-1 (gh_prep), and the
 * 256-bit product z3:z2:z1:z0 is then the reflection of A B.
 *
 * y <- y * B in every lane (b: the operand's combs from gh_prep).
 */
static void gh_mul(gh_v *yh, gh_v *yl, const gh_v b[GH_COMBS])
{
	gh_v hh, hl, lh, ll, mh, ml, z3, z2, z1, z0, gh, gl;

	/* Karatsuba over 64-bit halves: three 64x64 products */
	clmul64(*yh, b, &hh, &hl);
	clmul64(*yl, b + 12, &lh, &ll);
	clmul64(gx(*yh, *yl), b + 24, &mh, &ml);
	mh = gx(mh, gx(hh, lh));
	ml = gx(ml, gx(hl, ll));
	z3 = hh;
	z2 = gx(hl, mh);
	z1 = gx(lh, ml);
	z0 = ll;
	/*
	 * Reduce modulo x^128 + x^7 + x^2 + x + 1. z3:z2 reflects the low 128
	 * coefficients, D = z1:z0 the high ones; x^(128+i) = x^i (1 + x + x^2 + x^7),
	 * and a product by x^k is a right shift by k in this order. D's terms
	 * that pass x^127 again (from D's low bits, shifted left) fold into G
	 * before the second, final fold.
	 */
	gh = gx(gx(z1, gshl(z0, 63)), gx(gshl(z0, 62), gshl(z0, 57)));
	gl = z0;
	*yh = gx(gx(gx(z3, gh), gshr(gh, 1)), gx(gshr(gh, 2), gshr(gh, 7)));
	*yl = gx(gx(gx(z2, gl), gx(gshr(gl, 1), gshr(gl, 2))),
		 gx(gx(gshr(gl, 7), gshl(gh, 63)), gx(gshl(gh, 62), gshl(gh, 57))));
}

/* the four combs of the low 32 bits of x */
PXYK_INLINE void combs(gh_v out[4], gh_v x)
{
	out[0] = gand(x, C0);
	out[1] = gand(x, C1);
	out[2] = gand(x, C2);
	out[3] = gand(x, C3);
}

/* the 64-bit piece x as clmul64's operand */
PXYK_INLINE void prep64(gh_v out[12], gh_v x)
{
	gh_v s = gshr(x, 32);

	combs(out, s);
	combs(out + 4, x);
	combs(out + 8, gx(x, s));
}

/*
 * Multiplier operand B (hi:lo, per lane) as gh_mul takes it: B x^-1, whose
 * high half, low half and their XOR, each split into 32-bit halves and their
 * XOR, each as four combs. x^-1 = x^127 + x^6 + x + 1: if B's x^0 term is
 * set, add the modulus, then divide by x (a left shift in this bit order).
 */
static void gh_prep(gh_v out[GH_COMBS], gh_v bh, gh_v bl)
{
	gh_v m = gtop(bh);
	gh_v nh = gx(gshl(gx(bh, gand(m, 0xe100000000000000ull)), 1), gshr(bl, 63));
	gh_v nl = gx(gshl(bl, 1), gshr(bh, 63));

	prep64(out, nh);
	prep64(out + 12, nl);
	prep64(out + 24, gx(nh, nl));
}

/* ---- the hash ------------------------------------------------------------------------ */

void ghash_init(struct ghash_key *k, const uint8_t h[16])
{
	uint64_t hh = pxyk_be64(h), hl = pxyk_be64(h + 8), ph = hh, pl = hl;
	gh_v wh = gsplat(hh), wl = gsplat(hl), bh = gsplat(0), bl = gsplat(0);

	/*
	 * Lane i is to hold H^(GH_L - i) = H * prod over the set bits t of
	 * GH_L - 1 - i of H^(2^t). Step t multiplies by H^(2^t) or by 1; lane 0
	 * (all bits set) then holds H^(2^(t+1)), the next step's factor.
	 */
GH_POWERS:
	for (int t = 0; (1 << t) < GH_L; t++) {
		for (int i = 0; i < GH_L; i++) {
			uint64_t sel = 0 - (uint64_t)(((GH_L - 1 - i) >> t) & 1);

			GH_W(bh, i) = (ph & sel) | (0x8000000000000000ull & ~sel); /* 1 = x^0: the first bit */
			GH_W(bl, i) = pl & sel;
		}
		gh_prep(k->last, bh, bl);
		gh_mul(&wh, &wl, k->last);
		ph = GH_W(wh, 0);
		pl = GH_W(wl, 0);
	}
	gh_prep(k->last, wh, wl);
	gh_prep(k->step, gsplat(ph), gsplat(pl));
}

/* y_i <- (y_i + X_i) * B_i for the GH_L blocks at p */
static void gh_group(gh_v *yh, gh_v *yl, const uint8_t *p, const gh_v b[GH_COMBS])
{
	gh_v xh = gsplat(0), xl = gsplat(0);

	for (int i = 0; i < GH_L; i++) {
		GH_W(xh, i) = pxyk_be64(p + 16 * i);
		GH_W(xl, i) = pxyk_be64(p + 16 * i + 8);
	}
	*yh = gx(*yh, xh);
	*yl = gx(*yl, xl);
	gh_mul(yh, yl, b);
}

/* The running hash: the lanes and a group being gathered block by block. */
struct gh_run {
	gh_v yh, yl;
	uint8_t stage[16 * GH_L];
	uint32_t fill; /* blocks in stage */
};

/* one block of len <= 16 bytes, zero-padded, into the group being gathered */
static void gh_push(struct gh_run *r, const struct ghash_key *k, const uint8_t *p, uint32_t len)
{
	uint8_t *b = r->stage + 16 * r->fill;

	pxyk_zero(b, 16);
	pxyk_copy(b, p, len);
	r->fill++;
	if (r->fill == GH_L) {
		gh_group(&r->yh, &r->yl, r->stage, k->step);
		r->fill = 0;
	}
}

/* n bytes, zero-padded to whole blocks; never completes the last group (the length block does) */
static void gh_absorb(struct gh_run *r, const struct ghash_key *k, const uint8_t *p, uint32_t n)
{
	uint32_t off = 0;

GH_HEAD:
	for (; off < n && r->fill != 0; off += 16)
		gh_push(r, k, p + off, n - off < 16 ? n - off : 16);
GH_GROUPS:
	for (; r->fill == 0 && off + 16 * GH_L <= n; off += 16 * GH_L)
		gh_group(&r->yh, &r->yl, p + off, k->step);
GH_TAIL:
	for (; off < n; off += 16)
		gh_push(r, k, p + off, n - off < 16 ? n - off : 16);
}

void ghash_gcm(const struct ghash_key *k, const uint8_t *a, uint32_t alen, const uint8_t *c, uint32_t clen,
	       uint8_t out[16])
{
	struct gh_run r;
	uint8_t len[16];
	uint32_t blocks = (alen + 15) / 16 + (clen + 15) / 16 + 1;
	uint64_t hh = 0, hl = 0;

	/*
	 * Leading zero blocks leave GHASH unchanged (0 * H = 0); as many as make
	 * the stream whole groups put the length block in the last lane of the
	 * last group.
	 */
	r.fill = (GH_L - blocks % GH_L) % GH_L;
	r.yh = gsplat(0);
	r.yl = gsplat(0);
	pxyk_zero(r.stage, sizeof(r.stage));
	gh_absorb(&r, k, a, alen);
	gh_absorb(&r, k, c, clen);
	pxyk_put_be64(len, (uint64_t)alen * 8);
	pxyk_put_be64(len + 8, (uint64_t)clen * 8);
	pxyk_copy(r.stage + 16 * (GH_L - 1), len, 16);
	gh_group(&r.yh, &r.yl, r.stage, k->last);
GH_LANES:
	for (int i = 0; i < GH_L; i++) {
		hh ^= GH_W(r.yh, i);
		hl ^= GH_W(r.yl, i);
	}
	pxyk_put_be64(out, hh);
	pxyk_put_be64(out + 8, hl);
}
