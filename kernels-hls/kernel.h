/*
 * Shared by the HLS kernels. Everything here is synthesizable C: fixed-size
 * arrays, loops with compile-time trip counts, no allocation, no recursion,
 * no library calls, and no branch or index that depends on a secret.
 *
 * The same sources compile on the host for the emulation engine and the
 * tests; `#pragma HLS` lines are ignored there.
 *
 * 64x64->128-bit products: `unsigned __int128` when the compiler has it
 * (GCC, Clang, and the Clang-based HLS front end, which maps it onto DSP
 * cascades); -DPXYK_NO_INT128 selects four 32x32 partial products instead,
 * for tools without it. Both are plain multiplications: the lint target
 * checks that neither leaves a call (__multi3 and the like) in the objects.
 */
#ifndef PXYK_KERNEL_H
#define PXYK_KERNEL_H

#include <stddef.h>
#include <stdint.h>

#include "proxyssl/kernel_abi.h"

#define PXYK_INLINE static inline __attribute__((always_inline))

typedef uint64_t limb_t;

#if defined(__SIZEOF_INT128__) && !defined(PXYK_NO_INT128)
typedef unsigned __int128 dlimb_t;
/* hi:lo = a * b + c + d  (cannot overflow 128 bits) */
PXYK_INLINE void pxyk_mac(limb_t a, limb_t b, limb_t c, limb_t d, limb_t *hi, limb_t *lo)
{
	dlimb_t p = (dlimb_t)a * b + c + d;
	*lo = (limb_t)p;
	*hi = (limb_t)(p >> 64);
}
#else
PXYK_INLINE void pxyk_mac(limb_t a, limb_t b, limb_t c, limb_t d, limb_t *hi, limb_t *lo)
{
	uint64_t a0 = (uint32_t)a, a1 = a >> 32, b0 = (uint32_t)b, b1 = b >> 32;
	uint64_t p00 = a0 * b0, p01 = a0 * b1, p10 = a1 * b0, p11 = a1 * b1;
	uint64_t mid = (p00 >> 32) + (uint32_t)p01 + (uint32_t)p10;
	uint64_t l = (mid << 32) | (uint32_t)p00;
	uint64_t h = p11 + (p01 >> 32) + (p10 >> 32) + (mid >> 32);
	uint64_t t;

	t = l + c;
	h += t < l;
	l = t + d;
	h += l < t;
	*lo = l;
	*hi = h;
}
#endif

/* ---- loop trip counts (firmware/perf_model.py) ------------------------------------ */

/*
 * PXYK_TRIP(LABEL), the first statement of a loop's body after its pragmas,
 * names the loop by its label. In the instrumented C simulation
 * (-DPXYK_TRIPS, firmware/trips.c) it counts the loop's entries and
 * iterations and which loop it ran inside (a scope per iteration, closed
 * however the iteration ends); everywhere else it is nothing.
 */
#ifdef PXYK_TRIPS
struct pxyk_trip {
	int id, outer; /* this loop's node; the loop it runs in */
};
void pxyk_trip_enter(struct pxyk_trip *t, const char *name);
void pxyk_trip_leave(struct pxyk_trip *t);
#define PXYK_TRIP(label)                                                                                  \
	struct pxyk_trip pxyk_trip_##label __attribute__((cleanup(pxyk_trip_leave)));                    \
	pxyk_trip_enter(&pxyk_trip_##label, #label)
#else
#define PXYK_TRIP(label) ((void)0)
#endif

/* ---- constant time ---------------------------------------------------------- */

/* all-ones if x != 0 */
PXYK_INLINE uint64_t pxyk_nzmask(uint64_t x)
{
	return 0 - ((x | (0 - x)) >> 63);
}

PXYK_INLINE uint64_t pxyk_eqmask(uint64_t a, uint64_t b)
{
	return ~pxyk_nzmask(a ^ b);
}

/* all-ones if a < b, for a, b < 2^63 */
PXYK_INLINE uint64_t pxyk_ltmask(uint64_t a, uint64_t b)
{
	return 0 - ((a - b) >> 63);
}

PXYK_INLINE uint64_t pxyk_sel(uint64_t mask, uint64_t a, uint64_t b)
{
	return (a & mask) | (b & ~mask);
}

/* ---- byte order -------------------------------------------------------------- */

PXYK_INLINE uint32_t pxyk_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

PXYK_INLINE uint64_t pxyk_be64(const uint8_t *p)
{
	return (uint64_t)pxyk_be32(p) << 32 | pxyk_be32(p + 4);
}

PXYK_INLINE void pxyk_put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

PXYK_INLINE void pxyk_put_be64(uint8_t *p, uint64_t v)
{
	pxyk_put_be32(p, (uint32_t)(v >> 32));
	pxyk_put_be32(p + 4, (uint32_t)v);
}

/*
 * Byte copies and fills of a few bytes (nonces, headers, digests) as
 * fixed-shape loops (no memcpy: not a library call in HLS): wires, unrolled.
 */
PXYK_INLINE void pxyk_copy(uint8_t *d, const uint8_t *s, uint32_t n)
{
COPY_BYTES:
	for (uint32_t i = 0; i < n; i++) {
#pragma HLS UNROLL
#pragma HLS LOOP_TRIPCOUNT min = 4 max = 64
		d[i] = s[i];
	}
}

PXYK_INLINE void pxyk_zero(uint8_t *d, uint32_t n)
{
ZERO_BYTES:
	for (uint32_t i = 0; i < n; i++) {
#pragma HLS UNROLL
#pragma HLS LOOP_TRIPCOUNT min = 16 max = 128
		d[i] = 0;
	}
}

/*
 * A whole-struct copy between device memory and local storage, as a loop of
 * 64-bit words (a burst in hardware; never a call to memcpy). n is a
 * multiple of 8 for every structure of the ABI. The words are a may_alias
 * type: the structures are also read and written through their own members,
 * and with a plain uint64_t the compiler may assume the two never meet
 * (C11 6.5p7) and reorder or drop the copy.
 */
typedef uint64_t __attribute__((__may_alias__)) pxyk_word_t;

PXYK_INLINE void pxyk_copy_words(void *dst, const void *src, uint32_t n)
{
	pxyk_word_t *d = (pxyk_word_t *)dst;
	const pxyk_word_t *s = (const pxyk_word_t *)src;

COPY_WORDS:
	for (uint32_t i = 0; i < n / 8; i++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 360 avg = 72
		PXYK_TRIP(COPY_WORDS);
		d[i] = s[i];
	}
}

/* ---- emulation: the host's arithmetic, when the emulation device lends it ------ */

/*
 * Only in the emulation library's host build (PXYK_EMU_HOST): the table the
 * emulation device binds (kernel_abi.h, PXY_K_EMU_BIND), NULL until then.
 * Each use is `if (pxyk_host && pxyk_host->fn(...) == 0) <done>; else <the
 * kernel's own arithmetic>`. The synthesis form has none of it.
 */
#if defined(PXYK_EMU_HOST) && !defined(__SYNTHESIS__)
#define PXYK_HAVE_HOST 1
extern const struct pxy_k_emu_host *pxyk_host;
#endif

/* ---- the kernels' top functions (also the emulation library's entry points) -- */

void rsa_crt_decrypt(const struct pxy_k_rsa_key *keys, const struct pxy_k_rsa_job *jobs,
		     struct pxy_k_rsa_result *results, uint32_t n_jobs);

void tls_record_crypt(const struct pxy_k_rec_desc *descs, const uint8_t *in, uint8_t *out,
		      struct pxy_k_rec_result *results, uint32_t n_descs);

#endif
