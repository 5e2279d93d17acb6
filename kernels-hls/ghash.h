/*
 * GHASH (NIST SP 800-38D §6.4) in constant time: carry-less products are
 * built from ordinary integer multiplications of operands whose bits are
 * spread five apart, so that no carry reaches a bit that is kept. No table,
 * no data- or key-dependent branch or address.
 */
#ifndef PXYK_GHASH_H
#define PXYK_GHASH_H

#include "kernel.h"

struct ghash {
	uint64_t hh, hl; /* H, as the big-endian halves of the block */
	uint64_t yh, yl; /* running value */
};

void ghash_init(struct ghash *g, const uint8_t h[16]);
/** Absorb n bytes, zero-padded to whole blocks (GCM pads AAD and ciphertext separately). */
void ghash_update(struct ghash *g, const uint8_t *p, uint32_t n);
/** Absorb len(A) || len(C) in bits and write the hash. */
void ghash_final(struct ghash *g, uint64_t aad_len, uint64_t ct_len, uint8_t out[16]);

#endif
