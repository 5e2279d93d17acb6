/*
 * Bitsliced AES (FIPS 197) for the record kernel: no table lookups, so no
 * address depends on a key or data byte. The state of AES_BLOCKS blocks is
 * kept as 8 bit planes; plane b holds bit b of every byte, AES_L words of 64
 * bits each (4 blocks per word, byte i of block k at bit 16k + i). The
 * S-box is the Boyar-Peralta depth-16 circuit (113 gates; ePrint 2011/332)
 * and its inverse; every other step is shifts and masks. Each gate is a loop
 * over the AES_L words: parallel logic in hardware, vector instructions on a
 * CPU.
 */
#ifndef PXYK_AES_H
#define PXYK_AES_H

#include "kernel.h"

#ifndef AES_L
#if defined(__SYNTHESIS__) || defined(PXYK_NO_VECTOR)
#define AES_L 1                 /* synthesis: 4 blocks, one 512-bit beat, per pass */
#elif defined(__AVX512F__)
#define AES_L 8                 /* host with 512-bit vectors: a plane per register */
#else
#define AES_L 4                 /* host: 64-bit words per bit plane */
#endif
#endif
#define AES_BLOCKS (4 * AES_L)  /* blocks per bitsliced pass */
#define AES_MAX_ROUNDS 14

/*
 * One bit plane: AES_L words that every gate treats alike. For synthesis an
 * array (each gate a loop, unrolled into AES_L * 64 parallel gates); on the
 * host the compiler's vector type of the same width, so that a plane stays
 * in one register instead of being spilled word by word. The operations are
 * the same bitwise ones either way.
 */
#if defined(__SYNTHESIS__) || defined(PXYK_NO_VECTOR)
typedef struct {
	uint64_t w[AES_L];
} aes_v;
#define AES_W(v, i) ((v).w[i])
#else
typedef uint64_t aes_v __attribute__((vector_size(8 * AES_L)));
#define AES_W(v, i) ((v)[i])
#endif

typedef struct {
	aes_v p[8];
} aes_state;

struct aes_key {
	int rounds;                          /* 10 (AES-128) or 14 (AES-256) */
	aes_state rk[AES_MAX_ROUNDS + 1];    /* round keys, bitsliced, in every block position */
};

/** Expand a 16- or 32-byte key. */
void aes_expand(struct aes_key *k, const uint8_t *key, int key_len);

/** Encrypt or decrypt AES_BLOCKS blocks (16 * AES_BLOCKS bytes), in place, in byte form. */
void aes_encrypt_blocks(const struct aes_key *k, uint8_t *blocks);
void aes_decrypt_blocks(const struct aes_key *k, uint8_t *blocks);

/** One block, for H and E(J0). */
void aes_encrypt1(const struct aes_key *k, const uint8_t in[16], uint8_t out[16]);

/**
 * CBC decryption of n bytes (a multiple of 16) from in to out, which must not
 * overlap.
 */
void aes_cbc_decrypt(const struct aes_key *k, const uint8_t iv[16], const uint8_t *in, uint8_t *out, uint32_t n);

/** CBC encryption (sequential by nature; used by seal). */
void aes_cbc_encrypt(const struct aes_key *k, const uint8_t iv[16], const uint8_t *in, uint8_t *out, uint32_t n);

/** The S-box through the bitsliced circuit, one byte (tests check all 256). */
uint8_t aes_sbox_ct(uint8_t x, int inverse);

#endif
