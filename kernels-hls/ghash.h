/*
 * GHASH (NIST SP 800-38D §6.4) in constant time: carry-less products are
 * built from ordinary 32x32 -> 64-bit integer multiplications of operands
 * whose bits are spread four apart, so that no carry reaches a bit that is
 * kept. No table, no data- or key-dependent branch or address.
 *
 * The blocks are hashed by GH_L interleaved Horner chains: block i of a
 * group of GH_L goes to lane i, every lane multiplies by H^GH_L per group,
 * and the last group multiplies lane i by H^(GH_L - i) before the lanes
 * are added. The lanes are independent: parallel multipliers in hardware
 * (or one multiplier whose pipeline the GH_L chains keep full), vector
 * instructions on a CPU.
 */
#ifndef PXYK_GHASH_H
#define PXYK_GHASH_H

#include "kernel.h"

#define GH_L 8      /* lanes: interleaved chains, blocks per group */
#define GH_COMBS 36 /* 9 Karatsuba pieces of 32 bits, 4 combs each */

/*
 * One 64-bit word in every lane. For synthesis an array (each operation a
 * loop over the lanes); on the host the compiler's vector type of the same
 * width. The operations are the same either way.
 */
#if defined(__SYNTHESIS__) || defined(PXYK_NO_VECTOR)
typedef struct {
	uint64_t w[GH_L];
} gh_v;
#define GH_W(v, i) ((v).w[i])
#else
typedef uint64_t gh_v __attribute__((vector_size(8 * GH_L)));
#define GH_W(v, i) ((v)[i])
#endif

/* The hash key as multiplier operands: H^GH_L in every lane, and H^(GH_L - i) in lane i. */
struct ghash_key {
	gh_v step[GH_COMBS];
	gh_v last[GH_COMBS];
};

/** Derive the multiplier operands from H = E(K, 0^128). */
void ghash_init(struct ghash_key *k, const uint8_t h[16]);

/**
 * GHASH(H, A, C) as GCM uses it: the AAD (alen bytes) and the ciphertext
 * (clen bytes), each zero-padded to whole blocks, then len(A) || len(C) in
 * bits. The lengths are public.
 */
void ghash_gcm(const struct ghash_key *k, const uint8_t *a, uint32_t alen, const uint8_t *c, uint32_t clen,
	       uint8_t out[16]);

#endif
