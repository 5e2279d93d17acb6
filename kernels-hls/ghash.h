/*
 * GHASH (NIST SP 800-38D §6.4) in constant time: no table, no data- or
 * key-dependent branch or address.
 *
 * The blocks are hashed by GH_L interleaved Horner chains: block i of a
 * group of GH_L goes to lane i, every lane multiplies by H^GH_L per group,
 * and the last group multiplies lane i by H^(GH_L - i) before the lanes
 * are added. The lanes are independent, so a chain's next product waits for
 * its previous one only once per group.
 *
 * Two forms of the same carry-less products, chosen with the other kernels'
 * (aes.h):
 *  - synthesis (GH_LOGIC): each lane's 128x128 product is AND/XOR logic
 *    (Karatsuba over 64-bit halves, each a 64x64 array of AND gates under an
 *    XOR tree), the form an FPGA builds from LUTs; a group's GH_L products
 *    go through GH_MULS multipliers (tls_record_crypt: GH_L / GH_MULS
 *    cycles per group);
 *  - host: ordinary 32x32 -> 64-bit integer multiplications of operands
 *    whose bits are spread four apart, so that no carry reaches a bit that
 *    is kept, on vectors of GH_L lanes.
 */
#ifndef PXYK_GHASH_H
#define PXYK_GHASH_H

#include "kernel.h"

#define GH_L 8      /* lanes: interleaved chains, blocks per group */
#define GH_MULS 4   /* synthesis: GF(2^128) multipliers that a group's products share */
#define GH_COMBS 36 /* host: 9 Karatsuba pieces of 32 bits, 4 combs each */

#if defined(__SYNTHESIS__) || defined(PXYK_NO_VECTOR)
#define GH_LOGIC 1
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
#ifdef GH_LOGIC
	gh_v step_h, step_l, last_h, last_l; /* each as B x^-1, high and low halves */
#else
	gh_v step[GH_COMBS];
	gh_v last[GH_COMBS];
#endif
};

/* The running hash: one partial sum per lane. */
struct gh_state {
	gh_v yh, yl;
};

/** Derive the multiplier operands from H = E(K, 0^128). */
void ghash_init(struct ghash_key *k, const uint8_t h[16]);

/** Start a hash. */
void gh_start(struct gh_state *s);

/** Absorb GH_L blocks (16 * GH_L bytes); last: the final group of the stream (it ends with the length block). */
void gh_group(struct gh_state *s, const struct ghash_key *k, const uint8_t *blocks, int last);

/** The hash of a stream of whole groups whose final group was absorbed with last = 1. */
void gh_finish(const struct gh_state *s, uint8_t out[16]);

#endif
