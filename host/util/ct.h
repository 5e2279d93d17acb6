/*
 * Constant-time primitives for code where secrets flow.
 *
 * Booleans are uint32_t 0/1 (or all-ones masks); secrets never choose a
 * branch, a loop bound or an array index. Failures accumulate with `&` and
 * are tested once, at the end, on a value that is no longer secret.
 */
#ifndef PXY_CT_H
#define PXY_CT_H

#include <stddef.h>
#include <stdint.h>

/* 1 if x != 0 */
static inline uint32_t pxy_ct_nz(uint32_t x)
{
	return (x | (0u - x)) >> 31;
}

static inline uint32_t pxy_ct_eq(uint32_t a, uint32_t b)
{
	return 1u ^ pxy_ct_nz(a ^ b);
}

/* 1 if a < b (unsigned), for a, b < 2^31 or any: borrow-based */
static inline uint32_t pxy_ct_lt(uint32_t a, uint32_t b)
{
	return (uint32_t)(((uint64_t)a - (uint64_t)b) >> 63);
}

static inline uint32_t pxy_ct_ge(uint32_t a, uint32_t b)
{
	return 1u ^ pxy_ct_lt(a, b);
}

/* An opaque copy of x: the compiler cannot see through it, so it cannot turn
 * mask arithmetic on a secret back into a branch (a value barrier). */
static inline uint32_t pxy_ct_barrier(uint32_t x)
{
	__asm__("" : "+r"(x));
	return x;
}

/* 0/1 to 0/0xffffffff */
static inline uint32_t pxy_ct_mask(uint32_t bit)
{
	return 0u - pxy_ct_barrier(bit);
}

static inline uint32_t pxy_ct_select(uint32_t bit, uint32_t a, uint32_t b)
{
	uint32_t m = pxy_ct_mask(bit);
	return (a & m) | (b & ~m);
}

/* 1 if the n bytes are equal; time depends on n only. */
static inline uint32_t pxy_ct_memeq(const void *a, const void *b, size_t n)
{
	const volatile uint8_t *x = a, *y = b;
	uint32_t acc = 0;
	for (size_t i = 0; i < n; i++)
		acc |= (uint32_t)(x[i] ^ y[i]);
	return 1u ^ pxy_ct_nz(acc);
}

/* dst = bit ? src : dst, n bytes, without a branch on bit */
static inline void pxy_ct_cond_copy(uint32_t bit, uint8_t *dst, const uint8_t *src, size_t n)
{
	uint8_t m = (uint8_t)pxy_ct_mask(bit);
	for (size_t i = 0; i < n; i++)
		dst[i] = (uint8_t)((src[i] & m) | (dst[i] & (uint8_t)~m));
}

/* Wipe memory the compiler cannot prove dead (see OPENSSL_cleanse). */
void pxy_wipe(void *p, size_t n);

#endif
