/*
 * Montgomery arithmetic on fixed-width limb arrays, instantiated per size
 * with PXYK_BN_DEFINE(NL): every loop has a compile-time trip count, and
 * nothing branches on or indexes by a secret value.
 *
 * Carry bounds are noted where they are not obvious: a limb product plus two
 * limbs fits in 128 bits ((2^64-1)^2 + 2(2^64-1) = 2^128-1).
 */
#ifndef PXYK_BN_H
#define PXYK_BN_H

#include "kernel.h"

/* r = a - b over n limbs; returns the borrow (0/1) */
PXYK_INLINE limb_t pxyk_bn_sub(limb_t *r, const limb_t *a, const limb_t *b, int n)
{
	limb_t borrow = 0;

	for (int i = 0; i < n; i++) {
		limb_t d = a[i] - b[i];
		limb_t b1 = d > a[i];
		limb_t d2 = d - borrow;
		limb_t b2 = d2 > d;

		r[i] = d2;
		borrow = b1 | b2;
	}
	return borrow;
}

/* r = a + b over n limbs; returns the carry (0/1) */
PXYK_INLINE limb_t pxyk_bn_add(limb_t *r, const limb_t *a, const limb_t *b, int n)
{
	limb_t carry = 0;

	for (int i = 0; i < n; i++) {
		limb_t s = a[i] + b[i];
		limb_t c1 = s < a[i];
		limb_t s2 = s + carry;
		limb_t c2 = s2 < s;

		r[i] = s2;
		carry = c1 | c2;
	}
	return carry;
}

/* r = mask ? a : b */
PXYK_INLINE void pxyk_bn_sel(limb_t *r, limb_t mask, const limb_t *a, const limb_t *b, int n)
{
	for (int i = 0; i < n; i++)
		r[i] = (a[i] & mask) | (b[i] & ~mask);
}

/* all-ones if a == b */
PXYK_INLINE limb_t pxyk_bn_eq(const limb_t *a, const limb_t *b, int n)
{
	limb_t acc = 0;

	for (int i = 0; i < n; i++)
		acc |= a[i] ^ b[i];
	return ~pxyk_nzmask(acc);
}

/*
 * PXYK_BN_DEFINE(NL) defines, for moduli of NL limbs:
 *   bn<NL>_mont_mul(r, a, b, m, m0inv)    r = a*b*R^-1 mod m   (a, b < m; r may alias a or b)
 *   bn<NL>_mont_mul2(r, a, b, m, m0inv)   the same for two independent operand sets at once
 *   bn<NL>_redc2(r, t, m, m0inv)          r = t*R^-1 mod m, t of 2*NL limbs, t < m*R
 *   bn<NL>_exp2(r, xm, e, m, m0inv, one)  r[s] = xm[s]^e[s], s = 0, 1 (Montgomery form in and out)
 *
 * The paired forms are the CRT's two halves side by side: two multiplier
 * datapaths in hardware, two independent carry chains for a CPU.
 */
#define PXYK_BN_DEFINE(NL)                                                                                   \
	/* Fused CIOS: one pass per limb of b, multiplying and reducing together. */                       \
	static void bn##NL##_mont_mul(limb_t r[NL], const limb_t a[NL], const limb_t b[NL], const limb_t m[NL], \
				      limb_t m0inv)                                                         \
	{                                                                                                  \
		limb_t t[NL + 1];                                                                          \
		limb_t sub[NL];                                                                            \
	MONT_CLEAR_##NL:                                                                                   \
		for (int j = 0; j <= NL; j++)                                                              \
			t[j] = 0;                                                                          \
	MONT_OUTER_##NL:                                                                                   \
		for (int i = 0; i < NL; i++) {                                                             \
			limb_t c1, c2, lo, u, hi2, lo2, top;                                               \
			pxyk_mac(a[0], b[i], t[0], 0, &c1, &lo);                                           \
			u = lo * m0inv;                                                                    \
			pxyk_mac(u, m[0], lo, 0, &c2, &lo2);                                               \
		MONT_INNER_##NL:                                                                           \
			for (int j = 1; j < NL; j++) {                                                     \
				pxyk_mac(a[j], b[i], t[j], c1, &c1, &lo);                                  \
				pxyk_mac(u, m[j], lo, c2, &c2, &lo2);                                      \
				t[j - 1] = lo2;                                                            \
			}                                                                                  \
			/* t[NL] <= 1, and c1 + c2 + t[NL] < 2^65: carry into the top word */             \
			lo = t[NL] + c1;                                                                   \
			hi2 = lo < c1;                                                                     \
			top = lo + c2;                                                                     \
			hi2 += top < lo;                                                                   \
			t[NL - 1] = top;                                                                   \
			t[NL] = hi2;                                                                       \
		}                                                                                          \
		/* t < 2m: subtract m unless that borrows past the top word */                            \
		{                                                                                          \
			limb_t borrow = pxyk_bn_sub(sub, t, m, NL);                                        \
			limb_t keep = 0 - (borrow & (t[NL] ^ 1));                                          \
			pxyk_bn_sel(r, keep, t, sub, NL);                                                  \
		}                                                                                          \
	}                                                                                                  \
                                                                                                           \
	/* Two fused-CIOS multiplications in one loop nest (same carry bounds as above). */               \
	static void bn##NL##_mont_mul2(limb_t r[2][NL], const limb_t a[2][NL], const limb_t b[2][NL],      \
				       const limb_t m[2][NL], const limb_t m0inv[2])                        \
	{                                                                                                  \
		limb_t t[2][NL + 1];                                                                       \
		limb_t sub[NL];                                                                            \
	MONT2_CLEAR_##NL:                                                                                  \
		for (int j = 0; j <= NL; j++)                                                              \
			t[0][j] = t[1][j] = 0;                                                             \
	MONT2_OUTER_##NL:                                                                                  \
		for (int i = 0; i < NL; i++) {                                                             \
			limb_t c1[2], c2[2], lo[2], u[2], lo2[2];                                          \
			for (int s = 0; s < 2; s++) {                                                      \
				pxyk_mac(a[s][0], b[s][i], t[s][0], 0, &c1[s], &lo[s]);                    \
				u[s] = lo[s] * m0inv[s];                                                   \
				pxyk_mac(u[s], m[s][0], lo[s], 0, &c2[s], &lo2[s]);                        \
			}                                                                                  \
		MONT2_INNER_##NL:                                                                          \
			for (int j = 1; j < NL; j++) {                                                     \
				for (int s = 0; s < 2; s++) {                                              \
					pxyk_mac(a[s][j], b[s][i], t[s][j], c1[s], &c1[s], &lo[s]);        \
					pxyk_mac(u[s], m[s][j], lo[s], c2[s], &c2[s], &lo2[s]);            \
					t[s][j - 1] = lo2[s];                                              \
				}                                                                          \
			}                                                                                  \
			for (int s = 0; s < 2; s++) {                                                      \
				limb_t x = t[s][NL] + c1[s], h = x < c1[s], top = x + c2[s];               \
				h += top < x;                                                              \
				t[s][NL - 1] = top;                                                        \
				t[s][NL] = h;                                                              \
			}                                                                                  \
		}                                                                                          \
		for (int s = 0; s < 2; s++) {                                                              \
			limb_t borrow = pxyk_bn_sub(sub, t[s], m[s], NL);                                  \
			limb_t keep = 0 - (borrow & (t[s][NL] ^ 1));                                       \
			pxyk_bn_sel(r[s], keep, t[s], sub, NL);                                            \
		}                                                                                          \
	}                                                                                                  \
                                                                                                           \
	/* Montgomery reduction of a 2*NL-limb t < m*R. t is clobbered; t[2*NL] is scratch. */             \
	static void bn##NL##_redc2(limb_t r[NL], limb_t t[2 * NL + 1], const limb_t m[NL], limb_t m0inv)   \
	{                                                                                                  \
		limb_t sub[NL], carry = 0;                                                                 \
		t[2 * NL] = 0;                                                                             \
	REDC_OUTER_##NL:                                                                                   \
		for (int i = 0; i < NL; i++) {                                                             \
			limb_t u = t[i] * m0inv, c = 0, lo, s, c1;                                         \
		REDC_INNER_##NL:                                                                           \
			for (int j = 0; j < NL; j++) {                                                     \
				pxyk_mac(u, m[j], t[i + j], c, &c, &lo);                                   \
				t[i + j] = lo;                                                             \
			}                                                                                  \
			/* fold the row's carry and the running top carry into t[i + NL] */              \
			s = t[i + NL] + c;                                                                 \
			c1 = s < c;                                                                        \
			t[i + NL] = s + carry;                                                             \
			carry = c1 + (t[i + NL] < s);                                                      \
		}                                                                                          \
		{                                                                                          \
			limb_t borrow = pxyk_bn_sub(sub, t + NL, m, NL);                                   \
			limb_t keep = 0 - (borrow & (carry ^ 1));                                          \
			pxyk_bn_sel(r, keep, t + NL, sub, NL);                                             \
		}                                                                                          \
	}                                                                                                  \
                                                                                                           \
	/* xm[s]^e[s] for both halves with a fixed 4-bit window over all NL*64 exponent                   \
	 * bits: the same squarings and multiplications for every exponent, and each                      \
	 * table entry read by scanning all 16 under masks. */                                             \
	static void bn##NL##_exp2(limb_t r[2][NL], const limb_t xm[2][NL], const limb_t e[2][NL],          \
				  const limb_t m[2][NL], const limb_t m0inv[2], const limb_t one[2][NL])    \
	{                                                                                                  \
		limb_t tab[16][2][NL];                                                                     \
		limb_t acc[2][NL], pick[2][NL];                                                            \
	EXP_T0_##NL:                                                                                       \
		for (int s = 0; s < 2; s++)                                                                \
			for (int j = 0; j < NL; j++) {                                                     \
				tab[0][s][j] = one[s][j];                                                  \
				tab[1][s][j] = xm[s][j];                                                   \
				acc[s][j] = one[s][j];                                                     \
			}                                                                                  \
	EXP_TAB_##NL:                                                                                      \
		for (int k = 2; k < 16; k++)                                                               \
			bn##NL##_mont_mul2(tab[k], (const limb_t(*)[NL])tab[k - 1], xm, m, m0inv);         \
	EXP_WIN_##NL:                                                                                      \
		for (int w = NL * 16 - 1; w >= 0; w--) {                                                   \
			limb_t win[2];                                                                     \
		EXP_SQR_##NL:                                                                              \
			for (int q = 0; q < 4; q++)                                                        \
				bn##NL##_mont_mul2(acc, (const limb_t(*)[NL])acc, (const limb_t(*)[NL])acc, m, \
						   m0inv);                                                \
			for (int s = 0; s < 2; s++) {                                                      \
				win[s] = (e[s][w >> 4] >> ((w & 15) * 4)) & 15;                            \
				for (int j = 0; j < NL; j++)                                               \
					pick[s][j] = 0;                                                    \
			}                                                                                  \
		EXP_PICK_##NL:                                                                             \
			for (int k = 0; k < 16; k++) {                                                     \
				for (int s = 0; s < 2; s++) {                                              \
					limb_t mk = pxyk_eqmask((limb_t)k, win[s]);                        \
					for (int j = 0; j < NL; j++)                                       \
						pick[s][j] |= tab[k][s][j] & mk;                           \
				}                                                                          \
			}                                                                                  \
			bn##NL##_mont_mul2(acc, (const limb_t(*)[NL])acc, (const limb_t(*)[NL])pick, m, m0inv); \
		}                                                                                          \
	EXP_OUT_##NL:                                                                                      \
		for (int s = 0; s < 2; s++)                                                                \
			for (int j = 0; j < NL; j++)                                                       \
				r[s][j] = acc[s][j];                                                       \
	}

#endif
