#include "ghash.h"

/*
 * Bit order (both forms): a block loads as the 128-bit integer hi:lo
 * (big-endian), whose bit 127 - i is the coefficient of x^i. With that
 * reflection the integer carry-less product of two blocks is the 255-bit
 * reflection of the polynomial product, i.e. its 256-bit reflection divided
 * by x; the multiplier operand is therefore stored as B x^-1, and the
 * 256-bit product z3:z2:z1:z0 is then the reflection of A B.
 *
 * Reduction modulo x^128 + x^7 + x^2 + x + 1: z3:z2 reflects the low 128
 * coefficients, D = z1:z0 the high ones; x^(128+i) = x^i (1 + x + x^2 + x^7),
 * and a product by x^k is a right shift by k in this order. D's terms that
 * pass x^127 again (from D's low bits, shifted left) fold into G before the
 * second, final fold.
 */
#define GH_REDUCE(T, SHL, SHR, X, z3, z2, z1, z0, yh, yl)                                                  \
	do {                                                                                              \
		T gh_ = X(X(z1, SHL(z0, 63)), X(SHL(z0, 62), SHL(z0, 57)));                                  \
		T gl_ = z0;                                                                                  \
		yh = X(X(X(z3, gh_), SHR(gh_, 1)), X(SHR(gh_, 2), SHR(gh_, 7)));                             \
		yl = X(X(X(z2, gl_), X(SHR(gl_, 1), SHR(gl_, 2))),                                           \
		       X(X(SHR(gl_, 7), SHL(gh_, 63)), X(SHL(gh_, 62), SHL(gh_, 57))));                      \
	} while (0)

#ifdef GH_LOGIC
/* ---- synthesis: AND/XOR logic ------------------------------------------------------ */

#define SX(a, b) ((a) ^ (b))
#define SSHL(a, n) ((a) << (n))
#define SSHR(a, n) ((a) >> (n))

/* 64x64 -> 128 carry-less: a 64x64 array of AND gates under XOR trees */
static void clmul64(uint64_t a, uint64_t b, uint64_t *hi, uint64_t *lo)
{
	uint64_t h = 0, l = 0;

CLMUL_BITS:
	for (int i = 0; i < 64; i++) {
#pragma HLS UNROLL
#pragma HLS LOOP_TRIPCOUNT min = 64 max = 64
		uint64_t m = 0 - ((a >> i) & 1);

		l ^= (b << i) & m;
		h ^= (i ? b >> (64 - i) : 0) & m;
	}
	*hi = h;
	*lo = l;
}

/* y <- y * B, B given as B x^-1 (bh:bl) */
static void gf_mul(uint64_t *yh, uint64_t *yl, uint64_t bh, uint64_t bl)
{
	uint64_t hh, hl, lh, ll, mh, ml, z3, z2, z1, z0;

	clmul64(*yh, bh, &hh, &hl);
	clmul64(*yl, bl, &lh, &ll);
	clmul64(*yh ^ *yl, bh ^ bl, &mh, &ml);
	mh ^= hh ^ lh;
	ml ^= hl ^ ll;
	z3 = hh;
	z2 = hl ^ mh;
	z1 = lh ^ ml;
	z0 = ll;
	GH_REDUCE(uint64_t, SSHL, SSHR, SX, z3, z2, z1, z0, *yh, *yl);
}

/* B -> B x^-1 = B (x^127 + x^6 + x + 1): if B's x^0 term is set, add the modulus, then divide by x */
static void prep(uint64_t bh, uint64_t bl, uint64_t *nh, uint64_t *nl)
{
	uint64_t m = 0 - (bh >> 63);

	*nh = ((bh ^ (m & 0xe100000000000000ull)) << 1) ^ (bl >> 63);
	*nl = (bl << 1) ^ (bh >> 63);
}

void ghash_init(struct ghash_key *k, const uint8_t h[16])
{
	uint64_t hh = pxyk_be64(h), hl = pxyk_be64(h + 8), ph, pl, nh, nl;
	uint64_t pw_h[GH_L + 1], pw_l[GH_L + 1];

	prep(hh, hl, &ph, &pl);
	pw_h[1] = hh;
	pw_l[1] = hl;
	/* H^t = H^(t-1) * H: one multiplier, GH_L - 1 products */
GH_POWERS:
	for (int t = 2; t <= GH_L; t++) {
#pragma HLS PIPELINE off
#pragma HLS LOOP_TRIPCOUNT min = 7 max = 7
		PXYK_TRIP(GH_POWERS);
		uint64_t yh = pw_h[t - 1], yl = pw_l[t - 1];

		gf_mul(&yh, &yl, ph, pl);
		pw_h[t] = yh;
		pw_l[t] = yl;
	}
GH_KEY_LANES:
	for (int i = 0; i < GH_L; i++) {
#pragma HLS UNROLL
#pragma HLS LOOP_TRIPCOUNT min = 8 max = 8
		prep(pw_h[GH_L], pw_l[GH_L], &nh, &nl);
		k->step_h.w[i] = nh;
		k->step_l.w[i] = nl;
		prep(pw_h[GH_L - i], pw_l[GH_L - i], &nh, &nl);
		k->last_h.w[i] = nh;
		k->last_l.w[i] = nl;
	}
}

void gh_group(struct gh_state *s, const struct ghash_key *k, const uint8_t *p, int last)
{
#pragma HLS ALLOCATION function instances = gf_mul limit = 4
GH_LANES:
	for (int i = 0; i < GH_L; i++) {
#pragma HLS UNROLL
#pragma HLS LOOP_TRIPCOUNT min = 8 max = 8
		uint64_t yh = s->yh.w[i] ^ pxyk_be64(p + 16 * i), yl = s->yl.w[i] ^ pxyk_be64(p + 16 * i + 8);

		gf_mul(&yh, &yl, last ? k->last_h.w[i] : k->step_h.w[i], last ? k->last_l.w[i] : k->step_l.w[i]);
		s->yh.w[i] = yh;
		s->yl.w[i] = yl;
	}
}

void gh_start(struct gh_state *s)
{
GH_ZERO:
	for (int i = 0; i < GH_L; i++) {
#pragma HLS UNROLL
#pragma HLS LOOP_TRIPCOUNT min = 8 max = 8
		s->yh.w[i] = 0;
		s->yl.w[i] = 0;
	}
}

#else
/* ---- host: integer multiplications of bit combs, GH_L lanes per vector ------------------ */
/* ---- lane operations ------------------------------------------------------------ */

PXYK_INLINE gh_v gx(gh_v a, gh_v b) { return a ^ b; }
PXYK_INLINE gh_v go(gh_v a, gh_v b) { return a | b; }
PXYK_INLINE gh_v gand(gh_v a, uint64_t m) { return a & m; }
PXYK_INLINE gh_v gshr(gh_v a, int n) { return a >> n; }
PXYK_INLINE gh_v gshl(gh_v a, int n) { return a << n; }
PXYK_INLINE gh_v gtop(gh_v a) { return 0 - (a >> 63); }
/* both operands masked to 32 bits: one unsigned 32x32 -> 64 multiply per lane */
PXYK_INLINE gh_v gmul(gh_v a, gh_v b) { return (a & 0xffffffffull) * (b & 0xffffffffull); }
PXYK_INLINE gh_v gsplat(uint64_t s) { return (gh_v){0} + s; }

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

/* y <- y * B in every lane (b: the operand's combs from gh_prep) */
static void gh_mul(gh_v *yh, gh_v *yl, const gh_v b[GH_COMBS])
{
	gh_v hh, hl, lh, ll, mh, ml, z3, z2, z1, z0;

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
	GH_REDUCE(gh_v, gshl, gshr, gx, z3, z2, z1, z0, *yh, *yl);
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
 * XOR, each as four combs.
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

void ghash_init(struct ghash_key *k, const uint8_t h[16])
{
	uint64_t hh = pxyk_be64(h), hl = pxyk_be64(h + 8), ph = hh, pl = hl;
	gh_v wh = gsplat(hh), wl = gsplat(hl), bh = gsplat(0), bl = gsplat(0);

	/*
	 * Lane i is to hold H^(GH_L - i) = H * prod over the set bits t of
	 * GH_L - 1 - i of H^(2^t). Step t multiplies by H^(2^t) or by 1; lane 0
	 * (all bits set) then holds H^(2^(t+1)), the next step's factor.
	 */
HOST_GH_STEPS:
	for (int t = 0; (1 << t) < GH_L; t++) {
#pragma HLS PIPELINE off
#pragma HLS LOOP_TRIPCOUNT min = 3 max = 3
	HOST_GH_SELECT:
		for (int i = 0; i < GH_L; i++) {
#pragma HLS UNROLL
#pragma HLS LOOP_TRIPCOUNT min = 8 max = 8
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

void gh_group(struct gh_state *s, const struct ghash_key *k, const uint8_t *p, int last)
{
	gh_v xh = gsplat(0), xl = gsplat(0);

HOST_GH_LOAD:
	for (int i = 0; i < GH_L; i++) {
#pragma HLS UNROLL
#pragma HLS LOOP_TRIPCOUNT min = 8 max = 8
		GH_W(xh, i) = pxyk_be64(p + 16 * i);
		GH_W(xl, i) = pxyk_be64(p + 16 * i + 8);
	}
	s->yh = gx(s->yh, xh);
	s->yl = gx(s->yl, xl);
	gh_mul(&s->yh, &s->yl, last ? k->last : k->step);
}

void gh_start(struct gh_state *s)
{
	s->yh = gsplat(0);
	s->yl = gsplat(0);
}
#endif

void gh_finish(const struct gh_state *s, uint8_t out[16])
{
	uint64_t hh = 0, hl = 0;

GH_FOLD:
	for (int i = 0; i < GH_L; i++) {
#pragma HLS UNROLL
#pragma HLS LOOP_TRIPCOUNT min = 8 max = 8
		hh ^= GH_W(s->yh, i);
		hl ^= GH_W(s->yl, i);
	}
	pxyk_put_be64(out, hh);
	pxyk_put_be64(out + 8, hl);
}
